import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator/backend";
import { FastL1L2, l2Regularizer } from "../../lib/accelerator/regularizers";
import { buildModel, presetModel } from "../../lib/models/builder";

before(async () => {
  await initBackend();
});

/** The penalty and its gradient with respect to the weight. */
function penaltyAndGradient(regularizer: { apply(x: tf.Tensor): tf.Scalar }, w: tf.Tensor): { value: number; gradient: Float32Array } {
  return tf.tidy(() => {
    const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => tf.mul(regularizer.apply(x), 3) as tf.Scalar)(w);
    return { value: value.dataSync()[0], gradient: grad.dataSync() as Float32Array };
  });
}

const maxRelativeError = (actual: Float32Array, expected: Float32Array) =>
  actual.reduce((worst, v, i) => Math.max(worst, Math.abs(v - expected[i]) / Math.max(Math.abs(expected[i]), 1e-12)), 0);

describe("FastL1L2", () => {
  it("gives TF.js's L2 penalty and gradient (a conv kernel, an upstream gradient of 3)", () => {
    const w = tf.randomNormal([3, 3, 16, 32], 0, 0.1, "float32", 7);
    const stock = penaltyAndGradient(tf.regularizers.l2({ l2: 2.5e-4 }), w);
    const fast = penaltyAndGradient(l2Regularizer(2.5e-4), w);
    assert.ok(Math.abs(fast.value - stock.value) / stock.value < 1e-6, `penalty ${fast.value} against ${stock.value}`);
    // 2λ·w·dy, here 2 · 2.5e-4 · w · 3.
    const expected = Float32Array.from(w.dataSync(), (x) => 2 * 2.5e-4 * x * 3);
    assert.ok(maxRelativeError(fast.gradient, expected) < 1e-6, `gradient against 2λ·w·dy: ${maxRelativeError(fast.gradient, expected)}`);
    assert.ok(maxRelativeError(fast.gradient, stock.gradient) < 1e-6, `gradient against the stock one: ${maxRelativeError(fast.gradient, stock.gradient)}`);
    w.dispose();
  });

  it("is the stock regularizer where there is an L1 term", () => {
    const w = tf.randomNormal([4, 6], 0, 1, "float32", 3);
    const stock = penaltyAndGradient(tf.regularizers.l1l2({ l1: 1e-3, l2: 1e-3 }), w);
    const fast = penaltyAndGradient(new FastL1L2({ l1: 1e-3, l2: 1e-3 }), w);
    assert.equal(fast.value, stock.value);
    assert.deepEqual(fast.gradient, stock.gradient);
    w.dispose();
  });

  it("saves as TF.js's L1L2, and models loaded back get it", async () => {
    const model = buildModel(presetModel("vgg-bn-16"));
    const layer = model.layers.find((l) => l.getClassName() === "Conv2D")!;
    const config = layer.getConfig() as { kernelRegularizer: { className: string; config: { l1: number; l2: number } } };
    assert.deepEqual(config.kernelRegularizer, { className: "L1L2", config: { l1: 0, l2: 2.5e-4 } });
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (artifacts) => ((saved = artifacts), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } })));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const regularizer = (loaded.layers.find((l) => l.getClassName() === "Conv2D") as unknown as { kernelRegularizer: unknown }).kernelRegularizer;
    assert.ok(regularizer instanceof FastL1L2, "a loaded model's conv layer has FastL1L2");
    assert.equal((regularizer as FastL1L2).l2, 2.5e-4);
    model.dispose();
    loaded.dispose();
  });

  it("adds λ·Σw² over the regularised weights to a model's training loss", async () => {
    const model = buildModel(presetModel("vgg-bn-16"));
    // What the training loss adds (tf-layers' training.js: the layers' losses, each a function of the weights).
    const penalties = model.layers.flatMap((l) => l.losses).map((loss) => (loss() as tf.Scalar).dataSync()[0]);
    const expected = model.layers
      .filter((l) => (l.getConfig() as { kernelRegularizer?: unknown }).kernelRegularizer)
      .map((l) => 2.5e-4 * (l.getWeights()[0].square().sum().dataSync()[0]));
    assert.equal(penalties.length, expected.length);
    penalties.forEach((p, i) => assert.ok(Math.abs(p - expected[i]) / expected[i] < 1e-6, `layer ${i}: ${p} against ${expected[i]}`));
    model.dispose();
  });
});
