/**
 * 2-D convolutions, matrix products and training-mode batch norm on the wasm backend's tensors computed natively by
 * oneDNN (the library PyTorch's CPU convolutions use), through the project's Node addon lib/accelerator/native/onednn.node
 * (built by scripts/build-native.sh from Debian's libdnnl-dev). The addon reads and writes
 * the wasm heap in place. Where it is not built or cannot load, the wasm kernels run and the
 * backend line says why. `TFJS_ONEDNN=0` turns it off. The addon also runs max pooling over disjoint windows and its
 * gradient, and a first layer's filter gradient, on oneDNN's OpenMP threads (lib/accelerator/native/pooling.cc,
 * first_layer.cc).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { BackendUtil, KernelArgs, KernelFunc, TensorInfo, WasmBackendLike } from "../wasm/common";
import { firstLayerSimdCase } from "../wasm/convolution";
import { heapOffset, wasmMemory } from "../wasm/simd";

export const ONEDNN_ENV_VAR = "TFJS_ONEDNN";
/**
 * `TFJS_ONEDNN_BATCH_NORM=0` keeps training-mode batch norm in the SIMD kernels (and with it the block ops, which run
 * their batch norms in oneDNN); by default oneDNN runs it, on any number of threads.
 */
export const ONEDNN_BATCH_NORM_ENV_VAR = "TFJS_ONEDNN_BATCH_NORM";
/**
 * `TFJS_NATIVE_POOLING=0` keeps max pooling over disjoint windows and its gradient in the wasm module (one thread), `=1`
 * runs them in the addon (lib/accelerator/native/pooling.cc) even on one thread; by default the addon runs them where it
 * has more than one. Never on a CPU without AVX2, for which those loops are built.
 */
export const NATIVE_POOLING_ENV_VAR = "TFJS_NATIVE_POOLING";
/** `TFJS_BF16=0` keeps every product in fp32 even where a recipe asks for bf16. */
export const BF16_ENV_VAR = "TFJS_BF16";
export const ONEDNN_ADDON = path.join(__dirname, "onednn.node");

/** The addon's functions; each returns the name of the oneDNN implementation that ran. */
interface OneDnnAddon {
  // The keys name tensors whose bf16 copies the addon may keep and reuse (conversionKey); 0: none.
  forward(buffer: ArrayBufferLike, geometry: Float64Array, x: number, filter: number, bias: number, y: number, relu: number, training: number, xKey: number): string;
  backwardData(buffer: ArrayBufferLike, geometry: Float64Array, dy: number, filter: number, dx: number, dyKey: number): string;
  backwardWeights(buffer: ArrayBufferLike, geometry: Float64Array, x: number, dy: number, dw: number, xKey: number, dyKey: number): string;
  matMul(buffer: ArrayBufferLike, geometry: Float64Array, a: number, b: number, bias: number, c: number): string;
  // With a workspace (≥ 0) batch norm applies relu, and its gradient takes the relu output's gradient.
  batchNormForward(
    buffer: ArrayBufferLike, rows: number, channels: number, epsilon: number, x: number, gamma: number, beta: number, y: number, mean: number, variance: number,
    workspace: number,
  ): string;
  batchNormBackward(
    buffer: ArrayBufferLike, rows: number, channels: number, epsilon: number,
    dy: number, x: number, mean: number, variance: number, gamma: number, dx: number, dgamma: number, dbeta: number, workspace: number,
  ): string;
  /** Bytes of the workspace that batch norm with relu needs between its forward and backward passes. */
  batchNormWorkspaceBytes(rows: number, channels: number, epsilon: number): number;
  /** From now on products read bf16 operands (fp32 accumulation and results), or fp32 again. */
  setBf16(on: boolean): void;
  /** Whether convPoolBackward runs from the pool windows' winners (pooled_conv.h) where that fits. */
  setWinnerGradients(on: boolean): void;
  /** The instruction set oneDNN dispatches to here, e.g. "avx512_core_amx". */
  isa(): string;
  /** [bf16 conversions made, conversions the addon's pool of copies avoided] since it loaded. */
  conversionCounts(): [number, number];
  // Max pooling on OpenMP's threads (pooling.h); geometry [batch, height, width, channels, poolHeight, poolWidth, outHeight, outWidth].
  maxPool(buffer: ArrayBufferLike, geometry: Float64Array, x: number, y: number): void;
  maxPoolGrad(buffer: ArrayBufferLike, geometry: Float64Array, x: number, dy: number, dx: number): void;
  /** Whether this CPU runs the addon's own loops (pooling, the first layer's filter gradient: built for AVX2). */
  loopsSupported(): boolean;
  // A first layer's filter gradient (first_layer.h); geometry [batch, height, width, channels, outHeight, outWidth,
  // strideHeight, strideWidth, padTop, padLeft].
  firstLayerFilterGrad(buffer: ArrayBufferLike, geometry: Float64Array, x: number, dy: number, dw: number): void;
  // A block of two convolution + batch norm + relu layers (see convBnBlock): geometries of its two convolutions, the
  // epsilons of its two batch norms, the window of the max pool after it (0 × 0: none), and its tensors' offsets in the
  // order onednn.cc lists them.
  blockSavedBytes(buffer: ArrayBufferLike, ...block: BlockArgs): number[];
  blockForward(buffer: ArrayBufferLike, ...args: [...block: BlockArgs, tensors: Float64Array, xKey: number]): string;
  blockBackward(buffer: ArrayBufferLike, ...args: [...block: BlockArgs, tensors: Float64Array, xKey: number]): string;
  // A convolution with bias + relu and the max pool after it (see convReluPool): the convolution's geometry, the pool's
  // window, and the tensors' offsets in the order onednn.cc lists them.
  convPoolSavedBytes(buffer: ArrayBufferLike, geometry: Float64Array, poolHeight: number, poolWidth: number): number[];
  convPoolForward(buffer: ArrayBufferLike, geometry: Float64Array, poolHeight: number, poolWidth: number, tensors: Float64Array, xKey: number): string;
  convPoolBackward(
    buffer: ArrayBufferLike, geometry: Float64Array, poolHeight: number, poolWidth: number, tensors: Float64Array, xKey: number, activationBytes: number,
  ): string;
}

type BlockArgs = [geometry1: Float64Array, geometry2: Float64Array, epsilon1: number, epsilon2: number, poolHeight: number, poolWidth: number];

let addon: OneDnnAddon | null = null;
// Batch norm by oneDNN by default on any number of threads: on one thread too it now trains faster than the SIMD
// kernels (1.03-1.06x on cnn-bn3's steps), and it lets the block ops run (1.07-1.18x on vgg-bn and cnn3; docs/backend.md,
// 2026-12-07).
let nativeBatchNorm = false;
// Max pooling in the addon's loops by default only on more than one thread: on one they gain nothing over the wasm
// module's kernels (0.98x on cnn-bn3's steps, 2026-12-07).
let nativePooling = false;
// A first layer's filter gradient in the addon's loops on any thread count: faster than the SIMD kernel on one too.
let nativeFirstLayer = false;

/** libgomp's spin rounds before an idle OpenMP thread sleeps (its default is 300,000; ~70 ms here, against ~5). */
const OPENMP_SPIN_COUNT = "3000000";

/**
 * Loads the addon with `threads` OpenMP threads (unless OMP_NUM_THREADS is set). Returns
 * undefined when the native convolutions are on, else why not.
 */
export function loadOneDnn(threads: number): string | undefined {
  if (addon) return undefined;
  if (process.env[ONEDNN_ENV_VAR] === "0") return `native oneDNN convolutions off (${ONEDNN_ENV_VAR}=0)`;
  if (!existsSync(ONEDNN_ADDON)) {
    return "the native oneDNN convolutions are not built (scripts/build-native.sh needs g++ and libdnnl-dev): convolutions run in wasm, slower";
  }
  // OpenMP reads these once, when the library loads; they are unset again afterwards so that
  // child processes (tuning trials with their own thread share) do not inherit them. After each
  // native call OpenMP's threads spin for OPENMP_SPIN_COUNT rounds before they sleep: a step calls
  // the addon every fraction of a millisecond, and waking a sleeping thread cost 3-12% of a bf16
  // step (docs/backend.md, 2026-12-02). The wasm module computes on one thread beside them, so the
  // spinning takes no core it needs; an idle process stops spinning after ~70 ms. A policy the
  // caller set (OMP_WAIT_POLICY, GOMP_SPINCOUNT) is left as it is.
  const settings: Record<string, string> = { OMP_NUM_THREADS: String(threads) };
  if (process.env.OMP_WAIT_POLICY === undefined) settings.GOMP_SPINCOUNT = OPENMP_SPIN_COUNT;
  const ours = Object.keys(settings).filter((name) => process.env[name] === undefined);
  for (const name of ours) process.env[name] = settings[name];
  try {
    addon = require(ONEDNN_ADDON) as OneDnnAddon;
    const asked = process.env[ONEDNN_BATCH_NORM_ENV_VAR];
    const threaded = Number(process.env.OMP_NUM_THREADS) > 1;
    nativeBatchNorm = asked !== "0";
    const pooling = process.env[NATIVE_POOLING_ENV_VAR];
    nativePooling = addon.loopsSupported() && (pooling === "0" || pooling === "1" ? pooling === "1" : threaded);
    nativeFirstLayer = addon.loopsSupported();
    return undefined;
  } catch (error) {
    return `the native oneDNN convolutions cannot load (${(error as Error).message.split("\n")[0]}): convolutions run in wasm`;
  } finally {
    for (const name of ours) delete process.env[name];
  }
}

let enabled = true;

/** The arithmetic of the native products: fp32, or bf16 operands with fp32 accumulation. */
export const PRECISIONS = ["fp32", "bf16"] as const;
export type Precision = (typeof PRECISIONS)[number];
/** oneDNN's instruction sets with bf16 arithmetic in hardware (AVX512-BF16; AMX-BF16 with its tile units). */
const BF16_ISAS = ["avx512_core_bf16", "avx512_core_amx"];

let isa: string | undefined;

/** The instruction set oneDNN dispatches to (asked once: it does not change), or undefined without the addon. */
export const oneDnnIsa = (): string | undefined => (isa ??= addon?.isa());

/** Undefined when bf16 products can run here, else why not (asked before every bf16 training step: no native call). */
export function bf16Unavailable(): string | undefined {
  if (process.env[BF16_ENV_VAR] === "0") return `bf16 off (${BF16_ENV_VAR}=0)`;
  if (!oneDnnActive()) return "bf16 needs the native oneDNN products, which do not run";
  const isa = oneDnnIsa()!;
  if (!BF16_ISAS.includes(isa)) return `this CPU has no bf16 arithmetic (oneDNN dispatches to ${isa})`;
  return undefined;
}

let precision: Precision = "fp32";

/** The precision the native products run in now. */
export const nativePrecision = (): Precision => precision;

/** The precision that runs when `wanted` is asked for: bf16 only where bf16Unavailable() is undefined. */
export const effectivePrecision = (wanted: Precision): Precision => (wanted === "bf16" && bf16Unavailable() === undefined ? "bf16" : "fp32");

/**
 * Asks for a precision and returns the one that runs: bf16 only where bf16Unavailable() is
 * undefined, fp32 otherwise. Training sets it per run; evaluation stays fp32.
 */
export function useNativePrecision(wanted: Precision): Precision {
  const next = effectivePrecision(wanted);
  if (addon && next !== precision) addon.setBf16(next === "bf16");
  precision = next;
  return precision;
}

/** Runs `work` with the native products in `wanted` precision (as useNativePrecision grants it), then restores the previous one. */
export async function inPrecision<T>(wanted: Precision, work: () => Promise<T>): Promise<T> {
  const previous = precision;
  useNativePrecision(wanted);
  try {
    return await work();
  } finally {
    useNativePrecision(previous);
  }
}

/** Whether the native convolutions run (loaded and not turned off by useOneDnn). */
export const oneDnnActive = (): boolean => addon !== null && enabled;

/**
 * Turns the loaded native convolutions off or back on in this process, e.g. to compare them
 * with the wasm kernels side by side. Returns the previous setting.
 */
export function useOneDnn(on: boolean): boolean {
  const previous = enabled;
  enabled = on;
  return previous;
}

/**
 * A key for a tensor's content, so that the addon converts an activation or a gradient to bf16
 * once per training step rather than once per product that reads it (the forward pass and the
 * filter gradient read the same input; the input and filter gradients the same incoming
 * gradient). One key per dataId: TF.js tensors are immutable, a new tensor gets a new dataId,
 * and keys are never reused, so a key always names one content. 0 in fp32, where nothing is converted.
 */
const conversionKeys = new WeakMap<object, number>();
let lastConversionKey = 0;
let reuseCopies = true;
function conversionKey(t: TensorInfo): number {
  if (precision !== "bf16" || !reuseCopies) return 0;
  let key = conversionKeys.get(t.dataId);
  if (key === undefined) conversionKeys.set(t.dataId, (key = ++lastConversionKey));
  return key;
}

/** Turns the reuse of bf16 copies off (every product converts its operands) or back on, e.g. to compare; returns the previous setting. */
export function useBf16CopyReuse(on: boolean): boolean {
  const previous = reuseCopies;
  reuseCopies = on;
  return previous;
}

/** bf16 conversions made, and avoided by reusing a tensor's copy, since the addon loaded (zeros without it): for tests. */
export function bf16Conversions(): { made: number; reused: number } {
  const [made, reused] = addon?.conversionCounts() ?? [0, 0];
  return { made, reused };
}

/** The geometry the addon reads: 17 numbers in the order of Geometry in onednn.cc. */
function geometry(info: BackendUtil.Conv2DInfo): Float64Array {
  const { top, left, bottom, right } = info.padInfo;
  return Float64Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.filterHeight, info.filterWidth, info.outChannels,
    info.outHeight, info.outWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth, top, left, bottom, right,
  ]);
}

type Shape4 = [number, number, number, number];

function convInfo(xShape: number[], filterShape: number[], attrs: KernelArgs["attrs"]): BackendUtil.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as Shape4,
    filterShape as Shape4,
    attrs.strides as number | [number, number],
    attrs.dilations as number | [number, number] | undefined ?? 1,
    attrs.pad as "same" | "valid" | number | BackendUtil.ExplicitPadding,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
}

const nativeCase = (attrs: KernelArgs["attrs"], ...tensors: TensorInfo[]) =>
  oneDnnActive() && attrs.dataFormat !== "NCHW" && tensors.every((t) => t.dtype === "float32" && t.shape.every((d) => d > 0));

const buffer = (backend: WasmBackendLike) => wasmMemory(backend).buffer;

const implementations = new Map<string, string>();

/** The oneDNN implementation that last ran each kernel here (e.g. Conv2D → "brgconv:avx512_core"), for tests and profiles; clearing it is allowed. */
export const nativeImplementations = (): Map<string, string> => implementations;

/** Conv2D and FusedConv2D (bias, relu or no activation) by oneDNN; other cases by `original`. */
export function conv2D(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, filter, bias, preluActivationWeights } = inputs;
  const activation = (attrs.activation as string | undefined) ?? "linear";
  const biasOk = !bias || (bias.dtype === "float32" && bias.shape.length === 1 && bias.shape[0] === filter.shape[3]);
  if (!nativeCase(attrs, x, filter) || preluActivationWeights || !biasOk || (activation !== "linear" && activation !== "relu")) {
    return original(args as never) as TensorInfo;
  }
  const info = convInfo(x.shape, filter.shape, attrs);
  const y = backend.makeOutput(info.outShape, "float32");
  const at = (t: TensorInfo) => heapOffset(backend, t);
  // The buffer after the allocation: growing the heap replaces it.
  implementations.set("Conv2D", addon!.forward(buffer(backend), geometry(info), at(x), at(filter), bias ? at(bias) : -1, at(y), activation === "relu" ? 1 : 0, 1, conversionKey(x)));
  return y;
}

/** Conv2DBackpropInput by oneDNN; other cases by `original`. */
export function conv2DBackpropInput(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  if (!nativeCase(attrs, dy, filter)) return original(args as never) as TensorInfo;
  const info = convInfo(attrs.inputShape as number[], filter.shape, { ...attrs, dilations: 1 });
  const dx = backend.makeOutput(info.inShape, "float32");
  const at = (t: TensorInfo) => heapOffset(backend, t);
  implementations.set("Conv2DBackpropInput", addon!.backwardData(buffer(backend), geometry(info), at(dy), at(filter), at(dx), conversionKey(dy)));
  return dx;
}

/** The addon's first-layer loops take filters in vectors of this many (CHANNEL_BLOCK in first_layer.h). */
const FIRST_LAYER_CHANNEL_BLOCK = 8;

/** Conv2DBackpropFilter by oneDNN (a first layer's by the addon's loops); other cases by `original`. */
export function conv2DBackpropFilter(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  if (!nativeCase(attrs, x, dy)) return original(args as never) as TensorInfo;
  const filterShape = attrs.filterShape as number[];
  const info = convInfo(x.shape, filterShape, { ...attrs, dilations: 1 });
  const at = (t: TensorInfo) => heapOffset(backend, t);
  // A first layer's (3×3, one input channel): the addon's loops where they run and the filters come in eights, else
  // the project's SIMD kernel (`original`). On the AMX Xeon the loops took 1.25 ms of a vgg-bn step at two threads,
  // the SIMD kernel 4.7 and oneDNN's about as long (docs/backend.md, 2026-12-02).
  if (firstLayerSimdCase(info)) {
    if (!nativeFirstLayerActive() || info.outChannels % FIRST_LAYER_CHANNEL_BLOCK !== 0) return original(args as never) as TensorInfo;
    const dw = backend.makeOutput(filterShape, "float32");
    const { top, left } = info.padInfo;
    const firstLayer = [info.batchSize, info.inHeight, info.inWidth, info.outChannels, info.outHeight, info.outWidth, info.strideHeight, info.strideWidth, top, left];
    addon!.firstLayerFilterGrad(buffer(backend), Float64Array.from(firstLayer), at(x), at(dy), at(dw));
    implementations.set("Conv2DBackpropFilter", "addon, OpenMP");
    return dw;
  }
  const dw = backend.makeOutput(filterShape, "float32");
  implementations.set("Conv2DBackpropFilter", addon!.backwardWeights(buffer(backend), geometry(info), at(x), at(dy), at(dw), conversionKey(x), conversionKey(dy)));
  return dw;
}

/**
 * BatchMatMul and _FusedMatMul (bias [n], relu or no activation) by oneDNN, transpose flags
 * included; batches that broadcast and other cases by `original`.
 */
export function matMul(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b, bias, preluActivationWeights } = inputs;
  const activation = (attrs.activation as string | undefined) ?? "linear";
  const transposeA = attrs.transposeA === true;
  const transposeB = attrs.transposeB === true;
  // Leading (batch) dimensions must match exactly; broadcasting ones go to `original`.
  const outer = a.shape.slice(0, -2);
  const sameOuter = a.shape.length === b.shape.length && a.shape.length >= 2 && outer.every((d, i) => d === b.shape[i]);
  if (!nativeCase({}, a, b) || !sameOuter || preluActivationWeights || (activation !== "linear" && activation !== "relu")) {
    return original(args as never) as TensorInfo;
  }
  const batch = outer.reduce((x, y) => x * y, 1);
  const [rowsA, colsA] = a.shape.slice(-2);
  const [rowsB, colsB] = b.shape.slice(-2);
  const [m, k] = transposeA ? [colsA, rowsA] : [rowsA, colsA];
  const [kB, n] = transposeB ? [colsB, rowsB] : [rowsB, colsB];
  if (kB !== k) return original(args as never) as TensorInfo;
  if (bias && (bias.dtype !== "float32" || bias.shape.length !== 1 || bias.shape[0] !== n)) return original(args as never) as TensorInfo;
  const c = backend.makeOutput([...outer, m, n], "float32");
  const at = (t: TensorInfo) => heapOffset(backend, t);
  const geometry = Float64Array.from([batch, m, k, n, transposeA ? 1 : 0, transposeB ? 1 : 0, bias ? 1 : 0, activation === "relu" ? 1 : 0]);
  implementations.set("BatchMatMul", addon!.matMul(buffer(backend), geometry, at(a), at(b), bias ? at(bias) : -1, at(c)));
  return c;
}

/**
 * Turns training-mode batch norm by oneDNN on or off in this process (default: ONEDNN_BATCH_NORM_ENV_VAR,
 * else on). Returns the previous setting.
 */
export function useOneDnnBatchNorm(on: boolean): boolean {
  const previous = nativeBatchNorm;
  nativeBatchNorm = on;
  return previous;
}

/** Whether training-mode batch norm runs in oneDNN now. */
export const oneDnnBatchNorm = (): boolean => nativeBatchNorm && oneDnnActive();

/** Rows (every axis but the last) and channels of a float32 tensor normalised per channel, or undefined. */
function normLayout(x: TensorInfo): { rows: number; channels: number } | undefined {
  if (!nativeBatchNorm || !nativeCase({}, x) || x.shape.length < 2) return undefined;
  const channels = x.shape[x.shape.length - 1];
  return { rows: x.shape.reduce((a, b) => a * b, 1) / channels, channels };
}

/**
 * ProjectBatchNormTrain by oneDNN (on all its threads; the SIMD kernel, `original`, runs on
 * one, as it does where useOneDnnBatchNorm is off): inputs x, gamma, beta; outputs [y, mean,
 * variance], variance biased. With attrs.relu, y is relu's output and a fourth output holds oneDNN's
 * workspace (which outputs were positive) for the gradient.
 */
export function batchNormTrain(args: KernelArgs, original: KernelFunc): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const { x, gamma, beta } = inputs;
  const layout = normLayout(x);
  if (!layout) return original(args as never) as TensorInfo[];
  const { rows, channels } = layout;
  const epsilon = attrs.epsilon as number;
  const outputs = [backend.makeOutput([...x.shape], "float32"), backend.makeOutput([channels], "float32"), backend.makeOutput([channels], "float32")];
  // The workspace as float32s (a tensor the gradient gets back), rounded up.
  if (attrs.relu) outputs.push(backend.makeOutput([Math.ceil(addon!.batchNormWorkspaceBytes(rows, channels, epsilon) / 4)], "float32"));
  const at = (t: TensorInfo) => heapOffset(backend, t);
  implementations.set("ProjectBatchNormTrain", addon!.batchNormForward(
    buffer(backend), rows, channels, epsilon, at(x), at(gamma), at(beta), at(outputs[0]), at(outputs[1]), at(outputs[2]), attrs.relu ? at(outputs[3]) : -1,
  ));
  return outputs;
}

/**
 * ProjectBatchNormGrad by oneDNN: inputs dy, x, mean, variance, gamma (with attrs.relu also z and the forward pass's
 * workspace; without a workspace, from the SIMD forward pass, the SIMD kernel reads z); outputs [dx, dγ, dβ].
 */
export function batchNormGrad(args: KernelArgs, original: KernelFunc): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const { dy, x, mean, variance, gamma, workspace } = inputs;
  const layout = normLayout(x);
  if (!layout || (attrs.relu && !workspace) || !nativeCase({}, dy) || dy.shape.join() !== x.shape.join()) return original(args as never) as TensorInfo[];
  const { rows, channels } = layout;
  const outputs = [backend.makeOutput([...x.shape], "float32"), backend.makeOutput([channels], "float32"), backend.makeOutput([channels], "float32")];
  const at = (t: TensorInfo) => heapOffset(backend, t);
  implementations.set("ProjectBatchNormGrad", addon!.batchNormBackward(
    buffer(backend), rows, channels, attrs.epsilon as number, at(dy), at(x), at(mean), at(variance), at(gamma), at(outputs[0]), at(outputs[1]), at(outputs[2]),
    attrs.relu ? at(workspace) : -1,
  ));
  return outputs;
}

/**
 * Turns max pooling by the addon on or off in this process (default: NATIVE_POOLING_ENV_VAR, else on where oneDNN has
 * more than one thread; never without AVX2). Returns the previous setting.
 */
export function useNativePooling(on: boolean): boolean {
  const previous = nativePooling;
  nativePooling = on && addon?.loopsSupported() === true;
  return previous;
}

/** Turns a first layer's filter gradient by the addon's loops on or off in this process; returns the previous setting. */
export function useNativeFirstLayer(on: boolean): boolean {
  const previous = nativeFirstLayer;
  nativeFirstLayer = on && addon?.loopsSupported() === true;
  return previous;
}

/** Whether a first layer's filter gradient (3×3, one input channel, filters in eights) runs in the addon's loops now. */
export const nativeFirstLayerActive = (): boolean => nativeFirstLayer && oneDnnActive();

/** Whether max pooling over disjoint windows runs in the addon now. */
export const nativePoolingActive = (): boolean => nativePooling && oneDnnActive();

const poolingCase = (...tensors: TensorInfo[]) => nativePoolingActive() && tensors.every((t) => t.dtype === "float32");

/** The pooling geometry the addon reads for disjoint windows (stride = window, no padding) of ≤ 1,024 channels, else undefined. */
function disjointPool(xShape: number[], attrs: KernelArgs["attrs"]): Float64Array | undefined {
  if (xShape.length !== 4 || xShape.some((d) => d <= 0)) return undefined;
  const info = tf.backend_util.computePool2DInfo(
    xShape as Shape4,
    attrs.filterSize as [number, number] | number,
    attrs.strides as [number, number] | number,
    1,
    attrs.pad as "same" | "valid" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { top, left, bottom, right } = info.padInfo;
  const disjoint = strideHeight === filterHeight && strideWidth === filterWidth && top === 0 && left === 0 && bottom === 0 && right === 0 &&
    outHeight * filterHeight <= inHeight && outWidth * filterWidth <= inWidth && inChannels <= 1024;
  return disjoint ? Float64Array.from([batchSize, inHeight, inWidth, inChannels, filterHeight, filterWidth, outHeight, outWidth]) : undefined;
}

/** MaxPool over disjoint windows by the addon; other cases by `original`. */
export function maxPool(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const geometry = poolingCase(x) ? disjointPool(x.shape, attrs) : undefined;
  if (!geometry) return original(args as never) as TensorInfo;
  const [batch, , , channels, , , outHeight, outWidth] = geometry;
  const y = backend.makeOutput([batch, outHeight, outWidth, channels], "float32");
  addon!.maxPool(buffer(backend), geometry, heapOffset(backend, x), heapOffset(backend, y));
  implementations.set("MaxPool", "addon, OpenMP");
  return y;
}

/** MaxPoolGrad (inputs dy, input, output) over disjoint windows by the addon; other cases by `original`. */
export function maxPoolGrad(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, input } = inputs;
  const geometry = poolingCase(dy, input) ? disjointPool(input.shape, attrs) : undefined;
  if (!geometry) return original(args as never) as TensorInfo;
  const dx = backend.makeOutput([...input.shape], "float32");
  const at = (t: TensorInfo) => heapOffset(backend, t);
  addon!.maxPoolGrad(buffer(backend), geometry, at(input), at(dy), at(dx));
  implementations.set("MaxPoolGrad", "addon, OpenMP");
  return dx;
}

/**
 * `TFJS_CONV_BN_BLOCKS=0` trains a block of two convolution + batch norm + relu layers as its six layers, and a
 * convolution with bias + relu and its max pool as two, not as one op each (convBnBlock, convReluPool); by default the
 * ops run wherever batch norm runs in oneDNN (by default wherever the addon loads).
 */
export const CONV_BN_BLOCKS_ENV_VAR = "TFJS_CONV_BN_BLOCKS";
let convBnBlocks = process.env[CONV_BN_BLOCKS_ENV_VAR] !== "0";

/** Turns the block ops on or off in this process (default: on unless CONV_BN_BLOCKS_ENV_VAR is 0); returns the previous setting. */
export function useConvBnBlocks(on: boolean): boolean {
  const previous = convBnBlocks;
  convBnBlocks = on;
  return previous;
}

/**
 * `TFJS_WINNER_GRADIENTS=0` runs the backward pass of a convolution + relu + pool op as oneDNN's pool, relu and
 * convolution gradients over the whole zero-filled gradient; by default the addon's loops multiply only the pool
 * windows' winners (lib/accelerator/native/pooled_conv.h: a quarter of the multiply-adds for 2×2 windows, in fp32; a
 * first layer's from a per-image gradient made from them, first_layer.h).
 */
export const WINNER_GRADIENTS_ENV_VAR = "TFJS_WINNER_GRADIENTS";
let winnerGradients = process.env[WINNER_GRADIENTS_ENV_VAR] !== "0";

/** Turns the winners' gradients of the convolution + relu + pool op on or off (default: WINNER_GRADIENTS_ENV_VAR); returns the previous setting. */
export function useWinnerGradients(on: boolean): boolean {
  const previous = winnerGradients;
  winnerGradients = on;
  return previous;
}

/** Whether a training step runs a block (two convolution + batch norm + relu layers; a convolution + relu + pool) as one op now. */
export const convBnBlocksActive = (): boolean =>
  convBnBlocks && oneDnnBatchNorm() && typeof addon?.blockForward === "function" && typeof addon.convPoolForward === "function";

/** The kernels of a block of two convolution + batch norm + relu layers, registered where the addon loads. */
export const CONV_BN_BLOCK_KERNEL = "ProjectConvBnBlock";
export const CONV_BN_BLOCK_GRAD_KERNEL = "ProjectConvBnBlockGrad";

/**
 * The attributes of both block kernels: each convolution's strides and padding, each batch norm's epsilon, and the
 * window of the max pool after the block if the op runs it too (disjoint windows that tile the block's output).
 */
export interface ConvBnBlockAttrs {
  strides1: [number, number];
  pad1: "same" | "valid";
  strides2: [number, number];
  pad2: "same" | "valid";
  epsilon1: number;
  epsilon2: number;
  /** Whether the gradient kernel computes the block input's gradient (not for a model's first block: its input is the data). */
  inputGradient: boolean;
  pool: [number, number] | null;
}

/**
 * The addon's arguments that name a block: its convolutions' geometries (no dilation), epsilons and pool; and its output's
 * shape. Not the heap's buffer: allocating the outputs can grow the heap, so each call reads it afresh.
 */
function blockArgs(xShape: number[], filter1Shape: number[], filter2Shape: number[], attrs: ConvBnBlockAttrs) {
  const first = convInfo(xShape, filter1Shape, { strides: attrs.strides1, pad: attrs.pad1 });
  const second = convInfo(first.outShape, filter2Shape, { strides: attrs.strides2, pad: attrs.pad2 });
  const [poolHeight, poolWidth] = attrs.pool ?? [0, 0];
  const [batch, height, width, channels] = second.outShape;
  const outShape = attrs.pool ? [batch, height / poolHeight, width / poolWidth, channels] : [...second.outShape];
  if (!outShape.every(Number.isInteger)) throw new Error(`a block's ${poolHeight}×${poolWidth} pool does not tile its ${height}×${width} output`);
  const args: BlockArgs = [geometry(first), geometry(second), attrs.epsilon1, attrs.epsilon2, poolHeight, poolWidth];
  return { args, outShape };
}

/**
 * ProjectConvBnBlock: y = relu(bn2(conv2(relu(bn1(conv1(x)))))) in training mode, the convolutions without bias, max
 * pooled where attrs.pool says, as one native call (onednn.cc, "Blocks of two convolution + batch norm + relu layers").
 * Inputs x, filter1, gamma1, beta1, filter2, gamma2, beta2; outputs [y, mean1, variance1, mean2, variance2] (variances
 * biased) and what the gradient kernel reads: [z1, a1, workspace1, z2, workspace2] and, pooled, the pool's workspace, in
 * the native precision (bf16 values, two per float32 element, in bf16 mode). The caller keeps those tensors as they are
 * between the two kernels.
 */
export function convBnBlock(args: KernelArgs): TensorInfo[] {
  const { inputs, backend } = args;
  const attrs = args.attrs as unknown as ConvBnBlockAttrs;
  const { x, filter1, gamma1, beta1, filter2, gamma2, beta2 } = inputs;
  if (!convBnBlocksActive()) throw new Error(`${CONV_BN_BLOCK_KERNEL}: the block op does not run here (convBnBlocksActive() is false)`);
  const { args: block, outShape } = blockArgs(x.shape, filter1.shape, filter2.shape, attrs);
  // The pool's workspace is saved only where the op pools.
  const saved = addon!.blockSavedBytes(buffer(backend), ...block).slice(0, attrs.pool ? 6 : 5);
  const outputs = [
    backend.makeOutput(outShape, "float32"),
    ...[filter1, filter1, filter2, filter2].map((f) => backend.makeOutput([f.shape[3]], "float32")),
    // Bytes as float32s, rounded up.
    ...saved.map((bytes) => backend.makeOutput([Math.ceil(bytes / 4)], "float32")),
  ];
  const [y, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2, workspace2, poolWorkspace] = outputs;
  const at = (t: TensorInfo | undefined) => (t ? heapOffset(backend, t) : -1);
  const tensors = [x, filter1, gamma1, beta1, filter2, gamma2, beta2, y, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2, workspace2, poolWorkspace];
  implementations.set(CONV_BN_BLOCK_KERNEL, addon!.blockForward(buffer(backend), ...block, Float64Array.from(tensors.map(at)), conversionKey(x)));
  return outputs;
}

/**
 * ProjectConvBnBlockGrad: inputs dy, x, filter1, gamma1, filter2, gamma2, mean1, variance1, mean2, variance2 and the
 * forward kernel's z1, a1, workspace1, z2, workspace2 (and poolWorkspace, pooled); outputs [dfilter1, dgamma1, dbeta1, dfilter2, dgamma2, dbeta2]
 * and, with attrs.inputGradient, dx.
 */
export function convBnBlockGrad(args: KernelArgs): TensorInfo[] {
  const { inputs, backend } = args;
  const attrs = args.attrs as unknown as ConvBnBlockAttrs;
  const { dy, x, filter1, gamma1, filter2, gamma2, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2, workspace2, poolWorkspace } = inputs;
  if (!convBnBlocksActive()) throw new Error(`${CONV_BN_BLOCK_GRAD_KERNEL}: the block op does not run here (convBnBlocksActive() is false)`);
  if (!attrs.pool !== !poolWorkspace) throw new Error(`${CONV_BN_BLOCK_GRAD_KERNEL}: a pooled block needs its pool's workspace, and only a pooled one`);
  const { args: block } = blockArgs(x.shape, filter1.shape, filter2.shape, attrs);
  const perChannel = (f: TensorInfo) => backend.makeOutput([f.shape[3]], "float32");
  const outputs = [
    backend.makeOutput([...filter1.shape], "float32"), perChannel(filter1), perChannel(filter1),
    backend.makeOutput([...filter2.shape], "float32"), perChannel(filter2), perChannel(filter2),
    ...(attrs.inputGradient ? [backend.makeOutput([...x.shape], "float32")] : []),
  ];
  const [dFilter1, dGamma1, dBeta1, dFilter2, dGamma2, dBeta2, dx] = outputs;
  const at = (t: TensorInfo | undefined) => (t ? heapOffset(backend, t) : -1);
  const tensors = [
    dy, x, filter1, gamma1, filter2, gamma2, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2, workspace2,
    dx, dFilter1, dGamma1, dBeta1, dFilter2, dGamma2, dBeta2, poolWorkspace,
  ];
  implementations.set(CONV_BN_BLOCK_GRAD_KERNEL, addon!.blockBackward(buffer(backend), ...block, Float64Array.from(tensors.map(at)), conversionKey(x)));
  return outputs;
}

/** The kernels of a convolution with bias + relu and the max pool after it, registered where the addon loads. */
export const CONV_RELU_POOL_KERNEL = "ProjectConvReluPool";
export const CONV_RELU_POOL_GRAD_KERNEL = "ProjectConvReluPoolGrad";

/** The attributes of both kernels: the convolution's strides and padding, the pool's window (strides = window, 'valid'). */
export interface ConvReluPoolAttrs {
  strides: [number, number];
  pad: "same" | "valid";
  pool: [number, number];
  /** Whether the gradient kernel computes the input's gradient (not for a model's first layer: its input is the data). */
  inputGradient: boolean;
}

/** The convolution's geometry (no dilation) and the pooled output's shape (floor, as TF.js's 'valid' pooling). */
function convPoolShapes(xShape: number[], filterShape: number[], attrs: ConvReluPoolAttrs) {
  const info = convInfo(xShape, filterShape, { strides: attrs.strides, pad: attrs.pad });
  const [batch, height, width, channels] = info.outShape;
  const [poolHeight, poolWidth] = attrs.pool;
  const outShape = [batch, Math.floor(height / poolHeight), Math.floor(width / poolWidth), channels];
  if (outShape[1] < 1 || outShape[2] < 1) throw new Error(`a ${poolHeight}×${poolWidth} pool does not fit a ${height}×${width} convolution output`);
  return { geometry: geometry(info), outShape, convShape: info.outShape };
}

/**
 * ProjectConvReluPool: y = maxPool(relu(conv(x) + bias)) in training mode, as one native call (onednn.cc, "A convolution
 * with bias + relu and the max pool after it"). Inputs x, filter, bias; outputs [y] and what the gradient kernel reads:
 * [activation, poolWorkspace], in the native precision (bf16 values, two per float32 element, in bf16 mode); for a first
 * layer with winner gradients on, the windows' winners (a byte per element of y) and no workspace instead. The
 * activation's shape is the convolution output's [batch, height, width] and its bytes per pixel as float32s, so that a
 * profile can count the convolution's multiply-adds in either precision.
 */
export function convReluPool(args: KernelArgs): TensorInfo[] {
  const { inputs, backend } = args;
  const attrs = args.attrs as unknown as ConvReluPoolAttrs;
  const { x, filter, bias } = inputs;
  if (!convBnBlocksActive()) throw new Error(`${CONV_RELU_POOL_KERNEL}: the op does not run here (convBnBlocksActive() is false)`);
  const { geometry: g, outShape, convShape } = convPoolShapes(x.shape, filter.shape, attrs);
  // A first layer's forward pass records the pool's winners instead of the activation where winner gradients are on.
  addon!.setWinnerGradients(winnerGradients);
  const [activationBytes, workspaceBytes] = addon!.convPoolSavedBytes(buffer(backend), g, ...attrs.pool);
  // Bytes as float32s, rounded up.
  const pixels = convShape[0] * convShape[1] * convShape[2];
  const outputs = [
    backend.makeOutput(outShape, "float32"),
    backend.makeOutput([...convShape.slice(0, 3), Math.ceil(activationBytes / pixels / 4)], "float32"),
    backend.makeOutput([Math.ceil(workspaceBytes / 4)], "float32"),
  ];
  const at = (t: TensorInfo) => heapOffset(backend, t);
  const tensors = [x, filter, bias, ...outputs];
  implementations.set(CONV_RELU_POOL_KERNEL, addon!.convPoolForward(buffer(backend), g, ...attrs.pool, Float64Array.from(tensors.map(at)), conversionKey(x)));
  return outputs;
}

/**
 * ProjectConvReluPoolGrad: inputs dy, x, filter and the forward kernel's activation and poolWorkspace; outputs
 * [dfilter, dbias] and, with attrs.inputGradient, dx.
 */
export function convReluPoolGrad(args: KernelArgs): TensorInfo[] {
  const { inputs, backend } = args;
  const attrs = args.attrs as unknown as ConvReluPoolAttrs;
  const { dy, x, filter, activation, poolWorkspace } = inputs;
  if (!convBnBlocksActive()) throw new Error(`${CONV_RELU_POOL_GRAD_KERNEL}: the op does not run here (convBnBlocksActive() is false)`);
  const { geometry: g } = convPoolShapes(x.shape, filter.shape, attrs);
  const outputs = [
    backend.makeOutput([...filter.shape], "float32"), backend.makeOutput([filter.shape[3]], "float32"),
    ...(attrs.inputGradient ? [backend.makeOutput([...x.shape], "float32")] : []),
  ];
  const [dFilter, dBias, dx] = outputs;
  const at = (t: TensorInfo | undefined) => (t ? heapOffset(backend, t) : -1);
  const tensors = [dy, x, filter, activation, poolWorkspace, dx, dFilter, dBias];
  addon!.setWinnerGradients(winnerGradients);
  const activationBytes = 4 * activation.shape.reduce((a, b) => a * b, 1);
  implementations.set(
    CONV_RELU_POOL_GRAD_KERNEL, addon!.convPoolBackward(buffer(backend), g, ...attrs.pool, Float64Array.from(tensors.map(at)), conversionKey(x), activationBytes),
  );
  return outputs;
}
