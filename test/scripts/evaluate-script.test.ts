/** npm run evaluate: predictions from a CSV (no dataset needed) and a saved model on the real test split. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { initBackend } from "../../lib/accelerator";
import { buildModel, presetModel } from "../../lib/models/builder";
import { saveModel } from "../../lib/models/persist";
import { unavailable } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";
import { runScript } from "../helpers/scripts";

describe("npm run evaluate", async () => {
  it("--predictions FILE.csv --json gives scikit-learn's metrics (worked by hand)", async () => {
    const csv = path.join(tempDir(), "predictions.csv");
    // true 0,0,1,1 / pred 0,1,1,1: class 0 precision 1, recall 0.5; class 1 precision 2/3, recall 1.
    writeFileSync(csv, "true,pred\n0,0\n0,1\nTrouser,1\n1,Trouser\n");
    const result = await runScript("evaluate.ts", ["--predictions", csv, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const output = JSON.parse(result.stdout);
    assert.equal(output.accuracy, 0.75);
    assert.deepEqual(output.confusionMatrix[0].slice(0, 2), [1, 1]);
    assert.deepEqual(output.confusionMatrix[1].slice(0, 2), [0, 2]);
    assert.deepEqual(output.perClass[0], { label: "T-shirt/top", precision: 1, recall: 0.5, f1: 2 / 3, support: 2 });
    assert.equal(output.perClass[1].precision, 2 / 3);
    assert.equal(output.perClass[2].support, 0);
    // Eight classes absent from both columns count in the macro average (labels = all ten), as in scikit-learn.
    assert.equal(output.macroAvg.recall, 1.5 / 10);
    assert.equal(output.weightedAvg.recall, 0.75);
    for (const key of ["precision", "recall", "f1"]) assert.ok(key in output.macroAvg && key in output.weightedAvg);
    assert.match(result.stderr, /warning: Precision is ill-defined/);
  });

  it("prints a readable report by default", async () => {
    const csv = path.join(tempDir(), "predictions.csv");
    writeFileSync(csv, "true,pred\n0,0\n1,1\n");
    const result = await runScript("evaluate.ts", ["--predictions", csv, "--dataset", "mnist"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /accuracy 100\.00% \(2 of 2\)/);
    assert.match(result.stdout, /precision {4}recall {2}f1-score {3}support/);
    assert.match(result.stdout, /confusion matrix \(rows = true class/);
  });

  it("bad input: usage errors exit 2, unreadable input exits 1, both with a message", async () => {
    const neither = await runScript("evaluate.ts", []);
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /Pass exactly one of --model DIR or --predictions FILE\.csv/);
    const missing = await runScript("evaluate.ts", ["--predictions", "/nonexistent/p.csv"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Cannot read \/nonexistent\/p\.csv: no such file/);
    const csv = path.join(tempDir(), "bad.csv");
    writeFileSync(csv, "true,pred\n0,11\n");
    const bad = await runScript("evaluate.ts", ["--predictions", csv]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /line 2: "11" is not a class/);
    const ttaWithoutModel = await runScript("evaluate.ts", ["--predictions", csv, "--tta"]);
    assert.equal(ttaWithoutModel.code, 2);
    assert.match(ttaWithoutModel.stderr, /--tta needs --model/);
    const unknownDataset = await runScript("evaluate.ts", ["--predictions", csv, "--dataset", "cifar"]);
    assert.equal(unknownDataset.code, 2);
    assert.match(unknownDataset.stderr, /--dataset must be one of fashion, mnist, got "cifar"/);
    const noModel = await runScript("evaluate.ts", ["--model", tempDir()]);
    assert.equal(noModel.code, 1);
    assert.match(noModel.stderr, /holds neither model\.json nor a run's model\/model\.json/);
  });

  const skip = await unavailable();

  it("--model DIR --json evaluates a saved model on the 10,000 test images", { skip }, async () => {
    await initBackend({ force: "wasm" });
    const dir = path.join(tempDir(), "model");
    // Seeded: an unseeded untrained model may predict one class for nearly every view, so that
    // accuracy alone cannot show that the views were averaged.
    const model = buildModel(presetModel("ann"), { seed: 7 });
    await saveModel(model, dir);
    model.dispose();
    const result = await runScript("evaluate.ts", ["--model", dir, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const output = JSON.parse(result.stdout);
    assert.equal(output.samples, 10_000);
    assert.equal(output.perClass.length, 10);
    assert.ok(output.perClass.every((c: { support: number }) => c.support === 1000));
    const trace = output.confusionMatrix.reduce((sum: number, row: number[], k: number) => sum + row[k], 0);
    assert.equal(output.accuracy, trace / 10_000);
    assert.ok(output.accuracyInterval95.lower <= output.accuracy && output.accuracy <= output.accuracyInterval95.upper);
    assert.ok(output.top2Accuracy >= output.accuracy);
    assert.ok(output.expectedCalibrationError >= 0 && output.expectedCalibrationError <= 1);
    assert.equal(output.testTimeAugmentation, null);

    const tta = await runScript("evaluate.ts", ["--model", dir, "--json", "--tta"]);
    assert.equal(tta.code, 0, tta.stderr);
    const withTta = JSON.parse(tta.stdout);
    assert.equal(withTta.testTimeAugmentation.length, 4);
    // The calibration error is a continuous function of every probability: the views' average moves it.
    assert.notEqual(
      withTta.expectedCalibrationError,
      output.expectedCalibrationError,
      "averaging over views changes an untrained model's probabilities",
    );
  });
});
