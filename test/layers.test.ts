import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { FastDropout, MaskGenerator } from "../lib/layers";

describe("MaskGenerator", () => {
  it("keeps each value with probability keep, scaled by 1/keep", () => {
    const mask = new MaskGenerator(42).fill(new Float32Array(200_000), 0.8);
    const kept = mask.filter((v) => v !== 0);
    assert.ok(mask.every((v) => v === 0 || v === Math.fround(1 / 0.8)));
    const fraction = kept.length / mask.length;
    // 200,000 Bernoulli(0.8) draws: standard deviation of the fraction ≈ 0.0009.
    assert.ok(Math.abs(fraction - 0.8) < 0.005, `kept fraction ${fraction}`);
  });

  it("is reproducible by seed and differs between seeds and calls", () => {
    const a = new MaskGenerator(7).fill(new Float32Array(1000), 0.5);
    const b = new MaskGenerator(7).fill(new Float32Array(1000), 0.5);
    const c = new MaskGenerator(8).fill(new Float32Array(1000), 0.5);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const generator = new MaskGenerator(7);
    assert.notDeepEqual(generator.fill(new Float32Array(1000), 0.5), generator.fill(new Float32Array(1000), 0.5));
  });

  it("survives a zero seed (xorshift would stay at zero)", () => {
    const mask = new MaskGenerator(0).fill(new Float32Array(1000), 0.5);
    assert.ok(mask.some((v) => v !== 0) && mask.some((v) => v === 0));
  });
});

describe("FastDropout", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("passes inputs through unchanged outside training", async () => {
    const layer = new FastDropout({ rate: 0.3 });
    const x = tf.randomNormal([4, 5]);
    const y = layer.apply(x, { training: false }) as tf.Tensor;
    assert.deepEqual(await y.data(), await x.data());
    tf.dispose([x, y]);
  });

  it("in training drops about `rate` of the units and scales the rest by 1/(1 − rate)", async () => {
    const layer = new FastDropout({ rate: 0.25, seed: 3 });
    const x = tf.ones([100, 100]);
    const y = (await (layer.apply(x, { training: true }) as tf.Tensor).data()) as Float32Array;
    const dropped = y.filter((v) => v === 0).length / y.length;
    assert.ok(Math.abs(dropped - 0.25) < 0.02, `dropped ${dropped}`);
    assert.ok(y.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6));
    x.dispose();
  });

  it("serialises exactly like the stock Dropout layer", () => {
    const fast = new FastDropout({ rate: 0.2, name: "d" });
    const stock = tf.layers.dropout({ rate: 0.2, name: "d" });
    assert.equal(fast.getClassName(), "Dropout");
    assert.deepEqual(fast.getConfig(), stock.getConfig());
  });

  it("passes the gradient through the kept units only", async () => {
    const layer = new FastDropout({ rate: 0.5, seed: 11 });
    const x = tf.randomNormal([50]);
    let mask: Float32Array | undefined;
    const gradient = tf.grad((input: tf.Tensor) => {
      const y = layer.apply(input, { training: true }) as tf.Tensor;
      mask = tf.div(y, input).dataSync() as Float32Array;
      return y.sum();
    })(x);
    const g = (await gradient.data()) as Float32Array;
    g.forEach((value, i) => assert.ok(Math.abs(value - mask![i]) < 1e-5));
    tf.dispose([x, gradient]);
  });
});
