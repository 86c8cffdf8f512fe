import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { progressText, searchedParameters, studyFigures, studySummary, studyTable } from "../../lib/display/study-report";
import { withDefaults, type TrialResult } from "../../lib/training/tuning";

const trial = (index: number, rung: number, epochs: number, dense: number, augment: boolean, valAccuracy: number): TrialResult => ({
  key: `k${index}`, index, rung, params: withDefaults({ dense, augment }), epochs, valAccuracy, valLoss: 1 - valAccuracy,
  bestEpoch: epochs - 1, seconds: 10.4 * epochs, backend: "wasm", finishedAt: "2026-01-01T00:00:00.000Z",
});

// Two configurations at 1 epoch, the better one again at 3 (a halving study in the order it ran).
const trials = [trial(0, 0, 1, 64, false, 0.8), trial(1, 0, 1, 128, true, 0.85), trial(2, 1, 3, 128, true, 0.9)];

describe("study report", () => {
  it("searched parameters leave out single-value choices and empty ranges", () => {
    assert.deepEqual(
      searchedParameters({
        dense: { kind: "choice", values: [64, 128] },
        augment: { kind: "choice", values: [true] },
        dropout: { kind: "float", low: 0.2, high: 0.2 },
        learningRate: { kind: "logUniform", low: 1e-4, high: 1e-2 },
      }),
      ["dense", "learningRate"],
    );
  });

  it("table: longest budget first, then by validation accuracy; booleans as 0/1", () => {
    const table = studyTable(trials, ["dense", "augment"]);
    assert.deepEqual(table.columns, ["rung", "epochs", "dense", "augment", "val acc", "seconds"]);
    assert.deepEqual(table.values, [
      [1, 3, 128, 1, 0.9, 31],
      [0, 1, 128, 1, 0.85, 10],
      [0, 1, 64, 0, 0.8, 10],
    ]);
  });

  it("progress line: trial k of n, read back or not, best so far, the time left in whole minutes and none at the end", () => {
    assert.equal(progressText({ trial: trials[0], done: 1, planned: 3, best: trials[0], etaSeconds: 61, reused: false }),
      "trial 1 of 3: val acc 0.8000 at 1 epochs | best so far 0.8000, ETA ~2 min");
    assert.equal(progressText({ trial: trials[2], done: 3, planned: 3, best: trials[2], etaSeconds: 0, reused: true }),
      "trial 3 of 3 (read back): val acc 0.9000 at 3 epochs | best so far 0.9000");
  });

  it("summary: trials, trial-epochs, minutes summed over trials, distinct backends", () => {
    assert.equal(studySummary([...trials, { ...trials[2], backend: "tensorflow" }]),
      "4 trials, 8 trial-epochs, 1.4 minutes of training (summed over trials; backends: wasm, tensorflow)");
  });

  it("figures: best-so-far line, rung-0 parallel coordinates, one effect plot per parameter", () => {
    const figures = studyFigures([trials[1], trials[0], trials[2]], ["dense", "augment"], "S");
    assert.equal(figures.length, 4);
    assert.deepEqual(figures[0].data[1].y, [0.85, 0.85, 0.9]);
    const dimensions = figures[1].data[0].dimensions as { label: string; values: number[] }[];
    assert.deepEqual(dimensions.map((d) => d.label), ["dense", "augment", "val acc"]);
    assert.deepEqual(dimensions[0].values, [128, 64], "rung 0 only");
    assert.match(JSON.stringify(figures[1].layout.title), /rung 0 \(1 epoch each\)/);
    assert.deepEqual(figures[2].data.map((trace) => trace.name), ["1 epoch", "3 epochs"]);
    assert.throws(() => studyFigures([], ["dense"], "S"), /no finished trials/);
  });
});
