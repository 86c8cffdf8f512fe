/**
 * Dropout masks drawn in the wasm heap by the project's SIMD code (lib/accelerator/wasm/simd/kernels.c
 * dropout_mask): the values lib/accelerator/layers.ts MaskGenerator.fill computes in JavaScript, about ten
 * times faster and without copying a mask into the heap.
 */
import type { KernelArgs, TensorInfo } from "./common";
import { heapOffset, simdKernels } from "./simd";

export const DROPOUT_MASK_KERNEL = "ProjectDropoutMask";

/** The parameters of one mask: eight xorshift32 lane states, the unsigned threshold a draw must be below, the kept value. */
export interface MaskDraw {
  lanes: number[];
  threshold: number;
  scale: number;
}

/** No inputs; attrs shape and a MaskDraw. Output: the mask, float32. */
export function dropoutMask({ backend, attrs }: KernelArgs): TensorInfo {
  const shape = attrs.shape as number[];
  const { lanes, threshold, scale } = attrs as unknown as MaskDraw;
  if (lanes.length !== 8) throw new Error(`${DROPOUT_MASK_KERNEL}: 8 lane states expected, got ${lanes.length}.`);
  const mask = backend.makeOutput([...shape], "float32");
  const count = shape.reduce((a, b) => a * b, 1);
  const [s0, s1, s2, s3, s4, s5, s6, s7] = lanes;
  simdKernels(backend).dropout_mask(heapOffset(backend, mask), count, threshold, scale, s0, s1, s2, s3, s4, s5, s6, s7);
  return mask;
}
