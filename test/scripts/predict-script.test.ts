/** npm run predict on a saved (untrained) model: pictures, an IDX file, and unreadable files. */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { createCanvas } from "@napi-rs/canvas";
import { initBackend } from "../../lib/accelerator";
import { buildModel, presetModel } from "../../lib/models/builder";
import { saveModel } from "../../lib/models/persist";
import { idxImages, syntheticPixel, tempDir } from "../helpers/idx";
import { runScript } from "../helpers/scripts";

describe("npm run predict", () => {
  const dir = tempDir();
  const modelDir = path.join(dir, "model");
  before(async () => {
    await initBackend({ force: "wasm" });
    const model = buildModel(presetModel("ann"));
    await saveModel(model, modelDir);
    model.dispose();
    const canvas = createCanvas(60, 40);
    canvas.getContext("2d").fillRect(20, 10, 20, 20);
    writeFileSync(path.join(dir, "photo.jpg"), canvas.toBuffer("image/jpeg"));
    writeFileSync(path.join(dir, "three.idx.gz"), gzipSync(idxImages(3, 28, 28, syntheticPixel)));
    writeFileSync(path.join(dir, "broken.png"), "not a picture");
    writeFileSync(path.join(dir, "small.idx"), idxImages(1, 8, 8, syntheticPixel));
  });

  it("answers every image of pictures and IDX files with a class and ten probabilities", async () => {
    const result = await runScript("predict.ts", ["--model", modelDir, "--json", path.join(dir, "photo.jpg"), path.join(dir, "three.idx.gz")]);
    assert.equal(result.code, 0, result.stderr);
    const { answers } = JSON.parse(result.stdout);
    assert.equal(answers.length, 4);
    assert.deepEqual(answers[0].converted, { originalWidth: 60, originalHeight: 40, inverted: false });
    assert.deepEqual(answers.slice(1).map((a: { index: number }) => a.index), [0, 1, 2]);
    for (const answer of answers) {
      const probabilities = Object.values(answer.probabilities) as number[];
      assert.equal(probabilities.length, 10);
      assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
      assert.equal(answer.probability, Math.max(...probabilities));
      assert.equal(answer.className, Object.keys(answer.probabilities)[answer.label]);
    }
  });

  it("an unreadable file is an error on stderr, exit 1, and the other files are still answered", async () => {
    const files = ["broken.png", "missing.png", "small.idx", "photo.jpg"].map((f) => path.join(dir, f));
    const result = await runScript("predict.ts", ["--model", modelDir, ...files]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /broken\.png: not a readable PNG or JPEG image/);
    assert.match(result.stderr, /missing\.png: no such file/);
    assert.match(result.stderr, /small\.idx: images are 8×8, expected 28×28/);
    assert.match(result.stderr, /3 of 4 files could not be classified/);
    assert.match(result.stdout, /photo\.jpg +\S+/);
  });

  it("usage errors exit 2", async () => {
    const noFiles = await runScript("predict.ts", ["--model", modelDir]);
    assert.equal(noFiles.code, 2);
    assert.match(noFiles.stderr, /Name at least one image or IDX file/);
    const noModel = await runScript("predict.ts", [path.join(dir, "photo.jpg")]);
    assert.equal(noModel.code, 2);
    assert.match(noModel.stderr, /--model DIR is required/);
  });
});
