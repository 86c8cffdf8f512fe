import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { initBackend } from "../../lib/accelerator";
import { buildModel, presetModel } from "../../lib/models/builder";
import {
  gridPoints,
  halvingPlan,
  randomPoints,
  readSpace,
  readTrials,
  runStudy,
  trialKey,
  tunableModelConfig,
  validateStudy,
  validateSpace,
  withDefaults,
  TUNABLE_DEFAULTS,
  type SearchSpace,
  type StudySpec,
  type TrialRunner,
} from "../../lib/training/tuning";
import { tempDir } from "../helpers/idx";

const space: SearchSpace = {
  filters1: { kind: "choice", values: [16, 32] },
  dense: { kind: "int", low: 64, high: 192, step: 64 },
  augment: { kind: "choice", values: [false, true] },
};

/** A synthetic objective: validation accuracy grows with dense width and epochs; no training. */
function fakeRunner(calls: string[], failOnCall?: number): TrialRunner {
  return async ({ key, params, epochs }) => {
    calls.push(key);
    if (failOnCall !== undefined && calls.length === failOnCall) throw new Error("killed mid-trial");
    return { valAccuracy: params.dense / 1000 + epochs / 100 + (params.augment ? 0.001 : 0), valLoss: 1, bestEpoch: epochs - 1, seconds: 1, backend: "none" };
  };
}

const baseSpec = (extra: Partial<StudySpec>): StudySpec => ({
  name: "test",
  space,
  strategy: "random",
  seed: 3,
  trials: 4,
  epochs: 2,
  validationFraction: 0.1,
  splitSeed: 42,
  quick: true,
  ...extra,
});

describe("search spaces", () => {
  it("grid enumerates exactly the product of the choices and int steps", () => {
    const points = gridPoints(space);
    assert.equal(points.length, 2 * 3 * 2);
    assert.equal(new Set(points.map((p) => JSON.stringify(p))).size, 12, "no duplicates");
    assert.deepEqual(new Set(points.map((p) => p.dense)), new Set([64, 128, 192]));
    assert.deepEqual(points[0], { filters1: 16, dense: 64, augment: false });
    assert.throws(() => gridPoints({ dropout: { kind: "float", low: 0, high: 0.5 } }), /Grid search needs choice or int parameters; dropout is a float range/);
  });

  it("random search is reproducible by seed and stays inside the ranges", () => {
    const wide: SearchSpace = { ...space, dropout: { kind: "float", low: 0.1, high: 0.5 }, learningRate: { kind: "logUniform", low: 1e-4, high: 1e-2 } };
    const a = randomPoints(wide, 20, 7);
    assert.deepEqual(randomPoints(wide, 20, 7), a);
    assert.notDeepEqual(randomPoints(wide, 20, 8), a);
    for (const p of a) {
      assert.ok(p.dropout! >= 0.1 && p.dropout! < 0.5);
      assert.ok(p.learningRate! >= 1e-4 && p.learningRate! <= 1e-2);
      assert.ok([64, 128, 192].includes(p.dense!));
    }
  });

  it("rejects bad spaces with a message naming the parameter", () => {
    const bad: [unknown, RegExp][] = [
      [{}, /The search space is empty/],
      [{ filters1: { kind: "choice", values: [] } }, /filters1: a choice needs at least one value/],
      [{ dropout: { kind: "float", low: 0.5, high: 0.1 } }, /dropout: low 0\.5 is above high 0\.1/],
      [{ learningRate: { kind: "logUniform", low: 0, high: 1 } }, /learningRate: a log-uniform range needs low > 0/],
      [{ dense: { kind: "int", low: 1.5, high: 3 } }, /dense: an int range needs integer bounds/],
      [{ width: { kind: "choice", values: [1] } }, /Unknown parameter "width"/],
      [{ augment: { kind: "choice", values: ["yes"] } }, /augment: "yes" is not a boolean/],
      [{ batchNorm: { kind: "int", low: 0, high: 1 } }, /batchNorm: int ranges need a numeric parameter/],
      [{ dense: { kind: "gaussian" } }, /dense: unknown kind "gaussian"/],
    ];
    for (const [candidate, message] of bad) assert.throws(() => validateSpace(candidate as SearchSpace), message);
  });
});

describe("successive halving", () => {
  it("keeps 1/eta of the configurations per rung and multiplies their epochs by eta", () => {
    assert.deepEqual(halvingPlan(27, 1, 9, 3), [
      { configs: 27, epochs: 1 },
      { configs: 9, epochs: 3 },
      { configs: 3, epochs: 9 },
    ]);
    assert.deepEqual(halvingPlan(8, 1, 100, 2), [
      { configs: 8, epochs: 1 },
      { configs: 4, epochs: 2 },
      { configs: 2, epochs: 4 },
      { configs: 1, epochs: 8 },
    ]);
    assert.deepEqual(halvingPlan(10, 2, 5, 3), [
      { configs: 10, epochs: 2 },
      { configs: 3, epochs: 5 },
    ], "epochs are capped at maxEpochs");
    assert.throws(() => halvingPlan(10, 3, 2), /maxEpochs must be an integer ≥ minEpochs \(3\), got 2/);
  });

  it("promotes the best trials of each rung", async () => {
    const calls: string[] = [];
    const outcome = await runStudy(tempDir(), baseSpec({ strategy: "halving", trials: 9, minEpochs: 1, epochs: 3, eta: 3 }), fakeRunner(calls));
    assert.equal(outcome.trials.length, 9 + 3);
    const rung0 = outcome.trials.filter((t) => t.rung === 0);
    const rung1 = outcome.trials.filter((t) => t.rung === 1);
    assert.ok(rung0.every((t) => t.epochs === 1) && rung1.every((t) => t.epochs === 3));
    const top3 = [...rung0].sort((a, b) => b.valAccuracy - a.valAccuracy || a.index - b.index).slice(0, 3).map((t) => JSON.stringify(t.params));
    assert.deepEqual(rung1.map((t) => JSON.stringify(t.params)), top3);
    assert.equal(outcome.best.epochs, 3, "the best is judged at the longest training");
  });
});

describe("study progress", () => {
  // 9 configurations × 1 epoch, then 3 × 3: 18 trial-epochs; every epoch takes 2 s.
  const etasOf = async (jobs: number): Promise<number[]> => {
    const etas: number[] = [];
    await runStudy(tempDir(), baseSpec({ strategy: "halving", trials: 9, minEpochs: 1, epochs: 3, eta: 3 }),
      async ({ params, epochs }) => ({ valAccuracy: params.dense / 1000, valLoss: 1, bestEpoch: epochs - 1, seconds: 2 * epochs, backend: "none" }),
      (p) => etas.push(p.etaSeconds), { jobs });
    return etas;
  };

  it("estimates the time left from the plan's remaining epochs, longer later rungs included", async () => {
    assert.deepEqual(await etasOf(1), [34, 32, 30, 28, 26, 24, 22, 20, 18, 12, 6, 0]);
  });

  it("shares the time left between parallel jobs", async () => {
    assert.deepEqual(await etasOf(2), [17, 16, 15, 14, 13, 12, 11, 10, 9, 6, 3, 0]);
  });
});

describe("parallel trials", () => {
  /** A fake runner that takes `ms` per trial and counts how many run at once. */
  function concurrentRunner(ms: number, failKey?: string) {
    const state = { running: 0, most: 0, calls: [] as string[] };
    const runner: TrialRunner = async ({ key, params, epochs }) => {
      state.calls.push(key);
      state.running++;
      state.most = Math.max(state.most, state.running);
      await new Promise((resolve) => setTimeout(resolve, ms * (1 + (params.dense % 3))));
      state.running--;
      if (key === failKey) throw new Error("killed mid-trial");
      return { valAccuracy: params.dense / 1000 + epochs / 100, valLoss: 1, bestEpoch: epochs - 1, seconds: epochs, backend: "none" };
    };
    return { runner, state };
  }
  const halving = baseSpec({ strategy: "halving", trials: 9, minEpochs: 1, epochs: 3, eta: 3 });
  const summary = (trials: { key: string; index: number; rung: number; valAccuracy: number }[]) =>
    trials.map((t) => `${t.index}:${t.rung}:${t.key}:${t.valAccuracy}`);

  it("jobs = 2 runs two trials at a time and gives the outcome of one job", async () => {
    const one = await runStudy(tempDir(), halving, concurrentRunner(1).runner);
    const dir = tempDir();
    const { runner, state } = concurrentRunner(5);
    const two = await runStudy(dir, halving, runner, undefined, { jobs: 2 });
    assert.equal(state.most, 2);
    assert.deepEqual(summary(two.trials), summary(one.trials));
    assert.equal(two.best.key, one.best.key);
    const onDisk = await readTrials(dir);
    // A configuration drawn twice is trained (and appended) once.
    assert.deepEqual(onDisk.map((t) => t.key).sort(), [...new Set(two.trials.map((t) => t.key))].sort(), "every trial appended once, none lost to a concurrent write");
    assert.equal(state.calls.length, onDisk.length);
  });

  it("a trial failing beside another: the other is kept, and the study resumes from there", async () => {
    const dir = tempDir();
    const points = await runStudy(tempDir(), halving, concurrentRunner(1).runner);
    // The first configuration from the fourth on that was not drawn before it.
    const failingAt = points.trials.findIndex((t, i) => i >= 3 && !points.trials.slice(0, i).some((u) => u.key === t.key));
    const failing = points.trials[failingAt].key;
    const { runner, state } = concurrentRunner(5, failing);
    await assert.rejects(runStudy(dir, halving, runner, undefined, { jobs: 2 }), /killed mid-trial/);
    const kept = (await readTrials(dir)).map((t) => t.key);
    assert.ok(!kept.includes(failing));
    // The trials started before the failing one finish (the one beside it included) and are kept.
    assert.ok(points.trials.slice(0, failingAt).every((t) => kept.includes(t.key)), `finished trials kept: ${kept.length}`);
    const again = concurrentRunner(1);
    const outcome = await runStudy(dir, halving, again.runner, undefined, { jobs: 2 });
    assert.ok(again.state.calls.every((key) => !kept.includes(key)), "nothing finished is trained again");
    assert.ok(again.state.calls.includes(failing));
    assert.equal(outcome.trials.length, 12);
    assert.equal(state.most, 2);
  });

  it("tells each trial how many train beside it: a rung's last trial left alone trains by itself", async () => {
    const grid = baseSpec({ strategy: "grid", space: { dense: { kind: "choice", values: [32, 64, 96] } }, epochs: 1 });
    const seen: string[] = [];
    // dense 64 takes longest, so 96 starts while 64 still trains.
    const runner: TrialRunner = async ({ params, concurrent }) => {
      seen.push(`${params.dense}:${concurrent}`);
      await new Promise((resolve) => setTimeout(resolve, params.dense === 64 ? 60 : 5));
      return { valAccuracy: params.dense / 1000, valLoss: 1, bestEpoch: 0, seconds: 1, backend: "none" };
    };
    await runStudy(tempDir(), grid, runner, undefined, { jobs: 2 });
    assert.deepEqual(seen, ["32:2", "64:2", "96:2"]);
    seen.length = 0;
    // Two workers starting together count each other (both claim before either trains).
    await runStudy(tempDir(), { ...grid, space: { dense: { kind: "choice", values: [32, 64] } } }, runner, undefined, { jobs: 2 });
    assert.deepEqual(seen, ["32:2", "64:2"]);
    // Resumed with two of the three finished: the last one trains alone.
    const dir = tempDir();
    await assert.rejects(runStudy(dir, grid, async (trial) => {
      if (trial.params.dense === 96) throw new Error("killed");
      return runner(trial);
    }, undefined, { jobs: 2 }), /killed/);
    seen.length = 0;
    await runStudy(dir, grid, runner, undefined, { jobs: 2 });
    assert.deepEqual(seen, ["96:1"]);
    seen.length = 0;
    await runStudy(tempDir(), grid, runner);
    assert.deepEqual(seen, ["32:1", "64:1", "96:1"], "one job: always alone");
  });

  it("rejects a job count that is not a positive integer", async () => {
    await assert.rejects(runStudy(tempDir(), halving, concurrentRunner(1).runner, undefined, { jobs: 0 }), /jobs must be a positive integer, got 0/);
  });
});

describe("studies", () => {
  it("a study killed mid-trial resumes without re-running finished trials", async () => {
    const dir = tempDir();
    const spec = baseSpec({ strategy: "grid", trials: undefined, epochs: 1 });
    const firstCalls: string[] = [];
    await assert.rejects(runStudy(dir, spec, fakeRunner(firstCalls, 5)), /killed mid-trial/);
    assert.equal((await readTrials(dir)).length, 4, "the four finished trials are on disk");
    const secondCalls: string[] = [];
    const reused: boolean[] = [];
    const outcome = await runStudy(dir, spec, fakeRunner(secondCalls), (p) => reused.push(p.reused));
    assert.equal(outcome.trials.length, 12);
    assert.deepEqual(secondCalls, firstCalls.slice(4).concat(secondCalls.slice(1)), "the killed trial runs again, first");
    assert.equal(secondCalls.length, 8);
    assert.ok(firstCalls.slice(0, 4).every((key) => !secondCalls.includes(key)), "finished trials are not re-run");
    assert.deepEqual(reused, [true, true, true, true, ...new Array(8).fill(false)]);
    const lines = readFileSync(path.join(dir, "trials.jsonl"), "utf8").trim().split("\n");
    assert.equal(lines.length, 12);
    assert.equal(outcome.best.params.dense, 192);
  });

  it("a different study in the same folder is an error; budgets stop a study early", async () => {
    const dir = tempDir();
    await runStudy(dir, baseSpec({}), fakeRunner([]));
    await assert.rejects(runStudy(dir, baseSpec({ seed: 4 }), fakeRunner([])), /holds a different study/);
    // The same study declared with its keys in another order (e.g. by a notebook) is the same study.
    const reordered = Object.fromEntries(Object.entries(baseSpec({})).reverse()) as unknown as StudySpec;
    const again: string[] = [];
    await runStudy(dir, reordered, fakeRunner(again));
    assert.equal(again.length, 0, "nothing re-run");
    const calls: string[] = [];
    const limited = await runStudy(tempDir(), baseSpec({ trials: 10, epochs: 2, budget: { epochs: 5 } }), fakeRunner(calls));
    assert.equal(calls.length, 2, "two 2-epoch trials fit in 5 epochs");
    assert.equal(limited.stoppedBy, "budget-epochs");
  });

  it("reads a space from a JSON file, naming the file in every error", async () => {
    const dir = tempDir();
    const file = (name: string, text: string) => {
      writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    assert.deepEqual(await readSpace(file("good.json", JSON.stringify(space))), space);
    await assert.rejects(readSpace(path.join(dir, "missing.json")), /missing\.json: no such file/);
    await assert.rejects(readSpace(file("bad.json", "{ dense: 1")), /bad\.json: not JSON/);
    await assert.rejects(readSpace(file("empty.json", JSON.stringify({ dense: { kind: "choice", values: [] } }))), /empty\.json: dense: a choice needs at least one value/);
  });

  it("trial keys depend on parameters and epochs only", () => {
    const params = withDefaults({ dense: 64 });
    assert.equal(trialKey(params, 3), trialKey({ ...TUNABLE_DEFAULTS, dense: 64 }, 3));
    assert.notEqual(trialKey(params, 3), trialKey(params, 4));
  });
});

describe("the tunable CNN", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("with the defaults it is the capstone 3-block CNN (241,546 parameters)", () => {
    const model = buildModel(tunableModelConfig(withDefaults({})));
    assert.equal(model.countParams(), 241_546);
    model.dispose();
  });

  it("widths, L2 and batch norm change the network", () => {
    const config = tunableModelConfig(withDefaults({ filters1: 16, dense: 64, l2: 1e-4, batchNorm: true }));
    assert.equal(config.layers.filter((l) => l.type === "batchNorm").length, 4);
    assert.ok(config.layers.filter((l) => l.type === "conv2d" || l.type === "dense").slice(0, 4).every((l) => "l2" in l && l.l2 === 1e-4));
    const model = buildModel(config);
    assert.ok(model.countParams() < 241_546);
    model.dispose();
  });

  it("the 'same' architecture with batch norm and dense 256 has cnn-bn3's layout and parameters", () => {
    const config = tunableModelConfig(withDefaults({ dense: 256, batchNorm: true }), "t", "same");
    assert.ok(config.layers.filter((l) => l.type === "conv2d").every((l) => l.type === "conv2d" && l.padding === "same"));
    assert.equal(config.layers.filter((l) => l.type === "maxPool2d").length, 3);
    const model = buildModel(config);
    const reference = buildModel(presetModel("cnn-bn3"));
    assert.deepEqual(model.outputs[0].shape, [null, 10]);
    assert.equal(model.countParams(), reference.countParams());
    model.dispose();
    reference.dispose();
    assert.throws(() => tunableModelConfig(withDefaults({}), "t", "resnet" as never), /Unknown architecture "resnet"; known: capstone, same, double/);
  });

  it("the 'double' architecture repeats each block's convolution (with its batch norm) once more", () => {
    const params = withDefaults({ filters1: 16, filters2: 24, filters3: 40, dense: 64, batchNorm: true });
    const double = tunableModelConfig(params, "t", "double");
    const convs = double.layers.filter((l) => l.type === "conv2d");
    assert.deepEqual(convs.map((l) => l.type === "conv2d" && l.filters), [16, 16, 24, 24, 40, 40]);
    assert.ok(convs.every((l) => l.type === "conv2d" && l.padding === "same"));
    assert.equal(double.layers.filter((l) => l.type === "maxPool2d").length, 3);
    assert.equal(double.layers.filter((l) => l.type === "batchNorm").length, 7);
    const [model, single] = [buildModel(double), buildModel(tunableModelConfig(params, "t", "same"))];
    // Each extra conv f→f: 9·f·f weights + f biases, and its batch norm 4·f.
    const extra = [16, 24, 40].reduce((sum, f) => sum + 9 * f * f + f + 4 * f, 0);
    assert.equal(model.countParams(), single.countParams() + extra);
    assert.deepEqual(model.outputs[0].shape, [null, 10]);
    model.dispose();
    single.dispose();
  });

  it("a study spec is checked for its architecture", () => {
    assert.throws(() => validateStudy(baseSpec({ architecture: "wide" as never })), /architecture must be one of capstone, same, double, got "wide"/);
    assert.doesNotThrow(() => validateStudy(baseSpec({ architecture: "same" })));
    assert.doesNotThrow(() => validateStudy(baseSpec({ architecture: "double" })));
  });
});
