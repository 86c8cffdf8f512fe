/**
 * npm run train -- --model NAME|config.json [--epochs N] [--batch-size N] [--seed N]
 *   [--lr RATE] [--schedule constant|step|one-cycle] [--patience N] [--validation FRACTION]
 *   [--augment standard|FILE.json] [--dataset fashion|mnist] [--out DIR] [--quick] [--resume] [--json]
 *
 * Trains one model on Fashion-MNIST (or MNIST, --dataset) with a stratified validation split from the
 * training set; after every epoch writes a checkpoint and the run record (atomically), and
 * keeps the best-validation model. At the end measures the test split once, on the best
 * model. A killed run continues from its last finished epoch with --resume.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SingleBar } from "cli-progress";
import { STANDARD_AUGMENTATION, validateAugmentConfig, type AugmentConfig } from "../lib/augment";
import { describeBackend, initBackend } from "../lib/backend";
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/cli";
import { DATASET_NAMES, type DatasetName } from "../lib/data";
import { trainRun } from "../lib/experiment";
import { presetModel, PRESET_MODELS, type ModelConfig } from "../lib/models";
import type { LearningRateSchedule } from "../lib/train";

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
  --dataset NAME      ${DATASET_NAMES.join(" or ")} (default fashion)
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
      dataset: { type: "string", default: "fashion" },
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
  const dataset = values.dataset;
  if (!(DATASET_NAMES as readonly string[]).includes(dataset)) throw new UsageError(`--dataset must be one of ${DATASET_NAMES.join(", ")}, got "${dataset}".`);
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
  const log = (line: string) => process.stderr.write(line + "\n");
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);

  const bar = new SingleBar({
    format: "epoch {epoch}/{epochs} [{bar}] {percentage}% loss {loss} acc {acc} | {speed} img/s | ETA {eta_formatted}",
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 10_000,
    etaBuffer: 50,
  });
  let barEpoch = -1;
  const record = await trainRun({
    config,
    settings: options,
    outDir,
    dataset: dataset as DatasetName,
    resume: values.resume,
    hooks: {
      log,
      onBatchEnd: (p) => {
        if (p.epoch !== barEpoch) {
          if (barEpoch >= 0) bar.stop();
          bar.start(p.steps, 0, { epoch: p.epoch + 1, epochs: options.epochs, loss: "-", acc: "-", speed: "-" });
          barEpoch = p.epoch;
        }
        bar.update(p.step + 1, { loss: p.loss.toFixed(4), acc: p.accuracy.toFixed(3), speed: p.imagesPerSecond.toFixed(0) });
      },
      onEpochEnd: (epoch, run) => {
        bar.stop();
        barEpoch = -1;
        log(
          `epoch ${epoch.epoch + 1}/${run.options.epochs}: loss ${epoch.loss.toFixed(4)} acc ${epoch.accuracy.toFixed(4)} | ` +
            `val loss ${epoch.valLoss.toFixed(4)} val acc ${epoch.valAccuracy.toFixed(4)} | ${epoch.seconds.toFixed(1)} s, ${epoch.imagesPerSecond.toFixed(0)} img/s`,
        );
      },
    },
  });

  if (values.json) {
    process.stdout.write(JSON.stringify(record, null, 2) + "\n");
    return;
  }
  const last = record.history[record.history.length - 1];
  process.stdout.write(
    textTable(
      ["model", "epochs", "best epoch", "train acc", "val acc", "test acc", "test correct", "s/epoch", "backend"],
      [[
        record.model.name, record.history.length, (record.bestEpoch ?? 0) + 1, last.accuracy.toFixed(4), (record.validation?.accuracy ?? NaN).toFixed(4),
        record.test!.accuracy.toFixed(4), `${record.test!.correct}/${record.test!.images}`, (record.trainSeconds / record.history.length).toFixed(1), record.backend.description.split(";")[0],
      ]],
    ) + `\nrun record: ${path.join(outDir, "record.json")}\n`,
  );
});
