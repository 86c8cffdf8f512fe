import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { initBackend, tf } from "../../lib/accelerator/backend";
import { FastAdam } from "../../lib/accelerator/optimizer";
import { loadModel, saveModel } from "../../lib/models/persist";
import { ADAM_UPDATE_KERNEL } from "../../lib/accelerator/wasm/optimizer";
import { maxRelativeError, onBackend, randomArray } from "../helpers/tensors";

/** A small conv + dense net with no dropout, so two copies train identically. */
function smallModel(optimizer: tf.Optimizer, weights?: tf.Tensor[]): tf.Sequential {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, activation: "relu" }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 4, activation: "softmax" }),
    ],
  });
  model.compile({ optimizer, loss: "sparseCategoricalCrossentropy" });
  if (weights) model.setWeights(weights);
  return model;
}

async function trainSteps(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor, steps: number): Promise<void> {
  for (let i = 0; i < steps; i++) await model.trainOnBatch(x, y);
}

async function weightValues(model: tf.LayersModel): Promise<Float32Array[]> {
  return Promise.all(model.getWeights().map(async (w) => (await w.data()) as Float32Array));
}

async function optimizerValues(model: tf.LayersModel): Promise<Float32Array[]> {
  const named = await model.optimizer.getWeights();
  return Promise.all(named.map(async (w) => (await w.tensor.data()) as Float32Array));
}

/** Trains FastAdam and TF.js's Adam from the same start on the same batch; returns both. */
async function sideBySide(steps: number) {
  const x = tf.tensor4d(randomArray(8 * 6 * 6 * 2), [8, 6, 6, 2]);
  const y = tf.tensor1d([0, 1, 2, 3, 3, 2, 1, 0]);
  const fast = smallModel(new FastAdam(0.01));
  const stock = smallModel(tf.train.adam(0.01), fast.getWeights());
  const initialWeights = await weightValues(fast);
  await trainSteps(fast, x, y, steps);
  await trainSteps(stock, x, y, steps);
  const result = {
    fastWeights: await weightValues(fast),
    stockWeights: await weightValues(stock),
    fastState: await optimizerValues(fast),
    stockState: await optimizerValues(stock),
    fastIterations: fast.optimizer.iterations,
    initialWeights,
  };
  tf.dispose([x, y]);
  fast.dispose();
  stock.dispose();
  return result;
}

describe("FastAdam", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("uses the fused kernel on wasm and matches TF.js's Adam: weights, moments and iterations", async () => {
    assert.ok(tf.getKernel(ADAM_UPDATE_KERNEL, "wasm"), "the fused kernel is registered on wasm");
    const r = await sideBySide(6);
    assert.equal(r.fastIterations, 6);
    assert.equal(r.fastState.length, r.stockState.length);
    // Float32 rounding differs (one rounding per value here, one per op there) and feeds back
    // through six steps of gradients: ~1e-5 seen; a wrong formula is off by far more.
    r.fastWeights.forEach((w, i) => assert.ok(maxRelativeError(w, r.stockWeights[i]) < 1e-4, `weight ${i}: ${maxRelativeError(w, r.stockWeights[i])}`));
    // Moments, after the iteration counter (state 0).
    r.fastState.forEach((s, i) => assert.ok(maxRelativeError(s, r.stockState[i]) < 1e-4, `optimizer state ${i}: ${maxRelativeError(s, r.stockState[i])}`));
    // The weights moved (a no-op on both sides would match too).
    r.fastWeights.forEach((w, i) => assert.ok(maxRelativeError(w, r.initialWeights[i]) > 1e-3, `weight ${i} did not move`));
  });

  it("falls back to the stock update where the kernel is missing (cpu) and matches it exactly", async () => {
    await onBackend("cpu", async () => {
      assert.equal(tf.getKernel(ADAM_UPDATE_KERNEL, "cpu"), undefined);
      const r = await sideBySide(3);
      r.fastWeights.forEach((w, i) => assert.deepEqual(w, r.stockWeights[i]));
    });
  });

  it("saves as Adam and resumes: a reloaded model continues exactly like the uninterrupted one", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "fast-adam-"));
    const x = tf.tensor4d(randomArray(8 * 6 * 6 * 2), [8, 6, 6, 2]);
    const y = tf.tensor1d([0, 1, 2, 3, 3, 2, 1, 0]);
    try {
      const model = smallModel(new FastAdam(0.01));
      await trainSteps(model, x, y, 3);
      await saveModel(model, dir);
      const loaded = await loadModel(dir);
      assert.ok(loaded.optimizer instanceof FastAdam, `loaded optimizer: ${loaded.optimizer?.getClassName()}`);
      assert.equal(loaded.optimizer.getClassName(), "Adam");
      assert.equal(loaded.optimizer.iterations, 3);
      await trainSteps(model, x, y, 2);
      await trainSteps(loaded, x, y, 2);
      const [a, b] = [await weightValues(model), await weightValues(loaded)];
      a.forEach((w, i) => assert.ok(maxRelativeError(w, b[i]) < 1e-6, `weight ${i}`));
      model.dispose();
      loaded.dispose();
    } finally {
      tf.dispose([x, y]);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the kernel rejects operands of different shapes", () => {
    const [a, b] = [tf.zeros([2, 3]), tf.zeros([3, 2])];
    assert.throws(() => tf.engine().runKernel(ADAM_UPDATE_KERNEL, { value: a, m: a, v: a, gradient: b }, {}), /shapes differ/);
    tf.dispose([a, b]);
  });
});
