/**
 * The gradient of a convolution's fused bias and relu, y = relu(z + bias), as one kernel of
 * this project for lib/accelerator/layers.ts FastConv2D: dz (dy where y > 0) and the bias gradient (its
 * per-channel sums, in float64) in one pass of wasm SIMD code (lib/accelerator/wasm/simd/kernels.c);
 * generic ops take four kernels (Step, Multiply, Sum and a reshape), each a pass.
 */
import type { KernelArgs, TensorInfo } from "./common";
import { heapOffset, simdKernels } from "./simd";

export const RELU_BIAS_GRAD_KERNEL = "ProjectReluBiasGrad";

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
