/** The EMA of a model's weights: hand-worked updates, swapping in and out, saving, and what a run validates and keeps. */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { initBackend, tf } from "../../lib/accelerator";
import type { Dataset } from "../../lib/data/datasets";
import { toImageTensor, toLabelTensor } from "../../lib/data/preprocess";
import { loadModel } from "../../lib/models/persist";
import type { ModelConfig } from "../../lib/models/builder";
import { evaluate, train } from "../../lib/training/loop";
import { BEST_MODEL_DIR, CHECKPOINT_DIR } from "../../lib/training/records";
import { trainRun, type RunSettings } from "../../lib/training/run";
import { averageDecayAt, WeightAverage } from "../../lib/training/weight-average";
import { stripesDataset } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";

/** One weight and one bias. */
const scalarModel = (): tf.LayersModel => tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [1] })] });
const setAll = (model: tf.LayersModel, value: number) => model.setWeights([tf.tensor2d([[value]]), tf.tensor1d([value])]);
const values = (model: tf.LayersModel) => model.getWeights().map((w) => w.dataSync()[0]);

describe("weight average (EMA)", () => {
  before(async () => {
    await initBackend();
  });

  it("warms its decay up as (1 + t) / (10 + t) up to the declared decay", () => {
    assert.equal(averageDecayAt(0.999, 0), 0.1);
    assert.equal(averageDecayAt(0.999, 8), 0.5);
    assert.equal(averageDecayAt(0.9, 100), 0.9);
    assert.equal(averageDecayAt(0.999, 10_000), 0.999);
  });

  it("folds each step's weights in by hand-worked amounts, and swaps the average in and back out", async () => {
    const model = scalarModel();
    setAll(model, 1);
    const average = new WeightAverage(model, 0.9);
    setAll(model, 3);
    average.update(model, 0); // d = 0.1: 0.1·1 + 0.9·3 = 2.8
    setAll(model, 5);
    average.update(model, 1); // d = 2/11: (2/11)·2.8 + (9/11)·5 = 4.6
    const inside = await average.applied(model, () => values(model));
    for (const v of inside) assert.ok(Math.abs(v - 4.6) < 1e-6, `averaged ${v}`);
    assert.deepEqual(values(model), [5, 5], "the trained weights are back");
    await assert.rejects(average.applied(model, () => { throw new Error("inside"); }), /inside/);
    assert.deepEqual(values(model), [5, 5], "back after an error too");
    const restored = new WeightAverage(model, 0.9, average.serialize());
    assert.deepEqual(await restored.applied(model, () => values(model)), inside);
    assert.throws(() => new WeightAverage(tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [1] })] }), 0.9, average.serialize()), /holds 2 values; the model has 4/);
    assert.throws(() => new WeightAverage(model, 1), /decay must be a number in \(0, 1\), got 1/);
    average.dispose();
    restored.dispose();
  });

  it("train() validates on the averaged weights and refuses early stopping beside it", async () => {
    const data: Dataset = stripesDataset();
    const model = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [28, 28, 1] }), tf.layers.dense({ units: 10, activation: "softmax" })] });
    model.compile({ optimizer: tf.train.sgd(0.5), loss: "sparseCategoricalCrossentropy", metrics: ["accuracy"] });
    const x = toImageTensor(data.train);
    const y = toLabelTensor(data.train);
    const average = new WeightAverage(model, 0.95);
    const trainData = { x, y };
    const result = await train(model, trainData, trainData, { epochs: 2, batchSize: 16, seed: 1, weightAverage: average });
    const last = result.history[1];
    const [liveLoss] = evaluate(model, trainData, 16);
    const [averagedLoss] = await average.applied(model, () => evaluate(model, trainData, 16));
    assert.ok(Math.abs(last.valLoss! - averagedLoss) < 1e-6, `validation ${last.valLoss} is the average's ${averagedLoss}`);
    assert.ok(Math.abs(liveLoss - averagedLoss) > 1e-4, "and not the trained weights'");
    await assert.rejects(train(model, trainData, trainData, { epochs: 1, batchSize: 16, seed: 1, weightAverage: average, earlyStopping: { patience: 1 } }), /Early stopping and a weight average/);
    average.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });

  it("a run with an EMA keeps the average as its best model and the trained weights in its checkpoint", async () => {
    const data: Dataset = stripesDataset();
    const settings: RunSettings = {
      epochs: 2, batchSize: 32, seed: 3, validationFraction: 0.2, schedule: { kind: "constant", rate: 0.01 }, patience: null, quick: false, augment: null, ema: { decay: 0.9 },
    };
    const outDir = path.join(tempDir(), "ema");
    const config: ModelConfig = { name: "dense", description: "flatten → softmax", inputShape: [28, 28, 1], layers: [{ type: "flatten" }, { type: "dense", units: 10, activation: "softmax" }] };
    const record = await trainRun({ config, settings, outDir, data });
    assert.deepEqual(record.options.ema, { decay: 0.9 });
    const best = await loadModel(path.join(outDir, BEST_MODEL_DIR));
    const checkpoint = await loadModel(path.join(outDir, CHECKPOINT_DIR));
    const difference = tf.tidy(() => tf.sub(best.getWeights()[0], checkpoint.getWeights()[0]).abs().max().dataSync()[0]);
    assert.ok(difference > 1e-5, "the best model is not the trained weights");
    await assert.rejects(trainRun({ config, settings: { ...settings, patience: 2 }, outDir: path.join(tempDir(), "both"), data }), /early stopping \(patience\) and an EMA/);
    best.dispose();
    checkpoint.dispose();
  });
});
