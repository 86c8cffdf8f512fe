/**
 * Exploratory statistics of an image split: per-class mean and standard-deviation images,
 * pixel histograms, how alike the classes are, and a 2-D PCA embedding.
 */
import type { Split } from "./datasets";
import { pixelMatrix, principalComponents } from "./embedding";

export interface ClassImageStats {
  /** Per class: mean pixel value (0–255) at each position, row-major. */
  mean: Float64Array[];
  /** Per class: population standard deviation at each position. */
  std: Float64Array[];
  counts: number[];
}

export function classImageStats(split: Split, numClasses: number): ClassImageStats {
  const size = split.height * split.width;
  const sums = Array.from({ length: numClasses }, () => new Float64Array(size));
  const squares = Array.from({ length: numClasses }, () => new Float64Array(size));
  const counts = new Array<number>(numClasses).fill(0);
  for (let n = 0; n < split.count; n++) {
    const label = split.labels[n];
    counts[label]++;
    const sum = sums[label];
    const square = squares[label];
    for (let i = 0, p = n * size; i < size; i++, p++) {
      const v = split.images[p];
      sum[i] += v;
      square[i] += v * v;
    }
  }
  const mean = sums.map((sum, c) => sum.map((v) => (counts[c] ? v / counts[c] : 0)));
  const std = squares.map((square, c) => square.map((v, i) => (counts[c] ? Math.sqrt(Math.max(0, v / counts[c] - mean[c][i] ** 2)) : 0)));
  return { mean, std, counts };
}

/** Per-class pixel histograms as fractions of that class's pixels; `bins` equal bins over 0–255. */
export function pixelHistograms(split: Split, numClasses: number, bins: number): { edges: number[]; fractions: number[][] } {
  if (!Number.isInteger(bins) || bins < 1 || bins > 256) throw new Error(`bins must be an integer in 1–256, got ${bins}.`);
  const counts = Array.from({ length: numClasses }, () => new Array<number>(bins).fill(0));
  const size = split.height * split.width;
  for (let n = 0; n < split.count; n++) {
    const histogram = counts[split.labels[n]];
    for (let p = n * size, end = p + size; p < end; p++) histogram[Math.floor((split.images[p] * bins) / 256)]++;
  }
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i * 256) / bins);
  const fractions = counts.map((histogram) => {
    const total = histogram.reduce((a, b) => a + b, 0);
    return histogram.map((c) => (total ? c / total : 0));
  });
  return { edges, fractions };
}

/** Euclidean distances between class mean images, pixels scaled to [0,1]. */
export function meanImageDistances(means: Float64Array[]): number[][] {
  return means.map((a) =>
    means.map((b) => {
      let sum = 0;
      for (let i = 0; i < a.length; i++) sum += ((a[i] - b[i]) / 255) ** 2;
      return Math.sqrt(sum);
    }),
  );
}

/** The k closest pairs of different classes, closest first. */
export function closestPairs(distances: number[][], k: number): { a: number; b: number; distance: number }[] {
  const pairs: { a: number; b: number; distance: number }[] = [];
  for (let a = 0; a < distances.length; a++) for (let b = a + 1; b < distances.length; b++) pairs.push({ a, b, distance: distances[a][b] });
  return pairs.sort((x, y) => x.distance - y.distance).slice(0, k);
}

/** The first two principal components of the images (pixels/255) and each image's coordinates on them. */
export function pca2d(split: Split, iterations = 200): { points: [number, number][]; explainedVariance: [number, number] } {
  if (split.count < 3) throw new Error("pca2d: needs at least 3 images.");
  const x = pixelMatrix(split);
  try {
    const { projected, explainedVariance } = principalComponents(x, 2, { iterations });
    return { points: projected.map((p) => [p[0], p[1]]), explainedVariance: [explainedVariance[0], explainedVariance[1]] };
  } finally {
    x.dispose();
  }
}

/**
 * The nearest-class-mean classifier: each test image gets the class whose mean training image
 * is closest in Euclidean distance. A model-free measure of how separable the classes are,
 * comparable across datasets of the same shape.
 */
export function nearestMeanPredictions(means: Float64Array[], test: Split): Int32Array {
  if (test.count === 0) throw new Error("nearestMeanPredictions: the test split is empty.");
  const size = test.height * test.width;
  const predictions = new Int32Array(test.count);
  for (let n = 0; n < test.count; n++) {
    let bestDistance = Infinity;
    for (let c = 0; c < means.length; c++) {
      const mean = means[c];
      let distance = 0;
      for (let i = 0, p = n * size; i < size; i++, p++) distance += (test.images[p] - mean[i]) ** 2;
      if (distance < bestDistance) {
        bestDistance = distance;
        predictions[n] = c;
      }
    }
  }
  return predictions;
}

/** Accuracy of the nearest-class-mean classifier on a test split. */
export function nearestMeanAccuracy(means: Float64Array[], test: Split): number {
  const predictions = nearestMeanPredictions(means, test);
  return predictions.reduce((correct, p, n) => correct + (p === test.labels[n] ? 1 : 0), 0) / test.count;
}

/**
 * How much of the frame a dataset's images use and how far they lie from their own class's
 * mean image: the fraction of non-zero pixels, and the mean Euclidean distance (pixels/255)
 * of an image to its class mean.
 */
export function imageSpread(split: Split, means: Float64Array[]): { nonZeroFraction: number; distanceToOwnMean: number } {
  if (split.count === 0) throw new Error("imageSpread: the split is empty.");
  const size = split.height * split.width;
  let nonZero = 0;
  let spread = 0;
  for (let n = 0; n < split.count; n++) {
    const mean = means[split.labels[n]];
    let squared = 0;
    for (let i = 0, p = n * size; i < size; i++, p++) {
      const v = split.images[p];
      if (v > 0) nonZero++;
      squared += ((v - mean[i]) / 255) ** 2;
    }
    spread += Math.sqrt(squared);
  }
  return { nonZeroFraction: nonZero / (split.count * size), distanceToOwnMean: spread / split.count };
}
