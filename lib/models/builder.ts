/**
 * Models declared by small typed configs (plain JSON) and built by one factory, so that
 * scripts, notebooks and tuning all describe a network the same way.
 */
import { tf } from "../accelerator";
import { FastActivation, FastBatchNorm, FastConv2D, FastDropout, FastMaxPooling2D, fuseBatchNormRelu, fuseConvBnBlocks, fuseConvReluPools } from "../accelerator";
import { FastAdam, FastMomentum, l2Regularizer } from "../accelerator";

export type Activation = "relu" | "softmax" | "linear";

export type LayerConfig =
  /** useBias false: no bias (before batch norm, whose β takes its place); absent: a bias. */
  | { type: "conv2d"; filters: number; kernelSize: number; activation?: Activation; padding?: "same" | "valid"; l2?: number; useBias?: boolean }
  | { type: "maxPool2d"; poolSize: number }
  | { type: "dropout"; rate: number }
  | { type: "flatten" }
  | { type: "dense"; units: number; activation?: Activation; l2?: number; useBias?: boolean }
  | { type: "batchNorm" }
  | { type: "activation"; activation: Activation }
  | { type: "zeroPadding2d"; padding: number };

export interface ModelConfig {
  name: string;
  description: string;
  /** Pixels scaled to [0,1], shape [28,28,1]. */
  inputShape: [number, number, number];
  layers: LayerConfig[];
}

export const NUM_CLASSES = 10;
const IMAGE_SHAPE: [number, number, number] = [28, 28, 1];

/**
 * The one parametric network every preset and every tuning layout is built from: blocks of
 * 3×3 convolutions (each optionally batch-normalised before its relu), each block optionally
 * max-pooled and followed by dropout; then flatten, an optional hidden dense layer with its
 * dropout, and the softmax output.
 */
export interface ConvNetSpec {
  /** 'valid' convolutions shrink the image by 2 each (the capstone CNNs); 'same' keep its size. */
  padding: "valid" | "same";
  /** Convolutions per block (VGG-style: 2). */
  convsPerBlock: number;
  blocks: { filters: number; pool: number | null; dropout: number | null }[];
  /** Batch norm between each conv / hidden dense layer and its relu (the layer then has no activation of its own). */
  batchNorm: boolean;
  /**
   * false: the layers before batch norm have no bias (batch norm subtracts the batch mean, so
   * such a bias changes nothing but costs a gradient pass per step). Absent: they keep one, as
   * the models whose finished runs and reference parameter counts predate the choice do.
   */
  biasBeforeBatchNorm?: boolean;
  /** L2 on the conv and hidden dense kernels (0: none). */
  l2: number;
  /** The dense layer before the output; null: the features go straight to the output. */
  hidden: { units: number; dropout: number | null } | null;
  /** L2 on the output layer's kernel (0: none). */
  outputL2: number;
}

/** The layers of a ConvNetSpec (the configs that the builder and run identities read). */
export function convNetLayers(spec: ConvNetSpec): LayerConfig[] {
  const l2 = spec.l2 > 0 ? { l2: spec.l2 } : {};
  const activated = (layer: LayerConfig): LayerConfig[] =>
    spec.batchNorm
      ? [{ ...layer, activation: "linear", ...(spec.biasBeforeBatchNorm === false ? { useBias: false } : {}) } as LayerConfig, { type: "batchNorm" }, { type: "activation", activation: "relu" }]
      : [layer];
  const dropout = (rate: number | null): LayerConfig[] => (rate === null ? [] : [{ type: "dropout", rate }]);
  const conv = (filters: number): LayerConfig =>
    ({ type: "conv2d", filters, kernelSize: 3, activation: "relu", ...(spec.padding === "same" ? { padding: "same" as const } : {}), ...l2 });
  return [
    ...spec.blocks.flatMap((block) => [
      ...Array.from({ length: spec.convsPerBlock }, () => activated(conv(block.filters))).flat(),
      ...(block.pool === null ? [] : [{ type: "maxPool2d", poolSize: block.pool } as const]),
      ...dropout(block.dropout),
    ]),
    { type: "flatten" },
    ...(spec.hidden ? [...activated({ type: "dense", units: spec.hidden.units, activation: "relu", ...l2 }), ...dropout(spec.hidden.dropout)] : []),
    { type: "dense", units: NUM_CLASSES, activation: "softmax", ...(spec.outputL2 > 0 ? { l2: spec.outputL2 } : {}) },
  ];
}

export const convNet = (name: string, description: string, spec: ConvNetSpec): ModelConfig => ({
  name, description, inputShape: IMAGE_SHAPE, layers: convNetLayers(spec),
});

const PLAIN = { padding: "valid", convsPerBlock: 1, batchNorm: false, l2: 0, outputL2: 0 } as const;

/** The capstone CNN with 1–3 blocks (32/64/128 filters, dropout 0.2 each); the 3-block one pools after its first two blocks only. */
function capstoneCnn(blocks: 1 | 2 | 3, batchNorm = false): ModelConfig {
  const filters = [32, 64, 128].slice(0, blocks);
  return convNet(
    batchNorm ? `cnn${blocks}-bn` : `cnn${blocks}`,
    `Capstone CNN with ${blocks} conv block${blocks > 1 ? "s" : ""} (${filters.join("/")} filters), dense 128` +
      (batchNorm ? ", batch normalisation after each conv and the dense layer" : ""),
    { ...PLAIN, batchNorm, blocks: filters.map((f, i) => ({ filters: f, pool: blocks < 3 || i < 2 ? 2 : null, dropout: 0.2 })), hidden: { units: 128, dropout: 0.2 } },
  );
}

/** L2 on the weights of vgg-bn (the loss gains λ·Σw², so SGD decays by 2λ = 5·10⁻⁴ per step × rate). */
const VGG_L2 = 2.5e-4;

/** The VGG-style layout with batch norm at a width: three blocks of `width`, 2× and 4× filters. */
function vggBn(name: string, width: number): ModelConfig {
  const filters = [width, 2 * width, 4 * width];
  return convNet(
    name,
    `VGG-style: blocks of two 'same' 3×3 conv (no bias) + batch norm + relu (${filters.join(", ")} filters), max-pooled between blocks, global max pool, dense 10; L2 2.5e-4 on weights, no dropout`,
    {
      padding: "same", convsPerBlock: 2, batchNorm: true, biasBeforeBatchNorm: false, l2: VGG_L2, outputL2: VGG_L2, hidden: null,
      // The global max pool as one 7×7 pool: the project's pooling kernels train it ~25% faster per
      // step than TF.js's GlobalMaxPooling2D (a max over two axes), measured at 1 thread.
      blocks: filters.map((f, i) => ({ filters: f, pool: i < 2 ? 2 : 7, dropout: null })),
    },
  );
}

const VGG_BN: ModelConfig = vggBn("vgg-bn", 32);

/** Named models that experiments train (a test checks each is declared): the reference studies' networks and this project's best. */
export const PRESET_MODELS: Record<string, ModelConfig> = {
  ann: convNet("ann", "Dense baseline: flatten → dense 512 relu → dense 10", { ...PLAIN, blocks: [], hidden: { units: 512, dropout: null } }),
  cnn1: capstoneCnn(1),
  cnn2: capstoneCnn(2),
  cnn3: capstoneCnn(3),
  "vgg-bn": VGG_BN,
  // Half of vgg-bn's width: ~4x fewer multiply-adds, the short budgets' network.
  "vgg-bn-16": vggBn("vgg-bn-16", 16),
  // 1.5x vgg-bn's width (~2.25x its multiply-adds): the 60-minute budget's wider run.
  "vgg-bn-48": vggBn("vgg-bn-48", 48),
  // 2x vgg-bn's width (~4x its multiply-adds): a member of the 2-hour budget's ensemble.
  "vgg-bn-64": vggBn("vgg-bn-64", 64),
};

/**
 * Named layouts that the benchmark measures (`npm run bench -- --models NAME`) and that no
 * experiment trains: the capstone CNN with batch norm, and the 'same' layout the tuning studies
 * search around.
 */
export const BENCHMARK_MODELS: Record<string, ModelConfig> = {
  "vgg-bn-24": vggBn("vgg-bn-24", 24),
  "cnn3-bn": capstoneCnn(3, true),
  "cnn-bn3": convNet(
    "cnn-bn3",
    "Stronger CNN: three 'same' conv blocks (32/64/128) with batch norm, each pooled, so 3×3×128 features reach a dense 256 with batch norm; dropout 0.25 / 0.4",
    {
      ...PLAIN, padding: "same", batchNorm: true,
      blocks: [{ filters: 32, pool: 2, dropout: null }, { filters: 64, pool: 2, dropout: 0.25 }, { filters: 128, pool: 2, dropout: 0.25 }],
      hidden: { units: 256, dropout: 0.4 },
    },
  ),
};

/** A Keras-style summary (layers, output shapes, parameter counts), from TF.js's own. */
export function modelSummary(model: tf.LayersModel): string {
  const lines: string[] = [];
  model.summary(100, undefined, (line: string) => lines.push(line));
  return lines.join("\n");
}

/** A preset or a benchmark layout by name. */
export function presetModel(name: string): ModelConfig {
  const config = PRESET_MODELS[name] ?? BENCHMARK_MODELS[name];
  if (!config) {
    throw new Error(`Unknown model "${name}"; known models: ${[...Object.keys(PRESET_MODELS), ...Object.keys(BENCHMARK_MODELS)].join(", ")}.`);
  }
  return config;
}

function buildLayer(layer: LayerConfig, index: number, seed: number | undefined): tf.layers.Layer {
  const name = `${layer.type}_${index + 1}`;
  // Each layer its own stream (Keras's default initializer for kernels, seeded when asked).
  const layerSeed = seed === undefined ? undefined : seed * 1000 + index;
  const kernelInitializer = tf.initializers.glorotUniform({ seed: layerSeed });
  switch (layer.type) {
    case "conv2d":
      return new FastConv2D({
        name,
        filters: layer.filters,
        kernelSize: layer.kernelSize,
        activation: layer.activation ?? "relu",
        padding: layer.padding ?? "valid",
        useBias: layer.useBias ?? true,
        kernelInitializer,
        kernelRegularizer: layer.l2 ? l2Regularizer(layer.l2) : undefined,
      });
    case "maxPool2d":
      return new FastMaxPooling2D({ name, poolSize: layer.poolSize });
    case "dropout":
      return new FastDropout({ name, rate: layer.rate, seed: layerSeed });
    case "flatten":
      return tf.layers.flatten({ name });
    case "batchNorm":
      return new FastBatchNorm({ name });
    case "zeroPadding2d":
      return tf.layers.zeroPadding2d({ name, padding: layer.padding });
    case "activation":
      return new FastActivation({ name, activation: layer.activation });
    case "dense":
      return tf.layers.dense({
        name,
        units: layer.units,
        activation: layer.activation ?? "relu",
        useBias: layer.useBias ?? true,
        kernelInitializer,
        kernelRegularizer: layer.l2 ? l2Regularizer(layer.l2) : undefined,
      });
  }
}

/** Adam (the default), or SGD with Nesterov momentum 0.9. */
export const OPTIMIZERS = ["adam", "sgd-nesterov"] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];
const NESTEROV_MOMENTUM = 0.9;

export interface CompileOptions {
  learningRate?: number;
  /** Seeds the initial weights and the dropout masks (unseeded when left out). */
  seed?: number;
  optimizer?: OptimizerName;
  /**
   * Targets are one-hot rows ([N, classes], e.g. smoothed labels: preprocess.toTargetTensor)
   * rather than class indices ([N]): categorical instead of sparse cross-entropy.
   */
  oneHotTargets?: boolean;
}

/** Builds and compiles a model: Adam or SGD-Nesterov, cross-entropy, accuracy. */
export function buildModel(config: ModelConfig, options: CompileOptions = {}): tf.Sequential {
  const model = tf.sequential({ name: config.name });
  model.add(tf.layers.inputLayer({ inputShape: config.inputShape }));
  config.layers.forEach((layer, i) => model.add(buildLayer(layer, i, options.seed)));
  fuseBatchNormRelu(model);
  fuseConvBnBlocks(model);
  fuseConvReluPools(model);
  const learningRate = options.learningRate ?? 1e-3;
  model.compile({
    optimizer: options.optimizer === "sgd-nesterov" ? new FastMomentum(learningRate, NESTEROV_MOMENTUM, true) : new FastAdam(learningRate),
    loss: options.oneHotTargets ? "categoricalCrossentropy" : "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  return model;
}

const ACTIVATIONS: readonly Activation[] = ["relu", "softmax", "linear"];

/**
 * Checks a model config before anything trains or is written: known layer kinds, every
 * parameter in its legal range, shapes that stay valid through the network, and an output of
 * `classes` softmax units. Errors name `source` (the file) and the layer.
 */
export function validateModelConfig(config: ModelConfig, source = "model config", inputShape: [number, number, number] = IMAGE_SHAPE, classes = NUM_CLASSES): ModelConfig {
  const invalid = (where: string, message: string) => new Error(`${source}: ${where}: ${message}`);
  if (typeof config !== "object" || config === null) throw invalid("(top)", "a model config must be an object with name, inputShape and layers");
  if (typeof config.name !== "string" || config.name === "") throw invalid("name", "must be a non-empty string");
  if (!Array.isArray(config.inputShape) || config.inputShape.join(",") !== inputShape.join(",")) {
    throw invalid("inputShape", `must be [${inputShape.join(", ")}] (the dataset's images), got ${JSON.stringify(config.inputShape)}`);
  }
  if (!Array.isArray(config.layers) || config.layers.length === 0) throw invalid("layers", "must be a non-empty list");
  const positiveInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  let [height, width, channels] = inputShape;
  let flat = false;
  config.layers.forEach((layer, i) => {
    const where = `layers[${i}] (${(layer as { type?: string })?.type ?? "?"})`;
    const check = (ok: boolean, message: string) => {
      if (!ok) throw invalid(where, message);
    };
    const activation = (value: unknown) => check(value === undefined || ACTIVATIONS.includes(value as Activation), `activation must be one of ${ACTIVATIONS.join(", ")}, got ${JSON.stringify(value)}`);
    const l2 = (value: unknown) => check(value === undefined || (typeof value === "number" && Number.isFinite(value) && value >= 0), `l2 must be a number ≥ 0, got ${JSON.stringify(value)}`);
    const useBias = (value: unknown) => check(value === undefined || typeof value === "boolean", `useBias must be true or false, got ${JSON.stringify(value)}`);
    const spatial = () => check(!flat, "needs an image-shaped input, but the network is already flattened");
    switch (layer?.type) {
      case "conv2d": {
        spatial();
        check(positiveInt(layer.filters), `filters must be a positive integer, got ${JSON.stringify(layer.filters)}`);
        check(positiveInt(layer.kernelSize), `kernelSize must be a positive integer, got ${JSON.stringify(layer.kernelSize)}`);
        check(layer.padding === undefined || layer.padding === "same" || layer.padding === "valid", `padding must be same or valid, got ${JSON.stringify(layer.padding)}`);
        activation(layer.activation);
        l2(layer.l2);
        useBias(layer.useBias);
        if ((layer.padding ?? "valid") === "valid") [height, width] = [height - layer.kernelSize + 1, width - layer.kernelSize + 1];
        check(height >= 1 && width >= 1, `the ${layer.kernelSize}×${layer.kernelSize} kernel does not fit the input left by the layers before it`);
        channels = layer.filters;
        break;
      }
      case "maxPool2d":
        spatial();
        check(positiveInt(layer.poolSize), `poolSize must be a positive integer, got ${JSON.stringify(layer.poolSize)}`);
        [height, width] = [Math.floor(height / layer.poolSize), Math.floor(width / layer.poolSize)];
        check(height >= 1 && width >= 1, `a ${layer.poolSize}×${layer.poolSize} pool does not fit the input left by the layers before it`);
        break;
      case "zeroPadding2d":
        spatial();
        check(Number.isInteger(layer.padding) && layer.padding >= 0, `padding must be an integer ≥ 0, got ${JSON.stringify(layer.padding)}`);
        [height, width] = [height + 2 * layer.padding, width + 2 * layer.padding];
        break;
      case "dropout":
        check(typeof layer.rate === "number" && layer.rate >= 0 && layer.rate < 1, `rate must be in [0, 1), got ${JSON.stringify(layer.rate)}`);
        break;
      case "flatten":
        flat = true;
        break;
      case "dense":
        check(flat, "needs a flatten layer before it");
        check(positiveInt(layer.units), `units must be a positive integer, got ${JSON.stringify(layer.units)}`);
        activation(layer.activation);
        l2(layer.l2);
        useBias(layer.useBias);
        break;
      case "batchNorm":
        break;
      case "activation":
        activation(layer.activation);
        check(layer.activation !== undefined, "needs an activation");
        break;
      default:
        throw invalid(where, `unknown layer type; known: conv2d, maxPool2d, dropout, flatten, dense, batchNorm, activation, zeroPadding2d`);
    }
  });
  void channels;
  const last = config.layers[config.layers.length - 1];
  if (last.type !== "dense" || last.units !== classes || (last.activation ?? "relu") !== "softmax") {
    throw invalid(`layers[${config.layers.length - 1}]`, `the last layer must be a dense layer of ${classes} units (one per class) with a softmax activation`);
  }
  return config;
}
