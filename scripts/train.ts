/**
 * npm run train -- --model NAME|config.json [--epochs N] [--batch-size N] [--seed N]
 *   [--lr RATE] [--schedule constant|step|one-cycle] [--patience N] [--validation FRACTION]
 *   [--augment standard|FILE.json] [--out DIR] [--quick] [--resume] [--json]
 *
 * Trains one model on Fashion-MNIST with a stratified validation split taken from the
 * training set; after every epoch writes a checkpoint and the run record (atomically), and
 * keeps the best-validation model. At the end measures the test split once, on the best
 * model. A killed run continues from its last finished epoch with --resume.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SingleBar } from "cli-progress";
import { augmenter, STANDARD_AUGMENTATION, validateAugmentConfig, type AugmentConfig } from "../lib/augment";
import { describeBackend, initBackend, tf } from "../lib/backend";
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/cli";
import { loadDataset } from "../lib/data";
import { buildModel, presetModel, PRESET_MODELS, type ModelConfig } from "../lib/models";
import { loadModel, saveModel } from "../lib/persist";
import { stratifiedSplit, subset, toImageTensor, toLabelTensor } from "../lib/preprocess";
import { BEST_MODEL_DIR, CHECKPOINT_DIR, readRecord, writeRecord, type RunRecord } from "../lib/runs";
import { evaluate, train, type LearningRateSchedule } from "../lib/train";

const USAGE = `Usage: npm run train -- --model NAME|config.json [options]

  --model NAME|FILE   ${Object.keys(PRESET_MODELS).join(", ")}, or a JSON model config
  --epochs N          default 20 (1 with --quick)
  --batch-size N      default 128
  --seed N            default 42 (split, shuffling)
  --lr RATE           peak learning rate, default 0.001 (Adam)
  --schedule KIND     constant (default), step (×0.5 every quarter of the epochs), one-cycle
  --augment WHAT      augment training batches on the fly: "standard" (flip, shift ≤ 2 px,
                      random erasing) or a JSON augmentation config (lib/augment.ts); default none
  --patience N        early stopping on validation loss, restoring the best weights
  --validation F      validation fraction of the training set, default 0.1
  --out DIR           default runs/<model>-seed<seed>
  --quick             2,000 training / 500 validation images, 1 epoch (CI)
  --resume            continue a killed run in --out from its last finished epoch
  --json              print the run record as JSON at the end`;

function positive(value: string, flag: string, integer = true): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`${flag} must be a positive ${integer ? "integer" : "number"}, got "${value}".`);
  }
  return n;
}

function integer(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`${flag} must be an integer, got "${value}".`);
  return n;
}

async function modelConfig(spec: string): Promise<ModelConfig> {
  if (!spec.endsWith(".json")) return usageCheck(() => presetModel(spec));
  if (!existsSync(spec)) throw new UsageError(`--model ${spec}: no such file.`);
  const config = JSON.parse(await readFile(spec, "utf8")) as ModelConfig;
  if (!config.name || !Array.isArray(config.layers) || !Array.isArray(config.inputShape)) {
    throw new UsageError(`--model ${spec}: not a model config (needs name, inputShape and layers).`);
  }
  return config;
}

async function augmentationConfig(spec: string | undefined): Promise<AugmentConfig | null> {
  if (spec === undefined || spec === "none") return null;
  if (spec === "standard") return STANDARD_AUGMENTATION;
  if (!spec.endsWith(".json")) throw new UsageError(`--augment must be standard, none or a .json config, got "${spec}".`);
  if (!existsSync(spec)) throw new UsageError(`--augment ${spec}: no such file.`);
  const config = JSON.parse(await readFile(spec, "utf8")) as AugmentConfig;
  return usageCheck(() => validateAugmentConfig(config));
}

function scheduleFor(kind: string, rate: number, epochs: number): LearningRateSchedule {
  switch (kind) {
    case "constant":
      return { kind: "constant", rate };
    case "step":
      return { kind: "step", rate, factor: 0.5, every: Math.max(1, Math.round(epochs / 4)) };
    case "one-cycle":
      return { kind: "oneCycle", rate };
    default:
      throw new Error(`--schedule must be constant, step or one-cycle, got "${kind}".`);
  }
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      model: { type: "string" },
      epochs: { type: "string" },
      "batch-size": { type: "string", default: "128" },
      seed: { type: "string", default: "42" },
      lr: { type: "string", default: "0.001" },
      schedule: { type: "string", default: "constant" },
      patience: { type: "string" },
      augment: { type: "string" },
      validation: { type: "string", default: "0.1" },
      out: { type: "string" },
      quick: { type: "boolean", default: false },
      resume: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  if (!values.model) throw new UsageError("--model is required.");
  const config = await modelConfig(values.model);
  const augment = await augmentationConfig(values.augment);
  const options = usageCheck(() => {
    const epochs = values.epochs ? positive(values.epochs, "--epochs") : values.quick ? 1 : 20;
    const validationFraction = positive(values.validation, "--validation", false);
    if (validationFraction >= 1) throw new Error(`--validation must be below 1, got ${validationFraction}.`);
    return {
      epochs,
      batchSize: positive(values["batch-size"], "--batch-size"),
      seed: integer(values.seed, "--seed"),
      validationFraction,
      schedule: scheduleFor(values.schedule, positive(values.lr, "--lr", false), epochs),
      patience: values.patience ? positive(values.patience, "--patience") : null,
      quick: values.quick,
      augment,
    };
  });
  const outDir = path.resolve(values.out ?? path.join("runs", `${config.name}-seed${options.seed}`));
  const existing = await readRecord(outDir);
  if (existing && !values.resume) {
    throw new Error(`${outDir} already holds a run (${existing.status}); use --resume to continue it or another --out.`);
  }
  if (values.resume && !existing) throw new Error(`--resume: no run record in ${outDir}.`);
  if (existing?.status === "finished") throw new Error(`${outDir}: this run already finished; nothing to resume.`);

  // A resumed run keeps its own options (split, schedule, epochs), whatever this call says.
  if (existing) Object.assign(options, existing.options);
  const log = (line: string) => process.stderr.write(line + "\n");
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);
  const data = await loadDataset("fashion");
  const split = stratifiedSplit(data.train.labels, options.validationFraction, options.seed);
  const trainIndices = options.quick ? split.train.slice(0, 2000) : split.train;
  const validationIndices = options.quick ? split.validation.slice(0, 500) : split.validation;
  const trainSplit = subset(data.train, trainIndices);
  const validationSplit = subset(data.train, validationIndices);
  const trainData = { x: toImageTensor(trainSplit), y: toLabelTensor(trainSplit) };
  const validation = { x: toImageTensor(validationSplit), y: toLabelTensor(validationSplit) };

  let model: tf.LayersModel;
  let record: RunRecord;
  if (existing) {
    const done = existing.history.length;
    log(`resuming ${outDir} after epoch ${done} of ${existing.options.epochs}`);
    model = await loadModel(path.join(outDir, CHECKPOINT_DIR));
    record = { ...existing, resumes: [...existing.resumes, { at: new Date().toISOString(), fromEpoch: done }] };
  } else {
    model = buildModel(config, { learningRate: options.schedule.rate });
    record = {
      status: "running",
      model: config,
      parameters: model.countParams(),
      options: { ...options, trainImages: trainSplit.count, validationImages: validationSplit.count },
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
  log(`training ${config.name} (${record.parameters.toLocaleString("en-US")} parameters) on ${trainSplit.count} images, validating on ${validationSplit.count}; writing ${outDir}`);

  const bar = new SingleBar({
    format: "epoch {epoch}/{epochs} [{bar}] {percentage}% loss {loss} acc {acc} | {speed} img/s | ETA {eta_formatted}",
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 10_000,
    etaBuffer: 50,
  });
  let barEpoch = -1;
  const result = await train(model, trainData, validation, {
    epochs: options.epochs,
    batchSize: options.batchSize,
    seed: options.seed,
    schedule: options.schedule,
    earlyStopping: options.patience ? { patience: options.patience } : undefined,
    augment: options.augment ? augmenter(options.augment, options.seed) : undefined,
    startEpoch: record.history.length,
    previousHistory: record.history,
    onBatchEnd: (p) => {
      if (p.epoch !== barEpoch) {
        if (barEpoch >= 0) bar.stop();
        bar.start(p.steps, 0, { epoch: p.epoch + 1, epochs: options.epochs, loss: "-", acc: "-", speed: "-" });
        barEpoch = p.epoch;
      }
      bar.update(p.step + 1, { loss: p.loss.toFixed(4), acc: p.accuracy.toFixed(3), speed: p.imagesPerSecond.toFixed(0) });
    },
    onEpochEnd: async (epoch, trained) => {
      bar.stop();
      barEpoch = -1;
      log(
        `epoch ${epoch.epoch + 1}/${options.epochs}: loss ${epoch.loss.toFixed(4)} acc ${epoch.accuracy.toFixed(4)} | ` +
          `val loss ${epoch.valLoss.toFixed(4)} val acc ${epoch.valAccuracy.toFixed(4)} | ${epoch.seconds.toFixed(1)} s, ${epoch.imagesPerSecond.toFixed(0)} img/s`,
      );
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
    },
  });
  record.stoppedEarly = result.stoppedEarly;

  // The test split, once, on the best model.
  const best = await loadModel(path.join(outDir, BEST_MODEL_DIR));
  const test = { x: toImageTensor(data.test), y: toLabelTensor(data.test) };
  const [testLoss, testAccuracy] = evaluate(best, test, options.batchSize);
  const correct = Math.round(testAccuracy * data.test.count);
  record.test = { loss: testLoss, accuracy: testAccuracy, correct, incorrect: data.test.count - correct, images: data.test.count };
  record.status = "finished";
  await writeRecord(outDir, record);
  tf.dispose([trainData.x, trainData.y, validation.x, validation.y, test.x, test.y]);

  if (values.json) {
    process.stdout.write(JSON.stringify(record, null, 2) + "\n");
    return;
  }
  const last = record.history[record.history.length - 1];
  process.stdout.write(
    textTable(
      ["model", "epochs", "best epoch", "train acc", "val acc", "test acc", "test correct", "s/epoch", "backend"],
      [[
        config.name, record.history.length, (record.bestEpoch ?? 0) + 1, last.accuracy.toFixed(4), (record.validation?.accuracy ?? NaN).toFixed(4),
        testAccuracy.toFixed(4), `${correct}/${data.test.count}`, (record.trainSeconds / record.history.length).toFixed(1), record.backend.description.split(";")[0],
      ]],
    ) + `\nrun record: ${path.join(outDir, "record.json")}\n`,
  );
});
