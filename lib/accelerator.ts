/**
 * The accelerator's one entry point: TF.js initialised on the fastest backend that runs here
 * (native TensorFlow, else wasm with the project's SIMD kernels, threads and oneDNN convolutions,
 * else cpu), the layers and optimizer that train fast on it, and the step profiler the benchmark
 * uses. Code outside lib/accelerator/ imports from here and nothing below it (test/tooling/
 * boundary.test.ts checks); nothing in lib/accelerator/ imports from the rest of the project.
 * A file beside its folder rather than an index.ts inside it: tslab, which runs the notebooks,
 * resolves "./lib/accelerator" to a file and never to a folder's index.
 */
export {
  tf,
  initBackend,
  describeBackend,
  ONEDNN_WORDS,
  parseBackendName,
  BACKEND_NAMES,
  BACKEND_ENV_VAR,
  WASM_THREADS_ENV_VAR,
  type BackendName,
  type BackendInfo,
} from "./accelerator/backend";
export { FastActivation, FastBatchNorm, FastConv2D, FastDropout, FastMaxPooling2D, fuseBatchNormRelu, fuseConvBnBlocks, fuseConvReluPools, MaskGenerator } from "./accelerator/layers";
export { FastAdam, FastMomentum } from "./accelerator/optimizer";
export { FastL1L2, l2Regularizer } from "./accelerator/regularizers";
export { profileStep, kernelFlops, isGradientWrapper, median, type StepProfile, type KernelTime } from "./accelerator/profile";
export { oneDnnActive, useOneDnn, ONEDNN_ENV_VAR, BF16_ENV_VAR, CONV_BN_BLOCKS_ENV_VAR, convBnBlocksActive, useConvBnBlocks, WINNER_GRADIENTS_ENV_VAR, useWinnerGradients, bf16Unavailable, effectivePrecision, PRECISIONS, inPrecision, nativePrecision, oneDnnIsa, type Precision } from "./accelerator/native/onednn";
export { simdKernelsBuilt } from "./accelerator/wasm/simd";
