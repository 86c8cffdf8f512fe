/**
 * npm run bench -- [--json] [--models cnn3,ann] [--repeats N] [--steps N] [--batch-size N] [--optimizer adam|sgd-nesterov] [--torch] [--profile] [--compare-wasm] [--compare-blocks] [--compare-winners] [--bf16]
 *
 * Training and inference throughput (images/s) of reference models on the running backend:
 * each figure is the median of several timed repeats after a warm-up. A benchmark, not a
 * test: run it on a quiet machine and compare ratios measured in the same run.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { performance } from "node:perf_hooks";
import { describeBackend, initBackend, tf } from "../lib/accelerator";
import { formatCount, parseCommandLine, positiveInt, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { requireOneOf } from "../lib/tooling/checks";
import { augmenter, STANDARD_AUGMENTATION } from "../lib/data/augment";
import { buildModel, OPTIMIZERS, presetModel, type OptimizerName } from "../lib/models/builder";
import { median, profileStep, type StepProfile } from "../lib/accelerator";
import { bf16Unavailable, convBnBlocksActive, inPrecision, oneDnnActive, useConvBnBlocks, useOneDnn, useWinnerGradients } from "../lib/accelerator";

const USAGE = `Usage: npm run bench -- [--json] [--models cnn3,ann,cnn3-bn] [--repeats N] [--steps N] [--batch-size N] [--optimizer adam|sgd-nesterov] [--torch] [--profile] [--compare-wasm] [--compare-blocks] [--compare-winners] [--bf16]

  --models LIST     comma-separated model names (default cnn3,ann,cnn3-bn; cnn3 is the capstone CNN)
  --repeats N       timed repeats per figure; the median is reported (default 5)
  --steps N         training steps (batches) per timed repeat (default 5)
  --batch-size N    images per batch, training and inference (default 128)
  --optimizer NAME  the training steps' optimizer, here and in PyTorch: adam (default) or sgd-nesterov
                    (momentum 0.9, the budget recipes'; the update is part of the step)
  --torch           also time cnn3, vgg-bn, vgg-bn-48 and vgg-bn-64 (those named in --models) in PyTorch (CPU, same threads)
                    in this run, in fp32 and, where the CPU has AVX512-BF16 or AMX-BF16, in bf16
                    autocast with channels-last tensors, each PyTorch repeat just before the project's
                    repeat it is paired with, and report the medians of the paired ratios (needs a
                    python3 with torch, e.g. Debian's python3-torch;
                    PYTHON names the interpreter, default /usr/bin/python3)
  --profile         also profile a training step of each model: time per kernel (grouped by
                    input shapes), GFLOP/s of the convolutions and matrix products, time outside kernels
  --compare-wasm    also time each model on the wasm kernels alone (oneDNN's native convolutions and
                    matrix products off; the wasm module on one thread, as it runs beside oneDNN),
                    alternating with the default in the same repeats
  --compare-blocks  also time each model's training steps with its block ops (two convolution + batch norm + relu
                    layers and their pool, vgg-bn's; a convolution + relu and its pool, cnn3's) run layer by layer
                    (in bf16 too with --bf16), alternating with the default in the same repeats
  --compare-winners also time each model's training steps with a convolution + relu + pool op's gradients
                    computed by oneDNN over the whole output, not from the pool's winners (cnn3's first
                    two layers, cnn1's first), likewise
  --bf16            also time each model with bf16 products (oneDNN, fp32 accumulation; where the
                    CPU has AVX512-BF16 or AMX-BF16), alternating with fp32 in the same repeats;
                    --profile then profiles the bf16 step
  --json            print JSON for machines

TFJS_BACKEND=tensorflow|wasm|cpu forces a backend.`;

interface ModelBench {
  model: string;
  parameters: number;
  batchSize: number;
  trainImagesPerSec: number;
  /** Training steps that also augment each batch on the fly (STANDARD_AUGMENTATION). */
  trainAugmentedImagesPerSec: number;
  inferImagesPerSec: number;
  trainRepeats: number[];
  trainAugmentedRepeats: number[];
  inferRepeats: number[];
  profile?: StepProfile;
  /** With --compare-wasm: the same model on the wasm kernels alone (oneDNN off), timed in the same repeats. */
  wasmOnly?: Variant;
  /** With --bf16: the same model with bf16 products, timed in the same repeats. */
  bf16?: Variant;
  /** With --compare-blocks: training images/s with the block op off (layer by layer), fp32 and with --bf16 bf16, in the same repeats. */
  layerByLayer?: SettingOff;
  /** With --compare-winners: the same with the convolution + relu + pool op's gradients over the whole output (oneDNN's). */
  wholeGradient?: SettingOff;
}

/** Training images/s with a setting off, fp32 and with --bf16 bf16, in the same repeats as the default. */
interface SettingOff {
  trainImagesPerSec: number;
  trainRepeats: number[];
  /** Medians of the default's repeats over these, paired. */
  ratio: number;
  bf16?: { trainImagesPerSec: number; trainRepeats: number[]; ratio: number };
}

/** The variants of each model timed beside its default training steps. */
interface BenchVariants {
  compareWasm: boolean;
  bf16: boolean;
  compareBlocks: boolean;
  compareWinners: boolean;
}

interface Variant {
  trainImagesPerSec: number;
  inferImagesPerSec: number;
  trainRepeats: number[];
  inferRepeats: number[];
}

/** Timed training steps (plain or augmented) and inference over random data of one batch shape. */
function stepTimers(model: tf.LayersModel, batchSize: number, steps: number) {
  // Random pixels and labels: the content does not change the work done.
  const xs = tf.randomUniform([batchSize, 28, 28, 1]) as tf.Tensor4D;
  const ys = tf.randomUniform([batchSize], 0, 10, "int32").toFloat();
  const inferX = tf.randomUniform([batchSize * steps, 28, 28, 1]);
  const augment = augmenter(STANDARD_AUGMENTATION, 1);
  return {
    /** Images per second over `steps` training steps. */
    trainOnce: async (augmented: boolean) => {
      const started = performance.now();
      for (let step = 0; step < steps; step++) {
        const batch = augmented ? augment(xs, 0, step) : xs;
        await model.trainOnBatch(batch, ys);
        if (batch !== xs) batch.dispose();
      }
      return (steps * batchSize) / ((performance.now() - started) / 1000);
    },
    /** Images per second predicting `steps` batches. */
    inferOnce: async () => {
      const started = performance.now();
      const predictions = model.predict(inferX, { batchSize }) as tf.Tensor;
      await predictions.data();
      predictions.dispose();
      return (steps * batchSize) / ((performance.now() - started) / 1000);
    },
    profile: (repeats: number) => profileStep(() => model.trainOnBatch(xs, ys), repeats),
    /** One untimed training step. */
    step: async () => void (await model.trainOnBatch(xs, ys)),
    dispose: () => tf.dispose([xs, ys, inferX]),
  };
}

/** Runs `measure` with a setting (useOneDnn, useConvBnBlocks) turned `on` or off, then restores it. */
async function withSetting<T>(use: (on: boolean) => boolean, on: boolean, measure: () => Promise<T>): Promise<T> {
  const previous = use(on);
  try {
    return await measure();
  } finally {
    use(previous);
  }
}

/** Runs `measure` on the wasm kernels alone (oneDNN's native ones off). */
const onWasmOnly = <T>(measure: () => Promise<T>) => withSetting(useOneDnn, false, measure);
/** How the log names each setting off. */
const SETTING_OFF_LABELS = { layerByLayer: "layer by layer", wholeGradient: "whole gradient" };
/** The settings --compare-blocks and --compare-winners time off: each runs `measure` with its setting off. */
const SETTINGS_OFF = {
  /** The block ops' layers run one by one. */
  layerByLayer: <T>(measure: () => Promise<T>) => withSetting(useConvBnBlocks, false, measure),
  /** The convolution + relu + pool op's backward pass over the whole output, by oneDNN. */
  wholeGradient: <T>(measure: () => Promise<T>) => withSetting(useWinnerGradients, false, measure),
};

/** The median of the ratios of paired repeats (ours r-th over theirs r-th). */
const pairedRatio = (ours: number[], theirs: number[]) => median(ours.map((v, i) => v / theirs[i]));

/** A variant's repeats and medians. */
const variant = (train: number[], infer: number[]): Variant => ({ trainImagesPerSec: median(train), inferImagesPerSec: median(infer), trainRepeats: train, inferRepeats: infer });

async function benchModel(
  name: string,
  repeats: number,
  steps: number,
  batchSize: number,
  profile: boolean,
  { compareWasm, bf16, compareBlocks, compareWinners }: BenchVariants,
  optimizer: OptimizerName,
  log: (s: string) => void,
  beforeRepeat?: () => Promise<void>,
): Promise<ModelBench> {
  const model = buildModel(presetModel(name), { optimizer });
  const timers = stepTimers(model, batchSize, steps);
  const { trainOnce, inferOnce } = timers;
  await trainOnce(true); // warm-up: kernels set up, optimizer state created
  await inferOnce();
  if (compareWasm) await onWasmOnly(async () => (await trainOnce(false), await inferOnce()));
  if (bf16) await inPrecision("bf16", async () => (await trainOnce(false), await inferOnce()));
  const settingsOff = (Object.keys(SETTINGS_OFF) as (keyof typeof SETTINGS_OFF)[]).filter((k) => (k === "layerByLayer" ? compareBlocks : compareWinners));
  // Per setting off: its fp32 and bf16 training repeats.
  const offRepeats = new Map(settingsOff.map((k) => [k, { fp32: [] as number[], bf16: [] as number[] }]));
  for (const k of settingsOff) {
    await SETTINGS_OFF[k](() => trainOnce(false));
    if (bf16) await inPrecision("bf16", () => SETTINGS_OFF[k](() => trainOnce(false)));
  }
  const trainRepeats: number[] = [];
  const trainAugmentedRepeats: number[] = [];
  const inferRepeats: number[] = [];
  const wasmTrain: number[] = [];
  const wasmInfer: number[] = [];
  const bf16Train: number[] = [];
  const bf16Infer: number[] = [];
  for (let r = 0; r < repeats; r++) {
    if (beforeRepeat) await beforeRepeat();
    // Each timed training repeat follows one untimed step in its own precision, as PyTorch's timed steps follow
    // its warm-up in theirs: after the other process, or after steps in the other precision, the first step
    // pays for cold caches, sleeping threads and conversions set up again (~10-15% on a bf16 step after fp32).
    // The variants run in one order on even repeats and in the reverse one on odd repeats: whatever runs first after
    // PyTorch's repeat or a variant with other kernels (threads asleep, caches cold) is not always the same one.
    const variants: (() => Promise<void>)[] = [
      async () => {
        await timers.step();
        trainRepeats.push(await trainOnce(false));
        trainAugmentedRepeats.push(await trainOnce(true));
        inferRepeats.push(await inferOnce());
      },
    ];
    if (compareWasm) {
      variants.push(async () => {
        await onWasmOnly(timers.step);
        wasmTrain.push(await onWasmOnly(() => trainOnce(false)));
        wasmInfer.push(await onWasmOnly(inferOnce));
      });
    }
    if (bf16) {
      variants.push(async () => {
        await inPrecision("bf16", timers.step);
        bf16Train.push(await inPrecision("bf16", () => trainOnce(false)));
        bf16Infer.push(await inPrecision("bf16", inferOnce));
      });
    }
    for (const k of settingsOff) {
      const off = SETTINGS_OFF[k];
      variants.push(async () => {
        await off(timers.step);
        offRepeats.get(k)!.fp32.push(await off(() => trainOnce(false)));
      });
      if (bf16) {
        variants.push(async () => {
          await inPrecision("bf16", () => off(timers.step));
          offRepeats.get(k)!.bf16.push(await inPrecision("bf16", () => off(() => trainOnce(false))));
        });
      }
    }
    for (const measure of r % 2 === 0 ? variants : [...variants].reverse()) await measure();
    log(
      `  ${name} repeat ${r + 1}/${repeats}: train ${trainRepeats[r].toFixed(0)} img/s, with augmentation ${trainAugmentedRepeats[r].toFixed(0)}, ` +
        `infer ${inferRepeats[r].toFixed(0)} img/s` +
        (compareWasm ? `; wasm kernels alone: train ${wasmTrain[r].toFixed(0)}, infer ${wasmInfer[r].toFixed(0)} img/s` : "") +
        (bf16 ? `; bf16: train ${bf16Train[r].toFixed(0)}, infer ${bf16Infer[r].toFixed(0)} img/s` : "") +
        settingsOff
          .map((k) => {
            const { fp32, bf16: inBf16 } = offRepeats.get(k)!;
            return `; ${SETTING_OFF_LABELS[k]}: train ${fp32[r].toFixed(0)}${bf16 ? `, bf16 ${inBf16[r].toFixed(0)}` : ""} img/s`;
          })
          .join(""),
    );
  }
  const result: ModelBench = {
    model: name,
    parameters: model.countParams(),
    batchSize,
    trainImagesPerSec: median(trainRepeats),
    trainAugmentedImagesPerSec: median(trainAugmentedRepeats),
    inferImagesPerSec: median(inferRepeats),
    trainRepeats,
    trainAugmentedRepeats,
    inferRepeats,
  };
  if (compareWasm) result.wasmOnly = variant(wasmTrain, wasmInfer);
  if (bf16) result.bf16 = variant(bf16Train, bf16Infer);
  for (const k of settingsOff) {
    const { fp32, bf16: inBf16 } = offRepeats.get(k)!;
    const timed = (repeats: number[], defaults: number[]) => ({ trainImagesPerSec: median(repeats), trainRepeats: repeats, ratio: pairedRatio(defaults, repeats) });
    result[k] = { ...timed(fp32, trainRepeats), ...(bf16 ? { bf16: timed(inBf16, bf16Train) } : {}) };
  }
  if (profile) {
    log(`  ${name}: profiling ${repeats} ${bf16 ? "bf16 " : ""}training steps ...`);
    result.profile = await (bf16 ? inPrecision("bf16", () => timers.profile(repeats)) : timers.profile(repeats));
  }
  timers.dispose();
  model.dispose();
  return result;
}

/** The augmentation pipeline alone (STANDARD_AUGMENTATION), images per second. */
async function benchAugmentation(repeats: number, steps: number, batchSize: number): Promise<{ imagesPerSec: number; repeats: number[] }> {
  const xs = tf.randomUniform([batchSize, 28, 28, 1]) as tf.Tensor4D;
  const augment = augmenter(STANDARD_AUGMENTATION, 1);
  const once = async () => {
    const started = performance.now();
    for (let step = 0; step < steps; step++) {
      const out = augment(xs, 0, step);
      await out.data();
      out.dispose();
    }
    return (steps * batchSize) / ((performance.now() - started) / 1000);
  };
  await once();
  const measured: number[] = [];
  for (let r = 0; r < repeats; r++) measured.push(await once());
  xs.dispose();
  return { imagesPerSec: median(measured), repeats: measured };
}

interface TorchBench {
  framework: string;
  model: string;
  precision: "fp32" | "bf16";
  threads: number;
  parameters: number;
  trainImagesPerSec: number;
  inferImagesPerSec: number;
  trainRepeats: number[];
  inferRepeats: number[];
}

/** The networks scripts/bench_torch.py builds as this project does. */
const TORCH_MODELS = ["cnn3", "vgg-bn", "vgg-bn-48", "vgg-bn-64"];

/** Whether this CPU runs bf16 arithmetic natively (elsewhere PyTorch emulates it, far slower than fp32). */
function cpuHasBf16(): boolean {
  try {
    return /\b(avx512_bf16|amx_bf16)\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
}

/** One network in PyTorch, in fp32 or bf16 autocast, timed the same way by scripts/bench_torch.py. */
async function benchTorch(model: string, precision: "fp32" | "bf16", threads: number, repeats: number, steps: number, batchSize: number, optimizer: OptimizerName): Promise<TorchBench> {
  const python = process.env.PYTHON ?? "/usr/bin/python3";
  const script = path.join(__dirname, "bench_torch.py");
  const args = [script, "--model", model, "--precision", precision, "--threads", String(threads), "--repeats", String(repeats), "--steps", String(steps), "--batch-size", String(batchSize), "--optimizer", optimizer];
  try {
    const { stdout } = await promisify(execFile)(python, args, { timeout: 30 * 60_000 });
    return JSON.parse(stdout) as TorchBench;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    const reason = (e.stderr ?? "").includes("No module named 'torch'")
      ? `${python} has no torch module (on Debian: apt-get install python3-torch, or set PYTHON)`
      : (e.stderr || e.message).trim().split("\n").pop();
    throw new Error(`--torch: the PyTorch benchmark failed: ${reason}`);
  }
}

const PROFILE_ROWS = 20;

function profileLines(model: string, batchSize: number, profile: StepProfile): string[] {
  return [
    `Training step of ${model} (batch ${batchSize}): ${profile.stepMs.toFixed(1)} ms; profiled, kernels ${profile.kernelMs.toFixed(1)} ms ` +
      `and ${profile.outsideMs.toFixed(1)} ms outside them; ${(profile.flops / 1e9).toFixed(2)} GFLOP in convolutions and matrix products ` +
      `(${(profile.flops / (profile.stepMs * 1e6)).toFixed(1)} GFLOP/s over the step). Top kernels:`,
    textTable(
      ["kernel and input shapes", "calls", "ms", "share", "GFLOP/s"],
      profile.kernels.slice(0, PROFILE_ROWS).map((k) => [k.kernel, String(k.calls), k.ms.toFixed(1), `${(100 * k.share).toFixed(1)}%`, k.gflops?.toFixed(1) ?? ""]),
    ),
  ];
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      json: { type: "boolean", default: false },
      models: { type: "string", default: "cnn3,ann,cnn3-bn" },
      repeats: { type: "string", default: "5" },
      steps: { type: "string", default: "5" },
      "batch-size": { type: "string", default: "128" },
      optimizer: { type: "string", default: "adam" },
      torch: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      "compare-wasm": { type: "boolean", default: false },
      "compare-blocks": { type: "boolean", default: false },
      "compare-winners": { type: "boolean", default: false },
      bf16: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  const { models, repeats, steps, batchSize, optimizer } = usageCheck(() => {
    const names = values.models.split(",").map((s) => s.trim()).filter(Boolean);
    names.forEach(presetModel);
    return {
      optimizer: requireOneOf(values.optimizer, OPTIMIZERS, "--optimizer"),
      models: names,
      repeats: positiveInt(values.repeats, "--repeats"),
      steps: positiveInt(values.steps, "--steps"),
      batchSize: positiveInt(values["batch-size"], "--batch-size"),
    };
  });
  // Progress goes to stderr so that --json output stays clean.
  const log = (line: string) => process.stderr.write(line + "\n");
  const threads = Number(process.env.TFJS_WASM_THREADS || os.availableParallelism());
  const bf16 = cpuHasBf16();
  const torchPrecisions = bf16 ? (["fp32", "bf16"] as const) : (["fp32"] as const);
  const torchModels = values.torch ? models.filter((m) => TORCH_MODELS.includes(m)) : [];
  if (values.torch && torchModels.length === 0) throw new UsageError(`--torch measures ${TORCH_MODELS.join(", ")} in PyTorch: name one of them in --models.`);
  if (values.torch && !bf16) log("PyTorch bf16: skipped, this CPU has neither AVX512-BF16 nor AMX-BF16 (PyTorch would emulate bf16, far slower than fp32)");
  // PyTorch's repeats of a network, one process each (its own warm-up), by precision. Each runs just
  // before the project's repeat it is paired with, so that both see the machine of the same minute
  // (on a shared machine throughput drifts by 20-40% within minutes); the TF.js process waits
  // meanwhile (oneDNN's threads sleep, the wasm module is single-threaded beside them).
  const torchRepeats = new Map<string, TorchBench[]>();
  const torchRepeat = (model: string) => async () => {
    for (const precision of torchPrecisions) {
      const key = `${model}/${precision}`;
      torchRepeats.set(key, [...(torchRepeats.get(key) ?? []), await benchTorch(model, precision, threads, 1, steps, batchSize, optimizer)]);
    }
  };
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);
  const compareWasm = values["compare-wasm"];
  if (compareWasm && !oneDnnActive()) throw new Error("--compare-wasm: oneDNN's native kernels do not run here, so there is nothing to compare (see the backend line).");
  const withBf16 = values.bf16;
  const noBf16 = bf16Unavailable();
  if (withBf16 && noBf16) throw new Error(`--bf16: ${noBf16}.`);
  const compareBlocks = values["compare-blocks"], compareWinners = values["compare-winners"];
  if ((compareBlocks || compareWinners) && !convBnBlocksActive()) {
    const flag = compareBlocks ? "--compare-blocks" : "--compare-winners";
    throw new Error(`${flag}: the block ops do not run here (they need the native addon, with batch norm in oneDNN: not TFJS_ONEDNN_BATCH_NORM=0).`);
  }
  const results: ModelBench[] = [];
  for (const name of models) {
    const paired = torchModels.includes(name);
    if (paired) log(`  ${name}: each repeat after PyTorch's (${torchPrecisions.join(" and ")}, ${threads} threads)`);
    const beforeRepeat = paired ? torchRepeat(name) : undefined;
    results.push(await benchModel(name, repeats, steps, batchSize, values.profile, { compareWasm, bf16: withBf16, compareBlocks, compareWinners }, optimizer, log, beforeRepeat));
  }
  const augmentation = { pipeline: STANDARD_AUGMENTATION, ...(await benchAugmentation(repeats, steps, batchSize)) };

  const capstone = results.find((r) => r.model === "cnn3");
  const withBatchNorm = results.find((r) => r.model === "cnn3-bn");
  // How much longer a training step of the capstone CNN takes with batch norm after each layer.
  const batchNormStepRatio = capstone && withBatchNorm ? capstone.trainImagesPerSec / withBatchNorm.trainImagesPerSec : null;
  // Each PyTorch figure against this project's for the same network: medians of PyTorch's repeats and of the
  // ratios of paired repeats (pairedRatio).
  const torch = torchModels.flatMap((model) =>
    torchPrecisions.map((precision) => {
      const runs = torchRepeats.get(`${model}/${precision}`)!;
      const [trainRepeats, inferRepeats] = [runs.map((t) => t.trainImagesPerSec), runs.map((t) => t.inferImagesPerSec)];
      const ours = results.find((r) => r.model === model)!;
      return {
        ...runs[0],
        trainImagesPerSec: median(trainRepeats),
        inferImagesPerSec: median(inferRepeats),
        trainRepeats,
        inferRepeats,
        trainRatio: pairedRatio(ours.trainRepeats, trainRepeats),
        inferRatio: pairedRatio(ours.inferRepeats, inferRepeats),
        ...(ours.bf16 ? { bf16TrainRatio: pairedRatio(ours.bf16.trainRepeats, trainRepeats), bf16InferRatio: pairedRatio(ours.bf16.inferRepeats, inferRepeats) } : {}),
      };
    }),
  );
  const report = {
    backend: backend.name,
    threads: backend.threads,
    oneDnn: backend.oneDnn,
    cpus: os.cpus().length,
    tfjsVersion: tf.version.tfjs,
    repeats,
    stepsPerRepeat: steps,
    batchSize,
    optimizer,
    trainImagesPerSec: capstone?.trainImagesPerSec ?? null,
    inferImagesPerSec: capstone?.inferImagesPerSec ?? null,
    models: results,
    batchNormStepRatio,
    augmentation,
    torch,
    torchBf16: values.torch ? (bf16 ? "measured" : "skipped: no AVX512-BF16 or AMX-BF16 on this CPU") : null,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
    return;
  }
  process.stdout.write(
    [
      `Backend ${describeBackend(backend)}; TF.js ${report.tfjsVersion}; ${report.cpus} CPUs; batch ${batchSize}; optimizer ${optimizer}; ` +
        `median of ${repeats} repeats of ${steps} batches after a warm-up.`,
      "",
      textTable(
        [
          "model", "parameters", "train img/s", "train+augment img/s", "infer img/s", ...(compareWasm ? ["wasm alone: train", "infer"] : []),
          ...(withBf16 ? ["bf16: train", "infer"] : []), ...(compareBlocks ? ["layer by layer: train", ...(withBf16 ? ["bf16"] : [])] : []),
          ...(compareWinners ? ["whole gradient: train", ...(withBf16 ? ["bf16"] : [])] : []),
        ],
        results.map((r) => [
          r.model, formatCount(r.parameters), r.trainImagesPerSec.toFixed(0),
          `${r.trainAugmentedImagesPerSec.toFixed(0)} (${(r.trainAugmentedImagesPerSec / r.trainImagesPerSec).toFixed(2)}×)`, r.inferImagesPerSec.toFixed(0),
          ...(r.wasmOnly
            ? [
                `${r.wasmOnly.trainImagesPerSec.toFixed(0)} (${(r.trainImagesPerSec / r.wasmOnly.trainImagesPerSec).toFixed(2)}× faster with oneDNN)`,
                `${r.wasmOnly.inferImagesPerSec.toFixed(0)} (${(r.inferImagesPerSec / r.wasmOnly.inferImagesPerSec).toFixed(2)}×)`,
              ]
            : []),
          ...(r.bf16
            ? [
                `${r.bf16.trainImagesPerSec.toFixed(0)} (${(r.bf16.trainImagesPerSec / r.trainImagesPerSec).toFixed(2)}× fp32)`,
                `${r.bf16.inferImagesPerSec.toFixed(0)} (${(r.bf16.inferImagesPerSec / r.inferImagesPerSec).toFixed(2)}×)`,
              ]
            : []),
          ...(["layerByLayer", "wholeGradient"] as const).flatMap((k) => {
            const off = r[k];
            if (!off) return [];
            const on = k === "layerByLayer" ? "the block op" : "the winners'";
            return [`${off.trainImagesPerSec.toFixed(0)} (${on} ${off.ratio.toFixed(2)}×)`, ...(off.bf16 ? [`${off.bf16.trainImagesPerSec.toFixed(0)} (${off.bf16.ratio.toFixed(2)}×)`] : [])];
          }),
        ]),
      ),
      "",
      `Augmentation alone (flip, shift ≤ 2 px, random erasing): ${augmentation.imagesPerSec.toFixed(0)} img/s.`,
      ...(batchNormStepRatio ? [`A cnn3-bn training step takes ${batchNormStepRatio.toFixed(2)}× a cnn3 step.`] : []),
      ...(torch.length > 0
        ? [
            "",
            `${torch[0].framework}, ${torch[0].threads} thread${torch[0].threads > 1 ? "s" : ""}, the same networks, each repeat just before the project's; ` +
              `ratios are medians of the paired repeats${bf16 ? "" : "; bf16 skipped, no AVX512-BF16 or AMX-BF16 here"}:`,
            textTable(
              ["model", "PyTorch precision", "PyTorch train img/s", "infer img/s", "project fp32 ÷ PyTorch: train", "infer", ...(withBf16 ? ["project bf16 ÷ PyTorch: train", "infer"] : [])],
              torch.map((t) => [
                t.model, t.precision === "bf16" ? "bf16 autocast, channels-last" : "fp32", t.trainImagesPerSec.toFixed(0), t.inferImagesPerSec.toFixed(0),
                `${t.trainRatio.toFixed(2)}×`, `${t.inferRatio.toFixed(2)}×`,
                ...(t.bf16TrainRatio === undefined ? [] : [`${t.bf16TrainRatio.toFixed(2)}×`, `${t.bf16InferRatio!.toFixed(2)}×`]),
              ]),
            ),
          ]
        : []),
      ...results.flatMap((r) => (r.profile ? ["", ...profileLines(r.model, batchSize, r.profile)] : [])),
    ].join("\n") + "\n",
  );
});
