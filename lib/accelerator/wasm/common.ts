/**
 * What the project's wasm kernels share: the slice of TF.js's wasm backend they use, and
 * running other wasm kernels on TensorInfo. Kernels work on TensorInfo through the backend's
 * own kernel functions, never tf.Tensor wrappers (wrapping a kernel input adds no
 * reference, so disposing the wrapper would free the caller's data).
 */
import * as tf from "@tensorflow/tfjs";
import type { backend_util as BackendUtil, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs";

export type { BackendUtil, KernelFunc, NamedAttrMap, TensorInfo };
export const BACKEND = "wasm";

/** The slice of the wasm backend these kernels use. */
export interface WasmBackendLike {
  disposeData(dataId: object): boolean;
  /** One more owner of the data (a tensor sharing it). */
  incRef(dataId: object): void;
  /** Allocates an output on the wasm heap (contents undefined). */
  makeOutput(shape: number[], dtype: string): TensorInfo;
  /** A view on a tensor's data in the wasm heap; invalid after the next allocation. */
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

export interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: WasmBackendLike;
  attrs: NamedAttrMap;
}

/** Runs another wasm kernel directly; the caller owns (and must dispose) the result. */
export function runWasmKernel(
  name: string,
  inputs: Record<string, TensorInfo>,
  attrs: Record<string, unknown>,
  backend: WasmBackendLike,
): TensorInfo {
  const kernel = tf.getKernel(name, BACKEND);
  if (!kernel) throw new Error(`The wasm backend has no ${name} kernel.`);
  return kernel.kernelFunc({ inputs, backend, attrs } as never) as TensorInfo;
}

/** Disposes intermediates, skipping the kernel's own inputs. */
export function disposeIntermediates(backend: WasmBackendLike, keep: TensorInfo[], infos: TensorInfo[]): void {
  for (const info of infos) {
    if (!keep.some((k) => k.dataId === info.dataId)) backend.disposeData(info.dataId);
  }
}

export type Pad = "same" | "valid" | number | BackendUtil.ExplicitPadding;

/** A kernel that replaces a slow stock one; `original` is the stock kernel, its fall-back. */
export type FasterKernel = (args: KernelArgs, original: KernelFunc) => TensorInfo | TensorInfo[];
