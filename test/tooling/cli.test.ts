import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { idxLabels, tempDir, writeSyntheticDataset } from "../helpers/idx";
import { runScript } from "../helpers/scripts";


/** Runs `npm run data -- args` the way npm does (tsx), with the given environment. */
const dataCommand = (args: string[], env: NodeJS.ProcessEnv) => runScript("data.ts", args, { ...process.env, ...env });

describe("npm run data", () => {
  it("prints counts, pixel statistics and hashes as JSON", async () => {
    const { dir, spec } = writeSyntheticDataset(tempDir());
    const result = await dataCommand(["--json", "--skip-checksum"], { FASHION_MNIST_DIR: dir });
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout);
    assert.equal(summary.source.origin, "env");
    assert.equal(summary.splits.train.images, 20);
    assert.equal(summary.splits.test.images, 10);
    assert.equal(summary.splits.train.classCounts["Ankle boot"], 2);
    assert.equal(summary.sha256["train-images-idx3-ubyte"], spec.sha256.trainImages);
    assert.equal(summary.checksumsVerified, false);
    assert.ok(summary.splits.train.pixelMean > 0 && summary.splits.train.pixelStd > 0);
  });

  it("prints tables for people by default", async () => {
    const { dir } = writeSyntheticDataset(tempDir());
    const result = await dataCommand(["--skip-checksum"], { FASHION_MNIST_DIR: dir });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^train\s+20\s+28×28/m);
    assert.match(result.stdout, /^9 Ankle boot\s+2\s+1$/m);
    assert.match(result.stdout, /NOT verified: --skip-checksum/);
  });

  it("exits 1 with the message on stderr when a file is bad", async () => {
    const { dir } = writeSyntheticDataset(tempDir(), { override: { testLabels: idxLabels([0, 1, 2]) } });
    const result = await dataCommand(["--json", "--skip-checksum"], { FASHION_MNIST_DIR: dir });
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, /^error: test split: .*t10k-images-idx3-ubyte\.gz has 10 images but .*t10k-labels-idx1-ubyte\.gz has 3 labels/);
  });

  it("exits 1 on a checksum mismatch unless --skip-checksum", async () => {
    const { dir } = writeSyntheticDataset(tempDir());
    const result = await dataCommand(["--json"], { FASHION_MNIST_DIR: dir });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /SHA-256 of the decompressed content is/);
  });

  it("prints the usage for --help and exits 0", async () => {
    const help = await dataCommand(["--help"], {});
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: npm run data -- \[--dataset fashion\|mnist\]/);
  });

  it("exits 2 with the usage on a bad option or dataset name", async () => {
    const unknown = await dataCommand(["--frobnicate"], {});
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /error: Unknown option '--frobnicate'/);
    assert.match(unknown.stderr, /Usage: npm run data/);
    const badName = await dataCommand(["--dataset", "cifar"], {});
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /error: Unknown dataset "cifar"/);
  });
});
