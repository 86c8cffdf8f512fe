/** npm run tune: a quick study on the real dataset, resumed; bad options (skipped where Fashion-MNIST is absent; required in CI). */
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { unavailable } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";
import { ROOT, runScript } from "../helpers/scripts";

describe("npm run tune", async () => {
  const skip = await unavailable();

  it("runs a study, writes the best config, and a second run reads every trial back", { skip }, async () => {
    const study = path.join(tempDir(), "study");
    const space = path.join(tempDir(), "space.json");
    writeFileSync(space, JSON.stringify({ dense: { kind: "choice", values: [32, 64] }, dropout: { kind: "float", low: 0.1, high: 0.3 } }));
    const args = ["--space", space, "--strategy", "random", "--trials", "2", "--epochs", "1", "--quick", "--study", study, "--json"];
    const first = await runScript("tune.ts", args);
    assert.equal(first.code, 0, first.stderr);
    const outcome = JSON.parse(first.stdout);
    assert.equal(outcome.trials.length, 2);
    assert.match(first.stderr, /trial 1 of 2: val acc [\d.]+ at 1 epochs \| best so far/);
    const trials = readFileSync(path.join(study, "trials.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(trials.length, 2);
    // One epoch of 16 steps: ~0.34–0.47 measured over runs (weights are initialised unseeded); chance is 0.1.
    assert.ok(trials.every((t) => t.valAccuracy > 0.2 && t.backend), `trained for real on the validation split: ${trials.map((t) => t.valAccuracy)}`);
    const best = JSON.parse(readFileSync(path.join(study, "best-model.json"), "utf8"));
    assert.equal(best.layers.find((l: { type: string; units?: number }) => l.type === "dense").units, outcome.best.params.dense);
    assert.match(outcome.trainCommand, /npm run train -- --model .*best-model\.json --lr 0\.001 --batch-size 128/);

    const again = await runScript("tune.ts", args);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((again.stderr.match(/\(read back\)/g) ?? []).length, 2);
    assert.doesNotMatch(again.stderr, /epoch 1\/1/, "nothing was trained again");

    // --report reads the study, training nothing: its trials in order with the best so far, and the choice.
    const report = await runScript("tune.ts", ["--study", study, ...args.slice(0, 9), "--report"]);
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stdout, /2 trials finished/);
    assert.match(report.stdout, /#\s+trial\s+rung\s+epochs\s+dense\s+dropout\s+val acc\s+best so far/);
    assert.match(report.stdout, new RegExp(`best: ${outcome.best.key} .*\nretrain: npm run train -- --model `));
    assert.doesNotMatch(report.stderr, /epoch 1\/1/);
  });

  it("--architecture same trains and exports the 'same'-padded network", { skip }, async () => {
    const study = path.join(tempDir(), "same");
    const space = path.join(tempDir(), "space.json");
    writeFileSync(space, JSON.stringify({ dense: { kind: "choice", values: [32] } }));
    const result = await runScript("tune.ts", ["--space", space, "--strategy", "grid", "--epochs", "1", "--quick", "--architecture", "same", "--study", study, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(readFileSync(path.join(study, "study.json"), "utf8")).architecture, "same");
    const best = JSON.parse(readFileSync(path.join(study, "best-model.json"), "utf8"));
    assert.equal(best.layers.filter((l: { type: string }) => l.type === "maxPool2d").length, 3);
    assert.ok(best.layers.filter((l: { type: string }) => l.type === "conv2d").every((l: { padding?: string }) => l.padding === "same"));
  });

  it("--jobs 2 trains two trials at once in their own processes, each with half the cores as wasm threads", { skip }, async () => {
    const threads = Math.max(1, Math.floor(os.availableParallelism() / 2));
    const study = path.join(tempDir(), "jobs");
    const space = path.join(tempDir(), "space.json");
    writeFileSync(space, JSON.stringify({ dense: { kind: "choice", values: [32, 64] } }));
    const result = await runScript("tune.ts", ["--space", space, "--strategy", "grid", "--epochs", "1", "--quick", "--jobs", "2", "--study", study, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`2 jobs, ${threads} wasm threads? each`));
    assert.match(result.stderr, /\[[0-9a-f]{12}\] epoch 1\/1: val acc/);
    const outcome = JSON.parse(result.stdout);
    assert.deepEqual(outcome.trials.map((t: { params: { dense: number } }) => t.params.dense), [32, 64]);
    for (const trial of outcome.trials) {
      const record = JSON.parse(readFileSync(path.join(study, "trials", trial.key, "record.json"), "utf8"));
      assert.equal(record.backend.threads, threads);
      assert.ok(trial.valAccuracy > 0.2, `val acc ${trial.valAccuracy} (chance 0.1)`);
    }
  });

  it("stopping a --jobs study stops its trial processes too", { skip: skip || process.platform !== "linux" }, async () => {
    const space = path.join(tempDir(), "space.json");
    writeFileSync(space, JSON.stringify({ dense: { kind: "choice", values: [32, 64] } }));
    const args = ["--space", space, "--strategy", "grid", "--epochs", "20", "--quick", "--jobs", "2", "--study", path.join(tempDir(), "stopped")];
    const parent = spawn(process.execPath, ["--import", "tsx", path.join("scripts", "tune.ts"), ...args], { cwd: ROOT, stdio: "ignore" });
    // Trial processes only: tsx may run a child of its own (esbuild) when its cache is cold.
    const trialWorkersOf = (pid: number): number[] => {
      try {
        const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
        return children.filter((child) => {
          try {
            return readFileSync(`/proc/${child}/cmdline`, "utf8").includes("trial-worker.ts");
          } catch {
            return false;
          }
        });
      } catch {
        return [];
      }
    };
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    let workers: number[] = [];
    for (let waited = 0; workers.length < 2 && waited < 60_000; waited += 200) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      workers = trialWorkersOf(parent.pid!);
    }
    try {
      assert.equal(workers.length, 2, "two trial processes started");
      const exited = new Promise<number | null>((resolve) => parent.on("exit", (code) => resolve(code)));
      parent.kill("SIGTERM");
      assert.equal(await exited, 143);
      for (let waited = 0; workers.some(alive) && waited < 10_000; waited += 200) await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(workers.filter(alive), [], "no trial process left running");
    } finally {
      // Whatever the outcome, leave nothing training behind.
      for (const pid of [parent.pid!, ...workers].filter(alive)) process.kill(pid, "SIGKILL");
    }
  });

  it("bad options are usage errors with a message", async () => {
    const cases: [string[], RegExp][] = [
      [["--strategy", "bayes"], /--strategy must be one of grid, random, halving, got "bayes"/],
      [["--budget", "5x"], /--budget must look like 90m \(minutes\) or 60ep \(epochs\), got "5x"/],
      [["--trials", "0"], /--trials must be a positive integer, got "0"/],
      [["--space", "/nonexistent.json"], /--space \/nonexistent\.json: no such file/],
      [["--architecture", "wide"], /--architecture must be one of capstone, same, double, got "wide"/],
      [["--jobs", "0"], /--jobs must be a positive integer, got "0"/],
      [["--experiment", "tune-same", "--trials", "3"], /--experiment takes the study's options and name from its declaration/],
      [["--experiment", "cnn3"], /--experiment cnn3 is a run, not a study/],
      [["--experiment", "no-such-study"], /no-such-study/],
      [["--profile", "quick"], /--profile goes with --experiment NAME/],
      [["--worker"], /--worker is for a study in PostgreSQL: give --storage URL too/],
    ];
    for (const [args, message] of cases) {
      const result = await runScript("tune.ts", args);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    const space = path.join(tempDir(), "space.json");
    writeFileSync(space, JSON.stringify({ dropout: { kind: "float", low: 0.6, high: 0.2 } }));
    const invalid = await runScript("tune.ts", ["--space", space, "--strategy", "grid"]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /dropout: low 0\.6 is above high 0\.2/);
  });
});
