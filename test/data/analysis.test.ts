import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend } from "../../lib/accelerator";
import type { Split } from "../../lib/data/datasets";
import { classImageStats, closestPairs, meanImageDistances, nearestMeanAccuracy, nearestMeanPredictions, pca2d, pixelHistograms } from "../../lib/data/analysis";

const data: Split = {
  // class 0: [0,0,0,0] and [0,0,0,255]; class 1: [255,255,255,255]
  images: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255]),
  labels: Uint8Array.from([0, 0, 1]),
  count: 3,
  height: 2,
  width: 2,
};

describe("analysis", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("per-class mean and standard deviation images", () => {
    const stats = classImageStats(data, 3);
    assert.deepEqual(stats.counts, [2, 1, 0]);
    assert.deepEqual([...stats.mean[0]], [0, 0, 0, 127.5]);
    assert.deepEqual([...stats.std[0]], [0, 0, 0, 127.5]);
    assert.deepEqual([...stats.mean[2]], [0, 0, 0, 0], "an absent class gives zeros, not NaN");
  });

  it("nearest-class-mean accuracy", () => {
    const means = classImageStats(data, 2).mean; // class 0 mean [0,0,0,127.5], class 1 [255,255,255,255]
    const test: Split = { images: Uint8Array.from([0, 0, 0, 200, 200, 200, 200, 200, 10, 10, 10, 10]), labels: Uint8Array.from([0, 1, 1]), count: 3, height: 2, width: 2 };
    // Image 2 ([10,10,10,10]) is nearer class 0's mean: one mistake in three.
    assert.deepEqual([...nearestMeanPredictions(means, test)], [0, 1, 0]);
    assert.equal(nearestMeanAccuracy(means, test), 2 / 3);
    assert.throws(() => nearestMeanAccuracy(means, { ...test, count: 0 }), /empty/);
  });

  it("pixel histograms as fractions per class", () => {
    const { edges, fractions } = pixelHistograms(data, 2, 2);
    assert.deepEqual(edges, [0, 128, 256]);
    assert.deepEqual(fractions, [[7 / 8, 1 / 8], [0, 1]]);
    assert.throws(() => pixelHistograms(data, 2, 0), /bins must be an integer in 1–256/);
  });

  it("distances between class means and the closest pairs", () => {
    const distances = meanImageDistances([new Float64Array([0, 0]), new Float64Array([255, 0]), new Float64Array([255, 255])]);
    assert.equal(distances[0][1], 1);
    assert.ok(Math.abs(distances[0][2] - Math.SQRT2) < 1e-12);
    assert.deepEqual(closestPairs(distances, 2).map((p) => [p.a, p.b]), [[0, 1], [1, 2]]);
  });

  it("PCA finds the direction of largest variance", () => {
    // Points along the diagonal of the first two pixels, a little noise on the others.
    const n = 50;
    const images = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      images.set([i * 5, i * 5, 100 + (i % 3), 100 + (i % 2)], i * 4);
    }
    const result = pca2d({ images, labels: new Uint8Array(n), count: n, height: 2, width: 2 });
    assert.equal(result.points.length, n);
    assert.ok(result.explainedVariance[0] > 0.99, `first component explains ${result.explainedVariance[0]}`);
    const xs = result.points.map((p) => p[0]);
    const spread = Math.max(...xs) - Math.min(...xs);
    // The diagonal runs 0 → 245 in both pixels: length 245·√2/255 in [0,1] units.
    assert.ok(Math.abs(spread - (245 * Math.SQRT2) / 255) < 1e-3, `spread ${spread}`);
  });
});
