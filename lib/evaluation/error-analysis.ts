/**
 * Where a classifier goes wrong: the class pairs it confuses most, its most confident
 * mistakes, how much probability it gives the true class, and the training images nearest to
 * a mistake (is the test image an outlier, or does it look like another class's images?).
 */
import type { Split } from "../data/datasets";
import { argmaxRow, type Labels, type Scores } from "./metrics";
import { requirePositiveInt } from "../tooling/checks";

export interface ConfusedPair {
  /** The two classes, a < b. */
  a: number;
  b: number;
  /** True a predicted as b. */
  aAsB: number;
  /** True b predicted as a. */
  bAsA: number;
  total: number;
}

/** Unordered class pairs by how often either is mistaken for the other, most first. */
export function mostConfusedPairs(confusion: number[][], count: number): ConfusedPair[] {
  const pairs: ConfusedPair[] = [];
  for (let a = 0; a < confusion.length; a++) {
    for (let b = a + 1; b < confusion.length; b++) {
      const total = confusion[a][b] + confusion[b][a];
      if (total > 0) pairs.push({ a, b, aAsB: confusion[a][b], bAsA: confusion[b][a], total });
    }
  }
  return pairs.sort((x, y) => y.total - x.total || x.a - y.a || x.b - y.b).slice(0, count);
}

export interface Mistake {
  /** Index of the sample in the evaluated split. */
  index: number;
  trueLabel: number;
  predicted: number;
  /** Probability of the predicted class. */
  confidence: number;
  /** Probability the model gave the true class. */
  trueProbability: number;
}

/** The wrong predictions with the highest confidence, most confident first. */
export function confidentMistakes(probabilities: Scores, yTrue: Labels, numClasses: number, count: number): Mistake[] {
  if (probabilities.length !== yTrue.length * numClasses) {
    throw new Error(`Probabilities have ${probabilities.length} values for ${yTrue.length} samples × ${numClasses} classes.`);
  }
  const mistakes: Mistake[] = [];
  for (let i = 0; i < yTrue.length; i++) {
    const predicted = argmaxRow(probabilities, i, numClasses);
    if (predicted === yTrue[i]) continue;
    mistakes.push({
      index: i,
      trueLabel: yTrue[i],
      predicted,
      confidence: probabilities[i * numClasses + predicted],
      trueProbability: probabilities[i * numClasses + yTrue[i]],
    });
  }
  return mistakes.sort((x, y) => y.confidence - x.confidence || x.index - y.index).slice(0, count);
}

/**
 * Per true class, a histogram of the probability the model gave that class, over equal bins
 * of [0, 1] (1 falls in the last bin): a confident model piles its mass near 1, a class it
 * confuses spreads out.
 */
export function trueClassProbabilityHistograms(
  probabilities: Scores,
  yTrue: Labels,
  numClasses: number,
  bins = 10,
): { edges: number[]; counts: number[][] } {
  requirePositiveInt(bins, "bins");
  if (probabilities.length !== yTrue.length * numClasses) {
    throw new Error(`Probabilities have ${probabilities.length} values for ${yTrue.length} samples × ${numClasses} classes.`);
  }
  const counts = Array.from({ length: numClasses }, () => new Array<number>(bins).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const p = probabilities[i * numClasses + yTrue[i]];
    counts[yTrue[i]][Math.min(bins - 1, Math.max(0, Math.floor(p * bins)))]++;
  }
  return { edges: Array.from({ length: bins + 1 }, (_, b) => b / bins), counts };
}

export interface Neighbour {
  index: number;
  label: number;
  /** Euclidean distance in pixel space (0–255 per pixel). */
  distance: number;
}

/** The k training images closest to one image (Euclidean over raw pixels), nearest first. */
export function nearestNeighbours(image: Uint8Array, train: Split, k: number): Neighbour[] {
  const size = train.height * train.width;
  if (image.length !== size) throw new Error(`The image has ${image.length} pixels; the training images have ${size}.`);
  if (!Number.isInteger(k) || k < 1 || k > train.count) throw new Error(`k must be an integer in 1..${train.count}, got ${k}.`);
  const best: Neighbour[] = [];
  for (let n = 0; n < train.count; n++) {
    let squared = 0;
    const offset = n * size;
    for (let i = 0; i < size; i++) {
      const d = image[i] - train.images[offset + i];
      squared += d * d;
    }
    if (best.length < k || squared < best[best.length - 1].distance) {
      best.push({ index: n, label: train.labels[n], distance: squared });
      best.sort((x, y) => x.distance - y.distance || x.index - y.index);
      if (best.length > k) best.pop();
    }
  }
  return best.map((neighbour) => ({ ...neighbour, distance: Math.sqrt(neighbour.distance) }));
}
