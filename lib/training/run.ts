/**
 * One training run end to end, as `npm run train`, the notebooks and tuning all do it: the
 * seeded stratified validation split, training with optional on-the-fly augmentation, after
 * every epoch a checkpoint and the run record (atomically), the best-validation model kept,
 * and the test split measured once at the end on that model. At validation fraction 0 (a
 * chosen recipe refit on every training image) the epochs are fixed and the last one's model
 * is kept. A run killed part-way resumes from its last finished epoch.
 */
import path from "node:path";
import { augmenter } from "../data/augment";
import { bf16Unavailable, describeBackend, effectivePrecision, initBackend, PRECISIONS, tf, type BackendInfo, type Precision } from "../accelerator";
import { accuracy, argmaxRows, logLoss } from "../evaluation/metrics";
import { loadDataset, type Dataset, type DatasetName, type Split } from "../data/datasets";
import { readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { checkAverageDecay, WeightAverage } from "./weight-average";
import { withLock } from "../tooling/lock";
import { buildModel, OPTIMIZERS, validateModelConfig, type ModelConfig } from "../models/builder";
import { canonicalJson, loadModel } from "../models/persist";
import { stratifiedSplit, subset, toImageTensor, toLabelTensor, toTargetTensor, type SplitIndices } from "../data/preprocess";
import {
  AVERAGE_FILE,
  BEST_MODEL_DIR,
  CHECKPOINT_DIR,
  commitEpoch,
  readCheckpointState,
  readRecord,
  RECORD_FILE,
  recoverRunFolder,
  resolveModelDir,
  restoreRandomState,
  STATE_FILE,
  writeRecord,
  type CommitStep,
  type RunOptions,
  type RunRecord,
  type RunSettings,
} from "./records";
import { evaluate, improvesOnEpoch, train, type EpochRecord, type TrainOptions } from "./loop";
import { requirePositiveInt } from "../tooling/checks";
import { predictProbabilities, predictWithTta } from "../evaluation/predict";

export type { RunSettings };

/** Quick mode (CI, smoke runs): this many training / validation images. */
export const QUICK_TRAIN_IMAGES = 2000;
export const QUICK_VALIDATION_IMAGES = 500;

export interface RunHooks {
  log?: (line: string) => void;
  onBatchEnd?: TrainOptions["onBatchEnd"];
  onEpochEnd?: (epoch: EpochRecord, record: RunRecord) => void;
  /** Called after each step of an epoch's commit (tests inject crashes here). */
  onCommitStep?: (step: CommitStep) => void;
}

export interface RunRequest {
  config: ModelConfig;
  settings: RunSettings;
  outDir: string;
  /** Default "fashion"; a resumed run keeps its own. */
  dataset?: DatasetName;
  /** Continue the unfinished run in outDir (its own settings win). */
  resume?: boolean;
  /** Leave the test split alone (tuning trials: chosen on validation only); record.test stays null. */
  skipTest?: boolean;
  /** An already loaded dataset (notebooks load it once); must match `dataset`. */
  data?: Dataset;
  hooks?: RunHooks;
}

/** The smallest validation part a run accepts: one image per class. */
export const MIN_VALIDATION_IMAGES = 10;

/**
 * Trains (or resumes) one run into outDir and returns its finished record. One writer per
 * folder (a lock); the config and settings are checked before anything is written; every
 * epoch is committed atomically (checkpoint, best model and record together), and a resumed
 * run continues exactly where the interrupted one stopped (the dropout masks included).
 */
export async function trainRun(request: RunRequest): Promise<RunRecord> {
  return withLock(request.outDir, "run", () => trainRunLocked(request));
}

/** What a request finds in its folder: a run to resume, or none; refused when it cannot go on. */
async function openRunFolder(request: RunRequest, log: (message: string) => void): Promise<RunRecord | undefined> {
  const { outDir } = request;
  const recovered = await recoverRunFolder(outDir);
  if (recovered !== "clean") log(`${outDir}: ${recovered === "completed" ? "completed the epoch an interruption left half-committed" : "dropped an epoch an interruption left uncommitted"}`);
  let existing = await readRecord(outDir);
  if (request.resume && !existing) throw new Error(`--resume: no run record in ${outDir}.`);
  // A run that never finished an epoch is not a run yet: a corrected command starts it afresh.
  if (existing && existing.status === "running" && existing.history.length === 0) existing = undefined;
  if (existing && !request.resume) {
    throw new Error(`${outDir} already holds a run (${existing.status}, ${existing.history.length} epochs); use --resume to continue it or another --out.`);
  }
  if (existing?.status === "finished") throw new Error(`${outDir}: this run already finished; nothing to resume.`);
  return existing;
}

/** A run's training and validation tensors (smoothed one-hot rows when it smooths labels); no validation at fraction 0. */
interface RunTensors {
  trainSplit: Split;
  validationSplit: Split;
  trainData: { x: tf.Tensor4D; y: tf.Tensor1D | tf.Tensor2D };
  validation: { x: tf.Tensor4D; y: tf.Tensor1D | tf.Tensor2D } | null;
}

/**
 * A run's training and validation indices: the stratified split of its split seed (its seed
 * when it declares none); at validation fraction 0, every training image and no validation.
 */
export function runSplit(labels: ArrayLike<number>, settings: Pick<RunSettings, "validationFraction" | "seed" | "splitSeed">): SplitIndices {
  if (settings.validationFraction === 0) return { train: Array.from({ length: labels.length }, (_, i) => i), validation: [] };
  return stratifiedSplit(labels, settings.validationFraction, settings.splitSeed ?? settings.seed);
}

function runTensors(data: Dataset, settings: RunSettings): RunTensors {
  const split = runSplit(data.train.labels, settings);
  const trainSplit = subset(data.train, settings.quick ? split.train.slice(0, QUICK_TRAIN_IMAGES) : split.train);
  const validationSplit = subset(data.train, settings.quick ? split.validation.slice(0, QUICK_VALIDATION_IMAGES) : split.validation);
  if (settings.validationFraction > 0 && validationSplit.count < MIN_VALIDATION_IMAGES) {
    throw new Error(`A validation fraction of ${settings.validationFraction} leaves ${validationSplit.count} validation images; choosing epochs needs at least ${MIN_VALIDATION_IMAGES}.`);
  }
  const smoothing = settings.labelSmoothing ?? 0;
  const targets = (part: Split) => (smoothing > 0 ? toTargetTensor(part, data.classNames.length, smoothing) : toLabelTensor(part));
  return {
    trainSplit,
    validationSplit,
    trainData: { x: toImageTensor(trainSplit), y: targets(trainSplit) },
    validation: validationSplit.count > 0 ? { x: toImageTensor(validationSplit), y: targets(validationSplit) } : null,
  };
}

/** The model and record of a resumed run (from its checkpoint, exactly) or of a fresh one (its folder cleared). */
async function startOrResume(
  outDir: string, existing: RunRecord | undefined, config: ModelConfig, settings: RunSettings,
  tensors: RunTensors, data: Dataset, backend: BackendInfo, precision: Precision, log: (message: string) => void,
): Promise<{ model: tf.LayersModel; record: RunRecord }> {
  if (existing) {
    log(`resuming ${outDir} after epoch ${existing.history.length} of ${existing.options.epochs}`);
    const state = await readCheckpointState(outDir);
    if (state?.epochs !== existing.history.length) {
      throw new Error(`${outDir}: the checkpoint holds ${state?.epochs ?? "no recorded"} epochs but ${RECORD_FILE} ${existing.history.length}; it cannot resume exactly (train it again in another folder).`);
    }
    const model = await loadModel(path.join(outDir, CHECKPOINT_DIR));
    restoreRandomState(model, state.dropout, path.join(outDir, CHECKPOINT_DIR, STATE_FILE));
    const ran = existing.backend.precision ?? "fp32";
    return {
      model,
      record: {
        ...existing,
        backend: { ...existing.backend, precision: ran === precision ? ran : "mixed" },
        resumes: [...existing.resumes, { at: new Date().toISOString(), fromEpoch: existing.history.length }],
      },
    };
  }
  const model = buildModel(config, { learningRate: settings.schedule.rate, seed: settings.seed, optimizer: settings.optimizer, oneHotTargets: (settings.labelSmoothing ?? 0) > 0 });
  const options: RunOptions = { ...settings, trainImages: tensors.trainSplit.count, validationImages: tensors.validationSplit.count };
  const record: RunRecord = {
    status: "running",
    model: config,
    parameters: model.countParams(),
    options,
    backend: { name: backend.name, threads: backend.threads, description: describeBackend(backend), precision },
    dataset: { name: data.name, sha256: data.sha256 },
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    resumes: [],
    history: [],
    trainSeconds: 0,
    bestEpoch: null,
    stoppedEarly: false,
    validation: null,
    test: null,
  };
  try {
    // A fresh start: whatever an abandoned attempt left goes.
    await rm(path.join(outDir, CHECKPOINT_DIR), { recursive: true, force: true });
    await rm(path.join(outDir, BEST_MODEL_DIR), { recursive: true, force: true });
    await writeRecord(outDir, record);
  } catch (error) {
    model.dispose();
    throw error;
  }
  return { model, record };
}

/** The test split, once, on the run's best model, predicted as its recipe declares; loss against the true labels. */
async function testMetrics(outDir: string, data: Dataset, settings: RunSettings): Promise<NonNullable<RunRecord["test"]>> {
  const best = await loadModel(path.join(outDir, BEST_MODEL_DIR));
  const classes = data.classNames.length;
  const testX = toImageTensor(data.test);
  let loss: number;
  let testAccuracy: number;
  try {
    if (settings.testTimeAugmentation) {
      const probabilities = predictWithTta(best, testX);
      loss = logLoss(probabilities, data.test.labels, classes);
      testAccuracy = accuracy(data.test.labels, argmaxRows(probabilities, classes), classes);
    } else {
      const testY = (settings.labelSmoothing ?? 0) > 0 ? toTargetTensor(data.test, classes, 0) : toLabelTensor(data.test);
      [loss, testAccuracy] = evaluate(best, { x: testX, y: testY }, settings.batchSize);
      testY.dispose();
    }
  } finally {
    testX.dispose();
    best.dispose();
  }
  const correct = Math.round(testAccuracy * data.test.count);
  return { loss, accuracy: testAccuracy, correct, incorrect: data.test.count - correct, images: data.test.count };
}

async function trainRunLocked(request: RunRequest): Promise<RunRecord> {
  const { outDir } = request;
  const log = request.hooks?.log ?? (() => {});
  const existing = await openRunFolder(request, log);
  // A resumed run keeps its own model and settings (split, schedule, epochs, augmentation).
  const config = existing ? existing.model : request.config;
  const settings: RunSettings = existing ? { ...request.settings, ...existing.options, augment: existing.options.augment ?? null } : request.settings;
  const datasetName = (existing?.dataset.name ?? request.dataset ?? "fashion") as DatasetName;

  const backend = await initBackend();
  const data = request.data?.name === datasetName ? request.data : await loadDataset(datasetName);
  validateModelConfig(config, `${outDir}: model`, [data.train.height, data.train.width, 1], data.classNames.length);
  validateSettings(settings);
  const tensors = runTensors(data, settings);
  const { trainData, validation } = tensors;
  const precision = effectivePrecision(settings.precision ?? "fp32");
  if (settings.precision === "bf16" && precision !== "bf16") log(`bf16 asked for, fp32 runs: ${bf16Unavailable()}`);
  const disposeTensors = () => tf.dispose([trainData.x, trainData.y, ...(validation ? [validation.x, validation.y] : [])]);
  let started: { model: tf.LayersModel; record: RunRecord };
  try {
    started = await startOrResume(outDir, existing, config, settings, tensors, data, backend, precision, log);
  } catch (error) {
    disposeTensors();
    throw error;
  }
  const { model } = started;
  let record = started.record;
  // The average restarts from the checkpoint's, or from the initial weights.
  const averageFile = path.join(outDir, CHECKPOINT_DIR, AVERAGE_FILE);
  const average = settings.ema ? new WeightAverage(model, settings.ema.decay, record.history.length > 0 ? await readAverage(averageFile) : undefined) : undefined;
  const validating = validation ? `validating on ${tensors.validationSplit.count}` : `no validation (${settings.epochs} epochs, fixed)`;
  log(`training ${record.model.name} (${record.parameters.toLocaleString("en-US")} parameters) on ${tensors.trainSplit.count} images, ${validating}; writing ${outDir}`);

  try {
    const result = await train(model, trainData, validation, {
      epochs: settings.epochs,
      batchSize: settings.batchSize,
      seed: settings.seed,
      schedule: settings.schedule,
      earlyStopping: settings.patience ? { patience: settings.patience } : undefined,
      augment: settings.augment ? augmenter(settings.augment, settings.seed) : undefined,
      startEpoch: record.history.length,
      previousHistory: record.history,
      onBatchEnd: request.hooks?.onBatchEnd,
      weightAverage: average,
      precision,
      onEpochEnd: async (epoch, trained) => {
        const best = improvesOnEpoch(epoch, record.bestEpoch === null ? undefined : record.history[record.bestEpoch]);
        const scores = epoch.valLoss !== null && epoch.valAccuracy !== null ? { loss: epoch.valLoss, accuracy: epoch.valAccuracy } : null;
        const next: RunRecord = {
          ...record,
          history: [...record.history, epoch],
          trainSeconds: record.trainSeconds + epoch.seconds,
          ...(best ? { bestEpoch: epoch.epoch, validation: scores } : {}),
        };
        await commitEpoch(outDir, trained, next, best, request.hooks?.onCommitStep, average);
        record = next;
        request.hooks?.onEpochEnd?.(epoch, record);
      },
    });
    record.stoppedEarly = result.stoppedEarly;
    if (!request.skipTest) record.test = await testMetrics(outDir, data, settings);
    record.status = "finished";
    await writeRecord(outDir, record);
    return record;
  } finally {
    average?.dispose();
    model.dispose();
    disposeTensors();
  }
}

async function readAverage(file: string): Promise<Uint8Array> {
  if (!existsSync(file)) throw new Error(`${file} is missing: the run declares an EMA but its checkpoint holds no average; it cannot resume exactly (train it again in another folder).`);
  return new Uint8Array(await readFile(file));
}

/** Label smoothing above this moves more than half of a target's mass off its label. */
export const MAX_LABEL_SMOOTHING = 0.5;

/** Settings a run cannot train with, refused before anything is written. */
export function validateSettings(settings: RunSettings): void {
  requirePositiveInt(settings.epochs, "epochs");
  requirePositiveInt(settings.batchSize, "batchSize");
  if (!Number.isInteger(settings.seed)) throw new Error(`seed must be an integer, got ${settings.seed}.`);
  if (settings.splitSeed !== undefined && !Number.isInteger(settings.splitSeed)) throw new Error(`splitSeed must be an integer, got ${settings.splitSeed}.`);
  if (settings.validationFraction === 0) {
    if (settings.patience !== null) throw new Error("validationFraction 0 trains on every training image with no validation, so the epochs are fixed: early stopping (patience) needs validation.");
  } else if (!(settings.validationFraction > 0 && settings.validationFraction < 1)) {
    throw new Error(`validationFraction must be 0 (no validation) or in (0, 1), got ${settings.validationFraction}.`);
  }
  if (!(settings.schedule.rate > 0 && settings.schedule.rate < 1)) throw new Error(`the learning rate must be in (0, 1), got ${settings.schedule.rate}.`);
  if (settings.patience !== null) requirePositiveInt(settings.patience, "patience");
  if (settings.optimizer !== undefined && !OPTIMIZERS.includes(settings.optimizer)) throw new Error(`optimizer must be ${OPTIMIZERS.join(" or ")}, got ${JSON.stringify(settings.optimizer)}.`);
  const smoothing = settings.labelSmoothing;
  if (smoothing !== undefined && !(smoothing >= 0 && smoothing <= MAX_LABEL_SMOOTHING)) throw new Error(`label smoothing must be in [0, ${MAX_LABEL_SMOOTHING}], got ${smoothing}.`);
  if (settings.precision !== undefined && !PRECISIONS.includes(settings.precision)) throw new Error(`precision must be ${PRECISIONS.join(" or ")}, got ${JSON.stringify(settings.precision)}.`);
  if (settings.ema !== undefined) {
    checkAverageDecay(settings.ema?.decay, "ema");
    if (settings.patience !== null) throw new Error("ema: early stopping (patience) and an EMA of the weights do not go together; choose one.");
  }
  if ((settings.schedule.kind === "warmupLinear" || settings.schedule.kind === "warmupCosine") && !(settings.schedule.warmup >= 0 && settings.schedule.warmup < 1)) {
    throw new Error(`the warm-up must be a fraction of the steps in [0, 1), got ${settings.schedule.warmup}.`);
  }
}

/**
 * What makes two runs the same run: the network (layers, input shape), the settings and the
 * dataset. The model's name and description are prose: rewording them keeps finished runs.
 */
export function runIdentity(config: ModelConfig, settings: RunSettings, dataset: string): string {
  const { name: _name, description: _description, ...network } = config;
  // Defaults spelled out or left out are the same run (and records older than the choice match).
  const { optimizer, labelSmoothing, testTimeAugmentation, precision, splitSeed, ...rest } = settings;
  return canonicalJson({
    network,
    settings: {
      ...rest,
      ...(optimizer && optimizer !== "adam" ? { optimizer } : {}),
      ...(labelSmoothing ? { labelSmoothing } : {}),
      ...(testTimeAugmentation ? { testTimeAugmentation } : {}),
      ...(precision && precision !== "fp32" ? { precision } : {}),
      ...(splitSeed !== undefined && splitSeed !== rest.seed ? { splitSeed } : {}),
    },
    dataset,
  });
}

/** The settings part of a record's options (what a request specifies). */
function settingsOf(options: RunOptions): RunSettings {
  const { trainImages: _train, validationImages: _validation, ...settings } = options;
  return { ...settings, augment: settings.augment ?? null };
}

/** Whether a record is of this run: the same model, settings and dataset (runIdentity). */
export function holdsRun(record: RunRecord, config: ModelConfig, settings: RunSettings, dataset: string): boolean {
  return runIdentity(config, settings, dataset) === runIdentity(record.model, settingsOf(record.options), record.dataset.name);
}

/**
 * The run in outDir for this request: read back when it already finished with the same model,
 * settings and dataset, resumed when it was interrupted, trained when absent. Lets notebooks
 * be re-executed (and survive a kill) without retraining what is done.
 */
export async function ensureRun(request: Omit<RunRequest, "resume">): Promise<RunRecord> {
  const existing = await readRecord(request.outDir);
  if (!existing || (existing.status === "running" && existing.history.length === 0)) return trainRun(request);
  if (!holdsRun(existing, request.config, request.settings, request.dataset ?? "fashion")) {
    throw new Error(`${request.outDir} holds a different run (model, settings or dataset differ); delete it or choose another folder.`);
  }
  if (existing.status === "finished") {
    request.hooks?.log?.(`${request.outDir}: finished run found, not retrained`);
    return existing;
  }
  return trainRun({ ...request, resume: true });
}

/**
 * Class probabilities [N·classes] of a run's best model (or a model folder) for images x, made
 * as the run's record says its test predictions were (averaged over TTA views when declared).
 */
export async function runProbabilities(dir: string, x: tf.Tensor4D): Promise<Float32Array> {
  const { modelDir, record } = await resolveModelDir(dir);
  const model = await loadModel(modelDir);
  try {
    return record?.options.testTimeAugmentation ? predictWithTta(model, x) : predictProbabilities(model, x);
  } finally {
    model.dispose();
  }
}
