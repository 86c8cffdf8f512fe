/**
 * Seeded image augmentation on batches of [N, H, W, 1] tensors with pixels in [0, 1].
 *
 * Geometric transforms (horizontal flip, shift, rotation, zoom) are composed into one affine
 * matrix per image and applied in a single `tf.image.transform` call (bilinear, zero fill:
 * the dataset's background is black); random erasing and Gaussian noise follow. Where no image
 * of a batch is rotated or zoomed, every map moves whole pixels, and the batch is moved and
 * erased in JavaScript instead: the same values in a fraction of the wasm kernels' time. Every random
 * draw comes from a seed, so a batch's augmentation depends only on (images, config, seed):
 * training derives the seed from (run seed, epoch, step), which keeps resumed runs identical.
 */
import { tf } from "../accelerator";
import { seededRandom } from "../tooling/random";

export interface AugmentConfig {
  /** Mirror left–right with this probability. */
  flipHorizontal?: { probability: number };
  /** Mirror top–bottom: off by default (clothing is never upside down in the dataset). */
  flipVertical?: { probability: number };
  /** Translate by a whole number of pixels in [-maxPixels, maxPixels] per axis (crop with zero padding). */
  shift?: { maxPixels: number; probability?: number };
  /** Rotate by an angle in [-maxDegrees, maxDegrees] about the centre. */
  rotate?: { maxDegrees: number; probability?: number };
  /** Scale by a factor in [1 - maxFraction, 1 + maxFraction] about the centre. */
  zoom?: { maxFraction: number; probability?: number };
  /** Random erasing (cutout): a rectangle of area fraction and aspect ratio drawn from the ranges. */
  erase?: { probability: number; area: [number, number]; aspect: [number, number]; value?: number };
  /** Add N(0, std²) noise, then clip to [0, 1]. */
  noise?: { std: number; probability?: number };
}

export type TransformName = keyof AugmentConfig;
export const TRANSFORM_NAMES: readonly TransformName[] = ["flipHorizontal", "flipVertical", "shift", "rotate", "zoom", "erase", "noise"];

/**
 * The pipeline the strongest published Fashion-MNIST results use: crop with padding (shift
 * by up to 2 pixels), horizontal flips, random erasing (p = 0.5, area 0.02–0.4, aspect 0.3–3.3).
 */
export const STANDARD_AUGMENTATION: AugmentConfig = {
  flipHorizontal: { probability: 0.5 },
  shift: { maxPixels: 2 },
  erase: { probability: 0.5, area: [0.02, 0.4], aspect: [0.3, 3.3] },
};

function checkProbability(value: unknown, where: string): void {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) throw new Error(`${where} must be a probability in [0, 1], got ${value}.`);
}

function checkRange(value: unknown, where: string, low: number, high: number): void {
  if (!Array.isArray(value) || value.length !== 2 || value.some((v) => typeof v !== "number" || !Number.isFinite(v))) {
    throw new Error(`${where} must be a pair [min, max] of numbers, got ${JSON.stringify(value)}.`);
  }
  const [min, max] = value as [number, number];
  if (min > max) throw new Error(`${where}: min ${min} is above max ${max}.`);
  if (min < low || max > high) throw new Error(`${where} must lie within [${low}, ${high}], got [${min}, ${max}].`);
}

/** Checks a config (e.g. read from JSON): unknown transforms and out-of-range values are errors. */
export function validateAugmentConfig(config: AugmentConfig): AugmentConfig {
  if (typeof config !== "object" || config === null || Array.isArray(config)) throw new Error("An augmentation config must be an object.");
  for (const key of Object.keys(config)) {
    if (!(TRANSFORM_NAMES as readonly string[]).includes(key)) throw new Error(`Unknown transform "${key}"; known: ${TRANSFORM_NAMES.join(", ")}.`);
  }
  const optional = (value: number | undefined, where: string) => value === undefined || checkProbability(value, where);
  if (config.flipHorizontal) checkProbability(config.flipHorizontal.probability, "flipHorizontal.probability");
  if (config.flipVertical) checkProbability(config.flipVertical.probability, "flipVertical.probability");
  if (config.shift) {
    const { maxPixels } = config.shift;
    if (!Number.isInteger(maxPixels) || maxPixels < 0) throw new Error(`shift.maxPixels must be a non-negative integer, got ${maxPixels}.`);
    optional(config.shift.probability, "shift.probability");
  }
  if (config.rotate) {
    const { maxDegrees } = config.rotate;
    if (typeof maxDegrees !== "number" || !(maxDegrees >= 0 && maxDegrees <= 180)) throw new Error(`rotate.maxDegrees must be in [0, 180], got ${maxDegrees}.`);
    optional(config.rotate.probability, "rotate.probability");
  }
  if (config.zoom) {
    const { maxFraction } = config.zoom;
    if (typeof maxFraction !== "number" || !(maxFraction >= 0 && maxFraction < 1)) throw new Error(`zoom.maxFraction must be in [0, 1), got ${maxFraction}.`);
    optional(config.zoom.probability, "zoom.probability");
  }
  if (config.erase) {
    checkProbability(config.erase.probability, "erase.probability");
    checkRange(config.erase.area, "erase.area", 0, 1);
    if (config.erase.area[0] <= 0) throw new Error(`erase.area must be above 0, got [${config.erase.area.join(", ")}].`);
    checkRange(config.erase.aspect, "erase.aspect", 1e-3, 1e3);
    if (config.erase.value !== undefined && !(config.erase.value >= 0 && config.erase.value <= 1)) {
      throw new Error(`erase.value must be a pixel value in [0, 1], got ${config.erase.value}.`);
    }
  }
  if (config.noise) {
    if (typeof config.noise.std !== "number" || !(config.noise.std >= 0)) throw new Error(`noise.std must be a non-negative number, got ${config.noise.std}.`);
    optional(config.noise.probability, "noise.probability");
  }
  return config;
}

/** Mixes integers into a 32-bit seed (so epoch 1 step 0 and epoch 0 step 1 differ). */
export function mixSeed(...values: number[]): number {
  let hash = 0x811c9dc5;
  for (const value of values) {
    hash = Math.imul(hash ^ (value >>> 0), 0x01000193) >>> 0;
    hash = (hash ^ (hash >>> 15)) >>> 0;
  }
  return hash;
}

/** One image's affine map from output pixel to input pixel, as the 8 numbers `transform` takes. */
function inverseAffine(flipX: boolean, flipY: boolean, degrees: number, scale: number, shiftX: number, shiftY: number, height: number, width: number): number[] {
  // Forward: out = c + t + s·R(θ)·F·(in − c); inverse: in = c + F·R(−θ)·(out − c − t)/s.
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const theta = (degrees * Math.PI) / 180;
  const cos = Math.cos(theta) / scale;
  const sin = Math.sin(theta) / scale;
  const fx = flipX ? -1 : 1;
  const fy = flipY ? -1 : 1;
  // M = F·R(−θ)/s = [[fx·cos, fx·sin], [−fy·sin, fy·cos]]
  const m = [fx * cos, fx * sin, -fy * sin, fy * cos];
  const ox = cx + shiftX;
  const oy = cy + shiftY;
  return [m[0], m[1], cx - (m[0] * ox + m[1] * oy), m[2], m[3], cy - (m[2] * ox + m[3] * oy), 0, 0];
}

/** A map that moves whole pixels: a mirror on either axis, then a shift by whole pixels (zero fill). */
interface PixelMove {
  flipX: boolean;
  flipY: boolean;
  shiftX: number;
  shiftY: number;
}

/**
 * Each image of [count, height, width, channels] pixels moved by its PixelMove into `out`: what `tf.image.transform`
 * computes for inverseAffine's matrix of that move (bilinear sampling at whole pixels reads one pixel exactly).
 */
function movePixels(pixels: Float32Array, out: Float32Array, shape: readonly number[], moves: readonly PixelMove[]): void {
  const [count, height, width, channels] = shape;
  const rowLength = width * channels;
  for (let n = 0; n < count; n++) {
    const { flipX, flipY, shiftX, shiftY } = moves[n];
    // The columns whose source column is inside the image, mirrored or not: x − shiftX, or width − 1 + shiftX − x, in [0, width).
    const first = Math.max(0, shiftX);
    const end = Math.max(first, Math.min(width, width + shiftX));
    for (let y = 0; y < height; y++) {
      const row = (n * height + y) * rowLength;
      const sourceY = flipY ? height - 1 + shiftY - y : y - shiftY;
      if (sourceY < 0 || sourceY >= height || first === end) {
        out.fill(0, row, row + rowLength);
        continue;
      }
      const sourceRow = (n * height + sourceY) * rowLength;
      // Plain loops: a row is a few dozen values, too short for fill() and set() to pay for their calls.
      for (let k = 0; k < first * channels; k++) out[row + k] = 0;
      for (let k = end * channels; k < rowLength; k++) out[row + k] = 0;
      if (!flipX) {
        const offset = sourceRow - shiftX * channels - row;
        for (let k = row + first * channels; k < row + end * channels; k++) out[k] = pixels[k + offset];
      } else if (channels === 1) {
        const mirror = sourceRow + width - 1 + shiftX + row;
        for (let k = row + first; k < row + end; k++) out[k] = pixels[mirror - k];
      } else {
        for (let x = first; x < end; x++) {
          const from = sourceRow + (width - 1 + shiftX - x) * channels;
          for (let c = 0; c < channels; c++) out[row + x * channels + c] = pixels[from + c];
        }
      }
    }
  }
}

/**
 * `tf.image.transform` (bilinear, zero fill) with one matrix per image. tfjs-backend-cpu 4.22's Transform returns after
 * the batch's first image (the others keep the fill value), so on `cpu` it runs image by image.
 */
function transformEach(images: tf.Tensor4D, matrices: tf.Tensor2D): tf.Tensor4D {
  if (tf.getBackend() !== "cpu" || images.shape[0] === 1) return tf.image.transform(images, matrices, "bilinear", "constant", 0);
  const one = (i: number) => tf.image.transform(tf.slice(images, i, 1), tf.slice(matrices, i, 1), "bilinear", "constant", 0);
  return tf.concat(Array.from({ length: images.shape[0] }, (_, i) => one(i)));
}

/**
 * Augments a batch. Pure in its inputs: the same images, config and seed give the same
 * output. Does not dispose `images`.
 */
export function augmentBatch(images: tf.Tensor4D, config: AugmentConfig, seed: number): tf.Tensor4D {
  const [count, height, width] = images.shape;
  const random = seededRandom(seed);
  const chance = (p: number | undefined) => random() < (p ?? 1);
  const uniform = (low: number, high: number) => low + (high - low) * random();

  return tf.tidy(() => {
    let output = images;
    // Where every map moves whole pixels, the batch's pixels in JavaScript, moved and erased in place of tensor ops.
    let pixels: Float32Array | undefined;
    const geometric = config.flipHorizontal || config.flipVertical || config.shift || config.rotate || config.zoom;
    if (geometric) {
      const draws: (PixelMove & { degrees: number; scale: number })[] = [];
      for (let i = 0; i < count; i++) {
        const flipX = config.flipHorizontal ? chance(config.flipHorizontal.probability) : false;
        const flipY = config.flipVertical ? chance(config.flipVertical.probability) : false;
        const shifting = config.shift ? chance(config.shift.probability) : false;
        const maxShift = config.shift?.maxPixels ?? 0;
        const shiftX = shifting ? Math.floor(random() * (2 * maxShift + 1)) - maxShift : 0;
        const shiftY = shifting ? Math.floor(random() * (2 * maxShift + 1)) - maxShift : 0;
        const degrees = config.rotate && chance(config.rotate.probability) ? uniform(-config.rotate.maxDegrees, config.rotate.maxDegrees) : 0;
        const scale = config.zoom && chance(config.zoom.probability) ? uniform(1 - config.zoom.maxFraction, 1 + config.zoom.maxFraction) : 1;
        draws.push({ flipX, flipY, shiftX, shiftY, degrees, scale });
      }
      const wholePixels = draws.every((d) => d.degrees === 0 && d.scale === 1);
      const changed = !wholePixels || draws.some((d) => d.flipX || d.flipY || d.shiftX !== 0 || d.shiftY !== 0);
      if (changed && wholePixels) {
        pixels = new Float32Array(images.size);
        movePixels(images.dataSync() as Float32Array, pixels, images.shape, draws);
      } else if (changed) {
        const matrices = draws.flatMap((d) => inverseAffine(d.flipX, d.flipY, d.degrees, d.scale, d.shiftX, d.shiftY, height, width));
        output = transformEach(output, tf.tensor2d(matrices, [count, 8]));
      }
    }
    if (config.erase) {
      const { probability, area, aspect, value = 0 } = config.erase;
      // Each erased image's box: image, top, left, height, width.
      const boxes: [number, number, number, number, number][] = [];
      for (let i = 0; i < count; i++) {
        if (!chance(probability)) continue;
        // As in Zhong et al.: draw area and log-uniform aspect, retry until the box fits.
        for (let attempt = 0; attempt < 10; attempt++) {
          const target = uniform(area[0], area[1]) * height * width;
          const ratio = Math.exp(uniform(Math.log(aspect[0]), Math.log(aspect[1])));
          const boxHeight = Math.round(Math.sqrt(target * ratio));
          const boxWidth = Math.round(Math.sqrt(target / ratio));
          if (boxHeight < 1 || boxWidth < 1 || boxHeight > height || boxWidth > width) continue;
          const top = Math.floor(random() * (height - boxHeight + 1));
          const left = Math.floor(random() * (width - boxWidth + 1));
          boxes.push([i, top, left, boxHeight, boxWidth]);
          break;
        }
      }
      if (boxes.length > 0 && output === images) {
        // In place, as the tensor ops below compute a box's pixels in float32: x·0, plus value where it is not 0 (outside
        // the boxes they add 0, which would only turn a −0 into 0).
        // A copy: on cpu, dataSync hands out the tensor's own array.
        const values = (pixels ??= (images.dataSync() as Float32Array).slice());
        const channels = images.shape[3];
        const fill = Math.fround(value);
        for (const [i, top, left, boxHeight, boxWidth] of boxes) {
          for (let y = top; y < top + boxHeight; y++) {
            const start = ((i * height + y) * width + left) * channels;
            for (let k = start; k < start + boxWidth * channels; k++) values[k] = value === 0 ? values[k] * 0 : Math.fround(values[k] * 0 + fill);
          }
        }
      } else if (boxes.length > 0) {
        const keep = new Float32Array(count * height * width).fill(1);
        for (const [i, top, left, boxHeight, boxWidth] of boxes) {
          for (let y = top; y < top + boxHeight; y++) keep.fill(0, (i * height + y) * width + left, (i * height + y) * width + left + boxWidth);
        }
        const mask = tf.tensor4d(keep, [count, height, width, 1]);
        output = value === 0 ? tf.mul(output, mask) : tf.add(tf.mul(output, mask), tf.mul(tf.sub(1, mask), value));
      }
    }
    if (pixels) output = tf.tensor4d(pixels, images.shape);
    if (config.noise && config.noise.std > 0) {
      const selected = Float32Array.from({ length: count }, () => (chance(config.noise!.probability) ? config.noise!.std : 0));
      const noise = tf.mul(tf.randomNormal([count, height, width, 1], 0, 1, "float32", mixSeed(seed, 1)), tf.tensor4d(selected, [count, 1, 1, 1]));
      output = tf.clipByValue(tf.add(output, noise), 0, 1) as tf.Tensor4D;
    }
    return output === images ? images.clone() : output;
  });
}

/** The training loop's hook: a batch's augmentation seeded by (seed, epoch, step). */
export function augmenter(config: AugmentConfig, seed: number): (images: tf.Tensor4D, epoch: number, step: number) => tf.Tensor4D {
  validateAugmentConfig(config);
  return (images, epoch, step) => augmentBatch(images, config, mixSeed(seed, epoch, step));
}

/** A deterministic view of an image for test-time augmentation. */
export interface TtaView {
  flip?: boolean;
  shiftX?: number;
  shiftY?: number;
}

/** Test-time augmentation views: the image itself, its mirror, and 1-pixel shifts left and right. */
export const TTA_VIEWS: readonly TtaView[] = [{}, { flip: true }, { shiftX: 1 }, { shiftX: -1 }];

/** The view of every image of a batch (flip, then whole-pixel shift, zero fill). */
export function viewBatch(images: tf.Tensor4D, view: TtaView): tf.Tensor4D {
  const move: PixelMove = { flipX: view.flip ?? false, flipY: false, shiftX: view.shiftX ?? 0, shiftY: view.shiftY ?? 0 };
  if (!Number.isInteger(move.shiftX) || !Number.isInteger(move.shiftY)) throw new Error(`A view shifts by whole pixels, got ${JSON.stringify(view)}.`);
  const pixels = new Float32Array(images.size);
  movePixels(images.dataSync() as Float32Array, pixels, images.shape, Array(images.shape[0]).fill(move));
  return tf.tensor4d(pixels, images.shape);
}
