/**
 * The project's own wasm SIMD kernels (lib/accelerator/wasm/simd/kernels.c, built by
 * scripts/build-wasm.sh). The module imports TF.js's wasm memory, so its functions take
 * tensors' heap offsets and work in place: no copies in or out. One instance per memory; the
 * shared-memory build goes with TF.js's threaded wasm, the plain one with the single-threaded.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { TensorInfo, WasmBackendLike } from "./common";

export interface SimdKernels {
  /** relu: 1 writes relu(y). */
  batch_norm_forward(x: number, rows: number, channels: number, gamma: number, beta: number, epsilon: number, y: number, mean: number, variance: number, scratch: number, relu: number): void;
  /** z: the forward pass's relu output (its gradient folded in), or 0 without relu. */
  batch_norm_backward(
    dy: number, x: number, rows: number, channels: number, mean: number, variance: number, gamma: number, epsilon: number,
    dx: number, dgamma: number, dbeta: number, scratch: number, z: number,
  ): void;
  conv3x3_c1_filter_grad(
    x: number, dy: number, batch: number, height: number, width: number, outHeight: number, outWidth: number,
    strideY: number, strideX: number, filters: number, dw: number,
  ): void;
  adam_update(
    w: number, m: number, v: number, g: number, n: number, beta1: number, beta2: number, epsilon: number,
    learningRate: number, correction1: number, correction2: number, newW: number, newM: number, newV: number,
  ): void;
  /** nesterov: 1 for Nesterov's momentum, 0 for plain. */
  momentum_update(w: number, a: number, g: number, n: number, momentum: number, negRate: number, nesterov: number, newW: number, newA: number): void;
  channel_affine(x: number, rows: number, channels: number, scale: number, shift: number, y: number): void;
  relu_bias_grad(dy: number, y: number, rows: number, channels: number, dz: number, dbias: number, scratch: number): void;
  relu_grad(dy: number, x: number, count: number, dx: number): void;
  /** Σ x[i] over `count` floats, accumulated in float64. */
  sum_all(x: number, count: number): number;
  /** y = x times the mask the lane states s0..s7 draw (scale where a draw is below threshold, else 0). */
  dropout(x: number, y: number, count: number, threshold: number, scale: number, s0: number, s1: number, s2: number, s3: number, s4: number, s5: number, s6: number, s7: number): void;
  max_pool_grad_2x2(x: number, dy: number, batch: number, height: number, width: number, channels: number, outHeight: number, outWidth: number, dx: number): void;
  max_pool_grad_disjoint(
    x: number, dy: number, batch: number, height: number, width: number, channels: number, poolHeight: number, poolWidth: number,
    outHeight: number, outWidth: number, dx: number,
  ): void;
}

// TypeScript declares WebAssembly with the DOM library, which this project does not load.
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
};

const MODULE_DIR = path.join(__dirname, "simd");
const moduleFile = (shared: boolean) => path.join(MODULE_DIR, shared ? "kernels-shared.wasm" : "kernels-plain.wasm");

let built: boolean | undefined;
/** Whether scripts/build-wasm.sh has built the modules (it needs clang and wasm-ld); looked up once, as kernels ask at every call. */
export const simdKernelsBuilt = (): boolean => (built ??= existsSync(moduleFile(false)) && existsSync(moduleFile(true)));

/** The emscripten module behind TF.js's wasm backend, as far as reaching its memory goes. */
interface BackendWithMemory extends WasmBackendLike {
  wasm: { wasmMemory?: WasmMemory; asm?: { memory?: WasmMemory } };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
}

const instances = new WeakMap<WasmMemory, SimdKernels>();

/** The wasm backend's memory (the emscripten module's: threaded build, else single-threaded). */
export function wasmMemory(backend: WasmBackendLike): WasmMemory {
  const memory = (backend as BackendWithMemory).wasm?.wasmMemory ?? (backend as BackendWithMemory).wasm?.asm?.memory;
  if (!memory) throw new Error("The wasm backend's memory is not reachable (another TF.js version?); the project's kernels cannot run.");
  return memory;
}

/** The kernels bound to this backend's memory (instantiated on first use). */
export function simdKernels(backend: WasmBackendLike): SimdKernels {
  const memory = wasmMemory(backend);
  let kernels = instances.get(memory);
  if (!kernels) {
    const shared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
    const module = new WebAssembly.Module(readFileSync(moduleFile(shared)));
    kernels = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SimdKernels;
    instances.set(memory, kernels);
  }
  return kernels;
}

/** A tensor's byte offset in the wasm heap. */
export function heapOffset(backend: WasmBackendLike, info: TensorInfo): number {
  const data = (backend as BackendWithMemory).dataIdMap.get(info.dataId);
  if (!data) throw new Error("A tensor's data is not on the wasm heap.");
  return data.memoryOffset;
}
