/**
 * Classification metrics with scikit-learn's definitions (confusion matrix rows = true class,
 * precision/recall/F1 per class with macro and weighted averages, zero division → 0 with a
 * warning), plus the statistics the evaluation notebook compares models with: top-k accuracy,
 * a Wilson interval for accuracy, McNemar's test and calibration.
 *
 * Labels are integers 0..numClasses-1; every class is reported, as scikit-learn does when
 * called with `labels=range(numClasses)`.
 */
import { requirePositiveInt } from "../tooling/checks";

/** Anything indexable by position: plain arrays and typed arrays (e.g. Uint8Array labels). */
export type Labels = ArrayLike<number>;
/** Class probabilities (or scores): one row per sample, or a flat row-major array. */
export type Scores = ArrayLike<number>;

function checkLabels(labels: Labels, numClasses: number, name: string): void {
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
      throw new Error(`${name}[${i}] is ${label}: labels must be integers in 0..${numClasses - 1}.`);
    }
  }
}

/** Validates a pair of label arrays: same non-zero length, labels in range. */
export function checkPair(yTrue: Labels, yPred: Labels, numClasses: number): void {
  requirePositiveInt(numClasses, "numClasses");
  if (yTrue.length === 0) throw new Error("y_true is empty: metrics need at least one sample.");
  if (yTrue.length !== yPred.length) {
    throw new Error(`y_true has ${yTrue.length} labels but y_pred has ${yPred.length}: they must have the same length.`);
  }
  checkLabels(yTrue, numClasses, "y_true");
  checkLabels(yPred, numClasses, "y_pred");
}

export function accuracy(yTrue: Labels, yPred: Labels, numClasses: number): number {
  checkPair(yTrue, yPred, numClasses);
  let correct = 0;
  for (let i = 0; i < yTrue.length; i++) if (yTrue[i] === yPred[i]) correct++;
  return correct / yTrue.length;
}

export type Normalize = "true" | "pred" | "all";

/**
 * Confusion matrix, rows = true class, columns = predicted class. `normalize` divides by the
 * row sums ("true"), the column sums ("pred") or the total ("all"); an empty row or column
 * stays 0, as in scikit-learn.
 */
export function confusionMatrix(yTrue: Labels, yPred: Labels, numClasses: number, normalize?: Normalize): number[][] {
  checkPair(yTrue, yPred, numClasses);
  const matrix = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < yTrue.length; i++) matrix[yTrue[i]][yPred[i]]++;
  if (!normalize) return matrix;
  const rowSums = matrix.map((row) => row.reduce((a, b) => a + b, 0));
  const columnSums = matrix[0].map((_, c) => matrix.reduce((sum, row) => sum + row[c], 0));
  return matrix.map((row, r) =>
    row.map((count, c) => {
      const denominator = normalize === "true" ? rowSums[r] : normalize === "pred" ? columnSums[c] : yTrue.length;
      return denominator === 0 ? 0 : count / denominator;
    }),
  );
}

export interface ClassMetrics {
  label: string;
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface AverageMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationReport {
  accuracy: number;
  /** Raw counts, rows = true class. */
  confusionMatrix: number[][];
  perClass: ClassMetrics[];
  macroAvg: AverageMetrics;
  weightedAvg: AverageMetrics;
  /** scikit-learn's UndefinedMetricWarning texts, when a ratio had a zero denominator. */
  warnings: string[];
}

/**
 * Per-class precision, recall, F1 and support with macro and weighted averages, as
 * scikit-learn's `classification_report(..., labels=range(k), output_dict=True)` computes
 * them (zero_division="warn": an undefined ratio is 0 and a warning is recorded).
 */
export function classificationReport(yTrue: Labels, yPred: Labels, classNames: readonly string[]): ClassificationReport {
  const numClasses = classNames.length;
  const matrix = confusionMatrix(yTrue, yPred, numClasses);
  const warnings: string[] = [];
  const undefinedPrecision: string[] = [];
  const undefinedRecall: string[] = [];
  const perClass = classNames.map((label, k) => {
    const truePositives = matrix[k][k];
    const support = matrix[k].reduce((a, b) => a + b, 0);
    const predicted = matrix.reduce((sum, row) => sum + row[k], 0);
    if (predicted === 0) undefinedPrecision.push(label);
    if (support === 0) undefinedRecall.push(label);
    const f1Denominator = support + predicted; // 2·tp + fp + fn
    return {
      label,
      precision: predicted === 0 ? 0 : truePositives / predicted,
      recall: support === 0 ? 0 : truePositives / support,
      f1: f1Denominator === 0 ? 0 : (2 * truePositives) / f1Denominator,
      support,
    };
  });
  if (undefinedPrecision.length > 0) {
    warnings.push(`Precision is ill-defined and being set to 0.0 in labels with no predicted samples: ${undefinedPrecision.join(", ")}.`);
  }
  if (undefinedRecall.length > 0) {
    warnings.push(`Recall is ill-defined and being set to 0.0 in labels with no true samples: ${undefinedRecall.join(", ")}.`);
  }
  const total = yTrue.length;
  const average = (weight: (c: ClassMetrics) => number, sumOfWeights: number): AverageMetrics => ({
    precision: perClass.reduce((s, c) => s + weight(c) * c.precision, 0) / sumOfWeights,
    recall: perClass.reduce((s, c) => s + weight(c) * c.recall, 0) / sumOfWeights,
    f1: perClass.reduce((s, c) => s + weight(c) * c.f1, 0) / sumOfWeights,
    support: total,
  });
  return {
    accuracy: matrix.reduce((s, row, k) => s + row[k], 0) / total,
    confusionMatrix: matrix,
    perClass,
    macroAvg: average(() => 1, numClasses),
    weightedAvg: average((c) => c.support, total),
    warnings,
  };
}

/** The report as scikit-learn prints it (same columns, widths and rounding). */
export function formatClassificationReport(report: ClassificationReport, digits = 2): string {
  const headers = ["precision", "recall", "f1-score", "support"];
  const width = Math.max(...report.perClass.map((c) => c.label.length), "weighted avg".length, digits);
  const name = (text: string) => text.padStart(width);
  const number = (value: number) => value.toFixed(digits).padStart(9);
  const count = (value: number) => String(value).padStart(9);
  const row = (label: string, m: AverageMetrics | ClassMetrics) =>
    `${name(label)}  ${number(m.precision)} ${number(m.recall)} ${number(m.f1)} ${count(m.support)}`;
  const lines = [
    `${name("")}  ${headers.map((h) => h.padStart(9)).join(" ")}`,
    "",
    ...report.perClass.map((c) => row(c.label, c)),
    "",
    `${name("accuracy")}  ${"".padStart(9)} ${"".padStart(9)} ${number(report.accuracy)} ${count(report.macroAvg.support)}`,
    row("macro avg", report.macroAvg),
    row("weighted avg", report.weightedAvg),
  ];
  return lines.join("\n") + "\n";
}

/** Rows of the report for a table: per class, then accuracy, macro and weighted averages. */
export function classificationReportRows(report: ClassificationReport): (string | number)[][] {
  const row = (label: string, m: AverageMetrics) => [label, m.precision, m.recall, m.f1, m.support];
  return [
    ...report.perClass.map((c) => row(c.label, c)),
    ["accuracy", "", "", report.accuracy, report.macroAvg.support],
    row("macro avg", report.macroAvg),
    row("weighted avg", report.weightedAvg),
  ];
}

function checkScores(scores: Scores, yTrue: Labels, numClasses: number): void {
  if (yTrue.length === 0) throw new Error("y_true is empty: metrics need at least one sample.");
  if (scores.length !== yTrue.length * numClasses) {
    throw new Error(`Scores have ${scores.length} values; expected ${yTrue.length} samples × ${numClasses} classes = ${yTrue.length * numClasses}.`);
  }
  checkLabels(yTrue, numClasses, "y_true");
}

/** Index of the largest value of row i (first one on ties, as numpy's argmax). */
export function argmaxRow(scores: Scores, i: number, numClasses: number): number {
  let best = 0;
  for (let k = 1; k < numClasses; k++) if (scores[i * numClasses + k] > scores[i * numClasses + best]) best = k;
  return best;
}

/** Predicted class per sample from a flat [n, numClasses] score array. */
export function argmaxRows(scores: Scores, numClasses: number): Int32Array {
  const n = scores.length / numClasses;
  if (!Number.isInteger(n)) throw new Error(`Scores have ${scores.length} values, not a multiple of ${numClasses} classes.`);
  const predictions = new Int32Array(n);
  for (let i = 0; i < n; i++) predictions[i] = argmaxRow(scores, i, numClasses);
  return predictions;
}

/**
 * Mean cross-entropy of probability rows against the true classes, as scikit-learn's
 * `log_loss` with probabilities clipped to [1e-7, 1 − 1e-7] (Keras's epsilon, so a loss
 * computed here from averaged predictions is comparable with the one Keras reports).
 */
export function logLoss(probabilities: Scores, yTrue: Labels, numClasses: number): number {
  if (probabilities.length !== yTrue.length * numClasses) {
    throw new Error(`${probabilities.length} probabilities are not ${yTrue.length} rows of ${numClasses} classes.`);
  }
  checkLabels(yTrue, numClasses, "y_true");
  const epsilon = 1e-7;
  let total = 0;
  for (let i = 0; i < yTrue.length; i++) total -= Math.log(Math.min(1 - epsilon, Math.max(epsilon, probabilities[i * numClasses + yTrue[i]])));
  return total / yTrue.length;
}

/**
 * Fraction of samples whose true class is among the k highest scores. A true class tied with
 * the k-th score counts as a hit (fewer than k classes score strictly higher).
 */
export function topKAccuracy(scores: Scores, yTrue: Labels, numClasses: number, k: number): number {
  checkScores(scores, yTrue, numClasses);
  if (!Number.isInteger(k) || k < 1 || k > numClasses) throw new Error(`k must be an integer in 1..${numClasses}, got ${k}.`);
  let hits = 0;
  for (let i = 0; i < yTrue.length; i++) {
    const trueScore = scores[i * numClasses + yTrue[i]];
    let higher = 0;
    for (let c = 0; c < numClasses; c++) if (scores[i * numClasses + c] > trueScore) higher++;
    if (higher < k) hits++;
  }
  return hits / yTrue.length;
}

/** Two-sided standard normal quantile for a confidence level (0.95 → 1.959964). */
function normalQuantile(probability: number): number {
  // Acklam's rational approximation (relative error < 1.2e-9).
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (probability < low) {
    const q = Math.sqrt(-2 * Math.log(probability));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (probability <= 1 - low) {
    const q = probability - 0.5;
    const r = q * q;
    return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - probability));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
}

/** Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const value =
    t *
    Math.exp(
      -z * z - 1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? value : 2 - value;
}

export interface Interval {
  estimate: number;
  lower: number;
  upper: number;
  confidence: number;
}

/** Wilson score interval for a proportion (e.g. accuracy = correct / total). */
export function wilsonInterval(successes: number, total: number, confidence = 0.95): Interval {
  requirePositiveInt(total, "total");
  if (!Number.isInteger(successes) || successes < 0 || successes > total) throw new Error(`successes must be an integer in 0..${total}, got ${successes}.`);
  if (!(confidence > 0 && confidence < 1)) throw new Error(`confidence must be in (0, 1), got ${confidence}.`);
  const z = normalQuantile(1 - (1 - confidence) / 2);
  const p = successes / total;
  const z2n = (z * z) / total;
  const centre = (p + z2n / 2) / (1 + z2n);
  const halfWidth = (z / (1 + z2n)) * Math.sqrt((p * (1 - p)) / total + z2n / (4 * total));
  return { estimate: p, lower: Math.max(0, centre - halfWidth), upper: Math.min(1, centre + halfWidth), confidence };
}

export interface McNemarResult {
  /** Samples model A got right and model B wrong. */
  onlyA: number;
  /** Samples model B got right and model A wrong. */
  onlyB: number;
  /** "exact" (binomial, used when onlyA + onlyB < 25) or "chi2" (with continuity correction). */
  method: "exact" | "chi2";
  statistic: number;
  pValue: number;
}

/**
 * McNemar's test of whether two classifiers on the same samples have the same error rate.
 * Like statsmodels' `mcnemar`: the exact binomial test for few discordant pairs, otherwise
 * the chi-square statistic (|b − c| − 1)² / (b + c) with one degree of freedom.
 */
export function mcnemarTest(yTrue: Labels, predA: Labels, predB: Labels, numClasses: number): McNemarResult {
  checkPair(yTrue, predA, numClasses);
  checkPair(yTrue, predB, numClasses);
  let onlyA = 0;
  let onlyB = 0;
  for (let i = 0; i < yTrue.length; i++) {
    const a = predA[i] === yTrue[i];
    const b = predB[i] === yTrue[i];
    if (a && !b) onlyA++;
    else if (b && !a) onlyB++;
  }
  const discordant = onlyA + onlyB;
  if (discordant === 0) return { onlyA, onlyB, method: "exact", statistic: 0, pValue: 1 };
  if (discordant < 25) {
    // Two-sided exact p-value: 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1.
    const smaller = Math.min(onlyA, onlyB);
    let logChoose = 0; // log C(n, 0)
    let cumulative = 0;
    for (let k = 0; k <= smaller; k++) {
      if (k > 0) logChoose += Math.log(discordant - k + 1) - Math.log(k);
      cumulative += Math.exp(logChoose - discordant * Math.LN2);
    }
    return { onlyA, onlyB, method: "exact", statistic: smaller, pValue: Math.min(1, 2 * cumulative) };
  }
  const statistic = (Math.abs(onlyA - onlyB) - 1) ** 2 / discordant;
  // Chi-square with 1 degree of freedom: P(X > s) = erfc(sqrt(s / 2)).
  return { onlyA, onlyB, method: "chi2", statistic, pValue: erfc(Math.sqrt(statistic / 2)) };
}

export interface CalibrationBin {
  lower: number;
  upper: number;
  count: number;
  /** Mean confidence (top probability) of the samples in the bin; 0 when empty. */
  confidence: number;
  /** Accuracy of the samples in the bin; 0 when empty. */
  accuracy: number;
}

export interface Calibration {
  /** Expected calibration error: Σ (n_b / N) · |accuracy_b − confidence_b|. */
  ece: number;
  bins: CalibrationBin[];
}

/**
 * Calibration of the top-class probability over equal-width bins (lower, upper] (the first
 * bin includes 0): the reliability diagram's data and the expected calibration error.
 */
export function calibration(probabilities: Scores, yTrue: Labels, numClasses: number, numBins = 15): Calibration {
  checkScores(probabilities, yTrue, numClasses);
  requirePositiveInt(numBins, "numBins");
  const counts = new Array<number>(numBins).fill(0);
  const confidenceSums = new Array<number>(numBins).fill(0);
  const correctCounts = new Array<number>(numBins).fill(0);
  for (let i = 0; i < yTrue.length; i++) {
    const predicted = argmaxRow(probabilities, i, numClasses);
    const confidence = probabilities[i * numClasses + predicted];
    const bin = Math.min(numBins - 1, Math.max(0, Math.ceil(confidence * numBins) - 1));
    counts[bin]++;
    confidenceSums[bin] += confidence;
    if (predicted === yTrue[i]) correctCounts[bin]++;
  }
  const bins = counts.map((count, b) => ({
    lower: b / numBins,
    upper: (b + 1) / numBins,
    count,
    confidence: count === 0 ? 0 : confidenceSums[b] / count,
    accuracy: count === 0 ? 0 : correctCounts[b] / count,
  }));
  const ece = bins.reduce((sum, bin) => sum + (bin.count / yTrue.length) * Math.abs(bin.accuracy - bin.confidence), 0);
  return { ece, bins };
}
