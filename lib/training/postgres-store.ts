/**
 * The study store in PostgreSQL, for workers on any number of machines (Optuna's practice):
 * a study's plan lives in a `trials` table; a worker claims the next pending trial in a
 * transaction (`FOR UPDATE SKIP LOCKED`), heartbeats while it trains and writes its result in a
 * transaction that also promotes a finished rung of successive halving exactly once (the
 * study's row is locked while it does). A running trial whose heartbeat is older than the
 * timeout is re-queued. Times are the database server's, so machines' clocks need not agree.
 * Every statement is parameterised.
 */
import os from "node:os";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { canonicalJson } from "../models/persist";
import { promoted, studyBest, studyPlan, trialKey, validateStudy, type StudySpec, type TrialParams, type TrialResult } from "./tuning";

/** The schema this code writes and reads; each migration takes the schema one version up. */
const MIGRATIONS: { version: number; statements: string[] }[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE studies (
         id serial PRIMARY KEY,
         name text NOT NULL UNIQUE,
         spec json NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now(),
         finished_at timestamptz,
         best json,
         best_model json
       )`,
      `CREATE TABLE trials (
         study_id integer NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
         position integer NOT NULL,
         rung integer NOT NULL,
         key text NOT NULL,
         params json NOT NULL,
         epochs integer NOT NULL,
         status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),
         worker text,
         claimed_at timestamptz,
         heartbeat_at timestamptz,
         attempts integer NOT NULL DEFAULT 0,
         result json,
         finished_at timestamptz,
         PRIMARY KEY (study_id, position)
       )`,
      `CREATE INDEX trials_by_status ON trials (study_id, status, position)`,
    ],
  },
];
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
// Keys for pg_advisory_xact_lock: workers starting together migrate one after the other; claims of a study take turns.
const MIGRATION_LOCK = 0x464d4e53;
const CLAIM_LOCK = 0x464d4e54;

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.username ? `${decodeURIComponent(parsed.username)}@` : ""}${parsed.host}${parsed.pathname}`;
  } catch {
    return "(an unreadable URL)";
  }
}

/** Checks a --storage URL's form before anything connects. */
export function checkStorageUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--storage must be a URL such as postgresql://USER@HOST:5432/DATABASE, got something else.`);
  }
  if (parsed.protocol !== "postgresql:" && parsed.protocol !== "postgres:") {
    throw new Error(`--storage must be a postgresql:// URL (got ${parsed.protocol}//…); without --storage the study is kept in files.`);
  }
  if (!parsed.hostname) throw new Error(`--storage ${redactUrl(url)} names no host.`);
  if (parsed.pathname.length <= 1) throw new Error(`--storage ${redactUrl(url)} names no database (…/DATABASE at the end).`);
}

/**
 * Errors worth trying again: the database out of reach (down, restarting, network), or a
 * transaction the server aborted to break a deadlock or a serialization conflict.
 */
export function isTransientError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return isConnectionError(error) || code === "40P01" || code === "40001";
}

/** Errors that mean the database is out of reach (down, restarting, network), as opposed to a refusal. */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (e.code && ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"].includes(e.code)) return true;
  // SQLSTATE class 08 (connection exception) and 57P01-57P03 (shutdown, crash, starting up).
  if (e.code && (/^08/.test(e.code) || ["57P01", "57P02", "57P03"].includes(e.code))) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(e.message ?? "");
}

/** One claimed trial: what a worker trains. */
export interface ClaimedTrial {
  studyId: number;
  index: number;
  rung: number;
  key: string;
  params: TrialParams;
  epochs: number;
  attempts: number;
}

export type Claim = { kind: "trial"; trial: ClaimedTrial; requeued: number } | { kind: "wait"; requeued: number } | { kind: "done" };

/** A study as the database holds it: finished trials in the strategy's order and the plan's state. */
export interface StoredStudy {
  id: number;
  name: string;
  spec: StudySpec;
  trials: TrialResult[];
  planned: number;
  running: { index: number; worker: string; attempts: number }[];
  finished: boolean;
  best?: TrialResult;
  /** Per trial: how many times it was claimed (more than once: a worker was lost and it was re-queued). */
  attempts: Map<number, number>;
}

type Row = Record<string, unknown>;

function trialOf(row: Row): TrialResult {
  const result = row.result as Omit<TrialResult, "key" | "index" | "rung" | "params" | "epochs">;
  return { key: row.key as string, index: row.position as number, rung: row.rung as number, params: row.params as TrialParams, epochs: row.epochs as number, ...result };
}

export class PostgresStudyStore {
  private constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
  ) {}

  /** Connects (once, to fail early with a clear message) and brings the schema up to date. */
  static async open(url: string, options: { connectSeconds?: number } = {}): Promise<PostgresStudyStore> {
    checkStorageUrl(url);
    const location = redactUrl(url);
    // The password comes from the URL or PGPASSWORD (pg reads it); it is never printed.
    const pool = new pg.Pool({ connectionString: url, max: 3, connectionTimeoutMillis: (options.connectSeconds ?? 10) * 1000 });
    // An idle connection that the server closes must not crash the process; the next query reconnects.
    pool.on("error", () => undefined);
    const store = new PostgresStudyStore(pool, location);
    try {
      await store.migrate();
    } catch (error) {
      await pool.end().catch(() => undefined);
      const e = error as Error & { code?: string };
      if (isConnectionError(error)) throw new Error(`Cannot reach PostgreSQL at ${location}: ${e.message || e.code}. Is the server running and the URL right?`);
      if (e.code === "28P01" || e.code === "28000") throw new Error(`PostgreSQL at ${location} refused the login: ${e.message}. Check the user and the password (in the URL or PGPASSWORD).`);
      if (e.code === "3D000") throw new Error(`PostgreSQL at ${location}: ${e.message}. Create it first (createdb NAME).`);
      throw new Error(`PostgreSQL at ${location}: ${e.message}`);
    }
    return store;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** Runs fn in a transaction on one connection; rolls back on any error. */
  private async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const value = await fn(client);
      await client.query("COMMIT");
      return value;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /** Creates the schema or migrates it to SCHEMA_VERSION; returns the version found before. */
  async migrate(): Promise<number> {
    return this.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await client.query("CREATE TABLE IF NOT EXISTS study_schema (version integer NOT NULL)");
      const found = await client.query("SELECT version FROM study_schema");
      const before = found.rowCount === 0 ? 0 : (found.rows[0].version as number);
      if (before > SCHEMA_VERSION) {
        throw new Error(`the database's study schema is version ${before}, newer than this project's ${SCHEMA_VERSION}: update the project on this machine.`);
      }
      for (const migration of MIGRATIONS.filter((m) => m.version > before)) {
        for (const statement of migration.statements) await client.query(statement);
      }
      if (found.rowCount === 0) await client.query("INSERT INTO study_schema (version) VALUES ($1)", [SCHEMA_VERSION]);
      else await client.query("UPDATE study_schema SET version = $1", [SCHEMA_VERSION]);
      return before;
    });
  }

  /**
   * Creates the study (its first rung's trials pending) or, when one of that name exists, checks
   * that it is the same study. Without a spec, joins the existing study.
   */
  async openStudy(name: string, spec?: StudySpec): Promise<{ id: number; spec: StudySpec; created: boolean }> {
    if (spec) validateStudy(spec);
    if (spec?.budget) throw new Error("A study in PostgreSQL has no --budget: its workers on many machines train the whole plan (stop them to stop it).");
    return this.transaction(async (client) => {
      // Serialises two workers creating the same study at once.
      await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [MIGRATION_LOCK, name]);
      const found = await client.query("SELECT id, spec FROM studies WHERE name = $1", [name]);
      if (found.rowCount !== 0) {
        const stored = found.rows[0].spec as StudySpec;
        // As for a study folder, the content decides, not the spec's own name.
        if (spec && canonicalJson({ ...stored, name: "" }) !== canonicalJson({ ...spec, name: "" })) {
          const differ = Object.keys({ ...stored, ...spec }).filter((k) => k !== "name" && canonicalJson((stored as unknown as Row)[k] ?? null) !== canonicalJson((spec as unknown as Row)[k] ?? null));
          throw new Error(`The study "${name}" in ${this.location} was created with other options (${differ.join(", ")} differ): give the same options, none (to join it), or another --study name.`);
        }
        return { id: found.rows[0].id as number, spec: stored, created: false };
      }
      if (!spec) throw new Error(`No study "${name}" in ${this.location}: give its options (--strategy, --trials, --epochs, …) to create it.`);
      const { points, rungs } = studyPlan(spec);
      const created = await client.query("INSERT INTO studies (name, spec) VALUES ($1, $2) RETURNING id", [name, JSON.stringify(spec)]);
      const id = created.rows[0].id as number;
      await insertRung(client, id, 0, 0, points.slice(0, rungs[0].configs), rungs[0].epochs);
      return { id, spec, created: true };
    });
  }

  /**
   * Claims the next pending trial (re-queueing first the running trials whose heartbeat is older
   * than staleSeconds). A pending trial whose twin (same configuration and epochs) is running is
   * left for the twin's result. "wait": nothing to claim yet (the rung's last trials are running).
   */
  async claim(studyId: number, worker: string, staleSeconds: number): Promise<Claim> {
    return this.transaction(async (client) => {
      // Claims of one study take turns (each a few milliseconds), so that a claim sees the one
      // before it committed: a configuration drawn twice is then never claimed twice at once.
      // SKIP LOCKED still keeps a claim from waiting on a row that a finishing trial holds.
      await client.query("SELECT pg_advisory_xact_lock($1, $2)", [CLAIM_LOCK, studyId]);
      const requeued = await client.query(
        `UPDATE trials SET status = 'pending', worker = NULL
         WHERE study_id = $1 AND status = 'running' AND heartbeat_at < now() - make_interval(secs => $2)`,
        [studyId, staleSeconds],
      );
      const next = await client.query(
        `SELECT position, rung, key, params, epochs, attempts FROM trials t
         WHERE study_id = $1 AND status = 'pending'
           AND NOT EXISTS (SELECT 1 FROM trials twin WHERE twin.study_id = t.study_id AND twin.key = t.key AND twin.status = 'running')
         ORDER BY position LIMIT 1 FOR UPDATE SKIP LOCKED`,
        [studyId],
      );
      if (next.rowCount === 0) {
        const study = await client.query("SELECT finished_at FROM studies WHERE id = $1", [studyId]);
        if (study.rowCount === 0) throw new Error(`The study (id ${studyId}) was deleted from ${this.location}.`);
        return study.rows[0].finished_at ? { kind: "done" as const } : { kind: "wait" as const, requeued: requeued.rowCount ?? 0 };
      }
      const row = next.rows[0];
      await client.query(
        `UPDATE trials SET status = 'running', worker = $3, claimed_at = now(), heartbeat_at = now(), attempts = attempts + 1
         WHERE study_id = $1 AND position = $2`,
        [studyId, row.position, worker],
      );
      return {
        kind: "trial" as const,
        requeued: requeued.rowCount ?? 0,
        trial: { studyId, index: row.position, rung: row.rung, key: row.key, params: row.params, epochs: row.epochs, attempts: row.attempts + 1 },
      };
    });
  }

  /** Gives a claimed trial back (its worker stops, or its training failed): pending again, for any worker. */
  async release(trial: ClaimedTrial, worker: string): Promise<void> {
    await this.pool.query(
      "UPDATE trials SET status = 'pending', worker = NULL, heartbeat_at = NULL WHERE study_id = $1 AND position = $2 AND worker = $3 AND status = 'running'",
      [trial.studyId, trial.index, worker],
    );
  }

  /** Marks the trial alive; false when it is no longer this worker's (it was re-queued and claimed again). */
  async heartbeat(trial: ClaimedTrial, worker: string): Promise<boolean> {
    const updated = await this.pool.query(
      "UPDATE trials SET heartbeat_at = now() WHERE study_id = $1 AND position = $2 AND worker = $3 AND status = 'running'",
      [trial.studyId, trial.index, worker],
    );
    return updated.rowCount === 1;
  }

  /**
   * Writes a trial's result (and its twins'), whoever holds the trial now: a re-queued trial
   * trains to the same result. When that finishes the rung, the next rung's trials are inserted,
   * or, after the last rung, the study's choice is written; once, under the study row's lock.
   */
  async complete(trial: ClaimedTrial, result: Omit<TrialResult, "key" | "index" | "rung" | "params" | "epochs">, worker: string): Promise<void> {
    await this.transaction(async (client) => {
      const study = await client.query("SELECT spec, finished_at FROM studies WHERE id = $1 FOR UPDATE", [trial.studyId]);
      if (study.rowCount === 0) throw new Error(`The study (id ${trial.studyId}) was deleted from ${this.location}.`);
      await client.query(
        `UPDATE trials SET status = 'done', result = $3, finished_at = now(), worker = $4
         WHERE study_id = $1 AND key = $2 AND status <> 'done'`,
        [trial.studyId, trial.key, JSON.stringify(result), worker],
      );
      if (study.rows[0].finished_at) return;
      const rung = await client.query("SELECT count(*) FILTER (WHERE status <> 'done') AS open FROM trials WHERE study_id = $1 AND rung = $2", [trial.studyId, trial.rung]);
      if (Number(rung.rows[0].open) > 0) return;
      const after = await client.query("SELECT 1 FROM trials WHERE study_id = $1 AND rung = $2 LIMIT 1", [trial.studyId, trial.rung + 1]);
      if (after.rowCount !== 0) return;
      const spec = study.rows[0].spec as StudySpec;
      const { rungs } = studyPlan(spec);
      const done = (await client.query("SELECT * FROM trials WHERE study_id = $1 ORDER BY position", [trial.studyId])).rows.map(trialOf);
      if (trial.rung + 1 < rungs.length) {
        const next = rungs[trial.rung + 1];
        const configs = promoted(done.filter((t) => t.rung === trial.rung)).slice(0, next.configs);
        await insertRung(client, trial.studyId, trial.rung + 1, done.length, configs, next.epochs);
      } else {
        await client.query("UPDATE studies SET finished_at = now(), best = $2 WHERE id = $1", [trial.studyId, JSON.stringify(studyBest(done))]);
      }
    });
  }

  /** Stores the chosen configuration's model config (written by the worker that sees the study finish). */
  async saveBestModel(studyId: number, modelConfig: unknown): Promise<void> {
    await this.pool.query("UPDATE studies SET best_model = $2 WHERE id = $1 AND best_model IS NULL", [studyId, JSON.stringify(modelConfig)]);
  }

  /** The study of that name, or undefined. */
  async readStudy(name: string): Promise<(StoredStudy & { bestModel?: unknown }) | undefined> {
    const study = await this.pool.query("SELECT id, spec, finished_at, best, best_model FROM studies WHERE name = $1", [name]);
    if (study.rowCount === 0) return undefined;
    const row = study.rows[0];
    const rows = (await this.pool.query("SELECT * FROM trials WHERE study_id = $1 ORDER BY position", [row.id])).rows;
    const spec = row.spec as StudySpec;
    return {
      id: row.id,
      name,
      spec,
      trials: rows.filter((r) => r.status === "done").map(trialOf),
      planned: studyPlan(spec).rungs.reduce((sum, rung) => sum + rung.configs, 0),
      running: rows.filter((r) => r.status === "running").map((r) => ({ index: r.position, worker: r.worker, attempts: r.attempts })),
      finished: row.finished_at !== null,
      best: row.best ?? undefined,
      bestModel: row.best_model ?? undefined,
      attempts: new Map(rows.map((r) => [r.position as number, r.attempts as number])),
    };
  }

  /** Names of the studies in this database, oldest first. */
  async studyNames(): Promise<string[]> {
    return (await this.pool.query("SELECT name FROM studies ORDER BY id")).rows.map((r) => r.name as string);
  }
}

async function insertRung(client: pg.PoolClient, studyId: number, rung: number, firstIndex: number, configs: TrialParams[], epochs: number): Promise<void> {
  for (const [i, params] of configs.entries()) {
    await client.query("INSERT INTO trials (study_id, position, rung, key, params, epochs) VALUES ($1, $2, $3, $4, $5, $6)", [
      studyId, firstIndex + i, rung, trialKey(params, epochs), JSON.stringify(params), epochs,
    ]);
  }
}

/** A name for this worker in the database: host, process and a random tag (pids repeat across machines). */
export function workerName(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
}
