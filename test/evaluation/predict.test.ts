import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import { viewBatch } from "../../lib/data/augment";
import { penultimateFeatures, predictWithTta } from "../../lib/evaluation/predict";
import { seededImages, valuesOf } from "../helpers/tensors";

const SIZE = 28;

describe("prediction", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("test-time augmentation averages the model's predictions over the views", () => {
    const model = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [SIZE, SIZE, 1] }), tf.layers.dense({ units: 3, activation: "softmax" })] });
    const images = seededImages(3);
    const plain = model.predict(images) as tf.Tensor;
    // Batches of 2 + 1 against one of 3: native matrix products may sum in another order per batch shape.
    const single = Array.from(predictWithTta(model, images, 2, [{}]));
    single.forEach((v, i) => assert.ok(Math.abs(v - valuesOf(plain)[i]) < 1e-6, `view 0, value ${i}: ${v} vs ${valuesOf(plain)[i]}`));
    const mirrored = model.predict(tf.reverse(images, 2)) as tf.Tensor;
    const shifted = viewBatch(images, { shiftX: 1 });
    assert.equal(valuesOf(shifted)[1], valuesOf(images)[0], "shiftX 1 moves pixels one column right");
    const expected = valuesOf(plain).map((v, i) => (v + valuesOf(mirrored)[i]) / 2);
    const averaged = Array.from(predictWithTta(model, images, 2, [{}, { flip: true }]));
    averaged.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
    tf.dispose([images, plain, mirrored, shifted]);
    model.dispose();
  });

  it("penultimate features are what the output layer reads: applying that layer to them gives the predictions", () => {
    const model = tf.sequential({ layers: [
      tf.layers.flatten({ inputShape: [SIZE, SIZE, 1] }),
      tf.layers.dense({ units: 5, activation: "relu" }),
      tf.layers.dense({ units: 3, activation: "softmax" }),
    ] });
    const images = seededImages(4);
    const features = penultimateFeatures(model, images, 3);
    assert.deepEqual(features.shape, [4, 5]);
    const fromFeatures = model.layers[2].apply(features) as tf.Tensor;
    const direct = model.predict(images) as tf.Tensor;
    valuesOf(direct).forEach((v, i) => assert.ok(Math.abs(v - valuesOf(fromFeatures)[i]) < 1e-6));
    tf.dispose([images, features, fromFeatures, direct]);
    model.dispose();
    assert.throws(() => penultimateFeatures(tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3] })] }), tf.zeros([1, 1, 1, 3]) as tf.Tensor4D), /has no layer before its output/);
  });

});
