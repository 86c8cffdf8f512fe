import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Split } from "../../lib/data/datasets";
import { confidentMistakes, mostConfusedPairs, nearestNeighbours, trueClassProbabilityHistograms } from "../../lib/evaluation/error-analysis";

describe("error analysis", () => {
  it("most-confused pairs count both directions, most first", () => {
    const confusion = [
      [5, 3, 0],
      [1, 7, 4],
      [0, 4, 9],
    ];
    assert.deepEqual(mostConfusedPairs(confusion, 5), [
      { a: 1, b: 2, aAsB: 4, bAsA: 4, total: 8 },
      { a: 0, b: 1, aAsB: 3, bAsA: 1, total: 4 },
    ]);
    assert.equal(mostConfusedPairs(confusion, 1).length, 1);
  });

  it("confident mistakes: only wrong predictions, by confidence", () => {
    const probabilities = [
      0.9, 0.1, // true 0, right
      0.7, 0.3, // true 1, wrong at 0.7
      0.2, 0.8, // true 0, wrong at 0.8
      0.6, 0.4, // true 1, wrong at 0.6
    ];
    const mistakes = confidentMistakes(probabilities, [0, 1, 0, 1], 2, 2);
    assert.deepEqual(mistakes.map((m) => m.index), [2, 1]);
    assert.deepEqual(mistakes[0], { index: 2, trueLabel: 0, predicted: 1, confidence: 0.8, trueProbability: 0.2 });
    assert.throws(() => confidentMistakes(probabilities, [0, 1], 2, 1), /8 values for 2 samples × 2 classes/);
  });

  it("histograms of the true class's probability, per class", () => {
    const probabilities = [1, 0, 0.45, 0.55, 0.2, 0.8, 0.05, 0.95];
    const { edges, counts } = trueClassProbabilityHistograms(probabilities, [0, 0, 1, 1], 2, 4);
    assert.deepEqual(edges, [0, 0.25, 0.5, 0.75, 1]);
    assert.deepEqual(counts, [
      [0, 1, 0, 1], // 0.45 and 1 (the last bin holds 1)
      [0, 0, 0, 2], // 0.8 and 0.95
    ]);
  });

  it("nearest training neighbours in pixel space", () => {
    const train: Split = {
      images: Uint8Array.from([0, 0, 0, 0, 10, 10, 10, 10, 200, 200, 200, 200, 12, 12, 12, 12]),
      labels: Uint8Array.from([3, 4, 5, 6]),
      count: 4,
      height: 2,
      width: 2,
    };
    const neighbours = nearestNeighbours(Uint8Array.from([11, 11, 11, 11]), train, 2);
    assert.deepEqual(neighbours, [
      { index: 1, label: 4, distance: 2 },
      { index: 3, label: 6, distance: 2 },
    ]);
    assert.throws(() => nearestNeighbours(Uint8Array.from([1, 2]), train, 1), /has 2 pixels; the training images have 4/);
    assert.throws(() => nearestNeighbours(Uint8Array.from([1, 2, 3, 4]), train, 5), /k must be an integer in 1\.\.4/);
  });
});
