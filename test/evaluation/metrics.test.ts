import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  accuracy,
  argmaxRows,
  calibration,
  classificationReport,
  confusionMatrix,
  erfc,
  formatClassificationReport,
  mcnemarTest,
  logLoss,
  topKAccuracy,
  wilsonInterval,
} from "../../lib/evaluation/metrics";

const close = (actual: number, expected: number, tolerance = 1e-9, what = "") =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what} ${actual} ≠ ${expected}`);

// Worked by hand: class 2 is never predicted, class 3 never occurs in y_true.
const yTrue = [0, 0, 0, 1, 1, 2, 2, 2];
const yPred = [0, 1, 0, 1, 0, 1, 1, 3];
const names = ["zero", "one", "two", "three"];

describe("metrics", () => {
  it("accuracy and the confusion matrix (rows = true class)", () => {
    assert.equal(accuracy(yTrue, yPred, 4), 3 / 8);
    assert.deepEqual(confusionMatrix(yTrue, yPred, 4), [
      [2, 1, 0, 0],
      [1, 1, 0, 0],
      [0, 2, 0, 1],
      [0, 0, 0, 0],
    ]);
  });

  it("normalised confusion matrices; empty rows and columns stay 0", () => {
    const byTrue = confusionMatrix(yTrue, yPred, 4, "true");
    assert.deepEqual(byTrue[0], [2 / 3, 1 / 3, 0, 0]);
    assert.deepEqual(byTrue[3], [0, 0, 0, 0]);
    const byPred = confusionMatrix(yTrue, yPred, 4, "pred");
    assert.deepEqual(byPred.map((row) => row[1]), [1 / 4, 1 / 4, 2 / 4, 0]);
    assert.deepEqual(byPred.map((row) => row[2]), [0, 0, 0, 0]);
    const byAll = confusionMatrix(yTrue, yPred, 4, "all");
    assert.equal(byAll.flat().reduce((a, b) => a + b, 0), 1);
    assert.equal(byAll[2][1], 2 / 8);
  });

  it("per-class precision, recall, F1 and support with zero division as 0 and warnings", () => {
    const report = classificationReport(yTrue, yPred, names);
    const expected = [
      { label: "zero", precision: 2 / 3, recall: 2 / 3, f1: 2 / 3, support: 3 },
      { label: "one", precision: 1 / 4, recall: 1 / 2, f1: 1 / 3, support: 2 },
      { label: "two", precision: 0, recall: 0, f1: 0, support: 3 },
      { label: "three", precision: 0, recall: 0, f1: 0, support: 0 },
    ];
    report.perClass.forEach((actual, k) => {
      assert.equal(actual.label, expected[k].label);
      assert.equal(actual.support, expected[k].support);
      for (const key of ["precision", "recall", "f1"] as const) close(actual[key], expected[k][key], 1e-12, `${actual.label} ${key}`);
    });
    close(report.macroAvg.precision, 11 / 48);
    close(report.macroAvg.recall, 7 / 24);
    close(report.macroAvg.f1, 1 / 4);
    close(report.weightedAvg.precision, 5 / 16);
    close(report.weightedAvg.recall, 3 / 8);
    close(report.weightedAvg.f1, 1 / 3);
    assert.equal(report.macroAvg.support, 8);
    assert.equal(report.accuracy, 3 / 8);
    assert.deepEqual(report.warnings, [
      "Precision is ill-defined and being set to 0.0 in labels with no predicted samples: two.",
      "Recall is ill-defined and being set to 0.0 in labels with no true samples: three.",
    ]);
  });

  it("a perfect prediction has no warnings and all ones", () => {
    const report = classificationReport([0, 1, 1], [0, 1, 1], ["a", "b"]);
    assert.deepEqual(report.warnings, []);
    assert.deepEqual(report.weightedAvg, { precision: 1, recall: 1, f1: 1, support: 3 });
  });

  it("prints the report in scikit-learn's layout", () => {
    const text = formatClassificationReport(classificationReport(yTrue, yPred, names));
    // scikit-learn 1.2's classification_report(y_true, y_pred, labels=range(4), target_names=names, zero_division=0)
    const sklearn = [
      "              precision    recall  f1-score   support",
      "",
      "        zero       0.67      0.67      0.67         3",
      "         one       0.25      0.50      0.33         2",
      "         two       0.00      0.00      0.00         3",
      "       three       0.00      0.00      0.00         0",
      "",
      "    accuracy                           0.38         8",
      "   macro avg       0.23      0.29      0.25         8",
      "weighted avg       0.31      0.38      0.33         8",
      "",
    ].join("\n");
    assert.equal(text, sklearn);
  });

  it("rejects different lengths, labels out of range and empty inputs", () => {
    assert.throws(() => accuracy([0, 1], [0], 2), /y_true has 2 labels but y_pred has 1/);
    assert.throws(() => accuracy([0, 2], [0, 1], 2), /y_true\[1\] is 2: labels must be integers in 0\.\.1/);
    assert.throws(() => confusionMatrix([0, 1], [0, 0.5], 2), /y_pred\[1\] is 0.5/);
    assert.throws(() => classificationReport([], [], ["a"]), /y_true is empty/);
    assert.throws(() => accuracy([-1], [0], 2), /y_true\[0\] is -1/);
  });

  it("log loss: the mean of −log p(true class), probabilities clipped to [1e-7, 1 − 1e-7]", () => {
    const probabilities = new Float32Array([0.5, 0.25, 0.25, 0.1, 0.9, 0, 0, 0, 1]);
    // Rows 0 and 1 by hand; row 2 gives its true class 0, clipped to 1e-7.
    const expected = (-Math.log(0.5) - Math.log(Math.fround(0.9)) - Math.log(1e-7)) / 3;
    assert.ok(Math.abs(logLoss(probabilities, [0, 1, 0], 3) - expected) < 1e-12);
    assert.throws(() => logLoss(probabilities, [0, 1], 3), /9 probabilities are not 2 rows of 3 classes/);
    assert.throws(() => logLoss(probabilities, [0, 1, 3], 3), /y_true/);
  });

  it("top-k accuracy counts a tie with the k-th score as a hit", () => {
    const scores = [
      0.5, 0.3, 0.2, // true 1: second → top-2 hit, top-1 miss
      0.1, 0.2, 0.7, // true 0: third → miss for k = 1, 2
      0.4, 0.4, 0.2, // true 1: tied first → top-1 hit
    ];
    const labels = [1, 0, 1];
    close(topKAccuracy(scores, labels, 3, 1), 1 / 3);
    close(topKAccuracy(scores, labels, 3, 2), 2 / 3);
    close(topKAccuracy(scores, labels, 3, 3), 1);
    assert.throws(() => topKAccuracy(scores, labels, 3, 4), /k must be an integer in 1\.\.3/);
    assert.throws(() => topKAccuracy(scores.slice(1), labels, 3, 1), /expected 3 samples × 3 classes = 9/);
    assert.deepEqual([...argmaxRows(scores, 3)], [0, 2, 0]);
  });

  it("Wilson interval", () => {
    const interval = wilsonInterval(8, 10);
    // (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n) with z = 1.959964, worked by hand.
    close(interval.lower, 0.490162, 1e-6);
    close(interval.upper, 0.943318, 1e-6);
    assert.equal(wilsonInterval(10, 10).upper, 1);
    close(wilsonInterval(0, 10).lower, 0);
    assert.throws(() => wilsonInterval(11, 10), /successes must be an integer in 0\.\.10/);
    assert.throws(() => wilsonInterval(1, 10, 1.5), /confidence must be in \(0, 1\)/);
  });

  it("McNemar: exact binomial for few discordant pairs, chi-square otherwise", () => {
    // A right / B wrong once, B right / A wrong five times: p = 2·(1 + 6)/2⁶ (scipy binomtest: 0.21875).
    const truth = new Array(10).fill(0);
    const a = [0, 1, 1, 1, 1, 1, 0, 0, 0, 0];
    const b = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const exact = mcnemarTest(truth, a, b, 2);
    assert.deepEqual({ onlyA: exact.onlyA, onlyB: exact.onlyB, method: exact.method }, { onlyA: 1, onlyB: 5, method: "exact" });
    close(exact.pValue, 0.21875, 1e-12);
    // 30 vs 10 discordant: (|30 − 10| − 1)² / 40 = 9.025, p = 0.0026631 (scipy chi2.sf(9.025, 1)).
    const n = 40;
    const truth2 = new Array(n).fill(0);
    const a2 = Array.from({ length: n }, (_, i) => (i < 30 ? 0 : 1));
    const b2 = Array.from({ length: n }, (_, i) => (i < 30 ? 1 : 0));
    const chi2 = mcnemarTest(truth2, a2, b2, 2);
    assert.equal(chi2.method, "chi2");
    close(chi2.statistic, 9.025, 1e-12);
    close(chi2.pValue, 0.002663119259138558, 1e-8);
    assert.equal(mcnemarTest([0, 1], [0, 1], [0, 1], 2).pValue, 1);
  });

  it("erfc matches known values", () => {
    close(erfc(0), 1, 1e-7);
    close(erfc(1), 0.157299207050285, 1e-7);
    close(erfc(-1), 1.842700792949715, 1e-7);
  });

  it("calibration bins and expected calibration error", () => {
    // Confidences 0.9 (right), 0.8 (wrong), 0.6 (right), 0.7 (right).
    const probabilities = [0.9, 0.1, 0.8, 0.2, 0.4, 0.6, 0.3, 0.7];
    const labels = [0, 1, 1, 1];
    const coarse = calibration(probabilities, labels, 2, 2);
    assert.deepEqual(coarse.bins.map((b) => b.count), [0, 4]);
    close(coarse.bins[1].confidence, 0.75, 1e-12);
    close(coarse.ece, 0, 1e-12);
    // Five bins: (0.4,0.6] gap 0.4, (0.6,0.8] gap |0.5 − 0.75|, (0.8,1] gap 0.1.
    const fine = calibration(probabilities, labels, 2, 5);
    assert.deepEqual(fine.bins.map((b) => b.count), [0, 0, 1, 2, 1]);
    close(fine.ece, 0.25 * 0.4 + 0.5 * 0.25 + 0.25 * 0.1, 1e-12);
    assert.throws(() => calibration(probabilities, labels, 2, 0), /numBins must be a positive integer/);
  });
});
