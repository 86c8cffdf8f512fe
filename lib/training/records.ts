/**
 * Run records: everything needed to compare training runs and to resume one (config, seed,
 * backend, dataset hashes, options, per-epoch history, timings, best epoch, validation and
 * test metrics). Written atomically after every epoch.
 */
import { existsSync, readdirSync } from "node:fs";
import { readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { AugmentConfig } from "../data/augment";
import type { ModelConfig, OptimizerName } from "../models/builder";
import type { Precision, tf } from "../accelerator";
import type { FastDropout } from "../accelerator";
import { MODEL_FILE, replaceFolder, writeJsonAtomic, writeModelFolder } from "../models/persist";
import type { EpochRecord, LearningRateSchedule } from "./loop";
import type { WeightAverage } from "./weight-average";

export const RECORD_FILE = "record.json";
/** The last finished epoch, with the optimizer state: what --resume continues from. */
export const CHECKPOINT_DIR = "checkpoint";
/** The weights of the best validation epoch: the run's model. */
export const BEST_MODEL_DIR = "model";
/** In the checkpoint: the epochs it holds and the dropout layers' mask generators (exact resume). */
export const STATE_FILE = "state.json";
/** In the checkpoint of a run with an EMA: the averaged weights (float32, in model.getWeights() order). */
export const AVERAGE_FILE = "average.bin";
/** Present while an epoch is being committed: the next start completes the commit. */
export const COMMIT_FILE = "commit.json";

/** How a run trains: what a caller chooses (npm run train's options, a notebook's protocol). */
export interface RunSettings {
  epochs: number;
  batchSize: number;
  seed: number;
  validationFraction: number;
  /** The seed of the validation split; absent: seed (replicates with other seeds keep one split). */
  splitSeed?: number;
  schedule: LearningRateSchedule;
  /** Early stopping on validation loss after this many epochs without improvement. */
  patience: number | null;
  quick: boolean;
  /** On-the-fly augmentation of training batches. */
  augment: AugmentConfig | null;
  /** Absent: Adam (and in records older than the choice). */
  optimizer?: OptimizerName;
  /** Label smoothing of the training and validation targets; absent: none. */
  labelSmoothing?: number;
  /**
   * The run's test predictions average the views of lib/data/augment.ts's TTA_VIEWS (the image, its
   * mirror, 1-pixel shifts); absent: the image alone. Validation (the choice of epoch) never uses it.
   */
  testTimeAugmentation?: boolean;
  /**
   * An exponential moving average of the weights (lib/training/weight-average.ts) is what the run
   * validates, saves as its best model and tests; absent: the trained weights.
   */
  ema?: { decay: number };
  /**
   * "bf16": the training steps' convolutions and matrix products read bf16 operands (fp32
   * accumulation, fp32 weights) where the CPU has bf16 arithmetic; absent: fp32. What ran is
   * the record's backend.precision.
   */
  precision?: Precision;
}

/** The settings as recorded, with the split sizes they gave. */
export interface RunOptions extends Omit<RunSettings, "augment"> {
  /** Absent in records older than augmentation. */
  augment?: AugmentConfig | null;
  trainImages: number;
  validationImages: number;
}

export interface RunRecord {
  status: "running" | "finished";
  model: ModelConfig;
  parameters: number;
  options: RunOptions;
  /** precision: what the training steps ran ("mixed": resumed in another precision); absent in records older than bf16 = fp32. */
  backend: { name: string; threads: number | null; description: string; precision?: Precision | "mixed" };
  dataset: { name: string; sha256: Record<string, string> };
  startedAt: string;
  updatedAt: string;
  /** Restarts of this run with --resume, with the epoch each continued from. */
  resumes: { at: string; fromEpoch: number }[];
  history: EpochRecord[];
  /** Seconds spent training (sum over epochs, across resumes). */
  trainSeconds: number;
  bestEpoch: number | null;
  stoppedEarly: boolean;
  validation: { loss: number; accuracy: number } | null;
  /** Measured once, on the best model, when the run finishes. */
  test: { loss: number; accuracy: number; correct: number; incorrect: number; images: number } | null;
}

/**
 * A run's or an ensemble's scores for progress lines: "val acc 0.9552, test acc 0.9517", "no
 * validation" for one trained on every training image, no test part while it has none.
 */
export function describeScores(record: { validation: { accuracy: number } | null; test: { accuracy: number } | null }): string {
  const validation = record.validation ? `val acc ${record.validation.accuracy.toFixed(4)}` : "no validation";
  return record.test ? `${validation}, test acc ${record.test.accuracy.toFixed(4)}` : validation;
}

/** What a checkpoint needs beyond the weights and optimizer: its epoch count and the random state. */
export interface CheckpointState {
  /** Epochs trained (= the record's history length). */
  epochs: number;
  dropout: Record<string, number>;
}

/** FastDropout layers, found by their mask state (runs.ts stays free of TF.js's layers at import time). */
const dropoutLayers = (model: tf.LayersModel) => model.layers.filter((l): l is FastDropout => typeof (l as Partial<FastDropout>).maskState === "number");

export function randomState(model: tf.LayersModel): Record<string, number> {
  return Object.fromEntries(dropoutLayers(model).map((l) => [l.name, l.maskState]));
}

/** Sets the dropout layers' mask generators where a checkpoint left them. */
export function restoreRandomState(model: tf.LayersModel, dropout: Record<string, number>, source: string): void {
  for (const layer of dropoutLayers(model)) {
    const state = dropout[layer.name];
    if (state === undefined) throw new Error(`${source}: no mask state for dropout layer ${layer.name}.`);
    layer.maskState = state;
  }
}

export async function readCheckpointState(dir: string): Promise<CheckpointState | undefined> {
  const file = path.join(dir, CHECKPOINT_DIR, STATE_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, "utf8")) as CheckpointState;
  } catch (error) {
    throw new Error(`${file} is not a readable checkpoint state: ${(error as Error).message}`);
  }
}

/** The steps of an epoch's commit, in order (tests inject a crash at each). */
export const COMMIT_STEPS = ["staged", "marked", "checkpoint", "model", "record"] as const;
export type CommitStep = (typeof COMMIT_STEPS)[number];

const next = (name: string) => `${name}.next`;
const RECORD_NEXT = "record.next.json";

/**
 * Commits an epoch: the checkpoint (with its state), the best model when this epoch is the
 * best, and the record move together. Everything is staged beside the current files, a commit
 * marker is written, then each is moved into place; a crash at any instant leaves either the
 * previous epoch (no marker: the staged files are dropped on the next start) or the next one
 * (a marker: the next start completes the moves).
 */
export async function commitEpoch(
  dir: string,
  model: tf.LayersModel,
  record: RunRecord,
  isBest: boolean,
  onStep: (step: CommitStep) => void = () => {},
  average?: WeightAverage,
): Promise<void> {
  const state: CheckpointState = { epochs: record.history.length, dropout: randomState(model) };
  // The checkpoint holds the trained weights (and the average beside them); the best model is what validation judged.
  await writeModelFolder(model, path.join(dir, next(CHECKPOINT_DIR)), { [STATE_FILE]: JSON.stringify(state), ...(average ? { [AVERAGE_FILE]: average.serialize() } : {}) });
  if (isBest) {
    const bestDir = path.join(dir, next(BEST_MODEL_DIR));
    await (average ? average.applied(model, () => writeModelFolder(model, bestDir)) : writeModelFolder(model, bestDir));
  }
  await writeJsonAtomic(path.join(dir, RECORD_NEXT), { ...record, updatedAt: new Date().toISOString() });
  onStep("staged");
  await writeJsonAtomic(path.join(dir, COMMIT_FILE), { epochs: state.epochs, best: isBest });
  onStep("marked");
  await applyCommit(dir, onStep);
}

async function applyCommit(dir: string, onStep: (step: CommitStep) => void = () => {}): Promise<void> {
  await replaceFolder(path.join(dir, next(CHECKPOINT_DIR)), path.join(dir, CHECKPOINT_DIR));
  onStep("checkpoint");
  await replaceFolder(path.join(dir, next(BEST_MODEL_DIR)), path.join(dir, BEST_MODEL_DIR));
  onStep("model");
  if (existsSync(path.join(dir, RECORD_NEXT))) await rename(path.join(dir, RECORD_NEXT), path.join(dir, RECORD_FILE));
  onStep("record");
  await rm(path.join(dir, COMMIT_FILE), { force: true });
}

/**
 * Brings a run folder back to one consistent epoch after an interruption: completes a
 * committed epoch, drops one that was only staged, and removes the leftovers of model saves.
 */
export async function recoverRunFolder(dir: string): Promise<"clean" | "completed" | "dropped"> {
  if (!existsSync(dir)) return "clean";
  let outcome: "clean" | "completed" | "dropped" = "clean";
  if (existsSync(path.join(dir, COMMIT_FILE))) {
    await applyCommit(dir);
    outcome = "completed";
  } else {
    for (const staged of [next(CHECKPOINT_DIR), next(BEST_MODEL_DIR), RECORD_NEXT]) {
      if (existsSync(path.join(dir, staged))) {
        await rm(path.join(dir, staged), { recursive: true, force: true });
        outcome = "dropped";
      }
    }
  }
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (/\.\d+\.staging$|\.\d+\.tmp$/.test(name)) await rm(full, { recursive: true, force: true });
    const old = /^(.*)\.old$/.exec(name);
    if (old) {
      // A swap interrupted between its two renames: the old folder is the current one.
      if (existsSync(path.join(dir, old[1]))) await rm(full, { recursive: true, force: true });
      else await rename(full, path.join(dir, old[1]));
    }
  }
  return outcome;
}

export async function readRecord(dir: string): Promise<RunRecord | undefined> {
  const file = path.join(dir, RECORD_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, "utf8")) as RunRecord;
  } catch (error) {
    throw new Error(`${file} is not a readable run record: ${(error as Error).message}`);
  }
}

export async function writeRecord(dir: string, record: RunRecord): Promise<void> {
  await writeJsonAtomic(path.join(dir, RECORD_FILE), { ...record, updatedAt: new Date().toISOString() });
}

/**
 * A model folder from what a user passes as --model: a run folder (its best model, plus its
 * record) or a folder holding model.json itself.
 */
export async function resolveModelDir(dir: string): Promise<{ modelDir: string; record?: RunRecord }> {
  const resolved = path.resolve(dir);
  if (!existsSync(resolved)) throw new Error(`${resolved} does not exist: pass a run folder (runs/NAME) or a saved model folder.`);
  if (existsSync(path.join(resolved, MODEL_FILE))) return { modelDir: resolved, record: await readRecord(path.dirname(resolved)) };
  const record = await readRecord(resolved);
  const best = path.join(resolved, BEST_MODEL_DIR);
  if (existsSync(path.join(best, MODEL_FILE))) return { modelDir: best, record };
  throw new Error(`${resolved} holds neither ${MODEL_FILE} nor a run's ${BEST_MODEL_DIR}/${MODEL_FILE}.`);
}
