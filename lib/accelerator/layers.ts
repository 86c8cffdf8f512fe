/**
 * Layers that behave exactly like TF.js's own but train faster here.
 *
 * FastDropout: TF.js draws dropout masks with a seedrandom generator in JavaScript, one call
 * per value, plus three elementwise kernels (add, floor, div); on the capstone CNN that is
 * ~10 ms of a ~150 ms training step. FastDropout draws the same Bernoulli(1 − rate) mask,
 * scaled by 1/(1 − rate), from eight xorshift lanes: in the wasm heap by one SIMD pass where the
 * project's kernels are built (~1 ms for cnn3's four masks, against ~9 ms for one JavaScript
 * loop and a copy), else in JavaScript, the same values. It serialises as the stock
 * `Dropout` (same class name and config), so saved models load anywhere.
 *
 * FastBatchNorm: TF.js trains batch normalisation through `moments` and `batchNorm`, whose
 * gradients are built from ~25 generic ops (with broadcasts done by Tile). FastBatchNorm
 * computes the same training-mode forward pass and its closed-form gradient as one
 * custom-gradient op, and updates the moving statistics exactly as the stock layer does. It
 * serialises as `BatchNormalization`.
 *
 * FastConv2D: a convolution with a linear activation (one followed by batch norm) trains in
 * TF.js through the fused conv2d op, whose gradient computes the input's gradient eagerly,
 * even for the first layer, whose input is the data (16 ms of a 450 ms cnn-bn3 step on one
 * thread). In training FastConv2D runs a conv with a bias (and relu or no activation) as one
 * op (ProjectConv2DBias: the backend's fused convolution forward, the relu and bias gradients
 * in one SIMD pass, the input's gradient only when needed) and a conv without a bias as
 * conv2d, whose gradients are lazy too. It serialises as `Conv2D`.
 *
 * Relu's gradient (every relu layer after batch norm): TF.js computes dy·step(x) as two
 * kernels, each a pass with its own allocation; where the project's SIMD kernels are built it
 * is one (ProjectReluGrad), with the same values. In a sequential model built or loaded here
 * (fuseBatchNormRelu) batch norm applies that relu itself while training, and FastActivation
 * (serialised as `Activation`) passes its output on: no relu pass of its own either way.
 *
 * A block of two convolution (no bias) + batch norm + relu layers, as vgg-bn's (fuseConvBnBlocks), with the max pool
 * after it if there is one: where batch norm runs in oneDNN, a training step runs those layers as one custom-gradient op
 * over native kernels, and the ones after the first convolution pass its output on (FastMaxPooling2D too, serialised
 * as `MaxPooling2D`). In bf16 steps the block keeps its activations and gradients in bf16 inside (as PyTorch's autocast
 * does), so only its input, (pooled) output and incoming gradient convert between fp32 and bf16; in fp32 it gives the
 * layers' values bit for bit. Likewise a convolution with bias + relu and the max pool after it (cnn3's first two;
 * fuseConvReluPools) trains as one op whose activation stays in bf16 inside.
 */
import { tf } from "./backend";
import { BATCH_NORM_GRAD_KERNEL, BATCH_NORM_TRAIN_KERNEL, batchNormKernelsFit, MOVING_AVERAGES_KERNEL } from "./wasm/normalization";
import { RELU_BIAS_GRAD_KERNEL, RELU_GRAD_KERNEL, reluBiasGradFits } from "./wasm/activation";
import { DROPOUT_KERNEL, type MaskDraw } from "./wasm/random";
import {
  CONV_BN_BLOCK_GRAD_KERNEL, CONV_BN_BLOCK_KERNEL, CONV_RELU_POOL_GRAD_KERNEL, CONV_RELU_POOL_KERNEL, convBnBlocksActive, type ConvBnBlockAttrs,
  type ConvReluPoolAttrs,
} from "./native/onednn";

type DropoutArgs = Parameters<typeof tf.layers.dropout>[0];

interface DropoutLayer extends tf.layers.Layer {
  rate: number;
  noiseShape?: number[];
  seed?: number;
}

// The stock Dropout class is not exported by name; its constructor is reachable from an instance.
const StockDropout = tf.layers.dropout({ rate: 0.5 }).constructor as new (args: DropoutArgs) => DropoutLayer;

/** One xorshift32 step (13, 17, 5), as uint32. */
const xorshift32 = (s: number): number => {
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  return s >>> 0;
};

/** murmur3's finaliser: spreads a seed's bits so that neighbouring seeds start unrelated lanes. */
const mix32 = (h: number): number => {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
};

/**
 * Dropout masks from eight xorshift32 lanes (element i from lane i % 8, so that wasm SIMD can
 * draw eight at a time: lib/accelerator/wasm/random.ts), fast and good enough to decide which units
 * to drop. The lanes of each mask are seeded from the generator's state, which then takes one step.
 */
export class MaskGenerator {
  private state: number;

  constructor(seed?: number) {
    // A zero state would stay zero forever.
    this.state = (seed ?? Math.floor(Math.random() * 0xffffffff)) >>> 0 || 0x9e3779b9;
  }

  /** The generator's state: saved with a checkpoint so that a resumed run draws the masks it would have drawn. */
  get current(): number {
    return this.state;
  }

  set current(state: number) {
    if (!Number.isInteger(state) || state <= 0 || state > 0xffffffff) throw new Error(`A mask generator state is a non-zero uint32, got ${state}.`);
    this.state = state;
  }

  /** The next mask's parameters, keeping each value with probability `keep` (0 < keep < 1); the state takes a step. */
  next(keep: number): MaskDraw {
    const lanes = Array.from({ length: 8 }, (_, k) => mix32((this.state + Math.imul(k + 1, 0x9e3779b9)) >>> 0) || 0x9e3779b9);
    this.state = xorshift32(this.state) || 0x9e3779b9;
    // A uint32 draw x keeps its value where x < keep·2³², i.e. x < ⌈keep·2³²⌉.
    return { lanes, threshold: Math.min(Math.ceil(keep * 4294967296), 0xffffffff), scale: Math.fround(1 / keep) };
  }

  /** Values 1/keep with probability keep, else 0: the next mask, as the SIMD kernel draws it. */
  fill(mask: Float32Array, keep: number): Float32Array {
    const draw = this.next(keep);
    const lanes = Uint32Array.from(draw.lanes);
    const { threshold, scale } = draw;
    for (let i = 0; i < mask.length; i++) {
      let s = lanes[i & 7];
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      lanes[i & 7] = s;
      mask[i] = s >>> 0 < threshold ? scale : 0;
    }
    return mask;
  }
}

export class FastDropout extends StockDropout {
  static className = "Dropout";
  private readonly masks: MaskGenerator;


  constructor(args: DropoutArgs) {
    super(args);
    this.masks = new MaskGenerator(args.seed);
  }

  /** Where the layer's mask sequence stands (see MaskGenerator.current). */
  get maskState(): number {
    return this.masks.current;
  }

  set maskState(state: number) {
    this.masks.current = state;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const training = kwargs.training === true;
    if (!training || !(this.rate > 0 && this.rate < 1) || this.noiseShape != null) return super.call(inputs, kwargs);
    return tf.tidy(() => {
      const input = Array.isArray(inputs) ? inputs[0] : inputs;
      const keep = 1 - this.rate;
      if (!tf.getKernel(DROPOUT_KERNEL, tf.getBackend())) return tf.mul(input, tf.tensor(this.masks.fill(new Float32Array(input.size), keep), input.shape));
      // The SIMD kernel draws the same mask and applies it in one pass; the same draw on the
      // incoming gradient is the gradient, so no mask is stored between the passes.
      const draw = this.masks.next(keep);
      const apply = (x: tf.Tensor) => tf.engine().runKernel(DROPOUT_KERNEL, { x }, draw as never) as tf.Tensor;
      return tf.customGrad((x) => ({ value: apply(x as tf.Tensor), gradFunc: (dy: tf.Tensor) => apply(dy) }))(input);
    });
  }
}

type BatchNormArgs = Parameters<typeof tf.layers.batchNormalization>[0];

interface BatchNormLayer extends tf.layers.Layer {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma: tf.LayerVariable;
  beta: tf.LayerVariable;
  movingMean: tf.LayerVariable;
  movingVariance: tf.LayerVariable;
}

const StockBatchNorm = tf.layers.batchNormalization({}).constructor as new (args?: BatchNormArgs) => BatchNormLayer;

/** Per-channel mean and (biased) variance over every axis but the last. */
function moments(x: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const mean = tf.mean(x, axes);
  return [mean, tf.mean(tf.square(tf.sub(x, mean)), axes)];
}

/** The closed-form training gradient of batch normalisation: [dx, dγ, dβ]. */
function batchNormGradient(dy: tf.Tensor, x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, gamma: tf.Tensor, epsilon: number): tf.Tensor[] {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const count = x.size / x.shape[x.shape.length - 1];
  const inverseStd = tf.rsqrt(tf.add(variance, epsilon));
  const centered = tf.sub(x, mean);
  const dBeta = tf.sum(dy, axes);
  const dGamma = tf.mul(inverseStd, tf.sum(tf.mul(dy, centered), axes));
  const dx = tf.mul(tf.mul(gamma, inverseStd), tf.sub(tf.sub(dy, tf.div(dBeta, count)), tf.mul(centered, tf.div(tf.mul(inverseStd, dGamma), count))));
  return [dx, dGamma, dBeta];
}

/**
 * Batch normalisation over every axis but the last, with its gradient in closed form
 * (dβ = Σdy, dγ = σ⁻¹·Σdy·(x − μ), dx = γσ⁻¹·(dy − dβ/N − (x − μ)σ⁻¹·dγ/N)), as one custom-gradient op.
 * With `relu` asked for, where the project's kernels run it (the SIMD ones or oneDNN's), the op also applies relu
 * and folds relu's gradient into its own: `reluApplied` then says so, and the relu layer after it passes its input
 * on (FastActivation).
 */
function trainingBatchNorm(
  x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number, relu: boolean,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor; reluApplied: boolean } {
  let mean: tf.Tensor | undefined;
  let variance: tf.Tensor | undefined;
  let workspace: tf.Tensor | undefined;
  // On wasm, where built, the project's SIMD kernels (lib/accelerator/wasm/normalization.ts) do each direction in two passes.
  const fused = tf.getKernel(BATCH_NORM_TRAIN_KERNEL, tf.getBackend()) !== undefined && batchNormKernelsFit(x.shape[x.rank - 1]);
  const reluApplied = relu && fused;
  const attrs = { epsilon, relu: reluApplied } as never;
  const normalise = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    let value: tf.Tensor;
    // Mean and variance are kept past the op's own tidy for the moving averages; the caller disposes them.
    if (fused) {
      // oneDNN's kernel adds a fourth output with relu: its workspace, for the gradient.
      const [y, batchMean, batchVariance, reluWorkspace] = tf.engine().runKernel(BATCH_NORM_TRAIN_KERNEL, { x: input, gamma: g, beta: b }, attrs) as tf.Tensor[];
      [value, mean, variance, workspace] = [y, tf.keep(batchMean), tf.keep(batchVariance), reluWorkspace];
    } else {
      [mean, variance] = moments(input).map((t) => tf.keep(t));
      // y = x·s + t with per-channel s = γσ⁻¹, t = β − μs: two fast passes (wasm's own
      // FusedBatchNorm kernel is a slower scalar loop).
      const scale = tf.mul(g, tf.rsqrt(tf.add(variance, epsilon)));
      value = tf.add(tf.mul(input, scale), tf.sub(b, tf.mul(mean, scale)));
    }
    save([input, mean, variance, g, ...(reluApplied ? [value] : []), ...(workspace ? [workspace] : [])]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xSaved, meanSaved, varianceSaved, gammaSaved, z, savedWorkspace] = saved;
        if (fused) {
          const inputs = { dy, x: xSaved, mean: meanSaved, variance: varianceSaved, gamma: gammaSaved, ...(reluApplied ? { z } : {}), ...(savedWorkspace ? { workspace: savedWorkspace } : {}) };
          return tf.engine().runKernel(BATCH_NORM_GRAD_KERNEL, inputs, attrs) as tf.Tensor[];
        }
        return batchNormGradient(dy, xSaved, meanSaved, varianceSaved, gammaSaved, epsilon);
      },
    };
  });
  const y = normalise(x, gamma, beta);
  return { y, mean: mean!, variance: variance!, reluApplied };
}

/** Outputs of batch norm that already had relu applied (training steps of a fused pair); FastActivation passes them on. */
const clippedByBatchNorm = new WeakSet<tf.Tensor>();

export class FastBatchNorm extends StockBatchNorm {
  static className = "BatchNormalization";
  /**
   * Set by fuseBatchNormRelu when a relu layer follows in a sequential model: training steps then apply relu here
   * (where the project's batch norm kernels run), and that layer passes the output on. Not serialised.
   */
  reluAfter = false;

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    const passed = passOnBlockOutput(input, kwargs);
    if (passed) return passed;
    const lastAxis = this.axis === -1 || this.axis === input.rank - 1;
    if (kwargs.training !== true || !lastAxis || !this.center || !this.scale) return super.call(inputs, kwargs);
    return tf.tidy(() => {
      const { y, mean, variance, reluApplied: withRelu } = trainingBatchNorm(input, this.gamma.read(), this.beta.read(), this.epsilon, this.reluAfter);
      if (withRelu) clippedByBatchNorm.add(y);
      this.updateMovingAverages(mean, variance);
      tf.dispose([mean, variance]);
      return y;
    });
  }

  /** The stock layer's moving-average update from a batch's statistics: v ← v − (v − value)·(1 − momentum), as one kernel where registered. */
  updateMovingAverages(mean: tf.Tensor, variance: tf.Tensor): void {
    if (tf.getKernel(MOVING_AVERAGES_KERNEL, tf.getBackend())) {
      const inputs = { movingMean: this.movingMean.read(), movingVariance: this.movingVariance.read(), mean, variance };
      const [newMean, newVariance] = tf.engine().runKernel(MOVING_AVERAGES_KERNEL, inputs, { momentum: this.momentum } as never) as tf.Tensor[];
      this.movingMean.write(newMean);
      this.movingVariance.write(newVariance);
      return;
    }
    for (const [variable, value] of [[this.movingMean, mean], [this.movingVariance, variance]] as const) {
      tf.tidy(() => {
        const original = variable.read();
        variable.write(tf.sub(original, tf.mul(tf.sub(original, value), 1 - this.momentum)));
      });
    }
  }
}

type ActivationArgs = Parameters<typeof tf.layers.activation>[0];

interface ActivationLayer extends tf.layers.Layer {
  activation: { getClassName(): string };
}

const StockActivation = tf.layers.activation({ activation: "relu" }).constructor as new (args: ActivationArgs) => ActivationLayer;

/**
 * TF.js's Activation layer, except that a relu passes on an input to which FastBatchNorm already applied relu (a
 * fused pair, see fuseBatchNormRelu): relu(relu(x)) = relu(x), so the values are the same without the relu's two
 * passes (forward and gradient). It serialises as `Activation`.
 */
export class FastActivation extends StockActivation {
  static className = "Activation";

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    const passed = passOnBlockOutput(input, kwargs);
    if (passed) return passed;
    // A clone, not the input itself: a layer's output must be its own tensor (Identity shares the data on wasm).
    if (this.activation.getClassName() === "relu" && clippedByBatchNorm.has(input)) return tf.clone(input);
    return super.call(inputs, kwargs);
  }
}

/**
 * Pairs each FastBatchNorm with the relu Activation right after it in a sequential model, so that training steps
 * apply the relu inside batch norm (lib/accelerator/wasm/normalization.ts: one pass fewer forward, relu's gradient
 * folded into batch norm's). Needs a chain, so sequential models only; others are left as they are. Returns the
 * number of pairs.
 */
export function fuseBatchNormRelu(model: tf.LayersModel): number {
  if (!(model instanceof tf.Sequential)) return 0;
  let pairs = 0;
  model.layers.forEach((layer, i) => {
    const next = model.layers[i + 1];
    if (layer instanceof FastBatchNorm && next instanceof FastActivation && next.activation.getClassName() === "relu") {
      layer.reluAfter = true;
      pairs++;
    }
  });
  return pairs;
}

type Conv2DArgs = Parameters<typeof tf.layers.conv2d>[0];

interface Conv2DLayer extends tf.layers.Layer {
  kernel: tf.LayerVariable;
  bias: tf.LayerVariable | null;
  strides: [number, number];
  padding: "valid" | "same";
  dataFormat: string;
  dilationRate: number | number[];
  activation: { getClassName(): string };
}

const StockConv2D = tf.layers.conv2d({ filters: 1, kernelSize: 1 }).constructor as new (args: Conv2DArgs) => Conv2DLayer;

/**
 * y = act(conv2d(x, w) + b), act relu or linear, for training as one op of this project.
 * Forward: the backend's FusedConv2D kernel, bias and relu fused into the convolution (TF.js
 * runs them as separate ops, each a pass over the output, while it records gradients).
 * Backward: for relu, dz = dy·[y > 0] and the bias gradient Σdz in one kernel where built
 * (ProjectReluBiasGrad, else generic ops); then the convolution's filter gradient, and its
 * input gradient only when needed (a registered gradient is lazy per input; a first layer's
 * input is the data, and TF.js's own fused op computes it anyway).
 */
export const CONV_BIAS_KERNEL = "ProjectConv2DBias";

interface ConvBiasAttrs {
  strides: [number, number];
  pad: "same" | "valid";
  activation: "relu" | "linear";
}

/** dz and the bias gradient of y = act(z + b). */
function activationGradients(dy: tf.Tensor, y: tf.Tensor, activation: ConvBiasAttrs["activation"]): [tf.Tensor, tf.Tensor] {
  const biasGradient = (dz: tf.Tensor): [tf.Tensor, tf.Tensor] => [dz, tf.sum(dz, [0, 1, 2])];
  if (activation === "linear") return biasGradient(dy);
  if (tf.getKernel(RELU_BIAS_GRAD_KERNEL, tf.getBackend()) !== undefined && reluBiasGradFits(y.shape[y.rank - 1])) {
    return tf.engine().runKernel(RELU_BIAS_GRAD_KERNEL, { dy, y }, {}) as [tf.Tensor, tf.Tensor];
  }
  return biasGradient(tf.mul(dy, tf.step(y)));
}

tf.registerGradient({
  kernelName: CONV_BIAS_KERNEL,
  inputsToSave: ["x", "filter"],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter, y] = saved;
    const { strides, pad, activation } = attrs as unknown as ConvBiasAttrs;
    const [dz, dBias] = activationGradients(dy as tf.Tensor, y, activation);
    const conv = { strides, pad, dataFormat: "NHWC", dimRoundingMode: undefined };
    return {
      x: () => tf.engine().runKernel("Conv2DBackpropInput", { dy: dz, filter }, { ...conv, inputShape: x.shape } as never) as tf.Tensor,
      filter: () => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy: dz }, { ...conv, filterShape: filter.shape } as never) as tf.Tensor,
      bias: () => dBias,
    };
  },
});

tf.registerGradient({
  kernelName: "Relu",
  inputsToSave: ["x"],
  gradFunc: (dy, saved) => {
    const [x] = saved;
    const grad = dy as tf.Tensor;
    if (tf.getKernel(RELU_GRAD_KERNEL, tf.getBackend()) !== undefined && grad.dtype === "float32" && x.dtype === "float32") {
      return { x: () => tf.engine().runKernel(RELU_GRAD_KERNEL, { dy: grad, x }, {}) as tf.Tensor };
    }
    // TF.js's own gradient (tfjs-core's Relu_grad).
    return { x: () => tf.mul(grad, tf.cast(tf.step(x), "float32")) };
  },
});

/** Registers the op's forward kernel on a backend: that backend's FusedConv2D, looked up per call. */
function ensureConvBiasKernel(backendName: string): void {
  if (tf.getKernel(CONV_BIAS_KERNEL, backendName)) return;
  tf.registerKernel({
    kernelName: CONV_BIAS_KERNEL,
    backendName,
    kernelFunc: (args) => {
      const fused = tf.getKernel("FusedConv2D", backendName);
      if (!fused) throw new Error(`${CONV_BIAS_KERNEL}: the ${backendName} backend has no FusedConv2D kernel.`);
      return fused.kernelFunc({ ...args, attrs: { ...args.attrs, dataFormat: "NHWC", dilations: [1, 1] } });
    },
  });
}

function trainingConvBias(x: tf.Tensor, filter: tf.Tensor, bias: tf.Tensor, strides: [number, number], pad: "same" | "valid", activation: ConvBiasAttrs["activation"]): tf.Tensor {
  ensureConvBiasKernel(tf.getBackend());
  const attrs: ConvBiasAttrs = { strides, pad, activation };
  return tf.engine().runKernel(CONV_BIAS_KERNEL, { x, filter, bias }, attrs as never) as tf.Tensor;
}

export class FastConv2D extends StockConv2D {
  static className = "Conv2D";

  /** Set by fuseConvBnBlocks on a block's first convolution: the block's other layers. Not serialised. */
  block?: ConvBnBlock;
  /** Set by fuseConvReluPools on a convolution with bias + relu followed by a max pool: the op's pool. Not serialised. */
  reluPool?: ConvReluPool;

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    const passed = passOnBlockOutput(input, kwargs);
    if (passed) return passed;
    // The block ops' kernels are registered on wasm only (where the addon loads): another backend trains layer by
    // layer. Checked only for a convolution that opens an op, in training: every other call skips the lookups.
    const opRuns = (kernel: string) =>
      kwargs.training === true && input.rank === 4 && input.dtype === "float32" && convBnBlocksActive() && tf.getKernel(kernel, tf.getBackend()) !== undefined;
    if (this.block && opRuns(CONV_BN_BLOCK_KERNEL)) return tf.tidy(() => trainingConvBnBlock(input, this, this.block!));
    if (this.reluPool && opRuns(CONV_RELU_POOL_KERNEL)) return tf.tidy(() => trainingConvReluPool(input, this, this.reluPool!));
    const dilations = [this.dilationRate].flat();
    const activation = this.activation.getClassName();
    const plain = this.dataFormat === "channelsLast" && dilations.every((d) => d === 1) && input.rank === 4;
    if (kwargs.training !== true || !plain || (activation !== "relu" && activation !== "linear")) return super.call(inputs, kwargs);
    if (this.bias) {
      return tf.tidy(() => trainingConvBias(input, this.kernel.read(), this.bias!.read(), this.strides, this.padding, activation));
    }
    // Without a bias: conv2d, whose gradient is lazy per input too, then the activation.
    return tf.tidy(() => {
      const output = tf.conv2d(input as tf.Tensor4D, this.kernel.read() as tf.Tensor4D, this.strides, this.padding);
      return activation === "relu" ? tf.relu(output) : output;
    });
  }
}

/** A block's layers after its first convolution (fuseConvBnBlocks), and whether its input needs a gradient. */
export interface ConvBnBlock {
  norm1: FastBatchNorm;
  conv2: FastConv2D;
  norm2: FastBatchNorm;
  /** The window of the max pool right after the block, which the op runs too (disjoint windows tiling its output); else null. */
  pool: [number, number] | null;
  /** False for a model's first block, whose input is the data: its gradient is never asked for, so it is not computed. */
  inputGradient: boolean;
}

/** A block op's output (and its copies down the block) with the number of the block's layers still to pass it on. */
const blockOutputs = new WeakMap<tf.Tensor, number>();

/**
 * In a training step, a layer inside a block that ran as one op (its first convolution computed the whole block) passes
 * the block's output on: a clone, since a layer's output must be its own tensor (Identity shares the data on wasm).
 */
function passOnBlockOutput(input: tf.Tensor, kwargs: Record<string, unknown>): tf.Tensor | undefined {
  const layersLeft = kwargs.training === true ? blockOutputs.get(input) : undefined;
  if (!layersLeft) return undefined;
  const output = tf.clone(input);
  if (layersLeft > 1) blockOutputs.set(output, layersLeft - 1);
  return output;
}

/**
 * relu(bn2(conv2(relu(bn1(conv1(x)))))), max pooled where the block has its pool, for a training step, as one
 * custom-gradient op over the native block kernels (lib/accelerator/native/onednn.ts, convBnBlock): gradients for the
 * input (where asked for), both filters and both batch norms' γ and β, and both batch norms' moving averages updated as
 * their layers do. In bf16 mode what stays inside the block is bf16, so only its input, output and incoming gradient
 * convert.
 */
function trainingConvBnBlock(x: tf.Tensor, conv1: FastConv2D, block: ConvBnBlock): tf.Tensor {
  const { norm1, conv2, norm2, pool, inputGradient } = block;
  const attrs: ConvBnBlockAttrs = {
    strides1: conv1.strides, pad1: conv1.padding, strides2: conv2.strides, pad2: conv2.padding, epsilon1: norm1.epsilon, epsilon2: norm2.epsilon,
    inputGradient, pool,
  };
  let statistics: tf.Tensor[] = [];
  const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, filter1, gamma1, beta1, filter2, gamma2, beta2] = args as tf.Tensor[];
    const save = args[7] as tf.GradSaveFunc;
    const inputs = { x: input, filter1, gamma1, beta1, filter2, gamma2, beta2 };
    const [y, ...rest] = tf.engine().runKernel(CONV_BN_BLOCK_KERNEL, inputs, attrs as never) as tf.Tensor[];
    // Mean and variance are kept past the op's own tidy for the moving averages; the caller disposes them.
    statistics = rest.slice(0, 4).map((t) => tf.keep(t));
    save([input, filter1, gamma1, filter2, gamma2, ...statistics, ...rest.slice(4)]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xSaved, f1, g1, f2, g2, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2, workspace2, poolWorkspace] = saved;
        const gradInputs = {
          dy, x: xSaved, filter1: f1, gamma1: g1, filter2: f2, gamma2: g2, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2, workspace2,
          ...(poolWorkspace ? { poolWorkspace } : {}),
        };
        const [dFilter1, dGamma1, dBeta1, dFilter2, dGamma2, dBeta2, dx] = tf.engine().runKernel(CONV_BN_BLOCK_GRAD_KERNEL, gradInputs, attrs as never) as tf.Tensor[];
        return [dx ?? tf.zeros(xSaved.shape), dFilter1, dGamma1, dBeta1, dFilter2, dGamma2, dBeta2];
      },
    };
  });
  const y = run(x, conv1.kernel.read(), norm1.gamma.read(), norm1.beta.read(), conv2.kernel.read(), norm2.gamma.read(), norm2.beta.read());
  norm1.updateMovingAverages(statistics[0], statistics[1]);
  norm2.updateMovingAverages(statistics[2], statistics[3]);
  tf.dispose(statistics);
  // The block's layers after conv1 (five, or six with the pool) pass it on.
  blockOutputs.set(y, pool ? 6 : 5);
  return y;
}

/** A convolution with bias + relu and the max pool after it as one op (fuseConvReluPools): the pool's window, and whether the input needs a gradient. */
export interface ConvReluPool {
  pool: [number, number];
  /** False for a model's first layer, whose input is the data. */
  inputGradient: boolean;
}

/**
 * maxPool(relu(conv(x) + b)) for a training step, as one custom-gradient op over native kernels (lib/accelerator/native/
 * onednn.ts, convReluPool): gradients for the input (where asked for), the filter and the bias. In bf16 mode the
 * activation between the convolution and the pool is bf16, so only the input, the pooled output and its gradient convert.
 */
function trainingConvReluPool(x: tf.Tensor, conv: FastConv2D, { pool, inputGradient }: ConvReluPool): tf.Tensor {
  const attrs: ConvReluPoolAttrs = { strides: conv.strides, pad: conv.padding, pool, inputGradient };
  const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, filter, bias] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [y, activation, poolWorkspace] = tf.engine().runKernel(CONV_RELU_POOL_KERNEL, { x: input, filter, bias }, attrs as never) as tf.Tensor[];
    save([input, filter, activation, poolWorkspace]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xSaved, filterSaved, activationSaved, workspace] = saved;
        const gradInputs = { dy, x: xSaved, filter: filterSaved, activation: activationSaved, poolWorkspace: workspace };
        const [dFilter, dBias, dx] = tf.engine().runKernel(CONV_RELU_POOL_GRAD_KERNEL, gradInputs, attrs as never) as tf.Tensor[];
        return [dx ?? tf.zeros(xSaved.shape), dFilter, dBias];
      },
    };
  });
  const y = run(x, conv.kernel.read(), conv.bias!.read());
  // The pool layer after the convolution passes it on.
  blockOutputs.set(y, 1);
  return y;
}

/** A convolution that can open or close a block: no bias, linear, channels last, undilated. */
const blockConvolution = (layer: tf.layers.Layer | undefined): layer is FastConv2D =>
  layer instanceof FastConv2D && layer.bias === null && layer.activation.getClassName() === "linear" && layer.dataFormat === "channelsLast" &&
  [layer.dilationRate].flat().every((d) => d === 1);
const blockNorm = (layer: tf.layers.Layer | undefined): layer is FastBatchNorm =>
  layer instanceof FastBatchNorm && (layer.axis === -1 || layer.axis === 3) && layer.center && layer.scale;
const blockRelu = (layer: tf.layers.Layer | undefined): boolean =>
  layer instanceof FastActivation && layer.activation.getClassName() === "relu";

/** A max pool the block op can run too: disjoint windows that tile the block's output, channels last; its window, else null. */
function blockPool(layer: tf.layers.Layer | undefined, blockOutput: tf.Shape): [number, number] | null {
  if (!(layer instanceof FastMaxPooling2D) || layer.padding !== "valid" || layer.dataFormat !== "channelsLast") return null;
  const [height, width] = layer.poolSize;
  const tiles = layer.strides[0] === height && layer.strides[1] === width && blockOutput.length === 4 &&
    (blockOutput[1] ?? 0) % height === 0 && (blockOutput[2] ?? 0) % width === 0;
  return tiles ? [height, width] : null;
}

/**
 * Marks each run of six layers conv (no bias) → batch norm → relu → conv (no bias) → batch norm → relu in a sequential
 * model (vgg-bn's blocks) as a block, with the max pool after it where it tiles the block's output (blockPool), so that
 * training steps run it as one op where the native block kernels run (convBnBlocksActive); elsewhere, and outside
 * training, the layers run as before. Needs a chain, so sequential models only. Returns the number of blocks.
 */
export function fuseConvBnBlocks(model: tf.LayersModel): number {
  if (!(model instanceof tf.Sequential)) return 0;
  const layers = model.layers;
  let blocks = 0;
  for (let i = 0; i + 5 < layers.length; i++) {
    const [conv1, norm1, relu1, conv2, norm2, relu2] = layers.slice(i, i + 6);
    if (blockConvolution(conv1) && blockNorm(norm1) && blockRelu(relu1) && blockConvolution(conv2) && blockNorm(norm2) && blockRelu(relu2)) {
      // The model's first block reads the data (a sequential model's layers may start with its InputLayer).
      const inputGradient = layers.slice(0, i).some((layer) => layer.getClassName() !== "InputLayer");
      const pool = blockPool(layers[i + 6], relu2.outputShape as tf.Shape);
      conv1.block = { norm1, conv2, norm2, pool, inputGradient };
      blocks++;
      i += pool ? 6 : 5;
    }
  }
  return blocks;
}

type MaxPooling2DArgs = Parameters<typeof tf.layers.maxPooling2d>[0];

interface MaxPooling2DLayer extends tf.layers.Layer {
  poolSize: [number, number];
  strides: [number, number];
  padding: "valid" | "same" | "causal";
  dataFormat: "channelsFirst" | "channelsLast";
}

const StockMaxPooling2D = tf.layers.maxPooling2d({ poolSize: 2 }).constructor as new (args: MaxPooling2DArgs) => MaxPooling2DLayer;

/**
 * TF.js's MaxPooling2D, except that in a training step where the layers before it ran as one op with this pool inside
 * (fuseConvBnBlocks, fuseConvReluPools), it passes the op's (already pooled) output on. It serialises as `MaxPooling2D`.
 */
export class FastMaxPooling2D extends StockMaxPooling2D {
  static className = "MaxPooling2D";

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const passed = passOnBlockOutput(Array.isArray(inputs) ? inputs[0] : inputs, kwargs);
    return passed ?? super.call(inputs, kwargs);
  }
}

/**
 * Marks each convolution with bias + relu (channels last, undilated, outside a block) that a max pool with disjoint
 * windows follows in a sequential model (cnn3's first two) as one op with that pool, so that training steps run both as
 * one custom-gradient op where the native kernels run (convBnBlocksActive; TFJS_CONV_BN_BLOCKS=0 turns it off too).
 * Returns the number of convolutions marked.
 */
export function fuseConvReluPools(model: tf.LayersModel): number {
  if (!(model instanceof tf.Sequential)) return 0;
  let marked = 0;
  model.layers.forEach((conv, i) => {
    const pool = model.layers[i + 1];
    if (!(conv instanceof FastConv2D) || conv.block || conv.bias === null || conv.activation.getClassName() !== "relu") return;
    if (conv.dataFormat !== "channelsLast" || ![conv.dilationRate].flat().every((d) => d === 1)) return;
    if (!(pool instanceof FastMaxPooling2D) || pool.padding !== "valid" || pool.dataFormat !== "channelsLast") return;
    const [height, width] = pool.poolSize;
    const [, outHeight, outWidth] = conv.outputShape as tf.Shape;
    if (pool.strides[0] !== height || pool.strides[1] !== width || (outHeight ?? 0) < height || (outWidth ?? 0) < width) return;
    const inputGradient = model.layers.slice(0, i).some((layer) => layer.getClassName() !== "InputLayer");
    conv.reluPool = { pool: [height, width], inputGradient };
    marked++;
  });
  return marked;
}

// Loaded models (a resumed run's checkpoint) get the fast layers too: same class names, so
// these replace the stock classes in TF.js's deserialisation map.
// (The casts restore the static fromConfig that the constructor casts above hide from TypeScript.)
type Registrable = tf.serialization.SerializableConstructor<tf.serialization.Serializable>;
tf.serialization.registerClass(FastDropout as unknown as Registrable);
tf.serialization.registerClass(FastBatchNorm as unknown as Registrable);
tf.serialization.registerClass(FastActivation as unknown as Registrable);
tf.serialization.registerClass(FastConv2D as unknown as Registrable);
tf.serialization.registerClass(FastMaxPooling2D as unknown as Registrable);
