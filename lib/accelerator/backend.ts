/**
 * The one place that initialises TF.js. Everything else imports `tf` from here.
 *
 * Order of preference: `tensorflow` (tfjs-node, native) → `wasm` → `cpu`.
 * `TFJS_BACKEND=tensorflow|wasm|cpu` forces one; a forced backend that cannot load is an
 * error, never a silent fall-back.
 */
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import { registerNativeConvolutions, registerWasmKernels } from "./kernels";
import { bf16Unavailable, convBnBlocksActive, loadOneDnn, nativePoolingActive, oneDnnBatchNorm, oneDnnIsa } from "./native/onednn";
import { simdKernelsBuilt } from "./wasm/simd";
import { registerThreadedWasmBackend } from "./threads";

export { tf };

export const BACKEND_NAMES = ["tensorflow", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface SkippedBackend {
  name: BackendName;
  reason: string;
}

export interface BackendInfo {
  /** The backend that runs. */
  name: BackendName;
  /** True when chosen by `TFJS_BACKEND` (or the `force` option). */
  forced: boolean;
  /** Faster backends that were tried first, and why they did not load. */
  skipped: SkippedBackend[];
  /** Kernels this project registered on the backend (wasm gradient kernels). */
  registeredKernels: string[];
  /**
   * Threads the backend computes with (wasm: oneDNN's where it runs, with the wasm module's own ops on
   * one thread beside it; else the wasm thread pool; native: TensorFlow's own, unknown here).
   */
  threads: number | null;
  /** wasm: whether convolutions and matrix products run natively through oneDNN (lib/accelerator/native/onednn.ts). */
  oneDnn: boolean;
  /** With oneDNN: whether it also runs training-mode batch norm (by default yes; TFJS_ONEDNN_BATCH_NORM=0: no). */
  oneDnnBatchNorm?: boolean;
  /** With oneDNN: whether max pooling over disjoint windows runs on its OpenMP threads (by default on more than one thread). */
  nativePooling?: boolean;
  /** With oneDNN: whether blocks of two convolution + batch norm + relu layers, and convolutions + relu with their max pool, train as one op (where batch norm runs in oneDNN; TFJS_CONV_BN_BLOCKS=0: no). */
  convBnBlocks?: boolean;
  /** With oneDNN: whether recipes that ask for bf16 products get them here (null), or why not. */
  bf16Unavailable?: string | null;
  /** Anything else worth knowing, e.g. why wasm runs on fewer threads than asked for. */
  notes: string[];
}

export const BACKEND_ENV_VAR = "TFJS_BACKEND";
/**
 * Threads for the wasm backend; default: all cores. With oneDNN they are oneDNN's, and the wasm module
 * runs single-threaded; without it they are the wasm thread pool's (1: TF.js's stock single-threaded wasm).
 */
export const WASM_THREADS_ENV_VAR = "TFJS_WASM_THREADS";

function wasmThreadsWanted(): number {
  const value = process.env[WASM_THREADS_ENV_VAR];
  if (value === undefined || value === "") return os.availableParallelism();
  const threads = Number(value);
  if (!Number.isInteger(threads) || threads < 1) {
    throw new Error(`${WASM_THREADS_ENV_VAR}="${value}" must be a positive integer.`);
  }
  return threads;
}

let initialised: Promise<BackendInfo> | undefined;

export function parseBackendName(value: string, source: string): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(`${source}="${value}" is not a backend; use one of ${BACKEND_NAMES.join(", ")}.`);
}

/**
 * Initialises TF.js once per process and says which backend runs. Later calls return the
 * same answer; a later call asking for a different forced backend is an error.
 */
export function initBackend(options: { force?: BackendName } = {}): Promise<BackendInfo> {
  const envValue = process.env[BACKEND_ENV_VAR];
  const force =
    options.force ?? (envValue ? parseBackendName(envValue, BACKEND_ENV_VAR) : undefined);
  if (!initialised) {
    initialised = chooseBackend(force);
    initialised.catch(() => (initialised = undefined));
    return initialised;
  }
  return initialised.then((info) => {
    if (force && info.name !== force) {
      throw new Error(`TF.js already runs on "${info.name}"; cannot switch to "${force}" in this process.`);
    }
    return info;
  });
}

async function chooseBackend(force: BackendName | undefined): Promise<BackendInfo> {
  const candidates: BackendName[] = force ? [force] : [...BACKEND_NAMES];
  const skipped: SkippedBackend[] = [];
  const notes: string[] = [];
  const wasmThreads = wasmThreadsWanted();
  for (const name of candidates) {
    const failure = await tryBackend(name, wasmThreads, notes);
    if (failure === undefined) {
      const registeredKernels = name === "wasm" ? registerWasmKernels() : [];
      if (name === "wasm" && !simdKernelsBuilt()) notes.push("the project's SIMD kernels are not built (scripts/build-wasm.sh needs clang and lld): batch norm and max-pool gradients run slower");
      const notNative = name === "wasm" ? registerNativeConvolutions(wasmThreads) : "not wasm";
      if (name === "wasm" && notNative) notes.push(notNative);
      const oneDnn = notNative === undefined;
      const threads = oneDnn ? wasmThreads : threadsOf(name);
      return {
        name, forced: force !== undefined, skipped, registeredKernels, threads, oneDnn,
        oneDnnBatchNorm: oneDnn ? oneDnnBatchNorm() : undefined, nativePooling: oneDnn ? nativePoolingActive() : undefined,
        convBnBlocks: oneDnn ? convBnBlocksActive() : undefined, bf16Unavailable: oneDnn ? (bf16Unavailable() ?? null) : undefined, notes,
      };
    }
    if (force) {
      throw new Error(`${BACKEND_ENV_VAR}=${force} was asked for, but it cannot load: ${failure}`);
    }
    skipped.push({ name, reason: failure });
  }
  throw new Error(`No TF.js backend could load: ${skipped.map((s) => `${s.name}: ${s.reason}`).join("; ")}`);
}

/** Loads and activates one backend; returns why it failed, or undefined on success. */
async function tryBackend(name: BackendName, wasmThreads: number, notes: string[]): Promise<string | undefined> {
  try {
    if (name === "tensorflow") loadNativeBinding();
    if (name === "wasm") {
      require("@tensorflow/tfjs-backend-wasm");
      // Where oneDNN loads, it gets the threads and the wasm module stays single-threaded: a step then
      // runs ~10% faster on two threads than with both on two (the wasm pool's small ops synchronise
      // more than they gain; docs/backend.md, 2026-12-02).
      if (wasmThreads > 1 && loadOneDnn(wasmThreads) !== undefined) {
        try {
          const threads = await registerThreadedWasmBackend(wasmThreads);
          if (threads !== wasmThreads) notes.push(`wasm runs ${threads} threads, not the ${wasmThreads} asked for`);
        } catch (error) {
          notes.push(`wasm threads unavailable, running 1 thread: ${(error as Error).message}`);
        }
      }
    }
    const ok = await tf.setBackend(name);
    if (!ok) return `tf.setBackend("${name}") returned false`;
    await tf.ready();
    return undefined;
  } catch (error) {
    return describeLoadError(name, error);
  }
}

function threadsOf(name: BackendName): number | null {
  if (name === "cpu") return 1;
  if (name === "wasm") {
    const wasm = require("@tensorflow/tfjs-backend-wasm") as typeof import("@tensorflow/tfjs-backend-wasm");
    return wasm.getThreadsCount();
  }
  return null;
}

function loadNativeBinding(): void {
  // Optional dependency: present only where its install script could download libtensorflow.
  require("@tensorflow/tfjs-node");
}

function describeLoadError(name: BackendName, error: unknown): string {
  const err = error as NodeJS.ErrnoException;
  if (name === "tensorflow" && err?.code === "MODULE_NOT_FOUND") {
    return (
      "@tensorflow/tfjs-node is not installed (its install script downloads libtensorflow, " +
      "which needs internet access; run `npm install @tensorflow/tfjs-node` where it is available)"
    );
  }
  const firstLine = String(err?.message ?? error).split("\n")[0];
  return firstLine;
}

/** What describeBackend says where oneDNN runs; run records carry the line, and lib/evaluation/results.ts reads it back. */
export const ONEDNN_WORDS = "by oneDNN (native)";

/** One line for logs, notebooks and run records, e.g. `wasm (skipped tensorflow: …)`. */
export function describeBackend(info: BackendInfo): string {
  const threads = info.threads === null ? "" : `, ${info.threads} thread${info.threads === 1 ? "" : "s"}`;
  const bf16 = info.bf16Unavailable === null ? `, in bf16 where a recipe asks (${oneDnnIsa()})` : "";
  const threaded = info.threads !== null && info.threads > 1;
  const products = info.oneDnnBatchNorm ? "convolutions, matrix products and batch norm" : "convolutions and matrix products";
  const pooling = info.nativePooling ? ", max pooling on its threads" : "";
  const blocks = info.convBnBlocks ? ", conv + batch norm and conv + pool blocks as one op" : "";
  const native = info.oneDnn ? `, ${products} ${ONEDNN_WORDS}${pooling}${blocks}${bf16}${threaded ? ", the other ops on one thread" : ""}` : "";
  const parts = [info.name + threads + native + (info.forced ? ` (forced by ${BACKEND_ENV_VAR})` : "")];
  for (const s of info.skipped) parts.push(`skipped ${s.name}: ${s.reason}`);
  parts.push(...info.notes);
  return parts.join("; ");
}
