/**
 * npm run evaluate -- --model DIR [--dataset fashion|mnist] [--tta] [--json]
 * npm run evaluate -- --predictions FILE.csv [--dataset fashion|mnist] [--json]
 *
 * Metrics on the test split for a saved model (a run folder or a model folder), or for
 * predictions made elsewhere (a CSV with `true,pred` columns): accuracy with its 95% Wilson
 * interval, the confusion matrix (rows = true class), scikit-learn's classification report,
 * and the most-confused class pairs; for a model also top-2 accuracy and calibration (ECE).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { TTA_VIEWS } from "../lib/data/augment";
import { describeBackend, initBackend, tf } from "../lib/accelerator";
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { requireOneOf } from "../lib/tooling/checks";
import { parseLabelCsv } from "../lib/data/csv";
import { DATASET_NAMES, datasetSpec, loadDataset, type DatasetName } from "../lib/data/datasets";
import { mostConfusedPairs } from "../lib/evaluation/error-analysis";
import { argmaxRows, calibration, classificationReport, formatClassificationReport, topKAccuracy, wilsonInterval } from "../lib/evaluation/metrics";
import { loadModel } from "../lib/models/persist";
import { toImageTensor } from "../lib/data/preprocess";
import { resolveModelDir } from "../lib/training/records";
import { predictProbabilities, predictWithTta } from "../lib/evaluation/predict";

const USAGE = `Usage: npm run evaluate -- (--model DIR | --predictions FILE.csv) [options]

  --model DIR          a run folder (runs/NAME: its best model) or a folder with model.json
  --predictions FILE   a CSV with a header and columns true,pred (class indices or names)
  --dataset NAME       ${DATASET_NAMES.join(" or ")} (default: the run's dataset, else fashion)
  --batch-size N       images per inference batch (default 256)
  --tta                with --model: average the predictions over the image, its mirror and
                       1-pixel shifts left and right (test-time augmentation)
  --json               print JSON for machines`;

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      model: { type: "string" },
      predictions: { type: "string" },
      dataset: { type: "string" },
      "batch-size": { type: "string", default: "256" },
      tta: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  if (Boolean(values.model) === Boolean(values.predictions)) throw new UsageError("Pass exactly one of --model DIR or --predictions FILE.csv.");
  if (values.tta && !values.model) throw new UsageError("--tta needs --model: it changes how the model predicts.");
  const dataset = values.dataset === undefined ? undefined : usageCheck(() => requireOneOf(values.dataset!, DATASET_NAMES, "--dataset"));
  const batchSize = Number(values["batch-size"]);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`--batch-size must be a positive integer, got "${values["batch-size"]}".`);
  const log = (line: string) => process.stderr.write(line + "\n");

  let source: Record<string, unknown>;
  let classNames: string[];
  let yTrue: ArrayLike<number>;
  let yPred: ArrayLike<number>;
  let modelExtras: Record<string, unknown> = {};
  if (values.predictions) {
    const file = path.resolve(values.predictions);
    classNames = datasetSpec(dataset ?? "fashion").classNames;
    const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw new Error(`Cannot read ${file}: ${error.code === "ENOENT" ? "no such file" : error.message}.`);
    });
    ({ yTrue, yPred } = parseLabelCsv(text, classNames, file));
    source = { predictions: file };
  } else {
    const { modelDir, record } = await resolveModelDir(values.model!);
    const datasetName = (dataset ?? record?.dataset.name ?? "fashion") as DatasetName;
    const backend = await initBackend();
    log(`backend: ${describeBackend(backend)}`);
    const data = await loadDataset(datasetName);
    classNames = data.classNames;
    const model = await loadModel(modelDir);
    log(`evaluating ${modelDir} on the ${data.title} test split (${data.test.count} images)`);
    const x = toImageTensor(data.test);
    const started = performance.now();
    const probabilities = values.tta ? predictWithTta(model, x, batchSize) : predictProbabilities(model, x, batchSize);
    const seconds = (performance.now() - started) / 1000;
    tf.dispose([x]);
    model.dispose();
    yTrue = data.test.labels;
    yPred = argmaxRows(probabilities, classNames.length);
    const calibrated = calibration(probabilities, yTrue, classNames.length);
    source = { model: modelDir, run: record ? { name: record.model.name, epochs: record.history.length, bestEpoch: record.bestEpoch } : null, dataset: data.name };
    modelExtras = {
      top2Accuracy: topKAccuracy(probabilities, yTrue, classNames.length, 2),
      expectedCalibrationError: calibrated.ece,
      testTimeAugmentation: values.tta ? TTA_VIEWS : null,
      backend: { name: backend.name, threads: backend.threads },
      inferenceImagesPerSecond: data.test.count / seconds,
    };
  }

  const report = classificationReport(yTrue, yPred, classNames);
  const correct = Math.round(report.accuracy * yTrue.length);
  const interval = wilsonInterval(correct, yTrue.length);
  const pairs = mostConfusedPairs(report.confusionMatrix, 5).map((p) => ({ ...p, aName: classNames[p.a], bName: classNames[p.b] }));
  for (const warning of report.warnings) log(`warning: ${warning}`);

  if (values.json) {
    const output = {
      ...source,
      samples: yTrue.length,
      accuracy: report.accuracy,
      accuracyInterval95: { lower: interval.lower, upper: interval.upper },
      correct,
      incorrect: yTrue.length - correct,
      ...modelExtras,
      confusionMatrix: report.confusionMatrix,
      perClass: report.perClass,
      macroAvg: report.macroAvg,
      weightedAvg: report.weightedAvg,
      mostConfusedPairs: pairs,
      warnings: report.warnings,
    };
    process.stdout.write(JSON.stringify(output, null, 2) + "\n");
    return;
  }
  const percent = (v: number) => `${(100 * v).toFixed(2)}%`;
  const lines = [
    `accuracy ${percent(report.accuracy)} (${correct.toLocaleString("en-US")} of ${yTrue.length.toLocaleString("en-US")}), 95% interval ${percent(interval.lower)}–${percent(interval.upper)}`,
  ];
  if ("top2Accuracy" in modelExtras) {
    lines.push(`top-2 accuracy ${percent(modelExtras.top2Accuracy as number)}, expected calibration error ${(modelExtras.expectedCalibrationError as number).toFixed(4)}`);
  }
  lines.push("", formatClassificationReport(report, 4));
  lines.push("confusion matrix (rows = true class, columns = predicted):");
  lines.push(textTable(["", ...classNames.map((_, k) => String(k))], report.confusionMatrix.map((row, k) => [`${k} ${classNames[k]}`, ...row])));
  lines.push("", "most-confused pairs:");
  lines.push(textTable(["pair", "a as b", "b as a", "total"], pairs.map((p) => [`${p.aName} / ${p.bName}`, p.aAsB, p.bAsA, p.total])));
  process.stdout.write(lines.join("\n") + "\n");
});
