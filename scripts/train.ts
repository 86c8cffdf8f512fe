/**
 * npm run train -- --experiment NAME [--profile quick|standard|extended] [--json]
 * npm run train -- --model NAME|config.json [--epochs N] [--batch-size N] [--seed N] [--split-seed N]
 *   [--lr RATE] [--schedule constant|step|one-cycle|warmup-linear|warmup-cosine] [--optimizer adam|sgd-nesterov]
 *   [--label-smoothing E] [--patience N] [--validation FRACTION]
 *   [--augment standard|FILE.json] [--tta] [--ema DECAY] [--bf16] [--dataset fashion|mnist] [--out DIR] [--quick] [--resume] [--json]
 *
 * Trains one model on Fashion-MNIST (or MNIST, --dataset) with a stratified validation split from the
 * training set; after every epoch writes a checkpoint and the run record (atomically), and
 * keeps the best-validation model. At the end measures the test split once, on the best
 * model. A killed run continues from its last finished epoch with --resume.
 *
 * With --experiment, trains the declared run experiments/NAME.json into runs/NAME (quick
 * profile: runs/quick/NAME): read back when finished, resumed when interrupted.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { backendSummary } from "../lib/evaluation/results";
import { SingleBar } from "cli-progress";
import { STANDARD_AUGMENTATION, validateAugmentConfig, type AugmentConfig } from "../lib/data/augment";
import { describeBackend, initBackend } from "../lib/accelerator";
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { requireOneOf } from "../lib/tooling/checks";
import { DATASET_NAMES } from "../lib/data/datasets";
import { MAX_LABEL_SMOOTHING, trainRun, type RunHooks } from "../lib/training/run";
import { declaration, ensureExperiment, parseProfile, scheduleFor, SCHEDULES } from "../lib/training/declarations";
import { ENSEMBLE_FILE, ensureEnsemble } from "../lib/training/ensembles";
import { describeScores, type RunRecord } from "../lib/training/records";
import { checkAverageDecay } from "../lib/training/weight-average";
import { describeValidation } from "../lib/training/loop";
import { OPTIMIZERS, presetModel, PRESET_MODELS, validateModelConfig, type ModelConfig } from "../lib/models/builder";

const USAGE = `Usage: npm run train -- --experiment NAME [--profile quick|standard|extended] [--json]
       npm run train -- --model NAME|config.json [options]

  --experiment NAME   a declared run (experiments/NAME.json: model and recipe) or ensemble; its folder is
                      runs/NAME (runs/quick/NAME in the quick profile); trained when missing,
                      resumed when interrupted, read back when finished
  --profile NAME      the profile the experiment is made in (default standard)
  --model NAME|FILE   ${Object.keys(PRESET_MODELS).join(", ")}, or a JSON model config
  --epochs N          default 20 (1 with --quick)
  --batch-size N      default 128
  --seed N            default 42 (split, shuffling)
  --split-seed N      the validation split's seed, default --seed: replicates with other seeds on one split
  --lr RATE           peak learning rate, default 0.001
  --schedule KIND     constant (default), step (×0.5 every quarter of the epochs), one-cycle,
                      warmup-linear (set every step: up from 0 over 15% of the steps, then down to 0),
                      warmup-cosine (the same warm-up, then down to 0 along half a cosine)
  --optimizer NAME    adam (default) or sgd-nesterov (momentum 0.9)
  --label-smoothing E train on targets smoothed by E in [0, ${MAX_LABEL_SMOOTHING}] (default 0)
  --augment WHAT      augment training batches on the fly: "standard" (flip, shift ≤ 2 px,
                      random erasing) or a JSON augmentation config (lib/data/augment.ts); default none
  --tta               test accuracy of predictions averaged over the image, its mirror and
                      1-pixel shifts (test-time augmentation; the epoch is still chosen on validation)
  --ema DECAY         validate, keep and test an exponential moving average of the weights
                      (decay in (0, 1), e.g. 0.999; updated every step); not with --patience
  --bf16              the training steps' convolutions and matrix products in bf16 (fp32 accumulation
                      and weights) where the CPU has AVX512-BF16 or AMX-BF16; elsewhere, or with
                      TFJS_BF16=0, fp32 (the record's backend.precision says which ran)
  --patience N        early stopping on validation loss, restoring the best weights
  --validation F      validation fraction of the training set, default 0.1; 0 trains on all of it
                      (no validation: the epochs are fixed, the last epoch's model is the run's)
  --dataset NAME      ${DATASET_NAMES.join(" or ")} (default fashion)
  --out DIR           default runs/<model>-seed<seed> (-split<split seed> with --split-seed)
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

function fraction(value: string, flag: string, max: number): number {
  const n = Number(value);
  if (!(Number.isFinite(n) && n >= 0 && n <= max)) throw new Error(`${flag} must be a number in [0, ${max}], got "${value}".`);
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
  let config: ModelConfig;
  try {
    config = JSON.parse(await readFile(spec, "utf8")) as ModelConfig;
  } catch (error) {
    throw new UsageError(`--model ${spec}: not JSON (${(error as Error).message}).`);
  }
  return usageCheck(() => validateModelConfig(config, `--model ${spec}`));
}

async function augmentationConfig(spec: string | undefined): Promise<AugmentConfig | null> {
  if (spec === undefined || spec === "none") return null;
  if (spec === "standard") return STANDARD_AUGMENTATION;
  if (!spec.endsWith(".json")) throw new UsageError(`--augment must be standard, none or a .json config, got "${spec}".`);
  if (!existsSync(spec)) throw new UsageError(`--augment ${spec}: no such file.`);
  let config: AugmentConfig;
  try {
    config = JSON.parse(await readFile(spec, "utf8")) as AugmentConfig;
  } catch (error) {
    throw new UsageError(`--augment ${spec}: not JSON (${(error as Error).message}).`);
  }
  return usageCheck(() => {
    try {
      return validateAugmentConfig(config);
    } catch (error) {
      throw new Error(`--augment ${spec}: ${(error as Error).message}`);
    }
  });
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      model: { type: "string" },
      experiment: { type: "string" },
      profile: { type: "string" },
      epochs: { type: "string" },
      "batch-size": { type: "string" },
      seed: { type: "string" },
      "split-seed": { type: "string" },
      lr: { type: "string" },
      schedule: { type: "string" },
      optimizer: { type: "string" },
      "label-smoothing": { type: "string" },
      patience: { type: "string" },
      augment: { type: "string" },
      tta: { type: "boolean", default: false },
      ema: { type: "string" },
      bf16: { type: "boolean", default: false },
      dataset: { type: "string" },
      validation: { type: "string" },
      out: { type: "string" },
      quick: { type: "boolean", default: false },
      resume: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  const log = (line: string) => process.stderr.write(line + "\n");
  if (values.experiment !== undefined) {
    const recipeFlags = ["model", "epochs", "batch-size", "seed", "split-seed", "lr", "schedule", "optimizer", "label-smoothing", "patience", "augment", "tta", "ema", "bf16", "dataset", "validation", "out", "quick", "resume"] as const;
    const given = recipeFlags.filter((flag) => values[flag] !== undefined && values[flag] !== false);
    if (given.length > 0) throw new UsageError(`--experiment takes its model and recipe from experiments/${values.experiment}.json; leave out ${given.map((f) => `--${f}`).join(", ")}.`);
    const profile = usageCheck(() => parseProfile(values.profile ?? "standard"));
    const backend = await initBackend();
    log(`backend: ${describeBackend(backend)}`);
    if (declaration(values.experiment).kind === "ensemble") {
      const ensemble = await ensureEnsemble(values.experiment, { profile, hooks: progressHooks(log) });
      if (values.json) process.stdout.write(JSON.stringify(ensemble, null, 2) + "\n");
      else log(`${ensemble.experiment}: mean of ${ensemble.members.map((m) => m.name).join(", ")}: ${describeScores(ensemble)} (${path.join(ensemble.dir, ENSEMBLE_FILE)})`);
      return;
    }
    const record = await ensureExperiment(values.experiment, { profile, hooks: progressHooks(log) });
    printRecord(record, record.dir, values.json);
    return;
  }
  if (values.profile !== undefined) throw new UsageError("--profile goes with --experiment.");
  if (!values.model) throw new UsageError("--model or --experiment is required.");
  const config = await modelConfig(values.model);
  const dataset = usageCheck(() => requireOneOf(values.dataset ?? "fashion", DATASET_NAMES, "--dataset"));
  const augment = await augmentationConfig(values.augment);
  const options = usageCheck(() => {
    const epochs = values.epochs ? positive(values.epochs, "--epochs") : values.quick ? 1 : 20;
    const validationFraction = Number(values.validation ?? "0.1");
    if (!(validationFraction >= 0 && validationFraction < 1)) throw new Error(`--validation must be 0 (no validation) or a fraction below 1, got "${values.validation}".`);
    const schedule = requireOneOf(values.schedule ?? "constant", SCHEDULES, "--schedule");
    return {
      epochs,
      batchSize: positive(values["batch-size"] ?? "128", "--batch-size"),
      seed: integer(values.seed ?? "42", "--seed"),
      ...(values["split-seed"] === undefined ? {} : { splitSeed: integer(values["split-seed"], "--split-seed") }),
      validationFraction,
      schedule: scheduleFor(schedule, positive(values.lr ?? "0.001", "--lr", false), epochs),
      patience: values.patience ? positive(values.patience, "--patience") : null,
      quick: values.quick,
      augment,
      ...(values.optimizer === undefined ? {} : { optimizer: requireOneOf(values.optimizer, OPTIMIZERS, "--optimizer") }),
      ...(values["label-smoothing"] === undefined ? {} : { labelSmoothing: fraction(values["label-smoothing"], "--label-smoothing", MAX_LABEL_SMOOTHING) }),
      ...(values.tta ? { testTimeAugmentation: true } : {}),
      ...(values.ema === undefined ? {} : { ema: { decay: checkAverageDecay(Number(values.ema), "--ema") } }),
      ...(values.bf16 ? { precision: "bf16" as const } : {}),
    };
  });
  // A split seed equal to the seed is the same run (runIdentity), so it gets the same folder.
  const split = options.splitSeed === undefined || options.splitSeed === options.seed ? "" : `-split${options.splitSeed}`;
  const outDir = path.resolve(values.out ?? path.join("runs", `${config.name}-seed${options.seed}${split}`));
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);
  const record = await trainRun({ config, settings: options, outDir, dataset, resume: values.resume, hooks: progressHooks(log) });
  printRecord(record, outDir, values.json);
});

/** A progress bar per epoch and a line when each epoch ends. */
function progressHooks(log: (line: string) => void): RunHooks {
  const bar = new SingleBar({
    format: "epoch {epoch}/{epochs} [{bar}] {percentage}% loss {loss} acc {acc} | {speed} img/s | ETA {eta_formatted}",
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 10_000,
    etaBuffer: 50,
  });
  let barEpoch = -1;
  return {
    log,
    onBatchEnd: (p) => {
      if (p.epoch !== barEpoch) {
        if (barEpoch >= 0) bar.stop();
        bar.start(p.steps, 0, { epoch: p.epoch + 1, epochs: p.epochs, loss: "-", acc: "-", speed: "-" });
        barEpoch = p.epoch;
      }
      bar.update(p.step + 1, { loss: p.loss.toFixed(4), acc: p.accuracy.toFixed(3), speed: p.imagesPerSecond.toFixed(0) });
    },
    onEpochEnd: (epoch, run) => {
      bar.stop();
      barEpoch = -1;
      log(
        `epoch ${epoch.epoch + 1}/${run.options.epochs}: loss ${epoch.loss.toFixed(4)} acc ${epoch.accuracy.toFixed(4)} | ` +
          `${describeValidation(epoch, true)} | ${epoch.seconds.toFixed(1)} s, ${epoch.imagesPerSecond.toFixed(0)} img/s`,
      );
    },
  };
}

function printRecord(record: RunRecord, outDir: string, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(record, null, 2) + "\n");
    return;
  }
  const last = record.history[record.history.length - 1];
  process.stdout.write(
    textTable(
      ["model", "epochs", "best epoch", "train acc", "val acc", "test acc", "test correct", "s/epoch", "backend"],
      [[
        record.model.name, record.history.length, (record.bestEpoch ?? 0) + 1, last.accuracy.toFixed(4), record.validation?.accuracy.toFixed(4) ?? "–",
        record.test!.accuracy.toFixed(4), `${record.test!.correct}/${record.test!.images}`, (record.trainSeconds / record.history.length).toFixed(1), backendSummary(record.backend),
      ]],
    ) + `\nrun record: ${path.join(outDir, "record.json")}\n`,
  );
}
