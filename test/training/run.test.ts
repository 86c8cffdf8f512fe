import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { bf16Unavailable, initBackend, nativePrecision } from "../../lib/accelerator";
import type { Dataset } from "../../lib/data/datasets";

import { ensureRun, runProbabilities, trainRun, type RunSettings } from "../../lib/training/run";
import { accuracy, argmaxRows, logLoss } from "../../lib/evaluation/metrics";
import { loadModel } from "../../lib/models/persist";
import { toImageTensor } from "../../lib/data/preprocess";

import { presetModel } from "../../lib/models/builder";
import { readRecord } from "../../lib/training/records";
import { stripesDataset } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";
import { predictProbabilities, predictWithTta } from "../../lib/evaluation/predict";

const data: Dataset = stripesDataset();

const settings: RunSettings = {
  epochs: 3,
  batchSize: 32,
  seed: 5,
  validationFraction: 0.2,
  schedule: { kind: "constant", rate: 0.003 },
  patience: null,
  quick: false,
  augment: { shift: { maxPixels: 0 } },
};

describe("trainRun", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("trains, keeps the best model and a checkpoint, and measures the test split once at the end", async () => {
    const outDir = path.join(tempDir(), "run");
    const epochs: number[] = [];
    const record = await trainRun({ config: presetModel("ann"), settings, outDir, data, hooks: { onEpochEnd: (e) => epochs.push(e.epoch) } });
    assert.deepEqual(epochs, [0, 1, 2]);
    assert.equal(record.status, "finished");
    assert.deepEqual(record.options, { ...settings, trainImages: 320, validationImages: 80 });
    assert.equal(record.dataset.sha256.trainImages, "a", "the given dataset was used, not loaded again");
    assert.ok(record.test!.accuracy > 0.9, `test accuracy ${record.test!.accuracy}`);
    assert.equal(record.test!.correct + record.test!.incorrect, 100);
    assert.ok(existsSync(path.join(outDir, "model", "model.json")) && existsSync(path.join(outDir, "checkpoint", "model.json")));
    assert.deepEqual(await readRecord(outDir), { ...record, updatedAt: (await readRecord(outDir))!.updatedAt });
    await assert.rejects(trainRun({ config: presetModel("ann"), settings, outDir, data }), /already holds a run \(finished, 3 epochs\)/);
    await assert.rejects(trainRun({ config: presetModel("ann"), settings, outDir, data, resume: true }), /already finished; nothing to resume/);
    await assert.rejects(trainRun({ config: presetModel("ann"), settings, outDir: path.join(tempDir(), "none"), data, resume: true }), /--resume: no run record/);
  });

  it("at validation fraction 0, trains on every training image for its epochs, keeps the last epoch's model and records no validation", async () => {
    const outDir = path.join(tempDir(), "run");
    const full: RunSettings = { ...settings, validationFraction: 0 };
    const logs: string[] = [];
    const record = await trainRun({ config: presetModel("ann"), settings: full, outDir, data, hooks: { log: (l) => logs.push(l) } });
    assert.deepEqual([record.options.trainImages, record.options.validationImages], [data.train.count, 0]);
    assert.deepEqual(record.history.map((e) => [e.valLoss, e.valAccuracy]), [[null, null], [null, null], [null, null]]);
    assert.equal(record.bestEpoch, 2, "the last epoch");
    assert.equal(record.validation, null);
    assert.ok(record.test!.accuracy > 0.9, `test accuracy ${record.test!.accuracy}`);
    assert.match(logs.join("\n"), /on 400 images, no validation \(3 epochs, fixed\)/);
    const [kept, last] = [await loadModel(path.join(outDir, "model")), await loadModel(path.join(outDir, "checkpoint"))];
    assert.deepEqual(kept.getWeights().map((w) => [...w.dataSync()]), last.getWeights().map((w) => [...w.dataSync()]), "the model is the last epoch's weights");
    kept.dispose();
    last.dispose();

    // Interrupted after its first epoch, it resumes to the same run.
    const cut = path.join(tempDir(), "cut");
    await assert.rejects(trainRun({ config: presetModel("ann"), settings: full, outDir: cut, data, hooks: { onEpochEnd: () => { throw new Error("killed"); } } }), /killed/);
    const resumed = await ensureRun({ config: presetModel("ann"), settings: full, outDir: cut, data });
    assert.deepEqual(resumed.history.map((e) => e.loss), record.history.map((e) => e.loss));
    assert.deepEqual([resumed.bestEpoch, resumed.test], [2, record.test]);
    await assert.rejects(trainRun({ config: presetModel("ann"), settings: { ...full, patience: 2 }, outDir: path.join(tempDir(), "p"), data }), /early stopping \(patience\) needs validation/);
  });

  it("with test-time augmentation, the test accuracy and runProbabilities are the TTA views' average", async () => {
    const outDir = path.join(tempDir(), "run");
    const record = await trainRun({ config: presetModel("ann"), settings: { ...settings, epochs: 1, testTimeAugmentation: true }, outDir, data });
    const x = toImageTensor(data.test);
    const model = await loadModel(path.join(outDir, "model"));
    const tta = predictWithTta(model, x);
    const plain = predictProbabilities(model, x);
    model.dispose();
    assert.deepEqual(await runProbabilities(outDir, x), tta);
    x.dispose();
    assert.notDeepEqual(tta, plain, "the views change the probabilities");
    const classes = data.classNames.length;
    assert.equal(record.test!.accuracy, accuracy(data.test.labels, argmaxRows(tta, classes), classes));
    assert.ok(Math.abs(record.test!.loss - logLoss(tta, data.test.labels, classes)) < 1e-9);
  });

  it("asked for bf16, trains in it where the CPU has it (fp32 elsewhere) and records which ran; the model is tested in fp32", async () => {
    const outDir = path.join(tempDir(), "run");
    const record = await trainRun({ config: presetModel("cnn3"), settings: { ...settings, epochs: 1, precision: "bf16" }, outDir, data });
    assert.equal(record.options.precision, "bf16");
    assert.equal(record.backend.precision, bf16Unavailable() === undefined ? "bf16" : "fp32");
    assert.equal(nativePrecision(), "fp32", "the precision is fp32 again after training");
    // The test accuracy is what an fp32 evaluation of the saved model gives.
    const x = toImageTensor(data.test);
    const probabilities = await runProbabilities(outDir, x);
    x.dispose();
    const classes = data.classNames.length;
    assert.equal(record.test!.correct, Math.round(accuracy(data.test.labels, argmaxRows(probabilities, classes), classes) * data.test.count));
    const fp32 = await trainRun({ config: presetModel("cnn3"), settings: { ...settings, epochs: 1 }, outDir: path.join(tempDir(), "fp32"), data });
    assert.equal(fp32.backend.precision, "fp32");
    if (record.backend.precision === "bf16") assert.notDeepEqual(record.history[0].loss, fp32.history[0].loss, "bf16 changes the training loss");
  });

  it("is reproducible: the same seed gives the same history, another seed a different one", async () => {
    // With dropout, both the initial weights and the masks must follow the seed.
    const ann = presetModel("ann");
    const config = { ...ann, name: "ann-dropout", layers: [ann.layers[0], ann.layers[1], { type: "dropout" as const, rate: 0.5 }, ann.layers[2]] };
    const run = async (seed: number) =>
      (await trainRun({ config, settings: { ...settings, epochs: 2, seed }, outDir: path.join(tempDir(), "run"), data })).history.map((e) => [e.loss, e.valLoss]);
    const first = await run(5);
    assert.deepEqual(await run(5), first);
    assert.notDeepEqual(await run(6), first);
  });
});

describe("ensureRun", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("trains once, then reads the finished run back; a different request for the folder is an error", async () => {
    const outDir = path.join(tempDir(), "run");
    const quick = { ...settings, epochs: 1 };
    const first = await ensureRun({ config: presetModel("ann"), settings: quick, outDir, data });
    const logs: string[] = [];
    // Same settings with the keys in another order: still the same run.
    const reordered = Object.fromEntries(Object.entries(quick).reverse()) as unknown as RunSettings;
    const again = await ensureRun({ config: presetModel("ann"), settings: reordered, outDir, data, hooks: { log: (l) => logs.push(l) } });
    assert.deepEqual(again, { ...first, updatedAt: again.updatedAt });
    assert.match(logs.join("\n"), /finished run found, not retrained/);
    await assert.rejects(ensureRun({ config: presetModel("ann"), settings: { ...quick, seed: 6 }, outDir, data }), /holds a different run/);
  });

  it("restarts a run killed before its first epoch ended (no checkpoint yet)", async () => {
    const outDir = path.join(tempDir(), "run");
    await assert.rejects(
      trainRun({ config: presetModel("ann"), settings, outDir, data, hooks: { onBatchEnd: () => { throw new Error("killed"); } } }),
      /killed/,
    );
    assert.equal((await readRecord(outDir))!.history.length, 0);
    const record = await ensureRun({ config: presetModel("ann"), settings, outDir, data });
    assert.equal(record.status, "finished");
    assert.equal(record.history.length, 3);
    assert.deepEqual(record.resumes, [], "a run that never finished an epoch starts afresh");
  });

  it("resumes an interrupted run from its last finished epoch", async () => {
    const outDir = path.join(tempDir(), "run");
    // Interrupt after the first epoch by throwing from the hook (the record is written before it runs).
    await assert.rejects(
      trainRun({ config: presetModel("ann"), settings, outDir, data, hooks: { onEpochEnd: () => { throw new Error("killed"); } } }),
      /killed/,
    );
    assert.equal((await readRecord(outDir))!.history.length, 1);
    const logs: string[] = [];
    const record = await ensureRun({ config: presetModel("ann"), settings, outDir, data, hooks: { log: (l) => logs.push(l) } });
    assert.equal(record.status, "finished");
    assert.equal(record.history.length, 3);
    assert.deepEqual(record.resumes.map((r) => r.fromEpoch), [1]);
    assert.match(logs.join("\n"), /resuming .* after epoch 1 of 3/);
  });
});
