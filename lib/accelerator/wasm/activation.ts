/**
 * The gradient of a convolution's fused bias and relu, y = relu(z + bias), as one kernel of
 * this project for lib/accelerator/layers.ts FastConv2D: dz (dy where y > 0) and the bias gradient (its
 * per-channel sums, in float64) in one pass of wasm SIMD code (lib/accelerator/wasm/simd/kernels.c);
 * generic ops take four kernels (Step, Multiply, Sum and a reshape), each a pass.
 */
import type { KernelArgs, TensorInfo } from "./common";
import { heapOffset, simdKernels } from "./simd";

export const RELU_BIAS_GRAD_KERNEL = "ProjectReluBiasGrad";
/** Relu's own gradient (lib/accelerator/layers.ts registers it for TF.js's Relu): dy where x > 0, one pass. */
export const RELU_GRAD_KERNEL = "ProjectReluGrad";

/** Whether the kernel takes a tensor with this many channels (the SIMD loop goes 4 at a time). */
export const reluBiasGradFits = (channels: number): boolean => channels % 4 === 0;

/** Inputs dy, y (the relu's output); outputs [dz, dbias]. */
export function reluBiasGrad({ inputs, backend }: KernelArgs): TensorInfo[] {
  const { dy, y } = inputs;
  const channels = y.shape[y.shape.length - 1];
  if (dy.dtype !== "float32" || y.dtype !== "float32") throw new Error(`${RELU_BIAS_GRAD_KERNEL}: dy and y must be float32.`);
  if (!reluBiasGradFits(channels)) throw new Error(`${RELU_BIAS_GRAD_KERNEL}: channels must be a multiple of 4, got ${channels}.`);
  if (dy.shape.length !== y.shape.length || dy.shape.some((d, i) => d !== y.shape[i])) {
    throw new Error(`${RELU_BIAS_GRAD_KERNEL}: dy shape [${dy.shape}] differs from y [${y.shape}].`);
  }
  const rows = y.shape.reduce((a, b) => a * b, 1) / channels;
  const outputs = [backend.makeOutput([...y.shape], "float32"), backend.makeOutput([channels], "float32")];
  const scratch = backend.makeOutput([2 * channels], "float32");
  try {
    const at = (t: TensorInfo) => heapOffset(backend, t);
    simdKernels(backend).relu_bias_grad(at(dy), at(y), rows, channels, at(outputs[0]), at(outputs[1]), at(scratch));
  } finally {
    backend.disposeData(scratch.dataId);
  }
  return outputs;
}

/** Inputs dy, x (the relu's input); output dx = dy where x > 0, else 0. */
export function reluGrad({ inputs, backend }: KernelArgs): TensorInfo {
  const { dy, x } = inputs;
  if (dy.dtype !== "float32" || x.dtype !== "float32") throw new Error(`${RELU_GRAD_KERNEL}: dy and x must be float32.`);
  if (dy.shape.length !== x.shape.length || dy.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`${RELU_GRAD_KERNEL}: dy shape [${dy.shape}] differs from x [${x.shape}].`);
  }
  const dx = backend.makeOutput([...x.shape], "float32");
  const at = (t: TensorInfo) => heapOffset(backend, t);
  simdKernels(backend).relu_grad(at(dy), at(x), x.shape.reduce((a, b) => a * b, 1), at(dx));
  return dx;
}
