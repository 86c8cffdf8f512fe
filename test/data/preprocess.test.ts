import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import type { Split } from "../../lib/data/datasets";
import { fitStandardizer, padImages, stratifiedSplit, subset, toImageTensor, toLabelTensor, toTargetTensor } from "../../lib/data/preprocess";
import { seededRandom, shuffle } from "../../lib/tooling/random";

function split(pixels: number[][], labels: number[], side = 2): Split {
  return { images: Uint8Array.from(pixels.flat()), labels: Uint8Array.from(labels), count: labels.length, height: side, width: side };
}

describe("stratifiedSplit", () => {
  const labels = Array.from({ length: 1000 }, (_, i) => (i < 700 ? 0 : i < 900 ? 1 : 2));

  it("keeps each class's proportion, covers every index once, and is seeded", () => {
    const { train, validation } = stratifiedSplit(labels, 0.1, 42);
    assert.equal(train.length + validation.length, 1000);
    assert.equal(new Set([...train, ...validation]).size, 1000, "disjoint and complete");
    const count = (indices: number[], c: number) => indices.filter((i) => labels[i] === c).length;
    assert.deepEqual([0, 1, 2].map((c) => count(validation, c)), [70, 20, 10]);
    assert.deepEqual(stratifiedSplit(labels, 0.1, 42), { train, validation });
    assert.notDeepEqual(stratifiedSplit(labels, 0.1, 43).validation, validation);
  });

  it("rejects fractions outside (0, 1) and empty labels", () => {
    assert.throws(() => stratifiedSplit(labels, 0, 1), /validationFraction must be in \(0, 1\), got 0/);
    assert.throws(() => stratifiedSplit(labels, 1.5, 1), /got 1\.5/);
    assert.throws(() => stratifiedSplit([], 0.1, 1), /no labels/);
  });
});

describe("subset, standardiser and tensors", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  const data = split([[0, 0, 255, 255], [255, 255, 255, 255], [0, 0, 0, 0]], [3, 1, 2]);

  it("subset copies the chosen images and labels in order", () => {
    const s = subset(data, [2, 0]);
    assert.deepEqual([...s.labels], [2, 3]);
    assert.deepEqual([...s.images], [0, 0, 0, 0, 0, 0, 255, 255]);
    assert.throws(() => subset(data, [3]), /index 3 outside 0–2/);
  });

  it("fits mean and std of pixels/255 on the given split only", () => {
    const stats = fitStandardizer(subset(data, [0, 1]));
    assert.ok(Math.abs(stats.mean - 0.75) < 1e-12);
    assert.ok(Math.abs(stats.std - Math.sqrt(0.75 * 0.25)) < 1e-12);
    assert.throws(() => fitStandardizer(subset(data, [2])), /all pixels are equal/);
  });

  it("builds [N,H,W,1] tensors scaled to [0,1] or standardised", async () => {
    const unit = toImageTensor(data);
    assert.deepEqual(unit.shape, [3, 2, 2, 1]);
    assert.deepEqual([...(await unit.data())].slice(0, 4), [0, 0, 1, 1]);
    const stats = { mean: 0.5, std: 0.5 };
    const standard = toImageTensor(data, { kind: "standard", statistics: stats });
    assert.deepEqual([...(await standard.data())].slice(0, 4), [-1, -1, 1, 1]);
    assert.deepEqual([...(await toLabelTensor(data).data())], [3, 1, 2]);
    tf.dispose([unit, standard]);
  });

  it("one-hot targets with label smoothing: 1 − ε + ε/K on the label, ε/K elsewhere; bad input is refused", async () => {
    const targets = toTargetTensor(data, 4, 0.2);
    assert.deepEqual(targets.shape, [3, 4]);
    const rows = Array.from(await targets.data());
    assert.deepEqual(rows.slice(0, 4).map((v) => +v.toFixed(6)), [0.05, 0.05, 0.05, 0.85]);
    assert.deepEqual(rows.slice(4, 8).map((v) => +v.toFixed(6)), [0.05, 0.85, 0.05, 0.05]);
    assert.deepEqual(Array.from(await toTargetTensor(data, 4, 0).data()).slice(8), [0, 0, 1, 0]);
    assert.throws(() => toTargetTensor(data, 4, 1), /label smoothing must be in \[0, 1\), got 1/);
    assert.throws(() => toTargetTensor(data, 3, 0.1), /label 3 at 0 is not below 3 classes/);
    targets.dispose();
  });

  it("pads with zeros", async () => {
    const padded = padImages(toImageTensor(data), 2);
    assert.deepEqual(padded.shape, [3, 6, 6, 1]);
    const first = [...(await padded.data())].slice(0, 36);
    assert.equal(first.reduce((a, b) => a + b, 0), 2, "the two bright pixels, surrounded by zeros");
    assert.throws(() => padImages(toImageTensor(data), -1), /non-negative integer/);
  });
});

describe("seeded randomness", () => {
  it("same seed, same sequence; shuffle is a permutation", () => {
    const a = seededRandom(5);
    const b = seededRandom(5);
    const first = [a(), a(), a()];
    assert.deepEqual(first, [b(), b(), b()]);
    assert.ok(first.every((v) => v >= 0 && v < 1));
    const items = shuffle([1, 2, 3, 4, 5, 6], seededRandom(1));
    assert.deepEqual([...items].sort(), [1, 2, 3, 4, 5, 6]);
  });
});
