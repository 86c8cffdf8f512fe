/**
 * Run records: everything needed to compare training runs and to resume one (config, seed,
 * backend, dataset hashes, options, per-epoch history, timings, best epoch, validation and
 * test metrics). Written atomically after every epoch.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { AugmentConfig } from "./augment";
import type { ModelConfig } from "./models";
import { MODEL_FILE, writeJsonAtomic } from "./persist";
import type { EpochRecord, LearningRateSchedule } from "./train";

export const RECORD_FILE = "record.json";
/** The last finished epoch, with the optimizer state: what --resume continues from. */
export const CHECKPOINT_DIR = "checkpoint";
/** The weights of the best validation epoch: the run's model. */
export const BEST_MODEL_DIR = "model";

/** How a run trains: what a caller chooses (npm run train's options, a notebook's protocol). */
export interface RunSettings {
  epochs: number;
  batchSize: number;
  seed: number;
  validationFraction: number;
  schedule: LearningRateSchedule;
  /** Early stopping on validation loss after this many epochs without improvement. */
  patience: number | null;
  quick: boolean;
  /** On-the-fly augmentation of training batches. */
  augment: AugmentConfig | null;
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
  backend: { name: string; threads: number | null; description: string };
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
