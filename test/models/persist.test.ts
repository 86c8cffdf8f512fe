import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { initBackend, tf } from "../../lib/accelerator";
import { FastBatchNorm, FastConv2D, FastDropout } from "../../lib/accelerator";
import { buildModel, presetModel } from "../../lib/models/builder";
import { loadModel, saveModel, writeJsonAtomic } from "../../lib/models/persist";
import { tempDir } from "../helpers/idx";

describe("persistence", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("save → load gives identical predictions, and the optimizer state comes back", async () => {
    // The dense baseline: no dropout, so that one more training step is deterministic.
    const model = buildModel(presetModel("ann"));
    const x = tf.randomUniform([8, 28, 28, 1]);
    const y = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7]);
    await model.trainOnBatch(x, y); // creates Adam's moments
    const dir = path.join(tempDir(), "model");
    await saveModel(model, dir);
    assert.deepEqual(readdirSync(dir).sort(), ["model.json", "weights.bin"]);
    const loaded = await loadModel(dir);
    const before = (model.predict(x) as tf.Tensor).dataSync();
    const after = (loaded.predict(x) as tf.Tensor).dataSync();
    assert.deepEqual([...after], [...before]);
    const optimizerWeights = (loaded.optimizer as unknown as { getWeights(): Promise<{ name: string }[]> }).getWeights();
    assert.ok((await optimizerWeights).length > 1, "Adam's iteration count and moments restored");
    // A further step from the loaded model equals one from the original.
    await model.trainOnBatch(x, y);
    await loaded.trainOnBatch(x, y);
    const [a, b] = [(model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync()];
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-5));
    tf.dispose([x, y]);
    model.dispose();
    loaded.dispose();
  });

  it("a CNN with batch norm and dropout predicts the same after save → load", async () => {
    const model = buildModel(presetModel("cnn3-bn"));
    const x = tf.randomUniform([4, 28, 28, 1]);
    await model.trainOnBatch(x, tf.tensor1d([1, 2, 3, 4])); // moves the BN statistics
    const dir = path.join(tempDir(), "model");
    await saveModel(model, dir);
    const loaded = await loadModel(dir);
    assert.deepEqual([...(loaded.predict(x) as tf.Tensor).dataSync()], [...(model.predict(x) as tf.Tensor).dataSync()]);
    // A loaded model (a resumed run) trains with the fast layers as well.
    assert.ok(loaded.layers.some((l) => l instanceof FastBatchNorm) && loaded.layers.some((l) => l instanceof FastDropout));
    model.dispose();
    loaded.dispose();
  });

  it("cnn3's convolution + pool ops come back after save → load", async () => {
    const model = buildModel(presetModel("cnn3"));
    const dir = path.join(tempDir(), "model");
    await saveModel(model, dir);
    const loaded = await loadModel(dir);
    const marked = (m: tf.LayersModel) => m.layers.flatMap((l) => (l instanceof FastConv2D && l.reluPool ? [[l.reluPool.inputGradient, l.reluPool.pool]] : []));
    assert.deepEqual(marked(loaded), [[false, [2, 2]], [true, [2, 2]]], "a resumed run trains them as the original does");
    model.dispose();
    loaded.dispose();
  });

  it("vgg-bn's blocks come back after save → load, and a further training step equals the original's", async () => {
    const model = buildModel(presetModel("vgg-bn-16"), { optimizer: "sgd-nesterov", learningRate: 0.05 });
    const x = tf.randomUniform([8, 28, 28, 1], 0, 1, "float32", 7);
    const y = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7]);
    await model.trainOnBatch(x, y);
    const dir = path.join(tempDir(), "model");
    await saveModel(model, dir);
    const loaded = await loadModel(dir);
    const blocks = (m: tf.LayersModel) => m.layers.flatMap((l) => (l instanceof FastConv2D && l.block ? [[l.block.inputGradient, l.block.pool]] : []));
    assert.deepEqual(blocks(loaded), [[false, [2, 2]], [true, [2, 2]], [true, [7, 7]]], "a resumed run trains its blocks (pools included) as the original does");
    await model.trainOnBatch(x, y);
    await loaded.trainOnBatch(x, y);
    const [a, b] = [(model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync()];
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-5, `prediction ${i}: ${v} against ${b[i]}`));
    tf.dispose([x, y]);
    model.dispose();
    loaded.dispose();
  });

  it("replaces an existing model folder and leaves no temporary files", async () => {
    const parent = tempDir();
    const dir = path.join(parent, "model");
    const model = buildModel(presetModel("ann"));
    await saveModel(model, dir);
    await saveModel(model, dir);
    assert.deepEqual(readdirSync(parent), ["model"]);
    model.dispose();
  });

  it("says clearly when a folder holds no model", async () => {
    await assert.rejects(loadModel(tempDir()), /No model\.json in .*: not a saved model folder/);
  });

  it("writes JSON atomically", async () => {
    const file = path.join(tempDir(), "deep", "run.json");
    await writeJsonAtomic(file, { epoch: 3 });
    assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { epoch: 3 });
    assert.deepEqual(readdirSync(path.dirname(file)), ["run.json"]);
    assert.ok(existsSync(file));
  });
});
