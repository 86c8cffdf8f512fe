/**
 * One optimizer step for one variable as a single kernel (Adam; SGD with momentum below). TF.js's Adam runs ~14 elementwise
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

export const MOMENTUM_UPDATE_KERNEL = "ProjectMomentumUpdate";

export interface MomentumUpdateAttrs {
  momentum: number;
  learningRate: number;
  nesterov: boolean;
}

/**
 * One step of TF.js's MomentumOptimizer for one variable (6 elementwise kernels there, ~120 calls
 * per vgg-bn step). Same operations in the same order, each rounded to float32 as TF.js rounds
 * its own, so the result is the stock one bit for bit: the SIMD kernel where built, else a loop.
 * Inputs value, accumulation, gradient (float32, one shape); outputs [value′, accumulation′].
 */
export function momentumUpdate({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const { value, accumulation, gradient } = inputs;
  for (const input of [accumulation, gradient]) {
    if (input.shape.length !== value.shape.length || input.shape.some((d, i) => d !== value.shape[i])) {
      throw new Error(`${MOMENTUM_UPDATE_KERNEL}: shapes differ (${value.shape} vs ${input.shape}).`);
    }
  }
  const { momentum, learningRate, nesterov } = attrs as unknown as MomentumUpdateAttrs;
  // TF.js multiplies by float32 scalars: the momentum and the negated rate.
  const [mu, negRate] = [Math.fround(momentum), Math.fround(-learningRate)];
  const outputs = [value, accumulation].map((t) => backend.makeOutput([...t.shape], "float32"));
  if (simdKernelsBuilt()) {
    const at = (t: TensorInfo) => heapOffset(backend, t);
    const size = value.shape.reduce((a, b) => a * b, 1);
    simdKernels(backend).momentum_update(at(value), at(accumulation), at(gradient), size, mu, negRate, nesterov ? 1 : 0, ...(outputs.map(at) as [number, number]));
    return outputs;
  }
  const [w, a, g, newW, newA] = [value, accumulation, gradient, ...outputs].map((t) => backend.typedArrayFromHeap(t) as Float32Array);
  momentumStep(w, a, g, mu, negRate, nesterov, newW, newA);
  return outputs;
}

/** The update without SIMD (mu and negRate already float32): every operation rounded to float32. */
export function momentumStep(w: Float32Array, a: Float32Array, g: Float32Array, mu: number, negRate: number, nesterov: boolean, newW: Float32Array, newA: Float32Array): void {
  const f = Math.fround;
  for (let i = 0; i < w.length; i++) {
    const ai = f(f(mu * a[i]) + g[i]);
    newA[i] = ai;
    newW[i] = f(negRate * (nesterov ? f(g[i] + f(ai * mu)) : ai)) + w[i];
  }
}
