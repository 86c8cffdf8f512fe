/**
 * Dropout in the wasm heap by the project's SIMD code (lib/accelerator/wasm/simd/kernels.c dropout):
 * the mask that lib/accelerator/layers.ts MaskGenerator.fill draws in JavaScript, drawn and applied
 * in one pass, without a mask tensor. With the same draw it is its own gradient.
 */
import type { KernelArgs, TensorInfo } from "./common";
import { heapOffset, simdKernels } from "./simd";

export const DROPOUT_KERNEL = "ProjectDropout";

/** The parameters of one mask: eight xorshift32 lane states, the unsigned threshold a draw must be below, the kept value. */
export interface MaskDraw {
  lanes: number[];
  threshold: number;
  scale: number;
}

/** Input x (float32); attrs a MaskDraw. Output: x times the draw's mask. */
export function dropout({ backend, inputs, attrs }: KernelArgs): TensorInfo {
  const { x } = inputs;
  const { lanes, threshold, scale } = attrs as unknown as MaskDraw;
  if (x.dtype !== "float32") throw new Error(`${DROPOUT_KERNEL}: x must be float32, got ${x.dtype}.`);
  if (lanes.length !== 8) throw new Error(`${DROPOUT_KERNEL}: 8 lane states expected, got ${lanes.length}.`);
  const y = backend.makeOutput([...x.shape], "float32");
  const count = x.shape.reduce((a, b) => a * b, 1);
  const [s0, s1, s2, s3, s4, s5, s6, s7] = lanes;
  simdKernels(backend).dropout(heapOffset(backend, x), heapOffset(backend, y), count, threshold, scale, s0, s1, s2, s3, s4, s5, s6, s7);
  return y;
}
