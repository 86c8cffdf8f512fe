/**
 * The training loop: seeded shuffling and batching, an optional augmentation hook applied to
 * training batches only, a learning-rate schedule, validation after every epoch, early
 * stopping that restores the best epoch's weights (TF.js's own earlyStopping callback cannot), and a
 * clear stop on a NaN or infinite loss or weights. Each finished epoch is reported to `onEpochEnd`
 * (where callers checkpoint and write run records).
 */
import { performance } from "node:perf_hooks";
import { inPrecision, tf, type Precision } from "../accelerator";
import { improvesOn } from "../evaluation/selection";
import { seededRandom, shuffle } from "../tooling/random";
import { requirePositiveInt } from "../tooling/checks";
import type { WeightAverage } from "./weight-average";

export type LearningRateSchedule =
  | { kind: "constant"; rate: number }
  /** rate × factor^floor(epoch / every) */
  | { kind: "step"; rate: number; factor: number; every: number }
  /** Linear warm-up from rate/25 to rate over the first 30% of the epochs, then cosine down to rate/1e4. */
  | { kind: "oneCycle"; rate: number }
  /**
   * Set every step, not every epoch: linear from 0 to rate over the first `warmup` fraction of
   * the steps, then linear down to 0 at the last (the short recipe issue 19 measured in PyTorch).
   */
  | { kind: "warmupLinear"; rate: number; warmup: number }
  /** Set every step too: the same warm-up, then down to 0 along half a cosine. */
  | { kind: "warmupCosine"; rate: number; warmup: number };

/** Schedules whose rate changes within an epoch (train sets them before every step). */
export const perStep = (schedule: LearningRateSchedule) => schedule.kind === "warmupLinear" || schedule.kind === "warmupCosine";

/**
 * The rate at `epoch` (0-based) of `totalEpochs`. Per-step schedules take a fractional epoch:
 * epoch e, step s of n is e + s/n.
 */
export function learningRateAt(schedule: LearningRateSchedule, epoch: number, totalEpochs: number): number {
  switch (schedule.kind) {
    case "warmupLinear":
    case "warmupCosine": {
      const progress = epoch / totalEpochs;
      if (progress < schedule.warmup) return (schedule.rate * progress) / schedule.warmup;
      // The share of the decay left: linear, or half a cosine over the same steps.
      const left = Math.max(0, 1 - progress) / (1 - schedule.warmup);
      return schedule.kind === "warmupLinear" ? schedule.rate * left : (schedule.rate * (1 - Math.cos(Math.PI * left))) / 2;
    }
    case "constant":
      return schedule.rate;
    case "step":
      return schedule.rate * schedule.factor ** Math.floor(epoch / schedule.every);
    case "oneCycle": {
      const warmup = Math.max(1, Math.round(0.3 * totalEpochs));
      if (epoch < warmup) return schedule.rate / 25 + ((schedule.rate - schedule.rate / 25) * epoch) / warmup;
      const progress = totalEpochs - warmup <= 1 ? 1 : (epoch - warmup) / (totalEpochs - warmup - 1);
      const floor = schedule.rate / 1e4;
      return floor + ((schedule.rate - floor) * (1 + Math.cos(Math.PI * progress))) / 2;
    }
  }
}

export interface EarlyStopping {
  /** Epochs without improvement (lib/evaluation/selection.ts's rule) before stopping. */
  patience: number;
  /** The smallest gain of validation accuracy that counts as an improvement. */
  minDelta?: number;
}

export interface EpochRecord {
  /** 0-based. */
  epoch: number;
  loss: number;
  accuracy: number;
  /** null in runs trained on all training images (no validation split). */
  valLoss: number | null;
  valAccuracy: number | null;
  learningRate: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface TrainingData {
  x: tf.Tensor4D;
  /** Class indices as float32 [N] (sparse categorical cross-entropy), or one-hot rows [N, classes]. */
  y: tf.Tensor1D | tf.Tensor2D;
}

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  seed: number;
  schedule?: LearningRateSchedule;
  earlyStopping?: EarlyStopping;
  /** Transforms a training batch (never validation); must not dispose its input. */
  augment?: (images: tf.Tensor4D, epoch: number, step: number) => tf.Tensor4D;
  /** First epoch to run (resume); earlier epochs are taken as done. */
  startEpoch?: number;
  /** History of the epochs before startEpoch, when resuming. */
  previousHistory?: EpochRecord[];
  /**
   * An average of the weights updated after every step; validation (and so the choice of the
   * best epoch) uses it instead of the trained weights. Not with early stopping.
   */
  weightAverage?: WeightAverage;
  /** The training steps' convolutions and matrix products in bf16 where the CPU has it (validation stays fp32); absent: fp32. */
  precision?: Precision;
  onEpochEnd?: (record: EpochRecord, model: tf.LayersModel) => void | Promise<void>;
  onBatchEnd?: (progress: { epoch: number; epochs: number; step: number; steps: number; loss: number; accuracy: number; imagesPerSecond: number }) => void;
}

export interface TrainResult {
  history: EpochRecord[];
  /** The best epoch by validation (lib/evaluation/selection.ts's rule; 0-based). */
  bestEpoch: number;
  stoppedEarly: boolean;
  /** True when the model's weights were reset to those of bestEpoch. */
  restoredBest: boolean;
}

export class NonFiniteLossError extends Error {}

function validateOptions(options: TrainOptions, trainCount: number, validated: boolean): void {
  requirePositiveInt(options.epochs, "epochs");
  requirePositiveInt(options.batchSize, "batchSize");
  if (trainCount === 0) throw new Error("No training images.");
  if (options.earlyStopping) requirePositiveInt(options.earlyStopping.patience, "earlyStopping.patience");
  if (options.earlyStopping && !validated) throw new Error("Early stopping needs validation images: without a validation split the epochs are fixed.");
  // Early stopping restores trained weights; with an average the best epoch's are averaged ones.
  if (options.earlyStopping && options.weightAverage) throw new Error("Early stopping and a weight average (EMA) do not go together: choose one.");
  const start = options.startEpoch ?? 0;
  if (!Number.isInteger(start) || start < 0 || start > options.epochs) {
    throw new Error(`startEpoch must be an integer in 0–${options.epochs}, got ${start}.`);
  }
}

/**
 * Sets the learning rate of the model's optimizer. Adam reads `learningRate` every step; SGD and
 * momentum keep it as a tensor made at construction, which only `setLearningRate` replaces.
 */
function setLearningRate(model: tf.LayersModel, rate: number): void {
  const optimizer = model.optimizer as unknown as { learningRate?: number; setLearningRate?: (rate: number) => void };
  if (typeof optimizer.learningRate !== "number") throw new Error("The model's optimizer has no learning rate to schedule.");
  if (optimizer.learningRate === rate) return;
  if (typeof optimizer.setLearningRate === "function") optimizer.setLearningRate(rate);
  else optimizer.learningRate = rate;
}

/** An epoch's validation scores for progress lines ("val acc 0.9512"), or "no validation". */
export function describeValidation(epoch: Pick<EpochRecord, "valLoss" | "valAccuracy">, withLoss = false): string {
  if (epoch.valAccuracy === null) return "no validation";
  const loss = withLoss && epoch.valLoss !== null ? `val loss ${epoch.valLoss.toFixed(4)} ` : "";
  return `${loss}val acc ${epoch.valAccuracy.toFixed(4)}`;
}

/**
 * Whether an epoch's model replaces the best one so far: by validation (lib/evaluation/selection.ts's
 * rule), or, in a run without validation images, always (its model is its last epoch's).
 */
export function improvesOnEpoch(candidate: EpochRecord, best: EpochRecord | undefined, minDelta = 0): boolean {
  const validated = (e: EpochRecord) => (e.valAccuracy === null ? undefined : { valAccuracy: e.valAccuracy, valLoss: e.valLoss ?? undefined });
  const incumbent = best && validated(best);
  const challenger = validated(candidate);
  return challenger === undefined || improvesOn(challenger, incumbent, minDelta);
}

/** Trains `model`; `validation` null: on all the images given, with no validation (a fixed number of epochs). */
export async function train(model: tf.LayersModel, trainData: TrainingData, validation: TrainingData | null, options: TrainOptions): Promise<TrainResult> {
  const count = trainData.x.shape[0];
  validateOptions(options, count, validation !== null);
  const history: EpochRecord[] = [...(options.previousHistory ?? [])];
  const minDelta = options.earlyStopping?.minDelta ?? 0;
  let best: EpochRecord | undefined;
  for (const record of history) if (improvesOnEpoch(record, best, minDelta)) best = record;
  let bestEpoch = best?.epoch ?? -1;
  let bestWeights: tf.Tensor[] | undefined;
  let stoppedEarly = false;
  const steps = Math.ceil(count / options.batchSize);

  try {
    for (let epoch = options.startEpoch ?? 0; epoch < options.epochs; epoch++) {
      const learningRate = learningRateAt(options.schedule ?? { kind: "constant", rate: 1e-3 }, epoch, options.epochs);
      if (options.schedule) setLearningRate(model, learningRate);
      // A seed per epoch: a resumed run shuffles exactly as the uninterrupted one would have.
      const order = shuffle(Array.from({ length: count }, (_, i) => i), seededRandom(options.seed * 100_003 + epoch));
      const started = performance.now();
      let lossSum = 0;
      let accuracySum = 0;
      for (let step = 0; step < steps; step++) {
        if (options.schedule && perStep(options.schedule)) setLearningRate(model, learningRateAt(options.schedule, epoch + step / steps, options.epochs));
        const indices = order.slice(step * options.batchSize, (step + 1) * options.batchSize);
        const [loss, accuracy] = await trainStep(model, trainData, indices, options.augment, epoch, step, options.precision ?? "fp32");
        options.weightAverage?.update(model, epoch * steps + step);
        if (!Number.isFinite(loss)) {
          throw new NonFiniteLossError(
            `Training stopped: the loss became ${loss} at epoch ${epoch + 1}, batch ${step + 1} of ${steps} ` +
              `(learning rate ${learningRate}). Lower the learning rate or check the inputs.`,
          );
        }
        lossSum += loss * indices.length;
        accuracySum += accuracy * indices.length;
        options.onBatchEnd?.({
          epoch, epochs: options.epochs, step, steps, loss, accuracy,
          imagesPerSecond: (Math.min(count, (step + 1) * options.batchSize) * 1000) / (performance.now() - started),
        });
      }
      // The loss can stay finite while the weights are not: the loss clips predictions, and on
      // wasm clipping turns NaN into the clip bound. So the weights are checked too.
      if (!weightsFinite(model)) {
        throw new NonFiniteLossError(
          `Training stopped: the weights became NaN or infinite during epoch ${epoch + 1} ` +
            `(learning rate ${learningRate}). Lower the learning rate or check the inputs.`,
        );
      }
      const seconds = (performance.now() - started) / 1000;
      const average = options.weightAverage;
      const validate = (data: TrainingData) => (average ? average.applied(model, () => evaluate(model, data, options.batchSize)) : evaluate(model, data, options.batchSize));
      const [valLoss, valAccuracy] = validation ? await validate(validation) : [null, null];
      const record: EpochRecord = {
        epoch, loss: lossSum / count, accuracy: accuracySum / count, valLoss, valAccuracy,
        learningRate, seconds, imagesPerSecond: count / seconds,
      };
      history.push(record);
      if (improvesOnEpoch(record, best, minDelta)) {
        [best, bestEpoch] = [record, epoch];
        if (options.earlyStopping) {
          tf.dispose(bestWeights);
          bestWeights = model.getWeights().map((w) => w.clone());
        }
      }
      await options.onEpochEnd?.(record, model);
      if (options.earlyStopping && epoch - bestEpoch >= options.earlyStopping.patience) {
        stoppedEarly = true;
        break;
      }
    }
    let restoredBest = false;
    const lastEpoch = history[history.length - 1]?.epoch;
    if (bestWeights && bestEpoch !== lastEpoch) {
      model.setWeights(bestWeights);
      restoredBest = true;
    }
    return { history, bestEpoch, stoppedEarly, restoredBest };
  } finally {
    tf.dispose(bestWeights);
  }
}

function weightsFinite(model: tf.LayersModel): boolean {
  return tf.tidy(() => model.trainableWeights.every((w) => tf.all(tf.isFinite(w.read())).dataSync()[0] === 1));
}

/** One training step on the images `indices` of `data`, augmented where asked; resolves with its loss and accuracy. */
export async function trainStep(
  model: tf.LayersModel,
  data: TrainingData,
  indices: number[],
  augment: TrainOptions["augment"],
  epoch: number,
  step: number,
  precision: Precision,
): Promise<[number, number]> {
  const [xs, ys] = tf.tidy(() => {
    const indexTensor = tf.tensor1d(indices, "int32");
    const images = tf.gather(data.x, indexTensor) as tf.Tensor4D;
    return [augment ? augment(images, epoch, step) : images, tf.gather(data.y, indexTensor)];
  });
  try {
    const result = await inPrecision(precision, () => model.trainOnBatch(xs, ys));
    const [loss, accuracy] = Array.isArray(result) ? result : [result, NaN];
    return [loss, accuracy];
  } finally {
    tf.dispose([xs, ys]);
  }
}

/** Loss and accuracy over a whole split, in batches (no augmentation, inference mode). */
export function evaluate(model: tf.LayersModel, data: TrainingData, batchSize: number): [number, number] {
  const result = model.evaluate(data.x, data.y, { batchSize }) as tf.Scalar[];
  const values = result.map((t) => t.dataSync()[0]);
  tf.dispose(result);
  return [values[0], values[1]];
}
