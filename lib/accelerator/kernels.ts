/**
 * The kernels this project registers on TF.js's wasm backend: gradient kernels wasm lacks
 * (so that the reference models train there) and faster versions of slow ones, each with
 * its fast-path condition and a fall-back to the stock kernel. All are checked against the
 * `cpu` backend in test/accelerator/kernels.test.ts. The kernels live in lib/accelerator/wasm/.
 */
import * as tf from "@tensorflow/tfjs";
import type { FasterKernel, KernelArgs, KernelFunc, TensorInfo } from "./wasm/common";
import { BACKEND } from "./wasm/common";
import {
  conv2DBackpropFilter,
  conv2DBackpropInput,
  depthwiseConv2dNativeBackpropFilter,
  depthwiseConv2dNativeBackpropInput,
} from "./wasm/convolution";
import { cast, identity, matMulWithoutTransposeFlags, tile } from "./wasm/memory";
import { BATCH_NORM_GRAD_KERNEL, BATCH_NORM_TRAIN_KERNEL, batchNormGrad, batchNormTrain, fusedBatchNorm, MOVING_AVERAGES_KERNEL, movingAverages } from "./wasm/normalization";
import { ADAM_UPDATE_KERNEL, adamUpdate, MOMENTUM_UPDATE_KERNEL, momentumUpdate } from "./wasm/optimizer";
import { RELU_BIAS_GRAD_KERNEL, RELU_GRAD_KERNEL, reluBiasGrad, reluGrad } from "./wasm/activation";
import { maxPoolGrad } from "./wasm/pooling";
import { DROPOUT_KERNEL, dropout } from "./wasm/random";
import { mean, sum } from "./wasm/reduction";
import { simdKernelsBuilt } from "./wasm/simd";
import * as oneDnn from "./native/onednn";

interface KernelOverride {
  kernelName: string;
  kernelFunc: (args: KernelArgs) => TensorInfo | TensorInfo[];
}

/** Kernels wasm lacks and this project adds (from the optimizer updates on, its own: lib/accelerator/optimizer.ts, lib/accelerator/layers.ts). */
const MISSING_KERNELS: KernelOverride[] = [
  { kernelName: "Conv2DBackpropFilter", kernelFunc: conv2DBackpropFilter },
  { kernelName: "DepthwiseConv2dNativeBackpropFilter", kernelFunc: depthwiseConv2dNativeBackpropFilter },
  { kernelName: "DepthwiseConv2dNativeBackpropInput", kernelFunc: depthwiseConv2dNativeBackpropInput },
  { kernelName: ADAM_UPDATE_KERNEL, kernelFunc: adamUpdate },
  { kernelName: MOMENTUM_UPDATE_KERNEL, kernelFunc: momentumUpdate },
  { kernelName: MOVING_AVERAGES_KERNEL, kernelFunc: movingAverages },
  // Batch norm, the conv layers' relu + bias gradient and dropout for lib/accelerator/layers.ts, in the project's wasm SIMD code where
  // scripts/build-wasm.sh built it.
  ...(simdKernelsBuilt()
    ? [
        { kernelName: BATCH_NORM_TRAIN_KERNEL, kernelFunc: batchNormTrain },
        { kernelName: BATCH_NORM_GRAD_KERNEL, kernelFunc: batchNormGrad },
        { kernelName: RELU_BIAS_GRAD_KERNEL, kernelFunc: reluBiasGrad },
        { kernelName: RELU_GRAD_KERNEL, kernelFunc: reluGrad },
        { kernelName: DROPOUT_KERNEL, kernelFunc: dropout },
      ]
    : []),
];

/** Kernels wasm has but runs slowly; each falls back to the original outside its fast path. */
const FASTER_KERNELS: { kernelName: string; kernelFunc: FasterKernel }[] = [
  { kernelName: "Conv2DBackpropInput", kernelFunc: conv2DBackpropInput },
  { kernelName: "MaxPoolGrad", kernelFunc: maxPoolGrad },
  { kernelName: "FusedBatchNorm", kernelFunc: fusedBatchNorm },
  { kernelName: "Sum", kernelFunc: sum },
  { kernelName: "Mean", kernelFunc: mean },
  { kernelName: "Tile", kernelFunc: tile },
  { kernelName: "BatchMatMul", kernelFunc: matMulWithoutTransposeFlags },
  { kernelName: "_FusedMatMul", kernelFunc: matMulWithoutTransposeFlags },
  { kernelName: "Identity", kernelFunc: identity },
  { kernelName: "Cast", kernelFunc: cast },
];

/**
 * Convolutions, matrix products and training-mode batch norm computed natively by oneDNN, and max pooling over disjoint
 * windows on its threads, where lib/accelerator/native/onednn.node is built and loads; each falls back to the kernel
 * registered before it (the stock one or this project's).
 */
const NATIVE_KERNELS: { kernelName: string; kernelFunc: FasterKernel }[] = [
  { kernelName: "Conv2D", kernelFunc: oneDnn.conv2D },
  { kernelName: "FusedConv2D", kernelFunc: oneDnn.conv2D },
  { kernelName: "Conv2DBackpropInput", kernelFunc: oneDnn.conv2DBackpropInput },
  { kernelName: "Conv2DBackpropFilter", kernelFunc: oneDnn.conv2DBackpropFilter },
  { kernelName: "BatchMatMul", kernelFunc: oneDnn.matMul },
  { kernelName: "_FusedMatMul", kernelFunc: oneDnn.matMul },
  { kernelName: BATCH_NORM_TRAIN_KERNEL, kernelFunc: oneDnn.batchNormTrain },
  { kernelName: BATCH_NORM_GRAD_KERNEL, kernelFunc: oneDnn.batchNormGrad },
  { kernelName: "MaxPool", kernelFunc: oneDnn.maxPool },
  { kernelName: "MaxPoolGrad", kernelFunc: oneDnn.maxPoolGrad },
];

const registeredByUs = new Set<string>();
const nativeByUs = new Set<string>();

function wrapKernel(kernelName: string, kernelFunc: FasterKernel): void {
  const original = tf.getKernel(kernelName, BACKEND);
  if (!original) return;
  tf.unregisterKernel(kernelName, BACKEND);
  tf.registerKernel({
    kernelName,
    backendName: BACKEND,
    // Keeps the original's set-up, which its fall-back needs if the backend starts later.
    setupFunc: original.setupFunc,
    kernelFunc: ((args: KernelArgs) => kernelFunc(args, original.kernelFunc)) as unknown as KernelFunc,
  });
}

/**
 * Registers the missing kernels and the faster ones on wasm (idempotent; a missing kernel
 * that TF.js itself provides, in a later version, is left alone). Returns their names.
 */
export function registerWasmKernels(): string[] {
  for (const { kernelName, kernelFunc } of MISSING_KERNELS) {
    if (registeredByUs.has(kernelName) || tf.getKernel(kernelName, BACKEND)) continue;
    tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc: kernelFunc as unknown as KernelFunc });
    registeredByUs.add(kernelName);
  }
  for (const { kernelName, kernelFunc } of FASTER_KERNELS) {
    if (registeredByUs.has(kernelName) || !tf.getKernel(kernelName, BACKEND)) continue;
    wrapKernel(kernelName, kernelFunc);
    registeredByUs.add(kernelName);
  }
  return [...registeredByUs];
}

/**
 * Puts oneDNN's native convolutions in front of the wasm ones when the addon loads (with
 * `threads` OpenMP threads). Returns undefined when they run, else why not.
 */
export function registerNativeConvolutions(threads: number): string | undefined {
  const notLoaded = oneDnn.loadOneDnn(threads);
  if (notLoaded) return notLoaded;
  for (const { kernelName, kernelFunc } of NATIVE_KERNELS) {
    if (nativeByUs.has(kernelName)) continue;
    wrapKernel(kernelName, kernelFunc);
    nativeByUs.add(kernelName);
  }
  // The block ops' kernels (lib/accelerator/layers.ts, ConvBnBlock and ConvReluPool): the project's own, with no wasm kernel behind them.
  for (const [kernelName, kernelFunc] of [
    [oneDnn.CONV_BN_BLOCK_KERNEL, oneDnn.convBnBlock], [oneDnn.CONV_BN_BLOCK_GRAD_KERNEL, oneDnn.convBnBlockGrad],
    [oneDnn.CONV_RELU_POOL_KERNEL, oneDnn.convReluPool], [oneDnn.CONV_RELU_POOL_GRAD_KERNEL, oneDnn.convReluPoolGrad],
  ] as const) {
    if (nativeByUs.has(kernelName) || tf.getKernel(kernelName, BACKEND)) continue;
    tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc: kernelFunc as unknown as KernelFunc });
    nativeByUs.add(kernelName);
  }
  return undefined;
}
