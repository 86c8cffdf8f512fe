/**
 * On the real datasets, where they are present (CI installs Debian's dataset-fashion-mnist
 * and sets MNIST_DIR to the official MNIST files); skipped, saying why, elsewhere.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import { classCounts, FASHION_MNIST, loadDataset, MNIST } from "../../lib/data/datasets";
import { buildModel, presetModel } from "../../lib/models/builder";
import { unavailable } from "../helpers/datasets";

describe("real Fashion-MNIST", async () => {
  const skip = await unavailable(FASHION_MNIST);

  it("loads 60,000 + 10,000 images, 6,000 / 1,000 per class, with the official checksums", { skip }, async () => {
    const data = await loadDataset(FASHION_MNIST, { download: false });
    assert.equal(data.checksumsVerified, true);
    assert.equal(data.train.count, 60_000);
    assert.equal(data.test.count, 10_000);
    assert.equal(data.train.images.length, 60_000 * 784);
    assert.deepEqual(classCounts(data.train.labels, 10), new Array(10).fill(6_000));
    assert.deepEqual(classCounts(data.test.labels, 10), new Array(10).fill(1_000));
    assert.deepEqual(data.sha256, FASHION_MNIST.sha256);
  });

  it("a short training run learns: the dense baseline beats chance by far on held-out images", { skip }, async (t) => {
    const backend = await initBackend();
    const data = await loadDataset(FASHION_MNIST, { download: false });
    // 6,000 training images for two epochs; 2,000 other training images to score (the
    // official test split is for evaluation only).
    const toTensors = (start: number, count: number) =>
      tf.tidy(() => {
        const pixels = data.train.images.subarray(start * 784, (start + count) * 784);
        const xs = tf.tensor4d(pixels, [count, 28, 28, 1], "int32").toFloat().div(255);
        const ys = tf.tensor1d(data.train.labels.subarray(start, start + count), "float32");
        return [xs, ys];
      });
    const [trainX, trainY] = toTensors(0, 6_000);
    const [heldX, heldY] = toTensors(50_000, 2_000);
    const model = buildModel(presetModel("ann"));
    await model.fit(trainX, trainY, { epochs: 2, batchSize: 64, shuffle: true, verbose: 0 });
    const [, accuracy] = (model.evaluate(heldX, heldY) as tf.Scalar[]).map((t) => t.dataSync()[0]);
    t.diagnostic(`held-out accuracy ${accuracy.toFixed(3)} after two epochs on ${backend.name}`);
    assert.ok(accuracy > 0.6, `held-out accuracy ${accuracy} after two epochs (chance is 0.1)`);
    tf.dispose([trainX, trainY, heldX, heldY]);
    model.dispose();
  });
});

describe("real MNIST", async () => {
  const skip = await unavailable(MNIST);

  it("loads 60,000 + 10,000 images with the official checksums", { skip }, async () => {
    const data = await loadDataset(MNIST, { download: false });
    assert.equal(data.train.count, 60_000);
    assert.equal(data.test.count, 10_000);
    assert.deepEqual(data.sha256, MNIST.sha256);
    assert.equal(classCounts(data.train.labels, 10).reduce((a, b) => a + b, 0), 60_000);
  });
});
