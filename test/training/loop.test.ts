import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import { buildModel, type ModelConfig } from "../../lib/models/builder";
import { describeValidation, evaluate, learningRateAt, NonFiniteLossError, perStep, train, type TrainingData } from "../../lib/training/loop";
import { seededRandom } from "../../lib/tooling/random";

const tinyDense: ModelConfig = {
  name: "tiny-dense",
  description: "test",
  inputShape: [4, 4, 1],
  layers: [{ type: "flatten" }, { type: "dense", units: 64, activation: "relu" }, { type: "dense", units: 10, activation: "softmax" }],
};

/** n random 4×4 images with labels from `label`, seeded. */
function dataset(n: number, seed: number, label: (i: number) => number): TrainingData {
  const random = seededRandom(seed);
  return {
    x: tf.tensor4d(Float32Array.from({ length: n * 16 }, () => random()), [n, 4, 4, 1]),
    y: tf.tensor1d(Float32Array.from({ length: n }, (_, i) => label(i))),
  };
}

describe("learning-rate schedules", () => {
  it("step: rate × factor^floor(epoch / every)", () => {
    const schedule = { kind: "step" as const, rate: 0.1, factor: 0.5, every: 2 };
    assert.deepEqual([0, 1, 2, 3, 4].map((e) => learningRateAt(schedule, e, 5)), [0.1, 0.1, 0.05, 0.05, 0.025]);
  });

  it("warmup-linear: up from 0 over the warm-up fraction of the steps, then linearly down to 0", () => {
    const schedule = { kind: "warmupLinear" as const, rate: 0.2, warmup: 0.25 };
    const at = (epoch: number) => learningRateAt(schedule, epoch, 4);
    assert.equal(at(0), 0);
    assert.ok(Math.abs(at(0.5) - 0.1) < 1e-12);
    assert.ok(Math.abs(at(1) - 0.2) < 1e-12, "the peak at the end of the warm-up");
    assert.ok(Math.abs(at(2.5) - 0.1) < 1e-12, "halfway down");
    assert.equal(at(4), 0);
  });

  it("warmup-cosine: the same warm-up, then down to 0 along half a cosine", () => {
    const schedule = { kind: "warmupCosine" as const, rate: 0.2, warmup: 0.25 };
    const at = (epoch: number) => learningRateAt(schedule, epoch, 4);
    assert.equal(at(0), 0);
    assert.ok(Math.abs(at(0.5) - 0.1) < 1e-12, "warm-up as warmup-linear's");
    assert.ok(Math.abs(at(1) - 0.2) < 1e-12, "the peak at the end of the warm-up");
    assert.ok(Math.abs(at(2.5) - 0.1) < 1e-12, "half the peak halfway down");
    // A quarter of the decay done: the cosine is still at (1 + cos(π/4))/2 of the peak, above the line's 3/4.
    assert.ok(Math.abs(at(1.75) - 0.2 * (1 + Math.cos(Math.PI / 4)) / 2) < 1e-12);
    assert.ok(at(1.75) > 0.2 * 0.75);
    assert.ok(Math.abs(at(4)) < 1e-12);
    assert.ok(perStep(schedule));
  });

  it("one-cycle: warms up to the peak, then anneals to rate/1e4", () => {
    const schedule = { kind: "oneCycle" as const, rate: 0.01 };
    const rates = Array.from({ length: 10 }, (_, e) => learningRateAt(schedule, e, 10));
    assert.ok(Math.abs(rates[0] - 0.01 / 25) < 1e-12);
    assert.ok(Math.abs(rates[3] - 0.01) < 1e-12, `peak ${rates[3]}`);
    assert.ok(Math.abs(rates[9] - 0.01 / 1e4) < 1e-12, `end ${rates[9]}`);
    for (let e = 1; e <= 3; e++) assert.ok(rates[e] > rates[e - 1]);
    for (let e = 4; e < 10; e++) assert.ok(rates[e] < rates[e - 1]);
  });
});

describe("train", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("SGD-Nesterov takes the scheduled rate, not the one it was built with; smoothed one-hot targets train", async () => {
    const data = dataset(64, 1, (i) => i % 10);
    const targets = { x: data.x, y: tf.oneHot(tf.cast(data.y, "int32"), 10).toFloat() as tf.Tensor2D };
    const model = buildModel(tinyDense, { learningRate: 0.5, optimizer: "sgd-nesterov", oneHotTargets: true });
    const before = model.getWeights().map((w) => w.dataSync().slice());
    // A rate of 1e-9 all along: built with 0.5, the weights would move by far more than 1e-6.
    await train(model, targets, targets, { epochs: 1, batchSize: 16, seed: 1, schedule: { kind: "constant", rate: 1e-9 } });
    const moved = Math.max(...model.getWeights().map((w, i) => Math.max(...w.dataSync().map((v, j) => Math.abs(v - before[i][j])))));
    assert.ok(moved > 0 && moved < 1e-6, `weights moved by ${moved}`);
    // Memorising 64 random labels (chance: 10%) shows that it learns.
    await train(model, targets, targets, { epochs: 20, batchSize: 16, seed: 1, schedule: { kind: "warmupLinear", rate: 0.3, warmup: 0.15 } });
    const [, accuracy] = evaluate(model, targets, 64);
    assert.ok(accuracy > 0.6, `training accuracy ${accuracy}`);
    tf.dispose([data.x, data.y, targets.y]);
    model.dispose();
  });

  it("a tiny model overfits 64 samples (training accuracy > 95%) and reports every epoch and batch", async () => {
    const data = dataset(64, 1, (i) => i % 10);
    const model = buildModel(tinyDense, { learningRate: 0.01 });
    const seen: number[] = [];
    const batches: string[] = [];
    const result = await train(model, data, data, {
      epochs: 60, batchSize: 16, seed: 3, onEpochEnd: (record) => void seen.push(record.epoch),
      onBatchEnd: (p) => void batches.push(`${p.epoch}/${p.epochs} ${p.step}/${p.steps}`),
    });
    // Progress says how many epochs from the first batch on (a bar needs the total before any epoch ends).
    assert.deepEqual(batches.slice(0, 5), ["0/60 0/4", "0/60 1/4", "0/60 2/4", "0/60 3/4", "1/60 0/4"]);
    assert.equal(batches.length, 60 * 4);
    const last = result.history[result.history.length - 1];
    // 64 random 16-pixel images with arbitrary labels: only memorisation gets them right.
    const [, accuracy] = evaluate(model, data, 64);
    assert.ok(accuracy > 0.95, `training accuracy ${accuracy}`);
    assert.deepEqual(seen, Array.from({ length: 60 }, (_, e) => e));
    assert.ok(last.imagesPerSecond > 0 && last.seconds > 0);
    tf.dispose([data.x, data.y]);
    model.dispose();
  });

  it("stops with a clear message when the loss or the weights are not finite", async () => {
    const data = dataset(32, 2, (i) => i % 10);
    // Infinite pixels: inf·w summed with both signs gives NaN logits (a NaN pixel would be clamped away by relu).
    const broken = { x: tf.mul(data.x, tf.scalar(Infinity)) as tf.Tensor4D, y: data.y };
    const model = buildModel(tinyDense);
    await assert.rejects(train(model, broken, data, { epochs: 2, batchSize: 8, seed: 1 }), (error: Error) => {
      assert.ok(error instanceof NonFiniteLossError);
      assert.match(error.message, /^Training stopped: the (loss became (NaN|-?Infinity) at epoch 1, batch 1 of 4|weights became NaN or infinite during epoch 1) \(learning rate 0\.001\)/);
      return true;
    });
    tf.dispose([data.x, data.y, broken.x]);
    model.dispose();
  });

  it("early stopping restores the weights of the best validation epoch", async () => {
    // Validation labels unrelated to the training labels: validation loss gets worse as the model memorises.
    const trainData = dataset(64, 3, (i) => i % 10);
    const validation = dataset(64, 4, (i) => (i * 7 + 3) % 10);
    const model = buildModel(tinyDense, { learningRate: 0.02 });
    const result = await train(model, trainData, validation, { epochs: 40, batchSize: 16, seed: 5, earlyStopping: { patience: 3 } });
    assert.ok(result.stoppedEarly, "stopped early");
    assert.equal(result.history.length, result.bestEpoch + 1 + 3, "patience epochs after the best");
    assert.ok(result.restoredBest);
    const [valLoss] = (model.evaluate(validation.x, validation.y) as tf.Scalar[]).map((t) => t.dataSync()[0]);
    assert.ok(Math.abs(valLoss - result.history[result.bestEpoch].valLoss!) < 1e-4, `restored ${valLoss} vs best ${result.history[result.bestEpoch].valLoss}`);
    tf.dispose([trainData.x, trainData.y, validation.x, validation.y]);
    model.dispose();
  });

  it("resumes from startEpoch, keeping the earlier history, and applies the augmentation hook to training batches only", async () => {
    const data = dataset(40, 6, (i) => i % 10);
    const model = buildModel(tinyDense);
    const first = await train(model, data, data, { epochs: 2, batchSize: 16, seed: 1 });
    let augmented = 0;
    const resumed = await train(model, data, data, {
      epochs: 4, batchSize: 16, seed: 1, startEpoch: 2, previousHistory: first.history,
      augment: (images) => {
        augmented++;
        assert.deepEqual(images.shape.slice(1), [4, 4, 1]);
        return tf.clone(images);
      },
    });
    assert.deepEqual(resumed.history.map((r) => r.epoch), [0, 1, 2, 3]);
    assert.equal(augmented, 2 * 3, "two epochs of three batches; validation is never augmented");
    tf.dispose([data.x, data.y]);
    model.dispose();
  });

  it("without validation: every epoch's record has none, and the last epoch is the best", async () => {
    const data = dataset(16, 7, (i) => i % 2);
    const model = buildModel(tinyDense);
    const result = await train(model, data, null, { epochs: 3, batchSize: 8, seed: 1 });
    assert.deepEqual(result.history.map((e) => [e.valLoss, e.valAccuracy]), [[null, null], [null, null], [null, null]]);
    assert.equal(result.bestEpoch, 2);
    assert.equal(describeValidation(result.history[0]), "no validation");
    assert.equal(describeValidation({ valLoss: 0.25, valAccuracy: 0.9 }, true), "val loss 0.2500 val acc 0.9000");
    tf.dispose([data.x, data.y]);
    model.dispose();
  });

  it("rejects bad options", async () => {
    const data = dataset(8, 7, () => 0);
    const model = buildModel(tinyDense);
    await assert.rejects(train(model, data, data, { epochs: 0, batchSize: 4, seed: 1 }), /epochs must be a positive integer, got 0/);
    await assert.rejects(train(model, data, data, { epochs: 2, batchSize: 4, seed: 1, startEpoch: 3 }), /startEpoch must be an integer in 0–2, got 3/);
    await assert.rejects(train(model, data, null, { epochs: 2, batchSize: 4, seed: 1, earlyStopping: { patience: 1 } }), /Early stopping needs validation images/);
    tf.dispose([data.x, data.y]);
    model.dispose();
  });
});
