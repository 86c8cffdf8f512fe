/**
 * Batch normalisation in training mode as two kernels of this project, for lib/accelerator/layers.ts
 * FastBatchNorm: the forward pass (batch statistics and the normalised output) and its
 * closed-form gradient, each two passes of wasm SIMD code over the tensors in place
 * (lib/accelerator/wasm/simd/kernels.c). Built from generic ops they take ~20 elementwise kernels, each a
 * pass with its own allocation. Statistics are accumulated in float64 per channel. With `relu`
 * the forward pass writes relu(y) and the gradient takes that output as input `z`, folding relu's
 * gradient into its passes: a relu layer after batch norm then costs no pass of its own.
 */
import type { KernelArgs, KernelFunc, TensorInfo } from "./common";
import { heapOffset, simdKernels, simdKernelsBuilt } from "./simd";

export const BATCH_NORM_TRAIN_KERNEL = "ProjectBatchNormTrain";
export const BATCH_NORM_GRAD_KERNEL = "ProjectBatchNormGrad";
export const MOVING_AVERAGES_KERNEL = "ProjectMovingAverages";

export interface BatchNormAttrs {
  epsilon: number;
  /** The forward pass applies relu; the gradient's input z is its output. */
  relu?: boolean;
}

/** Whether the kernels take a tensor with this many channels (the SIMD loops go 4 at a time). */
export const batchNormKernelsFit = (channels: number): boolean => channels % 4 === 0;

/** Channels (the last axis) and rows (everything else) of a tensor normalised per channel. */
function layout(x: TensorInfo, kernel: string, ...perChannel: TensorInfo[]): { rows: number; channels: number } {
  if (x.dtype !== "float32") throw new Error(`${kernel}: x must be float32, got ${x.dtype}.`);
  if (x.shape.length < 2) throw new Error(`${kernel}: x needs a batch and a channel axis, got shape [${x.shape}].`);
  const channels = x.shape[x.shape.length - 1];
  if (!batchNormKernelsFit(channels)) throw new Error(`${kernel}: channels must be a multiple of 4, got ${channels}.`);
  for (const t of perChannel) {
    if (t.shape.length !== 1 || t.shape[0] !== channels) throw new Error(`${kernel}: expected shape [${channels}], got [${t.shape}].`);
  }
  return { rows: x.shape.reduce((a, b) => a * b, 1) / channels, channels };
}

/** Inputs x, gamma, beta; outputs [y (relu(y) with attrs.relu), mean, variance] (variance biased, as Keras's). */
export function batchNormTrain({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const { x, gamma, beta } = inputs;
  const { rows, channels } = layout(x, BATCH_NORM_TRAIN_KERNEL, gamma, beta);
  const { epsilon, relu } = attrs as unknown as BatchNormAttrs;
  const outputs = [backend.makeOutput([...x.shape], "float32"), backend.makeOutput([channels], "float32"), backend.makeOutput([channels], "float32")];
  // 2·channels float64 accumulators.
  const scratch = backend.makeOutput([4 * channels], "float32");
  try {
    const at = (t: TensorInfo) => heapOffset(backend, t);
    simdKernels(backend).batch_norm_forward(at(x), rows, channels, at(gamma), at(beta), epsilon, at(outputs[0]), at(outputs[1]), at(outputs[2]), at(scratch), relu ? 1 : 0);
  } finally {
    backend.disposeData(scratch.dataId);
  }
  return outputs;
}

/** Inputs dy, x, mean, variance, gamma (and z, the forward pass's relu output, with attrs.relu); outputs [dx, dγ, dβ]. */
export function batchNormGrad({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const { dy, x, mean, variance, gamma, z } = inputs;
  const { rows, channels } = layout(x, BATCH_NORM_GRAD_KERNEL, mean, variance, gamma);
  const { epsilon, relu } = attrs as unknown as BatchNormAttrs;
  for (const [name, t] of [["dy", dy], ...(relu ? [["z", z]] : [])] as [string, TensorInfo | undefined][]) {
    if (!t || t.shape.length !== x.shape.length || t.shape.some((d, i) => d !== x.shape[i])) {
      throw new Error(`${BATCH_NORM_GRAD_KERNEL}: ${name} shape [${t?.shape}] differs from x [${x.shape}].`);
    }
  }
  const outputs = [backend.makeOutput([...x.shape], "float32"), backend.makeOutput([channels], "float32"), backend.makeOutput([channels], "float32")];
  const scratch = backend.makeOutput([4 * channels], "float32");
  try {
    const at = (t: TensorInfo) => heapOffset(backend, t);
    simdKernels(backend).batch_norm_backward(
      at(dy), at(x), rows, channels, at(mean), at(variance), at(gamma), epsilon, at(outputs[0]), at(outputs[1]), at(outputs[2]), at(scratch),
      relu ? at(z) : 0,
    );
  } finally {
    backend.disposeData(scratch.dataId);
  }
  return outputs;
}

/**
 * FusedBatchNorm (batch norm at inference, with moving statistics): per-channel scale and shift
 * computed once, then one SIMD pass y = x·scale + shift. TF.js's wasm kernel is a scalar loop
 * (62% of a `cnn3-bn` prediction). Channels in fours with per-channel statistics; else `original`.
 */
export function fusedBatchNorm(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, mean, variance, offset, scale } = inputs;
  const channels = x.shape[x.shape.length - 1];
  const perChannel = [mean, variance, offset, scale].every((t) => !t || (t.dtype === "float32" && t.shape.reduce((a, b) => a * b, 1) === channels && t.shape[t.shape.length - 1] === channels));
  if (!simdKernelsBuilt() || x.dtype !== "float32" || x.shape.length < 2 || !batchNormKernelsFit(channels) || !perChannel) {
    return original(args as never) as TensorInfo;
  }
  const epsilon = attrs.varianceEpsilon as number;
  const y = backend.makeOutput([...x.shape], "float32");
  const coefficients = backend.makeOutput([2 * channels], "float32");
  try {
    // Views after the allocations (an allocation may move the heap).
    const view = (t: TensorInfo | undefined) => (t ? (backend.typedArrayFromHeap(t) as Float32Array) : undefined);
    const [m, v, beta, gamma] = [mean, variance, offset, scale].map(view);
    const out = backend.typedArrayFromHeap(coefficients) as Float32Array;
    for (let c = 0; c < channels; c++) {
      const s = (gamma ? gamma[c] : 1) / Math.sqrt(v![c] + epsilon);
      out[c] = s;
      out[channels + c] = (beta ? beta[c] : 0) - m![c] * s;
    }
    const at = (t: TensorInfo) => heapOffset(backend, t);
    const base = at(coefficients);
    simdKernels(backend).channel_affine(at(x), x.shape.reduce((a, b) => a * b, 1) / channels, channels, base, base + 4 * channels, at(y));
  } finally {
    backend.disposeData(coefficients.dataId);
  }
  return y;
}

/**
 * Batch norm's moving mean and variance after a training step, both in one kernel: v − (v − batch)·(1 − momentum)
 * per channel, each operation rounded to float32 as the stock layer's three kernels per statistic round it (so
 * the result is theirs bit for bit). Inputs movingMean, movingVariance, mean, variance (one shape); outputs
 * [movingMean′, movingVariance′]. The vectors are one per channel, so a plain loop does.
 */
export function movingAverages({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const { movingMean, movingVariance, mean, variance } = inputs;
  for (const t of [movingVariance, mean, variance]) {
    if (t.shape.length !== movingMean.shape.length || t.shape.some((d, i) => d !== movingMean.shape[i])) {
      throw new Error(`${MOVING_AVERAGES_KERNEL}: shapes differ (${movingMean.shape} vs ${t.shape}).`);
    }
  }
  const f = Math.fround;
  const rate = f(1 - (attrs as unknown as { momentum: number }).momentum);
  const outputs = [movingMean, movingVariance].map((t) => backend.makeOutput([...t.shape], "float32"));
  const [oldMean, oldVariance, batchMean, batchVariance, newMean, newVariance] = [movingMean, movingVariance, mean, variance, ...outputs].map(
    (t) => backend.typedArrayFromHeap(t) as Float32Array,
  );
  for (const [old, batch, updated] of [[oldMean, batchMean, newMean], [oldVariance, batchVariance, newVariance]]) {
    for (let i = 0; i < old.length; i++) updated[i] = old[i] - f(f(old[i] - batch[i]) * rate);
  }
  return outputs;
}
