/** npm run train on the real dataset in quick mode (skipped where Fashion-MNIST is absent; required in CI). */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { STANDARD_AUGMENTATION } from "../../lib/data/augment";
import { FASHION_MNIST } from "../../lib/data/datasets";
import { unavailable } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";
import { ROOT, runScript } from "../helpers/scripts";

const SCRIPT = ["--import", "tsx", "scripts/train.ts"];

const trainCommand = (args: string[]) => runScript("train.ts", args);

const record = (dir: string) => JSON.parse(readFileSync(path.join(dir, "record.json"), "utf8"));

describe("npm run train", async () => {
  const skip = await unavailable();

  it("a killed run resumes from its last finished epoch and finishes with test metrics", { skip }, async () => {
    const out = path.join(tempDir(), "run");
    const child = spawn(process.execPath, [...SCRIPT, "--model", "ann", "--quick", "--epochs", "3", "--out", out], { cwd: ROOT, stdio: "ignore" });
    // Kill it (SIGKILL: no clean-up) as soon as one epoch is on disk.
    const killedAfter = await new Promise<number>((resolve, reject) => {
      const timer = setInterval(() => {
        if (!existsSync(path.join(out, "record.json"))) return;
        const epochs = record(out).history.length;
        if (epochs >= 1) {
          clearInterval(timer);
          child.kill("SIGKILL");
          resolve(epochs);
        }
      }, 50);
      child.on("exit", () => {
        clearInterval(timer);
        reject(new Error("the run finished before it could be killed"));
      });
    });
    const interrupted = record(out);
    assert.equal(interrupted.status, "running");
    assert.equal(interrupted.test, null);

    const again = await trainCommand(["--model", "ann", "--out", out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already holds a run \(running, \d+ epochs\); use --resume/);

    const resumed = await trainCommand(["--model", "ann", "--out", out, "--resume", "--json"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    const finished = JSON.parse(resumed.stdout);
    assert.equal(finished.status, "finished");
    assert.deepEqual(finished.history.map((e: { epoch: number }) => e.epoch), [0, 1, 2]);
    assert.equal(finished.resumes[0].fromEpoch, killedAfter);
    assert.deepEqual(finished.history.slice(0, killedAfter), interrupted.history.slice(0, killedAfter), "finished epochs kept as they were");
    assert.equal(finished.test.images, 10_000);
    assert.ok(finished.test.accuracy > 0.5, `test accuracy ${finished.test.accuracy}`);
    assert.equal(finished.dataset.sha256.trainImages, FASHION_MNIST.sha256.trainImages);
    assert.match(resumed.stderr, new RegExp(`resuming .* after epoch ${killedAfter} of 3`));
  });

  it("rejects an unknown model and a finished run's --resume", { skip }, async () => {
    const unknown = await trainCommand(["--model", "resnet"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Unknown model "resnet"/);
    const out = path.join(tempDir(), "run");
    assert.equal((await trainCommand(["--model", "ann", "--quick", "--out", out])).code, 0);
    const again = await trainCommand(["--model", "ann", "--out", out, "--resume"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /this run already finished; nothing to resume/);
  });

  it("--augment standard trains on augmented batches and records the pipeline; a bad config is a usage error", { skip }, async () => {
    const out = path.join(tempDir(), "run");
    const result = await trainCommand(["--model", "ann", "--quick", "--augment", "standard", "--out", out]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(record(out).options.augment, STANDARD_AUGMENTATION);
    const bogus = await trainCommand(["--model", "ann", "--quick", "--augment", "blur"]);
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /--augment must be standard, none or a \.json config, got "blur"/);
    const file = path.join(tempDir(), "augment.json");
    writeFileSync(file, JSON.stringify({ shift: { maxPixels: -1 } }));
    const invalid = await trainCommand(["--model", "ann", "--quick", "--augment", file]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /shift\.maxPixels must be a non-negative integer, got -1/);
  });

  it("--optimizer sgd-nesterov --label-smoothing 0.1 --schedule warmup-linear --split-seed trains and is recorded; bad values are usage errors", { skip }, async () => {
    const out = path.join(tempDir(), "run");
    const args = ["--optimizer", "sgd-nesterov", "--label-smoothing", "0.1", "--schedule", "warmup-linear", "--lr", "0.05", "--seed", "43", "--split-seed", "42"];
    const result = await trainCommand(["--model", "ann", "--quick", ...args, "--out", out]);
    assert.equal(result.code, 0, result.stderr);
    const options = record(out).options;
    assert.deepEqual([options.optimizer, options.labelSmoothing, options.schedule], ["sgd-nesterov", 0.1, { kind: "warmupLinear", rate: 0.05, warmup: 0.15 }]);
    assert.deepEqual([options.seed, options.splitSeed], [43, 42]);
    assert.ok(record(out).test!.accuracy > 0.5, `test accuracy ${record(out).test!.accuracy}`);
    for (const [flag, value, message] of [["--optimizer", "rmsprop", /--optimizer must be one of adam, sgd-nesterov, got "rmsprop"/], ["--label-smoothing", "0.9", /--label-smoothing must be a number in \[0, 0\.5\], got "0\.9"/], ["--schedule", "cosine", /--schedule must be one of constant, step, one-cycle, warmup-linear, warmup-cosine, got "cosine"/], ["--dataset", "cifar", /--dataset must be one of fashion, mnist, got "cifar"/], ["--split-seed", "1.5", /--split-seed must be an integer, got "1\.5"/]] as const) {
      const bad = await trainCommand(["--model", "ann", "--quick", flag, value]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, message);
    }
  });

  it("a second training into the same --out while the first runs is refused, naming the holder", { skip }, async () => {
    const out = path.join(tempDir(), "run");
    const first = spawn(process.execPath, [...SCRIPT, "--model", "ann", "--quick", "--epochs", "5", "--out", out], { cwd: ROOT, stdio: "ignore" });
    const firstExit = new Promise<number | null>((resolve) => first.on("exit", resolve));
    while (!existsSync(path.join(out, "record.json"))) await new Promise((r) => setTimeout(r, 50));
    const second = await trainCommand(["--model", "ann", "--quick", "--epochs", "5", "--out", out, "--resume"]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`this run is being written by process ${first.pid} on `));
    assert.equal(await firstExit, 0, "the first run finishes undisturbed");
    assert.equal(record(out).history.length, 5);
  });

  it("a model file that is not JSON, or not a valid model, is a usage error naming the file and the field", async () => {
    const dir = tempDir();
    const broken = path.join(dir, "broken.json");
    writeFileSync(broken, '{ "name": "x", "layers": [');
    const notJson = await trainCommand(["--model", broken, "--quick"]);
    assert.equal(notJson.code, 2);
    assert.match(notJson.stderr, new RegExp(`--model ${broken.replace(/[/.]/g, "\\$&")}: not JSON`));
    const fiveUnits = path.join(dir, "five.json");
    writeFileSync(fiveUnits, JSON.stringify({ name: "five", description: "", inputShape: [28, 28, 1], layers: [{ type: "flatten" }, { type: "dense", units: 5, activation: "softmax" }] }));
    const invalid = await trainCommand(["--model", fiveUnits, "--quick", "--out", path.join(dir, "run")]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /five\.json: layers\[1\]: the last layer must be a dense layer of 10 units/);
    assert.ok(!existsSync(path.join(dir, "run")), "nothing written");
  });

  it("--experiment takes the model and recipe from its declaration; recipe flags beside it are a usage error", async () => {
    const mixed = await trainCommand(["--experiment", "cnn3", "--epochs", "3"]);
    assert.equal(mixed.code, 2);
    assert.match(mixed.stderr, /--experiment takes its model and recipe from experiments\/cnn3\.json; leave out --epochs/);
    const unknown = await trainCommand(["--experiment", "nope"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No experiment named "nope" in experiments\/ \(declared: .*cnn3/);
  });
});
