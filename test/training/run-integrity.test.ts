import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { initBackend } from "../../lib/accelerator";
import type { Dataset } from "../../lib/data/datasets";
import { trainRun, type RunSettings } from "../../lib/training/run";
import { acquireLock, LOCK_FILE } from "../../lib/tooling/lock";
import { buildModel, validateModelConfig, type ModelConfig } from "../../lib/models/builder";
import { loadModel, MODEL_FILE, WEIGHTS_FILE } from "../../lib/models/persist";
import { BEST_MODEL_DIR, CHECKPOINT_DIR, COMMIT_STEPS, readCheckpointState, readRecord, recoverRunFolder, RECORD_FILE, type CommitStep } from "../../lib/training/records";

import { runStudy, STUDY_FILE, type StudySpec, type TrialRunner } from "../../lib/training/tuning";
import { toImageTensor } from "../../lib/data/preprocess";
import { stripesDataset } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";
import { ROOT } from "../helpers/scripts";
import { predictProbabilities } from "../../lib/evaluation/predict";

const data: Dataset = stripesDataset();

/** A small network with dropout, so that exact resume has masks to get right. */
const withDropout: ModelConfig = {
  name: "dense-dropout",
  description: "flatten → dense 32 → dropout 0.3 → softmax",
  inputShape: [28, 28, 1],
  layers: [{ type: "flatten" }, { type: "dense", units: 32, activation: "relu" }, { type: "dropout", rate: 0.3 }, { type: "dense", units: 10, activation: "softmax" }],
};

const settings: RunSettings = {
  epochs: 3,
  batchSize: 32,
  seed: 5,
  validationFraction: 0.2,
  schedule: { kind: "oneCycle", rate: 0.003 },
  patience: null,
  quick: false,
  augment: { flipHorizontal: { probability: 0.5 }, shift: { maxPixels: 1 } },
};

const killed = () => new Error("killed");
/** What a run learned, without its timings. */
const learned = (history: { loss: number; accuracy: number; valLoss: number | null; valAccuracy: number | null; learningRate: number }[]) =>
  history.map(({ loss, accuracy, valLoss, valAccuracy, learningRate }) => ({ loss, accuracy, valLoss, valAccuracy, learningRate }));

async function testPredictions(dir: string): Promise<Float32Array> {
  const model = await loadModel(path.join(dir, BEST_MODEL_DIR));
  const x = toImageTensor(data.test);
  try {
    return predictProbabilities(model, x);
  } finally {
    x.dispose();
    model.dispose();
  }
}

describe("run integrity", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("a second writer of the same folder is refused, naming the folder and the holder", async () => {
    const outDir = path.join(tempDir(), "run");
    const first = trainRun({ config: withDropout, settings, outDir, data });
    await assert.rejects(trainRun({ config: withDropout, settings, outDir, data }), (error: Error) => {
      assert.match(error.message, new RegExp(`${outDir.replace(/[/.]/g, "\\$&")}: this run is being written by process ${process.pid} on `));
      return true;
    });
    const record = await first;
    assert.equal(record.status, "finished");
    assert.ok(!existsSync(path.join(outDir, LOCK_FILE)), "the lock goes with its writer");
  });

  it("a lock left by a dead process is taken over", () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ["-e", "process.exit(0)"]).pid!;
    writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: dead, host: require("node:os").hostname(), since: "2026-01-01T00:00:00Z", command: "gone" }));
    const release = acquireLock(dir, "run");
    assert.equal(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), "utf8")).pid, process.pid);
    release();
    assert.ok(!existsSync(path.join(dir, LOCK_FILE)));
  });

  const sgdRecipe: RunSettings = { ...settings, schedule: { kind: "warmupLinear", rate: 0.05, warmup: 0.15 }, optimizer: "sgd-nesterov", labelSmoothing: 0.1 };
  const emaRecipe: RunSettings = { ...sgdRecipe, ema: { decay: 0.9 } };
  for (const [recipe, recipeSettings] of [["Adam, one-cycle", settings], ["SGD-Nesterov, warmup-linear, label smoothing", sgdRecipe], ["the same with an EMA of the weights", emaRecipe]] as const) {
    it(`a resumed run equals the uninterrupted one: same history and the same test predictions (${recipe})`, async () => {
      const whole = path.join(tempDir(), "whole");
      const uninterrupted = await trainRun({ config: withDropout, settings: recipeSettings, outDir: whole, data });
      const cut = path.join(tempDir(), "cut");
      await assert.rejects(trainRun({ config: withDropout, settings: recipeSettings, outDir: cut, data, hooks: { onEpochEnd: () => { throw killed(); } } }), /killed/);
      assert.equal((await readRecord(cut))?.history.length, 1);
      const resumed = await trainRun({ config: withDropout, settings: recipeSettings, outDir: cut, data, resume: true });
      assert.deepEqual(resumed.resumes.map((r) => r.fromEpoch), [1]);
      assert.deepEqual(learned(resumed.history), learned(uninterrupted.history));
      assert.deepEqual(resumed.test, uninterrupted.test);
      assert.deepEqual(await testPredictions(cut), await testPredictions(whole));
      assert.ok(uninterrupted.test!.accuracy > 0.5, `test accuracy ${uninterrupted.test!.accuracy}`);
    });
  }

  for (const step of COMMIT_STEPS) {
    it(`a crash after the commit step "${step}" leaves one consistent epoch, and the run resumes to the uninterrupted result`, async () => {
      const outDir = path.join(tempDir(), "run");
      // Crash inside the second epoch's commit, once.
      let staged = 0;
      let crashed = false;
      const onCommitStep = (at: CommitStep) => {
        if (at === "staged") staged++;
        if (staged === 2 && at === step && !crashed) {
          crashed = true;
          throw killed();
        }
      };
      await assert.rejects(trainRun({ config: withDropout, settings, outDir, data, hooks: { onCommitStep } }), /killed/);
      // The next start brings the folder back to one epoch: the first or the second, never a mix.
      const outcome = await recoverRunFolder(outDir);
      const record = await readRecord(outDir);
      const state = await readCheckpointState(outDir);
      assert.equal(state?.epochs, record?.history.length, "checkpoint and record hold the same epochs");
      assert.equal(record?.history.length, step === "staged" ? 1 : 2);
      assert.equal(outcome, step === "staged" ? "dropped" : "completed");
      assert.ok(existsSync(path.join(outDir, BEST_MODEL_DIR, MODEL_FILE)) && existsSync(path.join(outDir, CHECKPOINT_DIR, MODEL_FILE)));
      const resumed = await trainRun({ config: withDropout, settings, outDir, data, resume: true });
      assert.equal(resumed.history.length, 3);
      assert.equal(resumed.status, "finished");
    });
  }

  it("a run folder's leftovers of an interrupted model save are recovered or cleaned", async () => {
    const outDir = path.join(tempDir(), "run");
    await trainRun({ config: withDropout, settings: { ...settings, epochs: 1 }, outDir, data });
    // A swap interrupted between its renames: only checkpoint.old is there.
    cpSync(path.join(outDir, CHECKPOINT_DIR), path.join(outDir, `${CHECKPOINT_DIR}.old`), { recursive: true });
    spawnSync("rm", ["-rf", path.join(outDir, CHECKPOINT_DIR)]);
    mkdirSync(path.join(outDir, `${BEST_MODEL_DIR}.123.staging`));
    await recoverRunFolder(outDir);
    assert.ok(existsSync(path.join(outDir, CHECKPOINT_DIR, MODEL_FILE)));
    assert.ok(!existsSync(path.join(outDir, `${CHECKPOINT_DIR}.old`)) && !existsSync(path.join(outDir, `${BEST_MODEL_DIR}.123.staging`)));
  });
});

describe("validation before any write", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  const last = (layer: object): ModelConfig => ({ ...withDropout, layers: [...withDropout.layers.slice(0, -1), layer as ModelConfig["layers"][number]] });
  const cases: [string, ModelConfig, RegExp][] = [
    ["5 output units", last({ type: "dense", units: 5, activation: "softmax" }), /layers\[3\]: the last layer must be a dense layer of 10 units \(one per class\) with a softmax activation/],
    ["no softmax", last({ type: "dense", units: 10, activation: "relu" }), /layers\[3\]: the last layer must be a dense layer of 10 units/],
    ["dropout 1.5", { ...withDropout, layers: withDropout.layers.map((l) => (l.type === "dropout" ? { ...l, rate: 1.5 } : l)) }, /layers\[2\] \(dropout\): rate must be in \[0, 1\), got 1\.5/],
    ["an unknown layer", { ...withDropout, layers: [{ type: "lstm" } as unknown as ModelConfig["layers"][number], ...withDropout.layers] }, /layers\[0\] \(lstm\): unknown layer type/],
    ["inputShape [32,32,3]", { ...withDropout, inputShape: [32, 32, 3] }, /inputShape: must be \[28, 28, 1\] \(the dataset's images\), got \[32,32,3\]/],
    ["a kernel larger than its input", { ...withDropout, layers: [{ type: "conv2d", filters: 4, kernelSize: 3 }, { type: "maxPool2d", poolSize: 13 }, { type: "conv2d", filters: 4, kernelSize: 3 }, ...withDropout.layers] }, /layers\[2\] \(conv2d\): the 3×3 kernel does not fit/],
  ];
  for (const [what, config, message] of cases) {
    it(`${what}: refused before the run folder is written, and the corrected command then trains there`, async () => {
      const outDir = path.join(tempDir(), "run");
      await assert.rejects(trainRun({ config, settings: { ...settings, epochs: 1 }, outDir, data }), message);
      assert.ok(!existsSync(path.join(outDir, RECORD_FILE)), "nothing written");
      const fixed = await trainRun({ config: withDropout, settings: { ...settings, epochs: 1 }, outDir, data });
      assert.equal(fixed.status, "finished");
    });
  }

  it("useBias must be true or false; a conv without a bias trains (and has no bias weight)", async () => {
    const conv = (useBias: unknown) => ({ ...withDropout, layers: [{ type: "conv2d", filters: 4, kernelSize: 3, useBias } as ModelConfig["layers"][number], ...withDropout.layers] });
    assert.throws(() => validateModelConfig(conv("no"), "c.json"), /layers\[0\] \(conv2d\): useBias must be true or false, got "no"/);
    const withBias = buildModel(conv(true) as ModelConfig);
    const record = await trainRun({ config: conv(false) as ModelConfig, settings: { ...settings, epochs: 1 }, outDir: path.join(tempDir(), "run"), data });
    assert.equal(record.status, "finished");
    assert.equal(record.parameters, withBias.countParams() - 4, "one bias per filter fewer");
    withBias.dispose();
  });

  it("a file's name is in the message of a bad config", () => {
    assert.throws(() => validateModelConfig(last({ type: "dense", units: 5, activation: "softmax" }), "configs/small.json"), /^Error: configs\/small\.json: layers\[3\]/);
  });

  it("a validation part too small to choose epochs from is refused before training", async () => {
    const outDir = path.join(tempDir(), "run");
    await assert.rejects(trainRun({ config: withDropout, settings: { ...settings, validationFraction: 0.00001 }, outDir, data }), /leaves 0 validation images; choosing epochs needs at least 10/);
    assert.ok(!existsSync(path.join(outDir, RECORD_FILE)));
  });

  it("a run that failed before its first epoch restarts with the corrected command, without --resume or deleting", async () => {
    const outDir = path.join(tempDir(), "run");
    await assert.rejects(trainRun({ config: withDropout, settings, outDir, data, hooks: { onBatchEnd: () => { throw killed(); } } }), /killed/);
    assert.equal((await readRecord(outDir))?.history.length, 0);
    const corrected = { ...withDropout, layers: withDropout.layers.map((l) => (l.type === "dense" && l.units === 32 ? { ...l, units: 16 } : l)) };
    const record = await trainRun({ config: corrected, settings, outDir, data });
    assert.equal(record.status, "finished");
    assert.deepEqual(record.model, corrected);
  });

  it("load errors name the file: a truncated weights.bin, a truncated model.json", async () => {
    const outDir = path.join(tempDir(), "run");
    await trainRun({ config: withDropout, settings: { ...settings, epochs: 1 }, outDir, data });
    const weights = path.join(outDir, BEST_MODEL_DIR, WEIGHTS_FILE);
    truncateSync(weights, 1001);
    await assert.rejects(loadModel(path.join(outDir, BEST_MODEL_DIR)), new RegExp(`${weights.replace(/[/.]/g, "\\$&")}: 1001 bytes where .*model\\.json describes \\d+: the weights are truncated`));
    const modelJson = path.join(outDir, CHECKPOINT_DIR, MODEL_FILE);
    truncateSync(modelJson, 300);
    await assert.rejects(loadModel(path.join(outDir, CHECKPOINT_DIR)), new RegExp(`${modelJson.replace(/[/.]/g, "\\$&")} is not a readable layers model`));
  });
});

describe("studies: validated before written, identified by content", () => {
  const spec: StudySpec = {
    name: "s", space: { dropout: { kind: "choice", values: [0.1, 0.2] } }, strategy: "halving", seed: 1, trials: 2, epochs: 2, minEpochs: 1, eta: 2,
    validationFraction: 0.2, splitSeed: 1, quick: false,
  };
  const fake: TrialRunner = async ({ params, epochs }) => ({ valAccuracy: params.dropout + epochs / 100, valLoss: 1, bestEpoch: epochs - 1, seconds: 1, backend: "fake" });

  it("an invalid plan (eta 1) or space (dropout 1.2, learning rate −0.1) fails before study.json is written", async () => {
    for (const [bad, message] of [
      [{ ...spec, eta: 1 }, /eta must be an integer ≥ 2, got 1/],
      [{ ...spec, space: { dropout: { kind: "float", low: 1.2, high: 1.5 } } }, /dropout: the range 1\.2–1\.5 leaves \[0, 1\)/],
      [{ ...spec, space: { learningRate: { kind: "logUniform", low: -0.1, high: 0.01 } } }, /learningRate: the range -0\.1–0\.01 leaves \(0, 1\)|log-uniform range needs low > 0/],
      [{ ...spec, space: { filters1: { kind: "choice", values: [0, 16] } } }, /filters1: 0 is outside \[1, ∞\)/],
    ] as [StudySpec, RegExp][]) {
      const dir = path.join(tempDir(), "study");
      await assert.rejects(runStudy(dir, bad, fake), message);
      assert.ok(!existsSync(path.join(dir, STUDY_FILE)), "nothing written");
      const fixed = await runStudy(dir, spec, fake);
      assert.equal(fixed.trials.length, 3);
    }
  });

  it("a study folder moved to a new name resumes", async () => {
    const dir = path.join(tempDir(), "study");
    await runStudy(dir, spec, fake);
    const moved = path.join(tempDir(), "renamed");
    cpSync(dir, moved, { recursive: true });
    const outcome = await runStudy(moved, { ...spec, name: "renamed" }, async () => {
      throw new Error("nothing should train");
    });
    assert.equal(outcome.trials.length, 3);
  });
});

describe("npm run tune --jobs 2", () => {
  it("killing its main process (SIGKILL) leaves no trial process running", { timeout: 180_000 }, async () => {
    const study = path.join(tempDir(), "study");
    const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "tune.ts"), "--quick", "--jobs", "2", "--trials", "2", "--epochs", "20", "--study", study], {
      cwd: ROOT, stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        // Both workers are training once each has finished an epoch.
        if ((stderr.match(/\] epoch 1\//g) ?? []).length >= 2) resolve();
      });
      child.on("exit", () => reject(new Error(`tune exited before its workers trained:\n${stderr}`)));
    });
    const workers = () => spawnSync("pgrep", ["-f", `trial-worker.ts.*${path.basename(study)}`], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
    assert.equal(workers().length, 2, "two trial workers were running");
    child.kill("SIGKILL");
    for (let i = 0; i < 40 && workers().length > 0; i++) await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(workers(), [], "no orphaned trial worker");
  });
});
