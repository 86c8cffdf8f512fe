/**
 * One training run end to end, as `npm run train`, the notebooks and tuning all do it: the
 * seeded stratified validation split, training with optional on-the-fly augmentation, after
 * every epoch a checkpoint and the run record (atomically), the best-validation model kept,
 * and the test split measured once at the end on that model. A run killed part-way resumes
 * from its last finished epoch.
 */
import path from "node:path";
import { augmenter } from "./augment";
import { describeBackend, initBackend, tf } from "./backend";
import { loadDataset, type Dataset, type DatasetName } from "./data";
import { buildModel, type ModelConfig } from "./models";
import { canonicalJson, loadModel, saveModel } from "./persist";
import { stratifiedSplit, subset, toImageTensor, toLabelTensor } from "./preprocess";
import { BEST_MODEL_DIR, CHECKPOINT_DIR, readRecord, resolveModelDir, writeRecord, type RunOptions, type RunRecord, type RunSettings } from "./runs";
import { evaluate, predictProbabilities, train, type EpochRecord, type TrainOptions } from "./train";

export type { RunSettings };

/** Quick mode (CI, smoke runs): this many training / validation images. */
export const QUICK_TRAIN_IMAGES = 2000;
export const QUICK_VALIDATION_IMAGES = 500;

export interface RunHooks {
  log?: (line: string) => void;
  onBatchEnd?: TrainOptions["onBatchEnd"];
  onEpochEnd?: (epoch: EpochRecord, record: RunRecord) => void;
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

/** Trains (or resumes) one run into outDir and returns its finished record. */
export async function trainRun(request: RunRequest): Promise<RunRecord> {
  const { config, outDir } = request;
  const log = request.hooks?.log ?? (() => {});
  const existing = await readRecord(outDir);
  if (existing && !request.resume) {
    throw new Error(`${outDir} already holds a run (${existing.status}); use --resume to continue it or another --out.`);
  }
  if (request.resume && !existing) throw new Error(`--resume: no run record in ${outDir}.`);
  if (existing?.status === "finished") throw new Error(`${outDir}: this run already finished; nothing to resume.`);
  // A resumed run keeps its own settings (split, schedule, epochs, augmentation).
  const settings: RunSettings = existing ? { ...request.settings, ...existing.options, augment: existing.options.augment ?? null } : request.settings;
  const datasetName = (existing?.dataset.name ?? request.dataset ?? "fashion") as DatasetName;

  const backend = await initBackend();
  const data = request.data?.name === datasetName ? request.data : await loadDataset(datasetName);
  const split = stratifiedSplit(data.train.labels, settings.validationFraction, settings.seed);
  const trainSplit = subset(data.train, settings.quick ? split.train.slice(0, QUICK_TRAIN_IMAGES) : split.train);
  const validationSplit = subset(data.train, settings.quick ? split.validation.slice(0, QUICK_VALIDATION_IMAGES) : split.validation);
  const trainData = { x: toImageTensor(trainSplit), y: toLabelTensor(trainSplit) };
  const validation = { x: toImageTensor(validationSplit), y: toLabelTensor(validationSplit) };

  let model: tf.LayersModel;
  let record: RunRecord;
  if (existing) {
    log(`resuming ${outDir} after epoch ${existing.history.length} of ${existing.options.epochs}`);
    // Killed before its first epoch ended, a run has no checkpoint yet: it starts again from scratch.
    model = existing.history.length > 0 ? await loadModel(path.join(outDir, CHECKPOINT_DIR)) : buildModel(existing.model, { learningRate: settings.schedule.rate, seed: settings.seed });
    record = { ...existing, resumes: [...existing.resumes, { at: new Date().toISOString(), fromEpoch: existing.history.length }] };
  } else {
    model = buildModel(config, { learningRate: settings.schedule.rate, seed: settings.seed });
    const options: RunOptions = { ...settings, trainImages: trainSplit.count, validationImages: validationSplit.count };
    record = {
      status: "running",
      model: config,
      parameters: model.countParams(),
      options,
      backend: { name: backend.name, threads: backend.threads, description: describeBackend(backend) },
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
    await writeRecord(outDir, record);
  }
  log(`training ${record.model.name} (${record.parameters.toLocaleString("en-US")} parameters) on ${trainSplit.count} images, validating on ${validationSplit.count}; writing ${outDir}`);

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
      onEpochEnd: async (epoch, trained) => {
        const best = record.bestEpoch === null || epoch.valLoss < record.history[record.bestEpoch].valLoss;
        record.history = [...record.history, epoch];
        record.trainSeconds += epoch.seconds;
        if (best) {
          record.bestEpoch = epoch.epoch;
          record.validation = { loss: epoch.valLoss, accuracy: epoch.valAccuracy };
          await saveModel(trained, path.join(outDir, BEST_MODEL_DIR));
        }
        await saveModel(trained, path.join(outDir, CHECKPOINT_DIR));
        await writeRecord(outDir, record);
        request.hooks?.onEpochEnd?.(epoch, record);
      },
    });
    record.stoppedEarly = result.stoppedEarly;

    if (request.skipTest) {
      record.status = "finished";
      await writeRecord(outDir, record);
      return record;
    }
    // The test split, once, on the best model.
    const best = await loadModel(path.join(outDir, BEST_MODEL_DIR));
    const test = { x: toImageTensor(data.test), y: toLabelTensor(data.test) };
    const [testLoss, testAccuracy] = evaluate(best, test, settings.batchSize);
    tf.dispose([test.x, test.y]);
    best.dispose();
    const correct = Math.round(testAccuracy * data.test.count);
    record.test = { loss: testLoss, accuracy: testAccuracy, correct, incorrect: data.test.count - correct, images: data.test.count };
    record.status = "finished";
    await writeRecord(outDir, record);
    return record;
  } finally {
    model.dispose();
    tf.dispose([trainData.x, trainData.y, validation.x, validation.y]);
  }
}

/**
 * What makes two runs the same run: the network (layers, input shape), the settings and the
 * dataset. The model's name and description are prose: rewording them keeps finished runs.
 */
export function runIdentity(config: ModelConfig, settings: RunSettings, dataset: string): string {
  const { name: _name, description: _description, ...network } = config;
  return canonicalJson({ network, settings, dataset });
}

/** The settings part of a record's options (what a request specifies). */
function settingsOf(options: RunOptions): RunSettings {
  const { trainImages: _train, validationImages: _validation, ...settings } = options;
  return { ...settings, augment: settings.augment ?? null };
}

/**
 * The run in outDir for this request: read back when it already finished with the same model,
 * settings and dataset, resumed when it was interrupted, trained when absent. Lets notebooks
 * be re-executed (and survive a kill) without retraining what is done.
 */
export async function ensureRun(request: Omit<RunRequest, "resume">): Promise<RunRecord> {
  const existing = await readRecord(request.outDir);
  if (!existing) return trainRun(request);
  const wanted = runIdentity(request.config, request.settings, request.dataset ?? "fashion");
  const found = runIdentity(existing.model, settingsOf(existing.options), existing.dataset.name);
  if (wanted !== found) {
    throw new Error(`${request.outDir} holds a different run (model, settings or dataset differ); delete it or choose another folder.`);
  }
  if (existing.status === "finished") {
    request.hooks?.log?.(`${request.outDir}: finished run found, not retrained`);
    return existing;
  }
  return trainRun({ ...request, resume: true });
}

/** Class probabilities [N·classes] of a run's best model (or a model folder) for images x. */
export async function runProbabilities(dir: string, x: tf.Tensor4D): Promise<Float32Array> {
  const model = await loadModel((await resolveModelDir(dir)).modelDir);
  try {
    return predictProbabilities(model, x);
  } finally {
    model.dispose();
  }
}
