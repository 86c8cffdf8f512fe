/**
 * `npm run tune -- --storage URL --worker` end to end: worker processes training real trials
 * (quick subsets of Fashion-MNIST, a tiny search space) against a real PostgreSQL started here.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startLocalPostgres, type LocalPostgres } from "../../lib/tooling/local-postgres";
import { PostgresStudyStore } from "../../lib/training/postgres-store";
import type { TrialResult } from "../../lib/training/tuning";
import { ROOT, runScript } from "../helpers/scripts";
import { tempDir } from "../helpers/idx";

const work = tempDir();
const spaceFile = path.join(work, "tiny-space.json");
writeFileSync(spaceFile, JSON.stringify({
  filters1: { kind: "choice", values: [4, 8] },
  filters2: { kind: "choice", values: [8] },
  filters3: { kind: "choice", values: [8] },
  dense: { kind: "choice", values: [16, 32] },
  learningRate: { kind: "logUniform", low: 1e-3, high: 3e-3 },
}));
// Halving: 4 configurations for 1 epoch, the best one for 2 (5 trials).
const STUDY = ["--space", spaceFile, "--strategy", "halving", "--trials", "4", "--min-epochs", "1", "--epochs", "2", "--eta", "4", "--seed", "7", "--quick"];
// One wasm thread per worker: as `--jobs` does, and the same arithmetic in every process.
const ENV = { ...process.env, TFJS_WASM_THREADS: "1" };

/** A worker process; with passwordByEnvironment, the URL carries no password and PGPASSWORD does. */
function startWorker(url: string, study: string, extra: string[] = [], passwordByEnvironment = false): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const parsed = new URL(url);
  const env = passwordByEnvironment ? { ...ENV, PGPASSWORD: decodeURIComponent(parsed.password) } : ENV;
  if (passwordByEnvironment) parsed.password = "";
  const child = spawn(process.execPath, ["--import", "tsx", path.join("scripts", "tune.ts"), "--storage", parsed.toString(), "--study", study, ...STUDY, "--worker", "--json", ...extra], { cwd: ROOT, env });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

/** Waits until a worker trains a trial of the study (a minute at most). */
async function untilRunning(store: PostgresStudyStore, study: string): Promise<void> {
  for (let waited = 0; ; waited += 200) {
    const stored = await store.readStudy(study);
    if (stored && stored.running.length > 0) return;
    assert.ok(waited < 60_000, `no worker claimed a trial of "${study}" in a minute`);
    await sleep(200);
  }
}

const scores = (trials: TrialResult[]) => trials.map((t) => ({ index: t.index, key: t.key, epochs: t.epochs, valAccuracy: t.valAccuracy, valLoss: t.valLoss }));

describe("npm run tune --storage: workers in PostgreSQL", () => {
  let server: LocalPostgres;
  let inFiles: { trials: TrialResult[]; best: TrialResult };
  before(async () => {
    server = await startLocalPostgres();
    const result = await runScript("tune.ts", ["--study", path.join(work, "files"), ...STUDY, "--json"], ENV);
    assert.equal(result.code, 0, result.stderr);
    inFiles = JSON.parse(result.stdout);
  });
  after(async () => {
    await server?.stop();
  });

  it("three worker processes (one with its password in PGPASSWORD) finish a study with every trial trained once, the same outcome as one process with files", async () => {
    const workers = [0, 1, 2].map((i) => startWorker(server.url, "three", ["--work-dir", path.join(work, `three-${i}`)], i === 2));
    const exits = await Promise.all(workers.map((w) => w.done));
    for (const exit of exits) assert.equal(exit.code, 0, exit.stderr);
    const trained = exits.map((exit) => Number(/this worker trained (\d+) trial/.exec(exit.stderr)?.[1]));
    assert.equal(trained.reduce((a, b) => a + b, 0), 5, `trials per worker: ${trained.join(", ")}`);
    const store = await PostgresStudyStore.open(server.url);
    try {
      const stored = (await store.readStudy("three"))!;
      assert.equal(stored.finished, true);
      assert.deepEqual([...stored.attempts.values()], [1, 1, 1, 1, 1], "each trial claimed once");
      assert.deepEqual(scores(stored.trials), scores(inFiles.trials), "trials and scores equal the file store's");
      assert.equal(stored.best!.key, inFiles.best.key);
    } finally {
      await store.close();
    }
    const report = JSON.parse(exits[0].stdout);
    assert.equal(report.best.key, inFiles.best.key, "a worker's report names the choice");
    assert.match(report.trainCommand, /npm run train -- --model .*best-model\.json --lr /);
    // Any machine reads the study back: the report command, training nothing.
    const read = await runScript("tune.ts", ["--storage", server.url, "--study", "three", "--report", "--work-dir", path.join(work, "reader")], ENV);
    assert.equal(read.code, 0, read.stderr);
    assert.match(read.stdout, /5 of 5 trials finished; finished/);
    assert.match(read.stdout, /best so far/);
    assert.match(read.stdout, new RegExp(`best: ${inFiles.best.key}`));
    assert.doesNotMatch(read.stdout + read.stderr, /local-test-password/, "the password is never printed");
  });

  it("a worker SIGKILLed mid-trial has its trial re-queued and finished by another", async () => {
    const victim = startWorker(server.url, "killed", ["--heartbeat-timeout", "3", "--work-dir", path.join(work, "victim")]);
    const store = await PostgresStudyStore.open(server.url);
    try {
      // Wait until the victim trains its first trial, then kill it without warning.
      await untilRunning(store, "killed");
      victim.child.kill("SIGKILL");
      await victim.done;
      const lost = (await store.readStudy("killed"))!;
      assert.equal(lost.trials.length, 0, "the victim finished nothing");
      const rescuer = await startWorker(server.url, "killed", ["--heartbeat-timeout", "3", "--work-dir", path.join(work, "rescuer")]).done;
      assert.equal(rescuer.code, 0, rescuer.stderr);
      assert.match(rescuer.stderr, /re-queued 1 trial whose worker stopped heartbeating/);
      const stored = (await store.readStudy("killed"))!;
      assert.equal(stored.finished, true);
      assert.equal(stored.attempts.get(0), 2, "the victim's trial was trained again");
      assert.deepEqual(scores(stored.trials), scores(inFiles.trials), "the same outcome");
    } finally {
      await store.close();
    }
  });

  it("a worker stopped by SIGTERM gives its trial back at once, without waiting for the heartbeat timeout", async () => {
    const stopped = startWorker(server.url, "stopped", ["--heartbeat-timeout", "600", "--work-dir", path.join(work, "stopped")]);
    const store = await PostgresStudyStore.open(server.url);
    try {
      await untilRunning(store, "stopped");
      stopped.child.kill("SIGTERM");
      const exit = await stopped.done;
      assert.equal(exit.code, 143, exit.stderr);
      assert.match(exit.stderr, /stopped by SIGTERM; trial \w+ goes back to the queue/);
      const stored = (await store.readStudy("stopped"))!;
      assert.deepEqual(stored.running, [], "no trial left running");
      assert.equal(stored.trials.length, 0);
    } finally {
      await store.close();
    }
  });

  it("stops with a clear message on a wrong URL, a server that is down, or other options than the study's", async () => {
    const cases: [string[], RegExp][] = [
      [["--storage", "http://example/x", "--study", "s", "--worker"], /--storage must be a postgresql:\/\/ URL/],
      [["--storage", "postgresql://me:hidden@127.0.0.1:1/studies", "--study", "s", "--worker"], /Cannot reach PostgreSQL at postgresql:\/\/me@127\.0\.0\.1:1\/studies/],
      [["--storage", server.url, "--study", "three", ...STUDY.map((a) => (a === "7" ? "8" : a)), "--worker"], /"three" .* was created with other options \((seed, splitSeed|splitSeed, seed) differ\)/],
      [["--storage", server.url, "--study", "unknown", "--worker"], /No study "unknown" .*: give its options/],
      [["--worker", "--study", "x"], /--worker is for a study in PostgreSQL: give --storage URL too/],
      [["--storage", server.url, "--study", "three", "--jobs", "2"], /with --storage start one worker per core/],
    ];
    for (const [args, message] of cases) {
      const result = await runScript("tune.ts", args, ENV);
      assert.notEqual(result.code, 0, args.join(" "));
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /hidden|local-test-password/);
    }
  });
});
