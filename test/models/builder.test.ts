import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import { readFileSync } from "node:fs";
import path from "node:path";
import { canonicalJson } from "../../lib/models/persist";
import { BENCHMARK_MODELS, buildModel, modelSummary, presetModel, PRESET_MODELS, type LayerConfig, type ModelConfig } from "../../lib/models/builder";
import { ARCHITECTURES, tunableModelConfig, withDefaults, type TrialParams } from "../../lib/training/tuning";

/** One reference study's CNN (3 conv layers, 4 dense layers), not a preset: no experiment trains it. */
const threeConvFourDense: ModelConfig = {
  name: "cnn-3conv-4dense",
  description: "test",
  inputShape: [28, 28, 1],
  layers: [
    { type: "conv2d", filters: 32, kernelSize: 3 }, { type: "maxPool2d", poolSize: 2 },
    { type: "conv2d", filters: 64, kernelSize: 3 }, { type: "maxPool2d", poolSize: 2 },
    { type: "conv2d", filters: 128, kernelSize: 3 }, { type: "flatten" },
    { type: "dense", units: 256 }, { type: "dense", units: 128 }, { type: "dense", units: 64 },
    { type: "dense", units: 10, activation: "softmax" },
  ],
};

describe("model configs", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("builds the capstone 3-block CNN with 241,546 parameters", () => {
    const model = buildModel(presetModel("cnn3"));
    assert.equal(model.countParams(), 241_546);
    assert.deepEqual(model.outputs[0].shape, [null, 10]);
    model.dispose();
  });

  it("builds the 784-512-10 dense baseline with 407,050 parameters", () => {
    const model = buildModel(presetModel("ann"));
    assert.equal(model.countParams(), 784 * 512 + 512 + 512 * 10 + 10);
    model.dispose();
  });

  it("has the reference studies' parameter counts for cnn1, cnn2, the 3-conv + 4-dense CNN and cnn-bn3", () => {
    // By hand: conv 3×3×1×32+32 = 320; 13·13·32 = 5,408 → dense 128: 692,352; dense 10: 1,290.
    const expected: Record<string, number> = {
      cnn1: 320 + 692_352 + 1_290,
      cnn2: 320 + 18_496 + (5 * 5 * 64 * 128 + 128) + 1_290,
      "cnn-3conv-4dense": 320 + 18_496 + 73_856 + (1_152 * 256 + 256) + (256 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10),
      // 'same' convs keep 28 → pools 14, 7, 3: 3·3·128 = 1,152 features; batch norm holds 4 values per channel.
      "cnn-bn3": 320 + 4 * 32 + 18_496 + 4 * 64 + 73_856 + 4 * 128 + (1_152 * 256 + 256) + 4 * 256 + (256 * 10 + 10),
      // Two convs per block, without biases (batch norm follows); the 7×7 pool of the last block leaves 128 features for the softmax layer.
      "vgg-bn": 288 + 9_216 + 18_432 + 36_864 + 73_728 + 147_456 + 4 * (2 * 32 + 2 * 64 + 2 * 128) + (128 * 10 + 10),
    };
    for (const [name, count] of Object.entries(expected)) {
      const model = buildModel(name === threeConvFourDense.name ? threeConvFourDense : presetModel(name));
      assert.equal(model.countParams(), count, name);
      model.dispose();
    }
  });

  it("summarises a model like Keras: layers, output shapes, parameter counts", () => {
    const summary = modelSummary(buildModel(presetModel("cnn3")));
    assert.match(summary, /conv2d_1 \(Conv2D\)\s+\[\[null,28,28,1\]\]\s+\[null,26,26,32\]\s+320/);
    assert.match(summary, /Total params: 241546/);
  });

  it("builds every preset and benchmark layout from its JSON form", () => {
    for (const config of [...Object.values(PRESET_MODELS), ...Object.values(BENCHMARK_MODELS)]) {
      const roundTripped = JSON.parse(JSON.stringify(config)) as ModelConfig;
      const model = buildModel(roundTripped);
      assert.equal(model.name, config.name);
      model.dispose();
    }
  });

  it("rejects an unknown model name and lists the known ones", () => {
    assert.throws(() => presetModel("resnet"), /Unknown model "resnet"; known models: ann, cnn1, cnn2, cnn3, vgg-bn, vgg-bn-16, vgg-bn-48, vgg-bn-64, vgg-bn-24, cnn3-bn, cnn-bn3\./);
  });

  it("builds every preset and tuning layout with exactly the layers they had before one builder made them all", () => {
    // test/fixtures/model-layers.json was written by the separate preset and tuning builders this
    // one replaced: same layers, so finished runs keep their identity and saved weights still load.
    const fixture = JSON.parse(readFileSync(path.join(__dirname, "..", "fixtures", "model-layers.json"), "utf8")) as Record<string, unknown>;
    const built: Record<string, unknown> = {};
    for (const name of ["ann", "cnn1", "cnn2", "cnn3", "cnn3-bn", "cnn-bn3", "vgg-bn"]) built[`preset ${name}`] = presetModel(name).layers;
    for (const [key, value] of Object.entries(fixture)) {
      if (!key.startsWith("tunable ")) continue;
      const architecture = key.split(" ")[1] as (typeof ARCHITECTURES)[number];
      const { params } = value as { params: Partial<TrialParams>; layers: LayerConfig[] };
      built[key] = { params, layers: tunableModelConfig(withDefaults(params), "t", architecture).layers };
    }
    assert.equal(Object.keys(built).length, Object.keys(fixture).length);
    for (const key of Object.keys(fixture)) assert.equal(canonicalJson(built[key]), canonicalJson(fixture[key]), key);
  });

  it("trains a small conv net on wasm: the loss decreases and no tensors leak", async () => {
    assert.equal(tf.getBackend(), "wasm");
    const config: ModelConfig = {
      name: "tiny-cnn",
      description: "test",
      inputShape: [12, 12, 1],
      layers: [
        { type: "conv2d", filters: 4, kernelSize: 3 },
        { type: "maxPool2d", poolSize: 2 },
        { type: "flatten" },
        { type: "dense", units: 10, activation: "softmax" },
      ],
    };
    // Two separable classes: bright top half vs bright bottom half.
    const count = 64;
    const pixels = new Float32Array(count * 144);
    const labels = new Float32Array(count);
    for (let n = 0; n < count; n++) {
      labels[n] = n % 2;
      for (let i = 0; i < 144; i++) {
        const top = i < 72;
        pixels[n * 144 + i] = (top === (n % 2 === 0) ? 0.8 : 0.1) + Math.random() * 0.1;
      }
    }
    const model = buildModel(config, { learningRate: 0.01 });
    const xs = tf.tensor4d(pixels, [count, 12, 12, 1]);
    const ys = tf.tensor1d(labels);
    // The first epoch creates the optimizer's state (Adam's moments): count tensors after it.
    const first = await model.fit(xs, ys, { epochs: 1, batchSize: 16, shuffle: true, verbose: 0 });
    const tensorsBefore = tf.memory().numTensors;
    const rest = await model.fit(xs, ys, { epochs: 8, batchSize: 16, shuffle: true, verbose: 0 });
    const losses = [...(first.history.loss as number[]), ...(rest.history.loss as number[])];
    assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
    assert.ok(losses[losses.length - 1] < losses[0] * 0.5, `loss went ${losses[0]} → ${losses[losses.length - 1]}`);
    assert.equal(tf.memory().numTensors, tensorsBefore, "training leaked tensors");
    tf.dispose([xs, ys]);
    model.dispose();
  });
});
