/**
 * The PostgreSQL study store against a real server (Debian's postgresql, started here in a
 * temporary folder on loopback): schema, claims, heartbeats, re-queueing, promotion, outages.
 * Trials are a synthetic objective (no training): the coordination is what is tested here;
 * test/scripts/tune-workers.test.ts trains real trials in worker processes.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { startLocalPostgres, type LocalPostgres } from "../../lib/tooling/local-postgres";
import { checkStorageUrl, PostgresStudyStore, redactUrl, SCHEMA_VERSION } from "../../lib/training/postgres-store";
import { runStudyWorker, type WorkerOptions } from "../../lib/training/study-worker";
import { runStudy, type SearchSpace, type StudySpec, type TrialRunner } from "../../lib/training/tuning";
import { tempDir } from "../helpers/idx";
import path from "node:path";
import { ensureStudy, loadDeclarations, storedStudyName, studySpecOf, type StudyDeclaration } from "../../lib/training/declarations";
import { readSpace } from "../../lib/training/tuning";
import { PROJECT_ROOT } from "../../lib/tooling/paths";

const space: SearchSpace = {
  filters1: { kind: "choice", values: [16, 32] },
  dense: { kind: "int", low: 64, high: 192, step: 64 },
  dropout: { kind: "float", low: 0.1, high: 0.5 },
};

const halving: StudySpec = { name: "halving", space, strategy: "halving", seed: 5, trials: 9, minEpochs: 1, epochs: 3, eta: 3, validationFraction: 0.1, splitSeed: 42, quick: true };

/** A random search of `trials` one-epoch trials. */
const randomStudy = (trials: number, extra: Partial<StudySpec> = {}): StudySpec => ({ ...halving, strategy: "random", trials, epochs: 1, minEpochs: undefined, eta: undefined, ...extra });

/** A synthetic objective (no training); counts calls per trial key. */
function objective(calls: Map<string, number>, delayMs = 0): TrialRunner {
  return async ({ key, params, epochs }) => {
    calls.set(key, (calls.get(key) ?? 0) + 1);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    return { valAccuracy: params.dense / 1000 + epochs / 100 + params.dropout / 10, valLoss: 1 - params.dropout, bestEpoch: epochs, seconds: 1, backend: "none" };
  };
}

const workerOptions = (name: string, extra: Partial<WorkerOptions> = {}): WorkerOptions => ({
  worker: name, workDir: tempDir(), heartbeatSeconds: 0.2, staleSeconds: 30, pollSeconds: 0.05, reconnectSeconds: 20, ...extra,
});

describe("PostgreSQL study store", () => {
  let server: LocalPostgres;
  before(async () => {
    server = await startLocalPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  it("creates its schema once, however many workers start at once, and refuses a newer one", async () => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStudyStore.open(server.url)));
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      assert.deepEqual((await client.query("SELECT version FROM study_schema")).rows, [{ version: SCHEMA_VERSION }]);
      assert.equal(await stores[0].migrate(), SCHEMA_VERSION, "already up to date");
      await client.query("UPDATE study_schema SET version = $1", [SCHEMA_VERSION + 1]);
      await assert.rejects(PostgresStudyStore.open(server.url), new RegExp(`schema is version ${SCHEMA_VERSION + 1}, newer than this project's ${SCHEMA_VERSION}`));
      await client.query("UPDATE study_schema SET version = $1", [SCHEMA_VERSION]);
    } finally {
      await client.end();
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it("six workers finish a halving study with each trial trained once, and its outcome equals the file store's", async () => {
    const fileCalls = new Map<string, number>();
    const inFiles = await runStudy(tempDir(), halving, objective(fileCalls));
    const calls = new Map<string, number>();
    const stores = await Promise.all(Array.from({ length: 6 }, () => PostgresStudyStore.open(server.url)));
    try {
      const study = await stores[0].openStudy("six-workers", halving);
      assert.equal(study.created, true);
      const outcomes = await Promise.all(stores.map((store, i) => runStudyWorker(store, { ...study, name: "six-workers" }, objective(calls, 20), workerOptions(`w${i}`))));
      const stored = (await stores[0].readStudy("six-workers"))!;
      assert.equal(stored.finished, true);
      assert.equal(stored.trials.length, 9 + 3, "rungs of 9 trials at 1 epoch and 3 at 3");
      assert.deepEqual([...calls.values()].filter((n) => n !== 1), [], "no trial trained twice");
      assert.equal(outcomes.reduce((sum, o) => sum + o.trained.length, 0), stored.trials.length, "every trial written by exactly one worker");
      const strip = (t: { key: string; index: number; rung: number; params: unknown; epochs: number; valAccuracy: number; valLoss: number }) =>
        ({ key: t.key, index: t.index, rung: t.rung, params: t.params, epochs: t.epochs, valAccuracy: t.valAccuracy, valLoss: t.valLoss });
      assert.deepEqual(stored.trials.map(strip), inFiles.trials.map(strip), "the same trials, rungs and scores as one process with files");
      assert.equal(stored.best!.key, inFiles.best.key);
      for (const outcome of outcomes) assert.equal(outcome.best.key, inFiles.best.key, "every worker reports the study's choice");
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it("trains a configuration drawn twice once, however many workers claim at once", async () => {
    const twins: StudySpec = randomStudy(8, { name: "twins", space: { filters1: { kind: "choice", values: [16, 32] }, dense: { kind: "choice", values: [64] } } });
    const inFiles = await runStudy(tempDir(), twins, objective(new Map()));
    assert.ok(new Set(inFiles.trials.map((t) => t.key)).size < 8, "the draws repeat");
    const calls = new Map<string, number>();
    const stores = await Promise.all(Array.from({ length: 5 }, () => PostgresStudyStore.open(server.url)));
    try {
      const study = await stores[0].openStudy("twins", twins);
      await Promise.all(stores.map((store, i) => runStudyWorker(store, { ...study, name: "twins" }, objective(calls, 30), workerOptions(`t${i}`))));
      const stored = (await stores[0].readStudy("twins"))!;
      assert.equal(stored.trials.length, 8, "every drawn trial has its result");
      assert.deepEqual([...calls.values()].filter((n) => n !== 1), [], "each configuration trained once");
      assert.deepEqual(stored.trials.map((t) => [t.index, t.key, t.valAccuracy]), inFiles.trials.map((t) => [t.index, t.key, t.valAccuracy]));
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it("gives a trial whose training failed back to the queue at once, and stops the worker with the error", async () => {
    const store = await PostgresStudyStore.open(server.url);
    try {
      const study = await store.openStudy("failing", randomStudy(2));
      const failing: TrialRunner = async () => { throw new Error("the loss became NaN"); };
      await assert.rejects(runStudyWorker(store, { ...study, name: "failing" }, failing, workerOptions("unlucky")), /trial \w+ failed on this worker and was given back to the queue: the loss became NaN/);
      const after = (await store.readStudy("failing"))!;
      assert.deepEqual(after.running, [], "nothing left running");
      await runStudyWorker(store, { ...study, name: "failing" }, objective(new Map()), workerOptions("next"));
      assert.equal((await store.readStudy("failing"))!.trials.length, 2, "another worker trains it");
    } finally {
      await store.close();
    }
  });

  it("re-queues a trial whose worker stopped heartbeating, and another worker finishes it", async () => {
    const store = await PostgresStudyStore.open(server.url);
    try {
      const spec: StudySpec = randomStudy(3);
      const study = await store.openStudy("requeue", spec);
      const lost = await store.claim(study.id, "ghost", 60);
      assert.equal(lost.kind, "trial");
      const calls = new Map<string, number>();
      const log: string[] = [];
      await runStudyWorker(store, { ...study, name: "requeue" }, objective(calls), workerOptions("rescuer", { staleSeconds: 0.5, log: (line) => log.push(line) }));
      const stored = (await store.readStudy("requeue"))!;
      assert.equal(stored.trials.length, 3);
      assert.equal(stored.attempts.get(0), 2, "the ghost's trial was claimed twice");
      assert.ok(log.some((line) => /re-queued 1 trial whose worker stopped heartbeating/.test(line)), log.join("\n"));
    } finally {
      await store.close();
    }
  });

  it("keeps two studies in one database apart, and refuses a study name with other options", async () => {
    const store = await PostgresStudyStore.open(server.url);
    try {
      const a = await store.openStudy("apart-a", randomStudy(2));
      await store.openStudy("apart-b", randomStudy(3, { seed: 9 }));
      await runStudyWorker(store, { ...a, name: "apart-a" }, objective(new Map()), workerOptions("a"));
      assert.equal((await store.readStudy("apart-a"))!.trials.length, 2);
      const bStored = (await store.readStudy("apart-b"))!;
      assert.equal(bStored.trials.length, 0, "b untouched by a's worker");
      assert.equal(bStored.finished, false);
      await assert.rejects(store.openStudy("apart-a", { ...a.spec, seed: 6 }), /"apart-a" .* was created with other options \(seed differ\)/);
      await assert.rejects(store.openStudy("nowhere"), /No study "nowhere" .*: give its options/);
      const joined = await store.openStudy("apart-b");
      assert.equal(joined.created, false);
      assert.equal(joined.spec.seed, 9);
    } finally {
      await store.close();
    }
  });

  it("a worker that loses the database mid-trial keeps its result and writes it when the server is back", async () => {
    const store = await PostgresStudyStore.open(server.url);
    try {
      const study = await store.openStudy("outage", randomStudy(2));
      const log: string[] = [];
      let first = true;
      const runner: TrialRunner = async (trial) => {
        if (first) {
          first = false;
          // The database goes down during the first trial and comes back 3 s later.
          await server.pause();
          setTimeout(() => void server.restart(), 3000);
        }
        return objective(new Map())(trial);
      };
      await runStudyWorker(store, { ...study, name: "outage" }, runner, workerOptions("survivor", { log: (line) => log.push(line) }));
      assert.equal((await store.readStudy("outage"))!.trials.length, 2);
      assert.ok(log.some((line) => /the database is unreachable .* retrying to write trial/.test(line)), log.join("\n"));
    } finally {
      await store.close();
    }
  });

  it("reads a declared study from the database as notebook 05 does, and says when it is missing, unfinished or another", async () => {
    const declarations = loadDeclarations();
    const context = { profile: "quick" as const, storage: server.url, declarations, root: tempDir() };
    await assert.rejects(ensureStudy("tune-same", context), /Study "quick\/tune-same" is not in .*: start its workers with `npm run tune -- --storage URL --experiment tune-same --profile quick --worker`/);
    const d = declarations.get("tune-same")! as StudyDeclaration;
    const spec = studySpecOf(d, "quick", await readSpace(path.join(PROJECT_ROOT, d.space)));
    const store = await PostgresStudyStore.open(server.url);
    try {
      const study = await store.openStudy(storedStudyName("tune-same", "quick"), spec);
      await store.claim(study.id, "slow", 60);
      await assert.rejects(ensureStudy("tune-same", context), /"quick\/tune-same" .* is not finished \(0 of \d+ trials\)/);
      await runStudyWorker(store, { ...study, name: "quick/tune-same" }, objective(new Map()), workerOptions("w", { staleSeconds: 0.1 }));
      const inFiles = await runStudy(tempDir(), spec, objective(new Map()));
      const read = await ensureStudy("tune-same", context);
      assert.deepEqual(read.trials.map((t) => [t.key, t.valAccuracy]), inFiles.trials.map((t) => [t.key, t.valAccuracy]));
      assert.equal(read.best.key, inFiles.best.key);
      await assert.rejects(ensureStudy("tune-same", { ...context, profile: "standard" }), /Study "tune-same" is not in/);
      await store.openStudy("tune-same", { ...spec, seed: 1 });
      await assert.rejects(ensureStudy("tune-same", { ...context, profile: "standard" }), /"tune-same" .* was created with other options/);
    } finally {
      await store.close();
    }
  });

  it("a worker whose database stays away gives up after its reconnect timeout with a clear error", async () => {
    const store = await PostgresStudyStore.open(server.url);
    try {
      const study = await store.openStudy("gone", randomStudy(1));
      await server.pause();
      try {
        await assert.rejects(
          runStudyWorker(store, { ...study, name: "gone" }, objective(new Map()), workerOptions("patient", { reconnectSeconds: 1 })),
          /Lost the database for \d+ s while trying to claim a trial .*; run the worker again when it is back/,
        );
      } finally {
        await server.restart();
      }
    } finally {
      await store.close();
    }
  });

  it("says clearly what is wrong with a URL, an unreachable server or a login, never printing the password", async () => {
    assert.throws(() => checkStorageUrl("mysql://u:secret@localhost/db"), /must be a postgresql:\/\/ URL/);
    assert.throws(() => checkStorageUrl("postgresql://u:secret@localhost"), /names no database/);
    assert.equal(redactUrl("postgresql://me:secret@db.example:5432/studies"), "postgresql://me@db.example:5432/studies");
    const down = `postgresql://fmnist:secret@127.0.0.1:1/studies`;
    await assert.rejects(PostgresStudyStore.open(down, { connectSeconds: 2 }), (error: Error) => {
      assert.match(error.message, /Cannot reach PostgreSQL at postgresql:\/\/fmnist@127\.0\.0\.1:1\/studies/);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
    const wrongPassword = server.url.replace(/:[^:@/]*@/, ":not-the-password@");
    await assert.rejects(PostgresStudyStore.open(wrongPassword), (error: Error) => {
      assert.match(error.message, /refused the login/);
      assert.doesNotMatch(error.message, /not-the-password/);
      return true;
    });
  });
});
