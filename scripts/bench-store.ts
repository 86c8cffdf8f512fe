/**
 * npm run bench-store -- [--storage URL] [--workers 24] [--trials 400] [--real] [--json]
 *
 * Measures the PostgreSQL study store (a benchmark, not a test):
 * - by default, a simulation: W workers (each with its own connections) claim and complete N
 *   trivial trials (no training) of one study; prints claims per second and checks that no
 *   trial was trained twice and none was lost;
 * - with --real, a short real study (random search, 6 trials of 1 epoch on the full data) made
 *   once by one worker process and once by two (one wasm thread each), side by side: trials per hour.
 * Without --storage it starts a throwaway local server (Debian's postgresql).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseCommandLine, positiveInt, runCommand, textTable, usageCheck } from "../lib/tooling/cli";
import { startLocalPostgres } from "../lib/tooling/local-postgres";
import { PROJECT_ROOT } from "../lib/tooling/paths";
import { PostgresStudyStore } from "../lib/training/postgres-store";
import { runStudyWorker } from "../lib/training/study-worker";
import { DEFAULT_SPACE, type StudySpec, type TrialRunner } from "../lib/training/tuning";
import { mkdtempSync } from "node:fs";
import os from "node:os";

const USAGE = `Usage: npm run bench-store -- [--storage URL] [--workers N] [--trials N] [--real] [--json]

  --storage URL   a PostgreSQL database to measure (default: a throwaway local server)
  --workers N     simulated workers (default 24)
  --trials N      trivial trials of the simulated study (default 400)
  --real          instead: one against two worker processes on a short real study
  --json          print JSON`;

const spec = (trials: number, quick: boolean): StudySpec => ({
  name: "bench", space: DEFAULT_SPACE, strategy: "random", seed: 1, trials, epochs: 1, validationFraction: 0.1, splitSeed: 1, quick,
});

async function simulate(url: string, workers: number, trials: number) {
  const stores = await Promise.all(Array.from({ length: workers }, () => PostgresStudyStore.open(url)));
  try {
    const name = `simulated-${Date.now()}`;
    const study = await stores[0].openStudy(name, spec(trials, true));
    const calls = new Map<number, number>();
    const runner: TrialRunner = async ({ params }) => ({ valAccuracy: params.dense / 1000 + params.dropout / 10, valLoss: 1, bestEpoch: 1, seconds: 0, backend: "none" });
    const workDir = mkdtempSync(path.join(os.tmpdir(), "bench-store-"));
    const started = performance.now();
    const outcomes = await Promise.all(stores.map((store, i) =>
      runStudyWorker(store, { ...study, name }, runner, {
        worker: `sim-${i}`, workDir, heartbeatSeconds: 5, staleSeconds: 60, pollSeconds: 0.01, reconnectSeconds: 30,
        onTrial: (t) => calls.set(t.index, (calls.get(t.index) ?? 0) + 1),
      })));
    const seconds = (performance.now() - started) / 1000;
    const stored = (await stores[0].readStudy(name))!;
    return {
      workers, trials, seconds, claimsPerSecond: trials / seconds,
      written: [...calls.values()].reduce((a, b) => a + b, 0),
      duplicates: [...calls.values()].filter((n) => n > 1).length,
      lost: trials - stored.trials.length,
      perWorker: outcomes.map((o) => o.trained.length),
    };
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
}

/** Runs `count` worker processes of `npm run tune --storage` on one study; returns its wall seconds. */
async function realStudy(url: string, name: string, count: number, log: (line: string) => void): Promise<number> {
  // The password goes by PGPASSWORD, not on the command line where `ps` would show it.
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = "";
  const study = ["--storage", parsed.toString(), "--study", name, "--strategy", "random", "--trials", "6", "--epochs", "1", "--seed", "3", "--worker"];
  const workDir = mkdtempSync(path.join(os.tmpdir(), "bench-store-real-"));
  const started = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join("scripts", "tune.ts"), ...study, "--work-dir", path.join(workDir, String(i))], {
      cwd: PROJECT_ROOT, env: { ...process.env, TFJS_WASM_THREADS: "1", ...(password ? { PGPASSWORD: password } : {}) }, stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (/trial \w+ done|this worker trained/.test(line)) log(`  [${name} worker ${i}] ${line.trim()}`);
    });
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`worker ${i} of ${name} exited with ${code}`))));
  })));
  return (performance.now() - started) / 1000;
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    { storage: { type: "string" }, workers: { type: "string" }, trials: { type: "string" }, real: { type: "boolean", default: false }, json: { type: "boolean", default: false } },
    process.argv.slice(2),
  );
  const workers = usageCheck(() => positiveInt(values.workers, "--workers", 24));
  const trials = usageCheck(() => positiveInt(values.trials, "--trials", 400));
  const log = (line: string) => process.stderr.write(line + "\n");
  const server = values.storage ? undefined : await startLocalPostgres();
  const url = values.storage ?? server!.url;
  try {
    if (values.real) {
      log("one worker process, then two (one wasm thread each), on a random study of 6 trials × 1 epoch (full data)");
      const one = await realStudy(url, `real-one-${Date.now()}`, 1, log);
      const two = await realStudy(url, `real-two-${Date.now()}`, 2, log);
      const rows = [[1, 6, one.toFixed(0), ((6 * 3600) / one).toFixed(1), "1.00×"], [2, 6, two.toFixed(0), ((6 * 3600) / two).toFixed(1), `${(one / two).toFixed(2)}×`]];
      if (values.json) process.stdout.write(JSON.stringify({ oneWorkerSeconds: one, twoWorkersSeconds: two, speedup: one / two }, null, 2) + "\n");
      else process.stdout.write(textTable(["workers", "trials", "wall s", "trials per hour", "speed-up"], rows) + "\n");
      return;
    }
    const result = await simulate(url, workers, trials);
    if (values.json) {
      process.stdout.write(JSON.stringify(result, null, 2) + "\n");
      return;
    }
    process.stdout.write(
      `${result.workers} workers, ${result.trials} trivial trials in ${result.seconds.toFixed(2)} s: ${result.claimsPerSecond.toFixed(0)} claims (claim + result) per second; ` +
        `${result.written} results written, ${result.duplicates} trials trained twice, ${result.lost} lost; trials per worker ${Math.min(...result.perWorker)}–${Math.max(...result.perWorker)}\n`,
    );
    if (result.duplicates > 0 || result.lost > 0 || result.written !== result.trials) process.exitCode = 1;
  } finally {
    await server?.stop();
  }
});
