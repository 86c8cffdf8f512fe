/**
 * Multi-threaded TF.js wasm in Node. TF.js 4.22 ships the threaded SIMD build but does not
 * use it in Node, for three reasons this module works around:
 *  1. `WASM_HAS_MULTITHREAD_SUPPORT` is hard-wired to false under Node: we bypass the stock
 *     initialiser and instantiate the threaded Emscripten module ourselves;
 *  2. its pthread workers are started from a `blob:` URL, which Node's Worker rejects
 *     (ERR_WORKER_PATH): we write the worker script to a file and point Emscripten at it;
 *  3. the C++ side sizes its thread pool as half the logical cores (1 on 2 cores), read
 *     through `os.cpus()` while the module starts: we report twice the requested threads then.
 * Its pthread workers are unref'd so that scripts and notebook kernels exit by themselves.
 *
 * Everything here depends on the internals of exactly one version, checked first; when a
 * check fails the caller falls back to the stock single-threaded wasm and says why.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";

/** The tfjs-backend-wasm version whose internals this module relies on. */
export const THREADED_WASM_VERSION = "4.22.0";
const STARTUP_TIMEOUT_MS = 60_000;

interface NodeWorker {
  unref(): void;
  terminate(): void;
}

interface EmscriptenThreadedModule {
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: number[]) => number;
  PThread: { unusedWorkers: NodeWorker[]; runningWorkers: NodeWorker[] };
  tfjs?: unknown;
}

type WasmPackage = typeof import("@tensorflow/tfjs-backend-wasm");

/** Starts the threaded wasm module with `threads` threads; returns the actual thread count. */
export async function registerThreadedWasmBackend(threads: number): Promise<number> {
  const packageDir = path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"));
  const version = (JSON.parse(readFileSync(path.join(packageDir, "package.json"), "utf8")) as { version: string }).version;
  if (version !== THREADED_WASM_VERSION) {
    throw new Error(`the threads workaround is written for tfjs-backend-wasm ${THREADED_WASM_VERSION}, found ${version}`);
  }
  const outDir = path.join(packageDir, "wasm-out");
  const mainScript = path.join(outDir, "tfjs-backend-wasm-threaded-simd.js");
  const workerModule = path.join(outDir, "tfjs-backend-wasm-threaded-simd.worker.js");
  for (const file of [mainScript, workerModule, path.join(outDir, "tfjs-backend-wasm-threaded-simd.wasm")]) {
    if (!existsSync(file)) throw new Error(`${file} is missing`);
  }
  const factory = require(mainScript) as (config: object) => Promise<EmscriptenThreadedModule>;
  const { wasmWorkerContents } = require(workerModule) as { wasmWorkerContents?: string };
  if (typeof factory !== "function" || typeof wasmWorkerContents !== "string") {
    throw new Error("the threaded wasm build no longer has the expected shape");
  }
  const workerFile = writeWorkerScript(wasmWorkerContents);

  const realCpus = os.cpus;
  // Keeps the event loop alive while wasm compiles (a pending compile alone does not).
  const keepAlive = setInterval(() => undefined, 1000);
  // Emscripten uses this object as its Module: its workers are reachable through it even
  // when start-up fails, so that they can be stopped.
  const config: Partial<EmscriptenThreadedModule> & Record<string, unknown> = {
    locateFile: (file: string) => (file.endsWith(".worker.js") ? workerFile : path.join(outDir, file)),
    mainScriptUrlOrBlob: mainScript,
  };
  let module: EmscriptenThreadedModule;
  try {
    os.cpus = () => Array.from({ length: 2 * threads }, () => realCpus()[0]);
    module = await withTimeout(factory(config), STARTUP_TIMEOUT_MS, "the threaded wasm module did not start");
  } catch (error) {
    for (const worker of [...(config.PThread?.unusedWorkers ?? []), ...(config.PThread?.runningWorkers ?? [])]) {
      worker.terminate();
    }
    throw error;
  } finally {
    os.cpus = realCpus;
    clearInterval(keepAlive);
  }
  // The bridge TF.js's own initialiser builds (backend_wasm.ts, init()).
  module.tfjs = {
    init: module.cwrap("init", null, []),
    initWithThreadsCount: module.cwrap("init_with_threads_count", null, ["number"]),
    getThreadsCount: module.cwrap("get_threads_count", "number", []),
    registerTensor: module.cwrap("register_tensor", null, ["number", "number", "number"]),
    disposeData: module.cwrap("dispose_data", null, ["number"]),
    dispose: module.cwrap("dispose", null, []),
  };

  const wasmPackage = require("@tensorflow/tfjs-backend-wasm") as WasmPackage;
  wasmPackage.setThreadsCount(threads);
  const registry = (tf.engine() as unknown as { registryFactory: Record<string, { factory: () => tf.KernelBackend; priority: number }> })
    .registryFactory;
  const stock = registry.wasm;
  tf.removeBackend("wasm");
  tf.registerBackend("wasm", () => new wasmPackage.BackendWasm(module as never), stock?.priority ?? 2);
  if (!(await tf.setBackend("wasm"))) {
    tf.removeBackend("wasm");
    if (stock) tf.registerBackend("wasm", stock.factory, stock.priority);
    throw new Error("the threaded wasm backend did not initialise");
  }
  // Emscripten refs a worker when it starts a thread on it (the backend's thread pool just
  // did): unref them all so that the process can exit when its own work is done.
  for (const worker of [...module.PThread.unusedWorkers, ...module.PThread.runningWorkers]) worker.unref();
  return wasmPackage.getThreadsCount();
}

/** Writes the worker script once per content (atomically) and returns its path. */
function writeWorkerScript(contents: string): string {
  // The contents are a template literal meant for a Blob: escape its newlines as TF.js does.
  const script = contents.replace(/\n/g, "\\n");
  const hash = createHash("sha256").update(script).digest("hex").slice(0, 16);
  const file = path.join(os.tmpdir(), `tfjs-backend-wasm-${THREADED_WASM_VERSION}-worker-${hash}.js`);
  if (!existsSync(file)) {
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, script);
    renameSync(temporary, file);
  }
  return file;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
