import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { initBackend, tf } from "../../lib/accelerator/backend";
import { FastAdam, FastMomentum } from "../../lib/accelerator/optimizer";
import { loadModel, saveModel } from "../../lib/models/persist";
import { ADAM_UPDATE_KERNEL, MOMENTUM_UPDATE_KERNEL, momentumStep } from "../../lib/accelerator/wasm/optimizer";
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

/**
 * Trains a fast optimizer and TF.js's own from the same start on the same batch; returns both.
 * `between` runs on each model's optimizer after every step (a learning-rate schedule).
 */
async function sideBySide(steps: number, fastOptimizer = () => new FastAdam(0.01) as tf.Optimizer, stockOptimizer = () => tf.train.adam(0.01) as tf.Optimizer, between?: (optimizer: tf.Optimizer, step: number) => void) {
  const x = tf.tensor4d(randomArray(8 * 6 * 6 * 2), [8, 6, 6, 2]);
  const y = tf.tensor1d([0, 1, 2, 3, 3, 2, 1, 0]);
  const fast = smallModel(fastOptimizer());
  const stock = smallModel(stockOptimizer(), fast.getWeights());
  const initialWeights = await weightValues(fast);
  for (const model of [fast, stock]) {
    for (let step = 0; step < steps; step++) {
      await model.trainOnBatch(x, y);
      between?.(model.optimizer, step);
    }
  }
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

/**
 * Trains three steps, saves and reloads the model, then trains the original and the reloaded copy two more steps
 * each; `check` looks at the reloaded model before. Returns both models' final weights.
 */
async function continuedAfterReload(optimizer: tf.Optimizer, check: (loaded: tf.LayersModel) => void): Promise<[Float32Array[], Float32Array[]]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fast-optimizer-"));
  const x = tf.tensor4d(randomArray(8 * 6 * 6 * 2), [8, 6, 6, 2]);
  const y = tf.tensor1d([0, 1, 2, 3, 3, 2, 1, 0]);
  try {
    const model = smallModel(optimizer);
    await trainSteps(model, x, y, 3);
    await saveModel(model, dir);
    const loaded = await loadModel(dir);
    check(loaded);
    await trainSteps(model, x, y, 2);
    await trainSteps(loaded, x, y, 2);
    const weights: [Float32Array[], Float32Array[]] = [await weightValues(model), await weightValues(loaded)];
    model.dispose();
    loaded.dispose();
    return weights;
  } finally {
    tf.dispose([x, y]);
    await rm(dir, { recursive: true, force: true });
  }
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
    const [a, b] = await continuedAfterReload(new FastAdam(0.01), (loaded) => {
      assert.ok(loaded.optimizer instanceof FastAdam, `loaded optimizer: ${loaded.optimizer?.getClassName()}`);
      assert.equal(loaded.optimizer.getClassName(), "Adam");
      assert.equal(loaded.optimizer.iterations, 3);
    });
    a.forEach((w, i) => assert.ok(maxRelativeError(w, b[i]) < 1e-6, `weight ${i}`));
  });

  it("the kernel rejects operands of different shapes", () => {
    const [a, b] = [tf.zeros([2, 3]), tf.zeros([3, 2])];
    assert.throws(() => tf.engine().runKernel(ADAM_UPDATE_KERNEL, { value: a, m: a, v: a, gradient: b }, {}), /shapes differ/);
    tf.dispose([a, b]);
  });
});

describe("FastMomentum", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  const fast = (nesterov: boolean) => () => new FastMomentum(0.05, 0.9, nesterov) as tf.Optimizer;
  const stock = (nesterov: boolean) => () => tf.train.momentum(0.05, 0.9, nesterov) as tf.Optimizer;
  // The recipes' schedules set the rate every step.
  const schedule = (optimizer: tf.Optimizer, step: number) => (optimizer as tf.SGDOptimizer).setLearningRate(0.05 / (step + 2));

  for (const nesterov of [true, false]) {
    it(`uses the fused kernel on wasm and equals TF.js's ${nesterov ? "Nesterov" : "plain"} momentum bit for bit, under a changing rate`, async () => {
      assert.ok(tf.getKernel(MOMENTUM_UPDATE_KERNEL, "wasm"), "the fused kernel is registered on wasm");
      const r = await sideBySide(5, fast(nesterov), stock(nesterov), schedule);
      assert.equal(r.fastIterations, 5);
      // Same operations in the same order, each rounded to float32: equal, not close.
      r.fastWeights.forEach((w, i) => assert.deepEqual(w, r.stockWeights[i], `weight ${i}`));
      assert.equal(r.fastState.length, r.stockState.length);
      r.fastState.forEach((a, i) => assert.deepEqual(a, r.stockState[i], `optimizer state ${i}`));
      r.fastWeights.forEach((w, i) => assert.ok(maxRelativeError(w, r.initialWeights[i]) > 1e-3, `weight ${i} did not move`));
    });
  }

  it("runs one fused kernel per variable in a step, instead of TF.js's six", async () => {
    const x = tf.tensor4d(randomArray(8 * 6 * 6 * 2), [8, 6, 6, 2]);
    const y = tf.tensor1d([0, 1, 2, 3, 3, 2, 1, 0]);
    const model = smallModel(new FastMomentum(0.05, 0.9, true));
    const step = await tf.profile(async () => void (await model.trainOnBatch(x, y)));
    const updates = step.kernels.filter((k) => k.name === MOMENTUM_UPDATE_KERNEL).length;
    assert.equal(updates, model.trainableWeights.length, `kernels: ${step.kernelNames.join(", ")}`);
    tf.dispose([x, y]);
    model.dispose();
  });

  it("the loop without SIMD equals TF.js's ops on cpu, Nesterov and plain", async () => {
    await onBackend("cpu", async () => {
      const [w, a, g] = [randomArray(37), randomArray(37), randomArray(37)];
      for (const nesterov of [true, false]) {
        const [newW, newA] = [new Float32Array(37), new Float32Array(37)];
        momentumStep(w, a, g, Math.fround(0.9), Math.fround(-0.05), nesterov, newW, newA);
        const [expectedW, expectedA] = tf.tidy(() => {
          const [mu, c, value, accumulation, gradient] = [tf.scalar(0.9), tf.scalar(-0.05), tf.tensor1d(w), tf.tensor1d(a), tf.tensor1d(g)];
          const next = tf.add(tf.mul(mu, accumulation), gradient);
          const direction = nesterov ? tf.add(gradient, tf.mul(next, mu)) : next;
          return [tf.add(tf.mul(c, direction), value).dataSync(), next.dataSync()];
        });
        assert.deepEqual(newA, expectedA);
        assert.deepEqual(newW, expectedW);
      }
    });
  });

  it("falls back to the stock update where the kernel is missing (cpu) and matches it exactly", async () => {
    await onBackend("cpu", async () => {
      assert.equal(tf.getKernel(MOMENTUM_UPDATE_KERNEL, "cpu"), undefined);
      const r = await sideBySide(3, fast(true), stock(true));
      r.fastWeights.forEach((w, i) => assert.deepEqual(w, r.stockWeights[i]));
    });
  });

  it("saves as Momentum and resumes: a reloaded model continues exactly like the uninterrupted one", async () => {
    const [a, b] = await continuedAfterReload(new FastMomentum(0.05, 0.9, true), (loaded) => {
      assert.ok(loaded.optimizer instanceof FastMomentum, `loaded optimizer: ${loaded.optimizer?.getClassName()}`);
      assert.equal(loaded.optimizer.getClassName(), "Momentum");
      assert.deepEqual(loaded.optimizer.getConfig(), { learningRate: 0.05, momentum: 0.9, useNesterov: true });
      assert.equal(loaded.optimizer.iterations, 3);
    });
    a.forEach((w, i) => assert.deepEqual(w, b[i], `weight ${i}`));
  });

  it("the kernel rejects operands of different shapes", () => {
    const [a, b] = [tf.zeros([2, 3]), tf.zeros([3, 2])];
    assert.throws(() => tf.engine().runKernel(MOMENTUM_UPDATE_KERNEL, { value: a, accumulation: a, gradient: b }, { momentum: 0.9, learningRate: 0.1, nesterov: true }), /shapes differ/);
    tf.dispose([a, b]);
  });
});
