/**
 * One Adam step for one variable as a single kernel. TF.js's Adam runs ~14 elementwise
 * kernels per variable (each allocating a tensor); on wasm their dispatch, not arithmetic,
 * dominates: ~140 calls per capstone CNN step. Here one pass over the wasm heap writes the
 * new value and both moments: the project's SIMD kernel where built (float32, as TF.js's
 * Adam; 147k parameters 1.6 → 0.3 ms), else a JavaScript loop (float64, rounded once).
 */
import type { KernelArgs, TensorInfo } from "./common";
import { heapOffset, simdKernels, simdKernelsBuilt } from "./simd";

export const ADAM_UPDATE_KERNEL = "ProjectAdamUpdate";

export interface AdamUpdateAttrs {
  beta1: number;
  beta2: number;
  epsilon: number;
  learningRate: number;
  /** 1 − β₁ᵗ and 1 − β₂ᵗ for this step t (bias corrections). */
  correction1: number;
  correction2: number;
}

/** Inputs value, m, v, gradient (float32, one shape); outputs [value′, m′, v′]. */
export function adamUpdate({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const { value, m, v, gradient } = inputs;
  for (const input of [m, v, gradient]) {
    if (input.shape.length !== value.shape.length || input.shape.some((d, i) => d !== value.shape[i])) {
      throw new Error(`${ADAM_UPDATE_KERNEL}: shapes differ (${value.shape} vs ${input.shape}).`);
    }
  }
  const { beta1, beta2, epsilon, learningRate, correction1, correction2 } = attrs as unknown as AdamUpdateAttrs;
  // Allocate every output before taking heap views: an allocation may move the heap.
  const outputs = [value, m, v].map((t) => backend.makeOutput([...t.shape], "float32"));
  if (simdKernelsBuilt()) {
    const at = (t: TensorInfo) => heapOffset(backend, t);
    const size = value.shape.reduce((a, b) => a * b, 1);
    simdKernels(backend).adam_update(
      at(value), at(m), at(v), at(gradient), size, beta1, beta2, epsilon, learningRate, correction1, correction2, ...(outputs.map(at) as [number, number, number]),
    );
    return outputs;
  }
  const [w, m1, v1, g, newW, newM, newV] = [value, m, v, gradient, ...outputs].map((t) => backend.typedArrayFromHeap(t) as Float32Array);
  const oneMinusBeta1 = 1 - beta1;
  const oneMinusBeta2 = 1 - beta2;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i];
    const mi = beta1 * m1[i] + oneMinusBeta1 * gi;
    const vi = beta2 * v1[i] + oneMinusBeta2 * gi * gi;
    newM[i] = mi;
    newV[i] = vi;
    newW[i] = w[i] - (learningRate * (mi / correction1)) / (Math.sqrt(vi / correction2) + epsilon);
  }
  return outputs;
}
