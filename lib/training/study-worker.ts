/**
 * A worker of a study kept in PostgreSQL: claims a trial, trains it while heartbeating, writes its
 * result, and again, until the study is finished. Any number of workers on any machines share one
 * study. A database that goes away is waited for (a finished result is kept in memory and in the
 * trial's folder, and written when the database is back); past the wait the worker stops with an
 * error, and nothing finished is lost: run it again.
 */
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isTransientError, type ClaimedTrial, type PostgresStudyStore } from "./postgres-store";
import { studyBest, type StudySpec, type TrialResult, type TrialRunner } from "./tuning";

export interface WorkerOptions {
  /** This worker's name in the database (workerName()). */
  worker: string;
  /** Where this worker keeps its trials' training folders (an interrupted trial resumes there). */
  workDir: string;
  /** Seconds between heartbeats, and after which a silent worker's trial is re-queued. */
  heartbeatSeconds: number;
  staleSeconds: number;
  /** Seconds between looks when nothing can be claimed yet. */
  pollSeconds: number;
  /** How long to wait for a database that went away before giving up (seconds). */
  reconnectSeconds: number;
  log?: (line: string) => void;
  /** Called after each trial this worker finishes. */
  onTrial?: (trial: TrialResult) => void;
  /** The trial this worker trains now (undefined between trials): what a signal handler gives back. */
  onClaim?: (trial: ClaimedTrial | undefined) => void;
}

export interface WorkerOutcome {
  /** Trials this worker trained and wrote. */
  trained: TrialResult[];
  /** The study's choice, once finished. */
  best: TrialResult;
}

/** Retries fn while the database is unreachable, up to reconnectSeconds; other errors pass through. */
async function whileReachable<T>(what: string, options: WorkerOptions, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  let warned = false;
  for (let wait = 0.5; ; wait = Math.min(wait * 2, 10)) {
    try {
      return await fn();
    } catch (error) {
      if (!isTransientError(error)) throw error;
      const waited = (Date.now() - started) / 1000;
      if (waited >= options.reconnectSeconds) {
        throw new Error(`Lost the database for ${Math.round(waited)} s while trying to ${what} (${(error as Error).message}); run the worker again when it is back.`);
      }
      if (!warned) options.log?.(`worker: the database is unreachable (${(error as Error).message}); retrying to ${what} for up to ${options.reconnectSeconds} s`);
      warned = true;
      await sleep(wait * 1000);
    }
  }
}

/** Heartbeats a claimed trial every heartbeatSeconds until stopped; a failed beat is retried at the next. */
function startHeartbeat(store: PostgresStudyStore, trial: ClaimedTrial, options: WorkerOptions): () => void {
  let lostClaim = false;
  const timer = setInterval(() => {
    store.heartbeat(trial, options.worker).then(
      (ours) => {
        if (!ours && !lostClaim) options.log?.(`worker: trial ${trial.key} was re-queued and claimed again meanwhile; training on (its result is the same)`);
        lostClaim ||= !ours;
      },
      () => undefined,
    );
  }, options.heartbeatSeconds * 1000);
  return () => clearInterval(timer);
}

/** Claims and trains trials of the study until it is finished. */
export async function runStudyWorker(
  store: PostgresStudyStore,
  study: { id: number; name: string; spec: StudySpec },
  runTrial: TrialRunner,
  options: WorkerOptions,
): Promise<WorkerOutcome> {
  const trained: TrialResult[] = [];
  for (;;) {
    const claim = await whileReachable("claim a trial", options, () => store.claim(study.id, options.worker, options.staleSeconds));
    if (claim.kind !== "done" && claim.requeued > 0) options.log?.(`worker: re-queued ${claim.requeued} trial${claim.requeued > 1 ? "s" : ""} whose worker stopped heartbeating`);
    if (claim.kind === "done") break;
    if (claim.kind === "wait") {
      await sleep(options.pollSeconds * 1000);
      continue;
    }
    const trial = claim.trial;
    options.onClaim?.(trial);
    const stopHeartbeat = startHeartbeat(store, trial, options);
    let measured: Awaited<ReturnType<TrialRunner>>;
    try {
      measured = await runTrial({ key: trial.key, params: trial.params, epochs: trial.epochs, dir: path.join(options.workDir, "trials", trial.key), concurrent: 1 });
    } catch (error) {
      // The trial goes back to the queue at once rather than after the heartbeat timeout; the
      // error stops this worker, as a failing trial stops a study in files.
      await store.release(trial, options.worker).catch(() => undefined);
      throw new Error(`trial ${trial.key} failed on this worker and was given back to the queue: ${(error as Error).message}`);
    } finally {
      stopHeartbeat();
      options.onClaim?.(undefined);
    }
    const result = { ...measured, finishedAt: new Date().toISOString() };
    await whileReachable(`write trial ${trial.key}'s result`, options, () => store.complete(trial, result, options.worker));
    const finished: TrialResult = { key: trial.key, index: trial.index, rung: trial.rung, params: trial.params, epochs: trial.epochs, ...result };
    trained.push(finished);
    options.onTrial?.(finished);
  }
  const stored = await whileReachable("read the study", options, () => store.readStudy(study.name));
  if (!stored) throw new Error(`The study "${study.name}" was deleted from ${store.location}.`);
  return { trained, best: stored.best ?? studyBest(stored.trials) };
}
