/**
 * Every kernel lib/accelerator/kernels.ts registers on wasm, against the `cpu` backend on fresh
 * random inputs: strides 1 and 2, `same` and `valid`, odd sizes, batch 1, and the fall-backs.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { initBackend, tf } from "../../lib/accelerator/backend";
import { buildModel, presetModel, type ModelConfig } from "../../lib/models/builder";
import {
  BF16_ENV_VAR, bf16Conversions, bf16Unavailable, inPrecision, nativeImplementations, nativePrecision, ONEDNN_ADDON, oneDnnActive,
  nativeFirstLayerActive, nativePoolingActive, useBf16CopyReuse, useNativeFirstLayer, useNativePooling, useNativePrecision, useOneDnn,
} from "../../lib/accelerator/native/onednn";
import { RELU_GRAD_KERNEL } from "../../lib/accelerator/wasm/activation";
import type { WasmBackendLike } from "../../lib/accelerator/wasm/common";
import { heapOffset } from "../../lib/accelerator/wasm/simd";
import { seededRandom } from "../../lib/tooling/random";
import { maxRelativeError, onBackend, randomTensor, runKernelOn, type HostTensor } from "../helpers/tensors";

const TOLERANCE = 1e-4;

type Shape4 = [number, number, number, number];

/** Runs the kernel on cpu and wasm with the same inputs and compares. */
async function assertMatchesCpu(kernelName: string, inputs: Record<string, HostTensor>, attrs: Record<string, unknown>) {
  const expected = await runKernelOn("cpu", kernelName, inputs, attrs);
  const actual = await runKernelOn("wasm", kernelName, inputs, attrs);
  assert.deepEqual(actual.shape, expected.shape, "output shape");
  const error = maxRelativeError(actual.values, expected.values);
  assert.ok(error < TOLERANCE, `max relative error ${error}`);
  assert.equal(actual.leaked, 0, "the wasm kernel left data buffers behind");
}

function convOutShape(xShape: Shape4, filterShape: Shape4, stride: number, pad: "same" | "valid"): Shape4 {
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, stride, 1, pad).outShape;
}

const CONV_CASES: { xShape: Shape4; filterShape: Shape4 }[] = [
  { xShape: [2, 8, 8, 3], filterShape: [3, 3, 3, 4] },
  { xShape: [1, 7, 9, 1], filterShape: [3, 3, 1, 5] }, // batch 1, odd, non-square
  { xShape: [3, 13, 13, 16], filterShape: [5, 5, 16, 8] },
  { xShape: [4, 28, 28, 1], filterShape: [3, 3, 1, 32] }, // capstone conv1: the SIMD 3×3 one-channel filter gradient
  { xShape: [1, 9, 8, 1], filterShape: [3, 3, 1, 12] }, // the same kernel: batch 1, odd, non-square
  { xShape: [2, 6, 5, 4], filterShape: [2, 3, 4, 2] }, // even, non-square kernel
  { xShape: [2, 14, 14, 32], filterShape: [3, 3, 32, 8] }, // many channels: the transposed-convolution filter gradient
];

/** Runs a test with oneDNN's native kernels on (skipped where they are not built) or off. */
function onPath(native: boolean) {
  return <T>(run: () => Promise<T>) => async (t: { skip(message: string): void }) => {
    if (native && !oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
    const previous = useOneDnn(native);
    try {
      return await run();
    } finally {
      useOneDnn(previous);
    }
  };
}

describe("wasm kernels match cpu", () => {
  before(async () => {
    const info = await initBackend({ force: "wasm" });
    for (const name of ["Conv2DBackpropFilter", "Conv2DBackpropInput", "MaxPoolGrad", "Sum", "Mean", "Tile", "BatchMatMul", "_FusedMatMul",
      "Identity", "Cast", "DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput"]) {
      assert.ok(info.registeredKernels.includes(name), `${name} registered`);
    }
  });

  // Each convolution case twice: by oneDNN (where lib/accelerator/native/onednn.node is built) and by the wasm kernels.
  for (const native of [true, false]) {
    const path = native ? "oneDNN" : "wasm";
    const on = onPath(native);
    for (const stride of [1, 2]) {
      for (const pad of ["same", "valid"] as const) {
        for (const { xShape, filterShape } of CONV_CASES) {
          const label = `${path}: x ${xShape.join("×")}, filter ${filterShape.join("×")}, stride ${stride}, ${pad}`;
          const dy = () => randomTensor(convOutShape(xShape, filterShape, stride, pad));

          it(`Conv2DBackpropFilter ${label}`, on(() =>
            assertMatchesCpu("Conv2DBackpropFilter", { x: randomTensor(xShape), dy: dy() }, {
              strides: stride, pad, dataFormat: "NHWC", filterShape,
            })));

          // On wasm, stride 2 exercises the fall-back to the stock kernel.
          it(`Conv2DBackpropInput ${label}`, on(() =>
            assertMatchesCpu("Conv2DBackpropInput", { dy: dy(), filter: randomTensor(filterShape) }, {
              strides: stride, pad, dataFormat: "NHWC", inputShape: xShape,
            })));

          it(`Conv2D ${label}`, on(() =>
            assertMatchesCpu("Conv2D", { x: randomTensor(xShape), filter: randomTensor(filterShape) }, {
              strides: stride, pad, dataFormat: "NHWC", dilations: 1,
            })));

          it(`FusedConv2D with bias and relu ${label}`, on(() =>
            assertMatchesCpu("FusedConv2D", { x: randomTensor(xShape), filter: randomTensor(filterShape), bias: randomTensor([filterShape[3]]) }, {
              strides: stride, pad, dataFormat: "NHWC", dilations: 1, activation: "relu",
            })));
        }
      }
    }
    it(`Conv2D ${path}: dilation 2`, on(() =>
      assertMatchesCpu("Conv2D", { x: randomTensor([2, 11, 10, 3]), filter: randomTensor([3, 3, 3, 5]) }, {
        strides: 1, pad: "same", dataFormat: "NHWC", dilations: 2,
      })));
    it(`FusedConv2D ${path}: no bias, linear`, on(() =>
      assertMatchesCpu("FusedConv2D", { x: randomTensor([2, 9, 9, 4]), filter: randomTensor([3, 3, 4, 8]) }, {
        strides: 1, pad: "valid", dataFormat: "NHWC", dilations: 1, activation: "linear",
      })));
  }

  // A first layer's filter gradient (3×3, one input channel) in the addon's loops: filters in eights (8, 24, 32),
  // strides 1 and 2, both paddings, odd and non-square images, batches that split unevenly over the threads.
  for (const { xShape, filters } of [
    { xShape: [4, 28, 28, 1] as Shape4, filters: 32 },
    { xShape: [1, 9, 8, 1] as Shape4, filters: 8 },
    { xShape: [3, 11, 7, 1] as Shape4, filters: 24 },
  ]) {
    for (const stride of [1, 2]) {
      for (const pad of ["same", "valid"] as const) {
        const filterShape: Shape4 = [3, 3, 1, filters];
        it(`a first layer's filter gradient by the addon's loops: x ${xShape.join("×")}, ${filters} filters, stride ${stride}, ${pad}`, async (t) => {
          if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
          if (!nativeFirstLayerActive()) return t.skip("this CPU lacks AVX2, for which the addon's loops are built");
          nativeImplementations().delete("Conv2DBackpropFilter");
          await assertMatchesCpu("Conv2DBackpropFilter", { x: randomTensor(xShape), dy: randomTensor(convOutShape(xShape, filterShape, stride, pad)) }, {
            strides: stride, pad, dataFormat: "NHWC", filterShape,
          });
          assert.equal(nativeImplementations().get("Conv2DBackpropFilter"), "addon, OpenMP");
        });
      }
    }
  }

  it("a first layer's filter gradient with the addon's loops off, or filters not in eights, runs in the project's SIMD kernel", onPath(true)(async () => {
    const previous = useNativeFirstLayer(false);
    try {
      nativeImplementations().clear();
      await assertMatchesCpu("Conv2DBackpropFilter", { x: randomTensor([4, 28, 28, 1]), dy: randomTensor([4, 26, 26, 32]) }, {
        strides: 1, pad: "valid", dataFormat: "NHWC", filterShape: [3, 3, 1, 32],
      });
      assert.equal(nativeImplementations().has("Conv2DBackpropFilter"), false, "not by oneDNN");
    } finally {
      useNativeFirstLayer(previous);
    }
    await assertMatchesCpu("Conv2DBackpropFilter", { x: randomTensor([2, 9, 8, 1]), dy: randomTensor([2, 7, 6, 12]) }, {
      strides: 1, pad: "valid", dataFormat: "NHWC", filterShape: [3, 3, 1, 12],
    });
    assert.equal(nativeImplementations().has("Conv2DBackpropFilter"), false, "12 filters: not by the addon");
  }));

  // Outputs of at most 16 pixels: the filter gradient as one matrix product over the input's patches (cnn3's third
  // convolution, 5×5 → 3×3); larger ones by oneDNN's convolution kernel. Padding reaches into the patches at stride 2.
  for (const { xShape, filterShape, stride, pad, patches } of [
    { xShape: [3, 5, 5, 16] as Shape4, filterShape: [3, 3, 16, 24] as Shape4, stride: 1, pad: "valid" as const, patches: true },
    { xShape: [2, 7, 6, 4] as Shape4, filterShape: [3, 3, 4, 8] as Shape4, stride: 2, pad: "same" as const, patches: true },
    { xShape: [2, 9, 8, 3] as Shape4, filterShape: [2, 3, 3, 5] as Shape4, stride: 2, pad: "valid" as const, patches: true },
    { xShape: [2, 7, 7, 16] as Shape4, filterShape: [3, 3, 16, 8] as Shape4, stride: 1, pad: "valid" as const, patches: false },
  ]) {
    const outShape = convOutShape(xShape, filterShape, stride, pad);
    it(`a filter gradient with ${outShape[1]}×${outShape[2]} outputs runs ${patches ? "as a product over patches" : "in oneDNN's convolution kernel"} (x ${xShape.join("×")}, stride ${stride}, ${pad})`, onPath(true)(async () => {
      nativeImplementations().delete("Conv2DBackpropFilter");
      await assertMatchesCpu("Conv2DBackpropFilter", { x: randomTensor(xShape), dy: randomTensor(outShape) }, { strides: stride, pad, dataFormat: "NHWC", filterShape });
      assert.equal(nativeImplementations().get("Conv2DBackpropFilter")?.startsWith("patches + matmul"), patches, nativeImplementations().get("Conv2DBackpropFilter"));
    }));
  }

  it("oneDNN's native convolutions are built and load where CI runs (npm run setup builds them)", { skip: process.env.CI !== "true" }, () => {
    assert.ok(oneDnnActive(), "lib/accelerator/native/onednn.node missing or not loading: scripts/build-native.sh did not run or failed");
  });

  for (const c of [
    { xShape: [2, 9, 9, 3] as Shape4, filterShape: [3, 3, 3, 2] as Shape4, stride: 1, pad: "same" as const, dilation: 1 },
    { xShape: [1, 8, 7, 4] as Shape4, filterShape: [3, 3, 4, 1] as Shape4, stride: 2, pad: "valid" as const, dilation: 1 },
    { xShape: [3, 10, 10, 2] as Shape4, filterShape: [5, 5, 2, 3] as Shape4, stride: 2, pad: "same" as const, dilation: 1 },
    { xShape: [2, 11, 11, 3] as Shape4, filterShape: [3, 3, 3, 1] as Shape4, stride: 1, pad: "valid" as const, dilation: 1 },
  ]) {
    const label = `x ${c.xShape.join("×")}, filter ${c.filterShape.join("×")}, stride ${c.stride}, ${c.pad}, dilation ${c.dilation}`;
    const outShape = tf.backend_util.computeConv2DInfo(c.xShape, c.filterShape, c.stride, c.dilation, c.pad, undefined, true).outShape;
    const attrs = { strides: c.stride, pad: c.pad, dilations: c.dilation };
    it(`DepthwiseConv2dNativeBackpropFilter: ${label}`, () =>
      assertMatchesCpu("DepthwiseConv2dNativeBackpropFilter", { x: randomTensor(c.xShape), dy: randomTensor(outShape) }, { ...attrs, filterShape: c.filterShape }));
    it(`DepthwiseConv2dNativeBackpropInput: ${label}`, () =>
      assertMatchesCpu("DepthwiseConv2dNativeBackpropInput", { dy: randomTensor(outShape), filter: randomTensor(c.filterShape) }, { ...attrs, inputShape: c.xShape }));
  }

  it("depthwise gradients with dilation > 1 are a clear error (TF.js's gradients do not support them)", async () => {
    await assert.rejects(
      runKernelOn("wasm", "DepthwiseConv2dNativeBackpropFilter", { x: randomTensor([1, 9, 9, 2]), dy: randomTensor([1, 5, 5, 2]) }, {
        strides: 1, pad: "valid", dilations: 2, filterShape: [3, 3, 2, 1],
      }),
      /support dilation 1 only/,
    );
  });

  /** Flat windows, as relu(bias) backgrounds give: many equal maxima, where the first in row-major order must win. */
  const withTies = (x: HostTensor): HostTensor => ({ ...x, values: x.values.map((v) => (v > 0 ? 0.5 : Math.round(v * 2) / 4)) });
  const POOL_CASES: { xShape: Shape4; window: number; stride: number; pad: "same" | "valid" }[] = [
    { xShape: [4, 26, 26, 8], window: 2, stride: 2, pad: "valid" }, // capstone pool 1
    { xShape: [2, 11, 11, 6], window: 2, stride: 2, pad: "valid" }, // odd edge dropped
    { xShape: [3, 7, 7, 12], window: 2, stride: 2, pad: "valid" }, // channels in fours (the SIMD kernel), odd edge dropped
    { xShape: [1, 7, 9, 3], window: 2, stride: 2, pad: "same" }, // odd edge padded
    { xShape: [2, 9, 9, 4], window: 3, stride: 2, pad: "same" }, // overlapping windows
    { xShape: [2, 8, 8, 2], window: 3, stride: 1, pad: "valid" },
    { xShape: [3, 7, 7, 16], window: 7, stride: 7, pad: "valid" }, // vgg-bn's pool over the whole map (the disjoint-window SIMD kernel)
    { xShape: [2, 10, 9, 8], window: 3, stride: 3, pad: "valid" }, // the same kernel: several windows, odd edges dropped
  ];
  for (const c of POOL_CASES) {
    const label = `x ${c.xShape.join("×")}, window ${c.window}, stride ${c.stride}, ${c.pad}`;
    const attrs = { filterSize: c.window, strides: c.stride, pad: c.pad };
    const poolInputs = async (x: HostTensor) => {
      const y = await onBackend("cpu", async () => {
        const out = tf.maxPool(tf.tensor4d(x.values, c.xShape), c.window, c.stride, c.pad);
        return { values: (await out.data()) as Float32Array, shape: out.shape };
      });
      return { dy: randomTensor(y.shape), input: x, output: y };
    };

    it(`MaxPoolGrad: ${label}`, async () => assertMatchesCpu("MaxPoolGrad", await poolInputs(randomTensor(c.xShape)), attrs));

    it(`MaxPoolGrad with ties (flat windows, as relu(bias) backgrounds give): ${label}`, async () => {
      await assertMatchesCpu("MaxPoolGrad", await poolInputs(withTies(randomTensor(c.xShape))), attrs);
    });

    // Disjoint windows (stride = window, no padding) go to the addon's OpenMP loops, the others to wasm's kernels.
    const disjoint = c.window === c.stride && (c.pad === "valid" || (c.xShape[1] % c.stride === 0 && c.xShape[2] % c.stride === 0));
    it(`MaxPool and MaxPoolGrad with the addon's pooling on (${disjoint ? "it runs them" : "wasm runs them"}): ${label}`, async (t) => {
      if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
      const previous = useNativePooling(true);
      try {
        if (!nativePoolingActive()) return t.skip("this CPU lacks AVX2, for which the addon's pooling loops are built");
        nativeImplementations().delete("MaxPool");
        nativeImplementations().delete("MaxPoolGrad");
        await assertMatchesCpu("MaxPool", { x: randomTensor(c.xShape) }, attrs);
        await assertMatchesCpu("MaxPoolGrad", await poolInputs(randomTensor(c.xShape)), attrs);
        await assertMatchesCpu("MaxPoolGrad", await poolInputs(withTies(randomTensor(c.xShape))), attrs);
        assert.equal(nativeImplementations().has("MaxPool"), disjoint, "MaxPool by the addon");
        assert.equal(nativeImplementations().has("MaxPoolGrad"), disjoint, "MaxPoolGrad by the addon");
      } finally {
        useNativePooling(previous);
      }
    });
  }

  for (const { shape, axis, keepDims } of [
    { shape: [4, 26, 26, 8], axis: [0, 1, 2], keepDims: false }, // conv bias gradient
    { shape: [128, 10], axis: [0], keepDims: false }, // dense bias gradient
    { shape: [3, 5, 7], axis: [1, 0], keepDims: true },
    { shape: [3, 5, 7], axis: [2], keepDims: false }, // inner axis: stock kernel
    { shape: [3, 5, 7], axis: [0, 2], keepDims: false }, // mixed: stock kernel
    { shape: [1, 9], axis: [0], keepDims: false }, // batch 1
    { shape: [3, 5, 7], axis: [0, 1, 2], keepDims: false }, // everything: float64 path
    { shape: [3, 5, 7], axis: [2, 0, 1], keepDims: true },
  ]) {
    it(`Sum over ${JSON.stringify(axis)} of ${shape.join("×")}${keepDims ? ", keepDims" : ""}`, () =>
      assertMatchesCpu("Sum", { x: randomTensor(shape) }, { axis, keepDims }));
  }

  it("Mean over leading axes (batch-norm moments), with and without keepDims", async () => {
    await assertMatchesCpu("Mean", { x: randomTensor([4, 7, 7, 6]) }, { axis: [0, 1, 2], keepDims: true });
    await assertMatchesCpu("Mean", { x: randomTensor([9, 5]) }, { axis: [0], keepDims: false });
  });

  for (const { shape, reps } of [
    { shape: [1, 1, 1, 6], reps: [4, 5, 5, 1] }, // batch-norm: a channel vector over N,H,W
    { shape: [1, 3], reps: [7, 1] },
    { shape: [1, 1, 4], reps: [3, 1, 1] },
    { shape: [2, 3], reps: [2, 2] }, // not a block repeat: stock kernel
    { shape: [1, 3], reps: [2, 3] }, // trailing repeat: stock kernel
  ]) {
    it(`Tile ${shape.join("×")} by ${reps.join("×")}`, () => assertMatchesCpu("Tile", { x: randomTensor(shape) }, { reps }));
  }

  it("Mean over everything, with and without keepDims, and over one axis (stock kernel)", async () => {
    await assertMatchesCpu("Mean", { x: randomTensor([4, 6, 5]) }, { axis: [0, 1, 2], keepDims: false });
    await assertMatchesCpu("Mean", { x: randomTensor([4, 6, 5]) }, { axis: [0, 1, 2], keepDims: true });
    await assertMatchesCpu("Mean", { x: randomTensor([4, 6, 5]) }, { axis: [1], keepDims: false });
  });

  it("full sums and means of millions of values stay exact to float32 (the stock wasm kernels drift)", async () => {
    const values = new Float32Array(5_000_000).fill(0.1);
    const expectedSum = values.reduce((total, v) => total + v, 0); // float64 accumulation
    const t = tf.tensor1d(values);
    const [total, average] = [await t.sum().data(), await t.mean().data()];
    assert.ok(Math.abs(total[0] - expectedSum) / expectedSum < 1e-6, `sum ${total[0]} vs ${expectedSum}`);
    assert.ok(Math.abs(average[0] - Math.fround(0.1)) < 1e-7, `mean ${average[0]}`);
    t.dispose();
  });

  for (const c of [
    { x: [3, 5, 4, 8], stats: [8], withOffset: true, withScale: true }, // the SIMD path
    { x: [2, 12], stats: [12], withOffset: false, withScale: true }, // dense, no beta
    { x: [2, 3, 3, 4], stats: [4], withOffset: true, withScale: false }, // no gamma
    { x: [2, 3, 3, 5], stats: [5], withOffset: true, withScale: true }, // channels not in fours: the stock kernel
  ]) {
    it(`FusedBatchNorm: x ${c.x.join("×")}${c.withOffset ? "" : ", no offset"}${c.withScale ? "" : ", no scale"}`, () => {
      const positive = randomTensor(c.stats);
      positive.values = positive.values.map((v) => Math.abs(v) + 0.1);
      return assertMatchesCpu("FusedBatchNorm", {
        x: randomTensor(c.x),
        mean: randomTensor(c.stats),
        variance: positive,
        ...(c.withOffset ? { offset: randomTensor(c.stats) } : {}),
        ...(c.withScale ? { scale: randomTensor(c.stats) } : {}),
      }, { varianceEpsilon: 1e-3 });
    });
  }

  for (const native of [true, false]) {
    const on = onPath(native);
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const flags = `${native ? "oneDNN" : "wasm"}: transposeA ${transposeA}, transposeB ${transposeB}`;
        const a = (batch: number, m: number, k: number) => randomTensor(transposeA ? [batch, k, m] : [batch, m, k]);
        const b = (batch: number, k: number, n: number) => randomTensor(transposeB ? [batch, n, k] : [batch, k, n]);

        it(`BatchMatMul, ${flags}`, on(async () => {
          await assertMatchesCpu("BatchMatMul", { a: a(1, 128, 1152), b: b(1, 1152, 128) }, { transposeA, transposeB });
          await assertMatchesCpu("BatchMatMul", { a: a(3, 5, 7), b: b(3, 7, 2) }, { transposeA, transposeB });
          await assertMatchesCpu("BatchMatMul", { a: a(1, 4, 6), b: b(3, 6, 5) }, { transposeA, transposeB }); // a's batch broadcast
          const [a2, b2] = [a(1, 40, 9), b(1, 9, 12)];
          // Rank 2, as a dense layer calls it.
          await assertMatchesCpu("BatchMatMul", { a: { ...a2, shape: a2.shape.slice(1) }, b: { ...b2, shape: b2.shape.slice(1) } }, { transposeA, transposeB });
        }));

        it(`_FusedMatMul with bias and relu, ${flags}`, on(() =>
          assertMatchesCpu("_FusedMatMul", { a: a(1, 16, 33), b: b(1, 33, 10), bias: randomTensor([10]) }, {
            transposeA, transposeB, activation: "relu",
          })));

        it(`_FusedMatMul linear without bias, ${flags}`, on(() =>
          assertMatchesCpu("_FusedMatMul", { a: a(2, 9, 4), b: b(2, 4, 12) }, { transposeA, transposeB, activation: "linear" })));
      }
    }
  }
});

/**
 * bf16 products against cpu's fp32. Each operand rounded to bf16 (8 significant bits, round to
 * nearest) is off by at most 2⁻⁸ of itself, so each product a·b by at most (1 + 2⁻⁸)² − 1 <
 * 2⁻⁷ + 2⁻¹⁶ of |a·b|; the sums accumulate in fp32 (another ≤ K·2⁻²⁴ relative, < 2⁻¹² for the
 * K ≤ 4,096 terms here). So every output may differ from fp32's by at most
 * (2⁻⁷ + 2⁻¹²) × the same product of the operands' absolute values, and no more.
 */
const BF16_RELATIVE_BOUND = 2 ** -7 + 2 ** -12;

const absolute = (t: HostTensor): HostTensor => ({ values: t.values.map(Math.abs), shape: t.shape });

/**
 * Runs `kernelName` on wasm in bf16 and on cpu in fp32; `boundKernel` on cpu with the inputs'
 * absolute values gives each output's bound. Also checks that bf16 ran: fp32 paths agree to ~1e-7.
 */
async function assertWithinBf16Bound(kernelName: string, inputs: Record<string, HostTensor>, attrs: Record<string, unknown>, boundKernel = kernelName, boundInputs = Object.keys(inputs)) {
  const expected = await runKernelOn("cpu", kernelName, inputs, attrs);
  const magnitude = await runKernelOn("cpu", boundKernel, Object.fromEntries(boundInputs.map((name) => [name, absolute(inputs[name])])), { ...attrs, activation: "linear" });
  const actual = await inPrecision("bf16", () => runKernelOn("wasm", kernelName, inputs, attrs));
  assert.deepEqual(actual.shape, expected.shape, "output shape");
  let worst = 0;
  for (let i = 0; i < expected.values.length; i++) {
    const error = Math.abs(actual.values[i] - expected.values[i]);
    const bound = BF16_RELATIVE_BOUND * magnitude.values[i] + 1e-6;
    assert.ok(error <= bound, `output ${i}: |${actual.values[i]} − ${expected.values[i]}| = ${error} exceeds the bf16 bound ${bound}`);
    worst = Math.max(worst, error / (magnitude.values[i] + 1e-12));
  }
  assert.ok(worst > 2 ** -14, `the largest error is ${worst} of the operands' scale: fp32's, so bf16 did not run`);
  assert.equal(actual.leaked, 0, "the wasm kernel left data buffers behind");
}

describe("bf16 products (oneDNN) stay within bf16's rounding of cpu's fp32", () => {
  let unavailable: string | undefined;
  before(async () => {
    await initBackend({ force: "wasm" });
    unavailable = bf16Unavailable();
  });
  type Skippable = { skip(message: string): void };
  const bf16 = <T>(run: (t: Skippable) => Promise<T>) => async (t: Skippable) => (unavailable ? t.skip(unavailable) : run(t));
  const cases: { xShape: Shape4; filterShape: Shape4; stride: number; pad: "same" | "valid" }[] = [
    { xShape: [4, 14, 14, 32], filterShape: [3, 3, 32, 16], stride: 1, pad: "same" },
    { xShape: [3, 13, 13, 16], filterShape: [5, 5, 16, 8], stride: 2, pad: "valid" },
    { xShape: [2, 8, 8, 3], filterShape: [3, 3, 3, 4], stride: 1, pad: "valid" },
  ];
  for (const { xShape, filterShape, stride, pad } of cases) {
    const label = `x ${xShape.join("×")}, filter ${filterShape.join("×")}, stride ${stride}, ${pad}`;
    const conv = { strides: stride, pad, dataFormat: "NHWC", dilations: 1 };
    it(`FusedConv2D with bias and relu, ${label}`, bf16(() =>
      assertWithinBf16Bound("FusedConv2D", { x: randomTensor(xShape), filter: randomTensor(filterShape), bias: randomTensor([filterShape[3]]) }, { ...conv, activation: "relu" }, "Conv2D", ["x", "filter"])));
    it(`Conv2DBackpropInput, ${label}`, bf16(() =>
      assertWithinBf16Bound("Conv2DBackpropInput", { dy: randomTensor(convOutShape(xShape, filterShape, stride, pad)), filter: randomTensor(filterShape) }, { ...conv, inputShape: xShape })));
    it(`Conv2DBackpropFilter, ${label}`, bf16(() =>
      assertWithinBf16Bound("Conv2DBackpropFilter", { x: randomTensor(xShape), dy: randomTensor(convOutShape(xShape, filterShape, stride, pad)) }, { ...conv, filterShape })));
  }
  it("a filter gradient over patches (3×3 outputs) reads bf16 operands too", bf16(async () => {
    const xShape: Shape4 = [4, 5, 5, 32], filterShape: Shape4 = [3, 3, 32, 16];
    nativeImplementations().delete("Conv2DBackpropFilter");
    await assertWithinBf16Bound("Conv2DBackpropFilter", { x: randomTensor(xShape), dy: randomTensor(convOutShape(xShape, filterShape, 1, "valid")) },
      { strides: 1, pad: "valid", dataFormat: "NHWC", dilations: 1, filterShape });
    assert.match(nativeImplementations().get("Conv2DBackpropFilter") ?? "", /^patches \+ matmul/);
  }));
  it("a first layer's filter gradient stays in fp32 in bf16 steps (the addon's loops or the SIMD kernel)", bf16(async () => {
    const inputs = { x: randomTensor([4, 28, 28, 1]), dy: randomTensor([4, 26, 26, 32]) };
    const attrs = { strides: 1, pad: "valid", dataFormat: "NHWC", filterShape: [3, 3, 1, 32] };
    const [expected, actual] = [await runKernelOn("cpu", "Conv2DBackpropFilter", inputs, attrs), await inPrecision("bf16", () => runKernelOn("wasm", "Conv2DBackpropFilter", inputs, attrs))];
    const error = maxRelativeError(actual.values, expected.values);
    assert.ok(error < TOLERANCE, `max relative error ${error}: fp32's, not bf16's`);
  }));
  for (const [transposeA, transposeB] of [[false, false], [true, false], [false, true]]) {
    it(`_FusedMatMul with bias and relu, transposeA ${transposeA}, transposeB ${transposeB}`, bf16(() =>
      assertWithinBf16Bound("_FusedMatMul", { a: randomTensor(transposeA ? [1, 1152, 128] : [1, 128, 1152]), b: randomTensor(transposeB ? [1, 10, 1152] : [1, 1152, 10]), bias: randomTensor([10]) },
        { transposeA, transposeB, activation: "relu" }, "BatchMatMul", ["a", "b"])));
  }
  it("fp32 again after bf16: the same kernels agree with cpu to fp32's precision", bf16(async () => {
    const inputs = { x: randomTensor([4, 14, 14, 32]), filter: randomTensor([3, 3, 32, 16]) };
    const attrs = { strides: 1, pad: "same", dataFormat: "NHWC", dilations: 1 };
    await inPrecision("bf16", () => runKernelOn("wasm", "Conv2D", inputs, attrs));
    assert.equal(nativePrecision(), "fp32", "the previous precision is restored");
    await assertMatchesCpu("Conv2D", inputs, attrs);
  }));
  /** Runs `work` with the reuse of bf16 copies on or off; returns its result and the conversions it made and reused. */
  function convertingAs<T>(reuse: boolean, work: () => T): { result: T; made: number; reused: number } {
    const previous = useBf16CopyReuse(reuse);
    try {
      const before = bf16Conversions();
      const result = work();
      const after = bf16Conversions();
      return { result, made: after.made - before.made, reused: after.reused - before.reused };
    } finally {
      useBf16CopyReuse(previous);
    }
  }
  it("a training step converts a convolution's input and incoming gradient to bf16 once each, with the same gradients", bf16(async () => {
    const random = seededRandom(7);
    const [x, w1, w2, r] = [[4, 14, 14, 8], [3, 3, 8, 16], [3, 3, 16, 16], [4, 14, 14, 16]].map((shape) => tf.tensor(randomTensor(shape, random).values, shape));
    // conv → relu → conv, gradients for both filters: x feeds the first forward pass and its filter
    // gradient; the hidden layer the second forward pass and its filter gradient; the second conv's
    // incoming gradient its input and filter gradients.
    const loss = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(tf.relu(tf.conv2d(x as tf.Tensor4D, a as tf.Tensor4D, 1, "same")), b as tf.Tensor4D, 1, "same"), r));
    const gradients = () => tf.tidy(() => tf.grads(loss)([w1, w2]).map((g) => g.dataSync().slice()));
    const each = await inPrecision("bf16", async () => convertingAs(false, gradients));
    const once = await inPrecision("bf16", async () => convertingAs(true, gradients));
    assert.equal(each.reused, 0);
    assert.ok(once.reused >= 3, `${once.reused} conversions reused, expected x, the hidden layer and the second conv's incoming gradient`);
    assert.equal(once.made + once.reused, each.made, "the same operands were read");
    once.result.forEach((g, i) => assert.deepEqual(g, each.result[i], `filter ${i + 1}'s gradient`));
    tf.dispose([x, w1, w2, r]);
  }));
  it("a tensor allocated where a converted one was freed gets its own bf16 copy", bf16(async () => {
    const random = seededRandom(11);
    const filter = tf.tensor(randomTensor([3, 3, 8, 16], random).values, [3, 3, 8, 16]) as tf.Tensor4D;
    const input = () => tf.tensor(randomTensor([4, 14, 14, 8], random).values, [4, 14, 14, 8]) as tf.Tensor4D;
    const at = (t: tf.Tensor) => heapOffset(tf.backend() as unknown as WasmBackendLike, t as never);
    const conv = (x: tf.Tensor4D) => tf.tidy(() => tf.conv2d(x, filter, 1, "same").dataSync().slice());
    let sameOffset = 0;
    await inPrecision("bf16", async () => {
      for (let attempt = 0; attempt < 4; attempt++) {
        const first = input();
        const offset = at(first);
        convertingAs(true, () => conv(first));
        first.dispose();
        const second = input();
        if (at(second) === offset) sameOffset++;
        const reused = convertingAs(true, () => conv(second));
        const fresh = convertingAs(false, () => conv(second));
        assert.equal(reused.reused, 0, "nothing to reuse: a new tensor");
        assert.deepEqual(reused.result, fresh.result);
        second.dispose();
      }
    });
    assert.ok(sameOffset > 0, "the heap never gave the second tensor the first one's offset: the test did not test that case");
    filter.dispose();
  }));
  it("a product's two operands keep their own copies when the pool is full of smaller ones", bf16(async () => {
    const random = seededRandom(13);
    const tensor = (shape: Shape4) => tf.tensor4d(randomTensor(shape, random).values, shape);
    const small = tensor([3, 3, 1, 4]);
    const [x, dy] = [tensor([2, 16, 16, 8]), tensor([2, 16, 16, 8])];
    const filterGradient = () => tf.tidy(() =>
      (tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, { strides: 1, pad: "same", dataFormat: "NHWC", dilations: 1, filterShape: [3, 3, 8, 8] }) as tf.Tensor).dataSync().slice());
    await inPrecision("bf16", async () => {
      // More small conversions than the pool has slots: every slot ends up small.
      for (let i = 0; i < 40; i++) {
        const input = tensor([1, 4, 4, 1]);
        convertingAs(true, () => tf.tidy(() => tf.conv2d(input, small, 1, "same").dataSync()));
        input.dispose();
      }
      const pooled = convertingAs(true, filterGradient);
      const fresh = convertingAs(false, filterGradient);
      assert.deepEqual(pooled.result, fresh.result, "the filter gradient with both operands pooled");
    });
    tf.dispose([small, x, dy]);
  }));
  it("TFJS_BF16=0 keeps fp32, and asking for bf16 where it cannot run gives fp32", () => {
    const saved = process.env[BF16_ENV_VAR];
    process.env[BF16_ENV_VAR] = "0";
    try {
      assert.match(bf16Unavailable() ?? "", /TFJS_BF16=0/);
      assert.equal(useNativePrecision("bf16"), "fp32");
      assert.equal(nativePrecision(), "fp32");
    } finally {
      if (saved === undefined) delete process.env[BF16_ENV_VAR];
      else process.env[BF16_ENV_VAR] = saved;
    }
  });
});

describe("wasm Identity and same-dtype Cast share data safely", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  for (const [name, copy] of [
    ["Identity (tf.clone)", (t: tf.Tensor) => tf.clone(t)],
    ["Cast float32 → float32", (t: tf.Tensor) => tf.cast(t, "float32")],
  ] as const) {
    it(`${name}: the copy outlives the original, and both free their data`, async () => {
      const buffersBefore = tf.memory().numDataBuffers;
      const original = tf.tensor2d([1.5, -2, 3, 4], [2, 2]);
      const copied = copy(original);
      original.dispose();
      assert.deepEqual([...(await copied.data())], [1.5, -2, 3, 4]);
      assert.deepEqual(copied.shape, [2, 2]);
      copied.dispose();
      assert.equal(tf.memory().numDataBuffers, buffersBefore);
    });
  }

  it("relu's gradient (one kernel on wasm) equals cpu's step·multiply exactly, exact zeros and an odd length included", async () => {
    const x = randomTensor([3, 5, 7]);
    x.values = x.values.map((v, i) => (i % 5 === 0 ? 0 : v));
    const dy = randomTensor([3, 5, 7]);
    const gradient = (backend: string) => onBackend(backend, async () => {
      const [xs, dys] = [tf.tensor(x.values, x.shape), tf.tensor(dy.values, dy.shape)];
      const g = tf.grad((input: tf.Tensor) => tf.relu(input).mul(dys).sum())(xs);
      const values = Array.from(await g.data());
      tf.dispose([xs, dys, g]);
      return values;
    });
    assert.ok(tf.getKernel(RELU_GRAD_KERNEL, "wasm"), "the one-pass kernel is registered on wasm");
    assert.deepEqual((await gradient("wasm")).map((v) => v + 0), (await gradient("cpu")).map((v) => v + 0));
  });

  it("Cast to another dtype still converts", async () => {
    const ints = tf.tensor1d([1, 2, 3], "int32");
    const floats = tf.cast(ints, "float32");
    assert.equal(floats.dtype, "float32");
    assert.deepEqual([...(await floats.data())], [1, 2, 3]);
    tf.dispose([ints, floats]);
  });
});

/** A model without dropout (same result on both backends in training mode) using BN and a depthwise conv. */
function batchNormDepthwiseModel(seed?: number): tf.LayersModel {
  const initializer = (offset: number) => tf.initializers.glorotUniform({ seed: seed === undefined ? undefined : seed * 1000 + offset });
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 3, useBias: false, kernelInitializer: initializer(0) }),
      tf.layers.batchNormalization(),
      tf.layers.activation({ activation: "relu" }),
      // No biases before BN: their true gradient is 0, so only rounding noise would be compared.
      tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, strides: 2, padding: "same", useBias: false, depthwiseInitializer: initializer(1) }),
      tf.layers.batchNormalization(),
      tf.layers.activation({ activation: "relu" }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 10, activation: "softmax", kernelInitializer: initializer(2) }),
    ],
  });
}

/**
 * Gradients of the loss with respect to every weight, for the same weights and batch, and every
 * layer's output on the way.
 */
async function modelGradients(backend: string, config: ModelConfig | "bn-depthwise", weights: HostTensor[], x: HostTensor, labels: Float32Array) {
  return onBackend(backend, async () => {
    const model = config === "bn-depthwise" ? batchNormDepthwiseModel() : buildModel(config);
    model.setWeights(weights.map((w) => tf.tensor(w.values, w.shape)));
    const probe = tf.model({ inputs: model.inputs, outputs: model.layers.map((layer) => layer.output as tf.SymbolicTensor) });
    const xs = tf.tensor(x.values, x.shape);
    const ys = tf.oneHot(tf.tensor1d(labels, "int32"), 10);
    let layerTensors: tf.Tensor[] = [];
    const { grads } = tf.variableGrads(() => {
      // Training mode: batch statistics in BN (these models have no dropout, or are compared without it).
      const outputs = probe.apply(xs, { training: config === "bn-depthwise" }) as tf.Tensor[];
      layerTensors = outputs.map((t) => tf.keep(t));
      return tf.losses.softmaxCrossEntropy(ys, outputs[outputs.length - 1]) as tf.Scalar;
    });
    const gradients = await Promise.all(model.trainableWeights.map(async (w) => (await grads[(w.read() as tf.Variable).name].data()) as Float32Array));
    const layerOutputs = await Promise.all(layerTensors.map(async (t) => (await t.data()) as Float32Array));
    tf.dispose([xs, ys, ...layerTensors, ...Object.values(grads)]);
    model.dispose();
    return { gradients, layerOutputs };
  });
}

/**
 * Where one backend's layer output is exactly 0 and the other's is not: a relu input within
 * rounding of 0, a kink at which the two backends' gradients rightly differ by a whole term.
 * `largest`: the biggest such value relative to the largest magnitude in its layer.
 */
function reluKinks(expected: Float32Array[], actual: Float32Array[]): { count: number; largest: number } {
  let count = 0;
  let largest = 0;
  expected.forEach((layer, l) => {
    const scale = layer.reduce((max, v) => Math.max(max, Math.abs(v)), 0);
    for (let i = 0; i < layer.length; i++) {
      if ((layer[i] === 0) !== (actual[l][i] === 0)) {
        count++;
        largest = Math.max(largest, Math.abs(layer[i] + actual[l][i]) / scale);
      }
    }
  });
  return { count, largest };
}

/**
 * A fresh draw of weights and batch on every run, from a seed that a failure names:
 * GRADIENT_TEST_SEED=N replays it.
 */
function gradientTestSeed(): number {
  const replay = process.env.GRADIENT_TEST_SEED;
  if (replay === undefined) return Math.floor(Math.random() * 1_000_000);
  if (!/^\d+$/.test(replay)) throw new Error(`GRADIENT_TEST_SEED must be a non-negative integer, got "${replay}"`);
  return Number(replay);
}

/** Draws on a kink in a row before the test gives up (for vgg-bn one draw in 13 landed on one: seed 2 of 0–12). */
const MAX_KINK_DRAWS = 8;

describe("whole-model gradients on wasm match cpu", () => {
  for (const name of ["cnn3", "ann", "vgg-bn", "bn-depthwise"]) {
    it(`${name}: every weight's gradient`, async () => {
      const config = name === "bn-depthwise" ? "bn-depthwise" : presetModel(name);
      const firstSeed = gradientTestSeed();
      for (let seed = firstSeed; ; seed++) {
        const weights = await onBackend("cpu", async () => {
          const model = config === "bn-depthwise" ? batchNormDepthwiseModel(seed) : buildModel(config, { seed });
          const values = await Promise.all(model.getWeights().map(async (w) => ({ values: (await w.data()) as Float32Array, shape: w.shape })));
          model.dispose();
          return values;
        });
        const x = randomTensor([4, 28, 28, 1], seededRandom(seed));
        x.values = x.values.map((v) => Math.max(0, v)); // pixels in [0,1), many exact zeros like real images
        const labels = Float32Array.from({ length: 4 }, (_, i) => i * 3);
        const expected = await modelGradients("cpu", config, weights, x, labels);
        const actual = await modelGradients("wasm", config, weights, x, labels);
        const kinks = reluKinks(expected.layerOutputs, actual.layerOutputs);
        if (kinks.count > 0) {
          // The forward passes must still agree to rounding: only values next to 0 may differ in sign.
          assert.ok(kinks.largest < TOLERANCE, `a layer output ${kinks.largest} of its scale is 0 on one backend only (GRADIENT_TEST_SEED=${seed})`);
          assert.ok(seed - firstSeed < MAX_KINK_DRAWS - 1, `${MAX_KINK_DRAWS} draws in a row put a relu input within rounding of 0 (GRADIENT_TEST_SEED=${firstSeed})`);
          continue;
        }
        expected.gradients.forEach((g, i) => {
          const error = maxRelativeError(actual.gradients[i], g);
          assert.ok(error < TOLERANCE, `weight ${i}: max relative error ${error} (GRADIENT_TEST_SEED=${seed})`);
        });
        return;
      }
    });
  }
});

describe("the native addon under signals", () => {
  // oneDNN's JIT matrix products point the stack pointer into the heap while they run: a signal
  // handled there corrupts the heap (oneDNN issue #4845). V8's CPU profiler signals the main thread
  // every 50 µs here; without the addon holding signals back this child aborted in glibc (4 runs of 4).
  it("survives node --cpu-prof sampling 500 matrix products", async (t) => {
    if (!existsSync(ONEDNN_ADDON)) return t.skip("lib/accelerator/native/onednn.node not built");
    const profiles = mkdtempSync(path.join(os.tmpdir(), "cpu-prof-"));
    const code = `const addon = require(${JSON.stringify(ONEDNN_ADDON)});
      const buffer = new ArrayBuffer(4 << 20), m = 128, k = 784, n = 512;
      const geometry = Float64Array.from([1, m, k, n, 0, 0, 1, 1]);
      for (let i = 0; i < 500; i++) addon.matMul(buffer, geometry, 0, 4 * m * k, 4 * (m * k + k * n), 4 * (m * k + k * n + n));
      console.log("done");`;
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ["--cpu-prof", "--cpu-prof-interval", "50", "--cpu-prof-dir", profiles, "--eval", code], {
        env: { ...process.env, OMP_NUM_THREADS: "2" },
        timeout: 120_000,
      });
      assert.equal(stdout.trim(), "done");
    } finally {
      rmSync(profiles, { recursive: true, force: true });
    }
  });
});
