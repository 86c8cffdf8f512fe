/**
 * Preprocessing: scaling, standardisation with training statistics only, tensors of shape
 * [N,28,28,1], padding, and stratified, seeded train/validation splits.
 */
import { tf } from "../accelerator";
import type { Split } from "./datasets";
import { seededRandom, shuffle } from "../tooling/random";

export interface SplitIndices {
  train: number[];
  validation: number[];
}

/**
 * Splits indices 0..labels.length−1 so that each class keeps its proportion in both parts
 * (validation gets round(fraction × class count) of each class), seeded.
 */
export function stratifiedSplit(labels: ArrayLike<number>, validationFraction: number, seed: number): SplitIndices {
  if (!(validationFraction > 0 && validationFraction < 1)) {
    throw new Error(`validationFraction must be in (0, 1), got ${validationFraction}.`);
  }
  if (labels.length === 0) throw new Error("stratifiedSplit: no labels.");
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const members = byClass.get(labels[i]) ?? [];
    members.push(i);
    byClass.set(labels[i], members);
  }
  const random = seededRandom(seed);
  const train: number[] = [];
  const validation: number[] = [];
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = shuffle(byClass.get(label)!, random);
    const take = Math.round(members.length * validationFraction);
    validation.push(...members.slice(0, take));
    train.push(...members.slice(take));
  }
  return { train: train.sort((a, b) => a - b), validation: validation.sort((a, b) => a - b) };
}

/** The images and labels at the given indices, as a new split (pixels copied). */
export function subset(split: Split, indices: ArrayLike<number>): Split {
  const size = split.height * split.width;
  const images = new Uint8Array(indices.length * size);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i];
    if (!(index >= 0 && index < split.count)) throw new Error(`subset: index ${index} outside 0–${split.count - 1}.`);
    images.set(split.images.subarray(index * size, (index + 1) * size), i * size);
    labels[i] = split.labels[index];
  }
  return { images, labels, count: indices.length, height: split.height, width: split.width };
}

export interface PixelStatistics {
  mean: number;
  std: number;
}

/** Mean and standard deviation of pixels scaled to [0,1]; fit them on training data only. */
export function fitStandardizer(train: Split): PixelStatistics {
  if (train.images.length === 0) throw new Error("fitStandardizer: empty split.");
  let sum = 0;
  let sumSquares = 0;
  for (const value of train.images) {
    sum += value;
    sumSquares += value * value;
  }
  const n = train.images.length;
  const mean = sum / n;
  const std = Math.sqrt(Math.max(0, sumSquares / n - mean * mean));
  if (std === 0) throw new Error("fitStandardizer: all pixels are equal; cannot standardise.");
  return { mean: mean / 255, std: std / 255 };
}

export type Scaling = { kind: "unit" } | { kind: "standard"; statistics: PixelStatistics };

/**
 * A split as a float32 tensor [N, H, W, 1]: pixels/255 ("unit"), or ((pixels/255) − mean)/std
 * with statistics fitted on the training split ("standard").
 */
export function toImageTensor(split: Split, scaling: Scaling = { kind: "unit" }): tf.Tensor4D {
  const values = new Float32Array(split.images.length);
  const scale = scaling.kind === "unit" ? 1 / 255 : 1 / (255 * scaling.statistics.std);
  const shift = scaling.kind === "unit" ? 0 : scaling.statistics.mean / scaling.statistics.std;
  for (let i = 0; i < values.length; i++) values[i] = split.images[i] * scale - shift;
  return tf.tensor4d(values, [split.count, split.height, split.width, 1]);
}

/** Labels as a float32 tensor [N] (sparse categorical cross-entropy takes class indices). */
export function toLabelTensor(split: Split): tf.Tensor1D {
  return tf.tensor1d(Float32Array.from(split.labels), "float32");
}

/**
 * One-hot targets [N, classes] with label smoothing: (1 − smoothing) on the label, plus
 * smoothing / classes on every class (0 gives plain one-hot rows).
 */
export function toTargetTensor(split: Split, classes: number, smoothing: number): tf.Tensor2D {
  if (!(smoothing >= 0 && smoothing < 1)) throw new Error(`label smoothing must be in [0, 1), got ${smoothing}.`);
  const targets = new Float32Array(split.count * classes).fill(smoothing / classes);
  for (let i = 0; i < split.count; i++) {
    if (split.labels[i] >= classes) throw new Error(`label ${split.labels[i]} at ${i} is not below ${classes} classes.`);
    targets[i * classes + split.labels[i]] += 1 - smoothing;
  }
  return tf.tensor2d(targets, [split.count, classes]);
}

/** Zero padding around each image, e.g. 28×28 → 32×32 with 2. */
export function padImages(images: tf.Tensor4D, pad: number): tf.Tensor4D {
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`pad must be a non-negative integer, got ${pad}.`);
  return tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]]);
}
