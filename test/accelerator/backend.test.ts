import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describeBackend, parseBackendName } from "../../lib/accelerator/backend";
import { backendSummary } from "../../lib/evaluation/results";

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, "..", "..");

/** Whether the optional native binding is installed on this machine. */
function hasTfjsNode(): boolean {
  try {
    require.resolve("@tensorflow/tfjs-node");
    return true;
  } catch {
    return false;
  }
}

/**
 * initBackend() in a fresh process (it is chosen once per process), with TFJS_BACKEND set or
 * not. The process must exit by itself: a backend that keeps it alive fails by the timeout.
 */
async function initIn(backendEnv: string | undefined, extraEnv: NodeJS.ProcessEnv = {}) {
  const env = { ...process.env, ...extraEnv };
  delete env.TFJS_BACKEND;
  if (backendEnv !== undefined) env.TFJS_BACKEND = backendEnv;
  // Beside the backend's answer, the wasm module's own thread pool and the backend line.
  const code = `const accelerator = require("./lib/accelerator");
  accelerator.initBackend().then(
    (info) => console.log(JSON.stringify({ ...info, description: accelerator.describeBackend(info),
      wasmPoolThreads: info.name === "wasm" ? require("@tensorflow/tfjs-backend-wasm").getThreadsCount() : null })),
    (error) => { console.error(error.message); process.exit(1); })`;
  try {
    const { stdout } = await run(process.execPath, ["--import", "tsx", "--eval", code], { cwd: ROOT, env, timeout: 60_000 });
    return { ok: true as const, info: JSON.parse(stdout.trim().split("\n").pop()!) };
  } catch (error) {
    return { ok: false as const, message: (error as { stderr: string }).stderr };
  }
}

/** The addon's pooling loops are built for AVX2 and stay off without it. */
const CPU_HAS_AVX2 = /\bavx2\b/.test(readFileSync("/proc/cpuinfo", "utf8"));

describe("backend selection", () => {
  it("picks the fastest backend that loads and says why faster ones were skipped", async () => {
    const result = await initIn(undefined);
    assert.ok(result.ok);
    if (hasTfjsNode()) {
      assert.equal(result.info.name, "tensorflow");
    } else {
      assert.equal(result.info.name, "wasm");
      assert.deepEqual(result.info.skipped.map((s: { name: string }) => s.name), ["tensorflow"]);
      assert.match(result.info.skipped[0].reason, /@tensorflow\/tfjs-node is not installed/);
      assert.ok(result.info.registeredKernels.includes("Conv2DBackpropFilter"));
      assert.equal(result.info.threads, os.availableParallelism(), result.info.notes.join("; "));
      assert.deepEqual(result.info.notes, []);
      assert.equal(result.info.oneDnn, true);
    }
    assert.equal(result.info.forced, false);
  });

  it("runs wasm on the threads TFJS_WASM_THREADS asks for, and exits by itself", async () => {
    for (const threads of [1, 2]) {
      const result = await initIn("wasm", { TFJS_WASM_THREADS: String(threads) });
      assert.ok(result.ok, result.ok ? "" : result.message);
      assert.equal(result.info.threads, threads);
      // With oneDNN the threads are its own and the wasm module stays single-threaded; without it, the wasm pool's.
      assert.equal(result.info.wasmPoolThreads, result.info.oneDnn ? 1 : threads);
      assert.equal(result.info.description.includes("the other ops on one thread"), result.info.oneDnn && threads > 1, result.info.description);
      // Batch norm by oneDNN by default on any number of threads, and with it the block ops.
      assert.equal(result.info.oneDnnBatchNorm, result.info.oneDnn ? true : undefined);
      assert.equal(result.info.description.includes("and batch norm by oneDNN"), result.info.oneDnn, result.info.description);
      assert.equal(result.info.convBnBlocks, result.info.oneDnn ? true : undefined);
      // Likewise max pooling on oneDNN's threads (its loops are built for AVX2).
      const pooling = result.info.oneDnn && threads > 1 && CPU_HAS_AVX2;
      assert.equal(result.info.nativePooling, result.info.oneDnn ? pooling : undefined);
      assert.equal(result.info.description.includes("max pooling on its threads"), pooling, result.info.description);
    }
    // TFJS_NATIVE_POOLING overrides the default both ways.
    for (const [threads, asked] of [["2", "0"], ["1", "1"]] as const) {
      const result = await initIn("wasm", { TFJS_WASM_THREADS: threads, TFJS_NATIVE_POOLING: asked });
      assert.ok(result.ok, result.ok ? "" : result.message);
      if (!result.info.oneDnn) continue;
      assert.equal(result.info.nativePooling, asked === "1" && CPU_HAS_AVX2);
    }
    // TFJS_ONEDNN_BATCH_NORM overrides the default both ways.
    for (const [threads, asked] of [["2", "0"], ["1", "1"]] as const) {
      const result = await initIn("wasm", { TFJS_WASM_THREADS: threads, TFJS_ONEDNN_BATCH_NORM: asked });
      assert.ok(result.ok, result.ok ? "" : result.message);
      if (!result.info.oneDnn) continue;
      assert.equal(result.info.oneDnnBatchNorm, asked === "1");
      assert.equal(result.info.description.includes("and batch norm by oneDNN"), asked === "1", result.info.description);
      // The block op runs where batch norm runs in oneDNN.
      assert.equal(result.info.convBnBlocks, asked === "1");
      assert.equal(result.info.description.includes("conv + batch norm and conv + pool blocks as one op"), asked === "1", result.info.description);
    }
    // TFJS_CONV_BN_BLOCKS=0 runs the blocks layer by layer.
    const layerByLayer = await initIn("wasm", { TFJS_WASM_THREADS: "2", TFJS_CONV_BN_BLOCKS: "0" });
    assert.ok(layerByLayer.ok, layerByLayer.ok ? "" : layerByLayer.message);
    if (layerByLayer.info.oneDnn) assert.equal(layerByLayer.info.convBnBlocks, false);
    const withoutOneDnn = await initIn("wasm", { TFJS_WASM_THREADS: "2", TFJS_ONEDNN: "0" });
    assert.ok(withoutOneDnn.ok, withoutOneDnn.ok ? "" : withoutOneDnn.message);
    assert.equal(withoutOneDnn.info.oneDnn, false);
    assert.equal(withoutOneDnn.info.threads, 2);
    assert.equal(withoutOneDnn.info.wasmPoolThreads, 2);
    const bad = await initIn("wasm", { TFJS_WASM_THREADS: "many" });
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? "" : bad.message, /TFJS_WASM_THREADS="many" must be a positive integer/);
  });

  it("TFJS_BACKEND=cpu forces the cpu backend", async () => {
    const result = await initIn("cpu");
    assert.ok(result.ok);
    assert.equal(result.info.name, "cpu");
    assert.equal(result.info.forced, true);
  });

  it("a forced backend that cannot load is an error, not a fall-back", { skip: hasTfjsNode() && "tfjs-node is installed here" }, async () => {
    const result = await initIn("tensorflow");
    assert.equal(result.ok, false);
    assert.match(result.ok ? "" : result.message, /TFJS_BACKEND=tensorflow was asked for, but it cannot load: @tensorflow\/tfjs-node is not installed/);
  });

  it("an unknown TFJS_BACKEND value is an error listing the valid ones", async () => {
    const result = await initIn("gpu");
    assert.equal(result.ok, false);
    assert.match(result.ok ? "" : result.message, /TFJS_BACKEND="gpu" is not a backend; use one of tensorflow, wasm, cpu/);
    assert.throws(() => parseBackendName("webgl", "--backend"), /--backend="webgl" is not a backend/);
  });

  it("describes the backend in one line", () => {
    const line = describeBackend({
      name: "wasm",
      forced: false,
      threads: 1,
      registeredKernels: [],
      oneDnn: false,
      notes: [],
      skipped: [{ name: "tensorflow", reason: "not installed" }],
    });
    assert.equal(line, "wasm, 1 thread; skipped tensorflow: not installed");
    const native = describeBackend({ name: "wasm", forced: false, threads: 2, registeredKernels: [], oneDnn: true, oneDnnBatchNorm: true, nativePooling: true, convBnBlocks: true, notes: [], skipped: [] });
    assert.equal(native, "wasm, 2 threads, convolutions, matrix products and batch norm by oneDNN (native), max pooling on its threads, conv + batch norm and conv + pool blocks as one op, the other ops on one thread");
    const oneThread = describeBackend({ name: "wasm", forced: false, threads: 1, registeredKernels: [], oneDnn: true, notes: [], skipped: [] });
    assert.equal(oneThread, "wasm, 1 thread, convolutions and matrix products by oneDNN (native)");
    const bf16 = describeBackend({ name: "wasm", forced: false, threads: 2, registeredKernels: [], oneDnn: true, oneDnnBatchNorm: true, bf16Unavailable: null, notes: [], skipped: [] });
    assert.match(bf16, /^wasm, 2 threads, convolutions, matrix products and batch norm by oneDNN \(native\), in bf16 where a recipe asks \(.*\), the other ops on one thread$/);
  });

  it("a run record's backend in a few words says + oneDNN only where oneDNN ran, not where the line says why it did not", () => {
    const info = { name: "wasm" as const, forced: false, threads: 2, registeredKernels: [], skipped: [] };
    const summary = (description: string) => backendSummary({ name: "wasm", threads: 2, description, precision: "fp32" });
    assert.equal(summary(describeBackend({ ...info, oneDnn: true, oneDnnBatchNorm: true, notes: [] })), "wasm, 2 threads + oneDNN");
    // loadOneDnn's reasons, as initBackend puts them on the line.
    for (const reason of [
      "the native oneDNN convolutions are not built (scripts/build-native.sh needs g++ and libdnnl-dev): convolutions run in wasm, slower",
      "native oneDNN convolutions off (TFJS_ONEDNN=0)",
      "the native oneDNN convolutions cannot load (libdnnl.so.2: cannot open shared object file): convolutions run in wasm",
    ]) {
      assert.equal(summary(describeBackend({ ...info, oneDnn: false, notes: [reason] })), "wasm, 2 threads", reason);
    }
    assert.equal(backendSummary({ name: "wasm", threads: 1, description: describeBackend({ ...info, threads: 1, oneDnn: true, notes: [] }), precision: "bf16" }), "wasm, 1 thread + oneDNN, bf16");
  });
});

describe("OpenMP's threads between native calls", () => {
  /**
   * CPU time the process uses in the 400 ms after a convolution on two threads, in a fresh process. OpenMP's
   * threads spin a while after each native call (the default) or sleep at once (OMP_WAIT_POLICY=PASSIVE).
   */
  async function idleCpuMs(extraEnv: NodeJS.ProcessEnv): Promise<{ oneDnn: boolean; cpuMs: number }> {
    const env: NodeJS.ProcessEnv = { ...process.env, TFJS_BACKEND: "wasm", TFJS_WASM_THREADS: "2", ...extraEnv };
    delete env.GOMP_SPINCOUNT;
    if (extraEnv.OMP_WAIT_POLICY === undefined) delete env.OMP_WAIT_POLICY;
    const code = `const { initBackend, tf } = require("./lib/accelerator");
    initBackend().then(async (info) => {
      const x = tf.randomNormal([64, 28, 28, 16]), w = tf.randomNormal([3, 3, 16, 16]);
      tf.conv2d(x, w, 1, "same").dataSync();
      const before = process.cpuUsage();
      await new Promise((done) => setTimeout(done, 400));
      const used = process.cpuUsage(before);
      console.log(JSON.stringify({ oneDnn: info.oneDnn, cpuMs: (used.user + used.system) / 1000, spinCount: process.env.GOMP_SPINCOUNT ?? null }));
    })`;
    const { stdout } = await run(process.execPath, ["--import", "tsx", "--eval", code], { cwd: ROOT, env, timeout: 60_000 });
    const result = JSON.parse(stdout.trim().split("\n").pop()!);
    // The setting is for OpenMP alone: unset again, so that child processes do not inherit it.
    assert.equal(result.spinCount, null);
    return result;
  }

  it("spin a while after each call by default, and sleep at once where the caller asks for passive waiting", async (t) => {
    if (os.availableParallelism() < 2) return t.skip("one CPU: no second OpenMP thread");
    const spinning = await idleCpuMs({});
    if (!spinning.oneDnn) return t.skip("the oneDNN addon does not run here");
    const passive = await idleCpuMs({ OMP_WAIT_POLICY: "PASSIVE" });
    // Spinning: ~70 ms of a core (even at half a core on a loaded machine, > 25 ms); passive: a few ms.
    assert.ok(spinning.cpuMs > 25, `spinning: ${spinning.cpuMs.toFixed(1)} ms of CPU while idle`);
    assert.ok(passive.cpuMs < 15, `passive: ${passive.cpuMs.toFixed(1)} ms of CPU while idle`);
  });
});
