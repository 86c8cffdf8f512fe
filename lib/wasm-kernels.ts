/**
 * Gradient kernels that the TF.js wasm backend lacks, built from kernels it has, so that the
 * reference models train on wasm. Each is checked against the `cpu` backend in
 * test/wasm-kernels.test.ts.
 *
 * Kernels here work on TensorInfo through the wasm backend's own kernel functions: no
 * tf.Tensor wrappers (wrapping a kernel input adds no reference, so disposing the wrapper
 * would free the caller's data).
 */
import * as tf from "@tensorflow/tfjs";
import type { backend_util as BackendUtil, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs";

const BACKEND = "wasm";

/** The slice of the wasm backend these kernels use. */
interface WasmBackendLike {
  disposeData(dataId: object): boolean;
}

interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: WasmBackendLike;
  attrs: NamedAttrMap;
}

/** Runs another wasm kernel directly; the caller owns (and must dispose) the result. */
function runWasmKernel(
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
function disposeIntermediates(backend: WasmBackendLike, keep: TensorInfo[], infos: TensorInfo[]): void {
  for (const info of infos) {
    if (!keep.some((k) => k.dataId === info.dataId)) backend.disposeData(info.dataId);
  }
}

/**
 * dW[i,j,c,f] = Σ_{n,y,x} xPadded[n, y·s+i, x·s+j, c] · dy[n,y,x,f]
 *
 * computed as one convolution that wasm runs on XNNPACK: x transposed to [C,Hp,Wp,N] is the
 * "image" (channels = batch), dy transposed to [H',W',N,F] is the "filter", dilated by the
 * forward stride; the [C,kh,kw,F] result is transposed back to [kh,kw,C,F]. x is padded
 * explicitly and the convolution runs `valid`: passing `same` through would pad for the
 * wrong (dilated, huge) filter and give a wrong-shaped gradient.
 */
export function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, dy } = inputs;
  const strides = attrs.strides as [number, number] | number;
  const pad = attrs.pad as BackendUtil.ExplicitPadding | "same" | "valid" | number;
  const dataFormat = attrs.dataFormat as "NHWC" | "NCHW";
  const dimRoundingMode = attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined;
  const filterShape = attrs.filterShape as [number, number, number, number];
  if (dataFormat === "NCHW") {
    throw new Error("Conv2DBackpropFilter on wasm supports only channelsLast (NHWC) data.");
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { top, left } = info.padInfo;
  const [, inHeight, inWidth] = x.shape;
  // Rows/columns the forward pass read: enough for the last output position's window.
  const neededHeight = (info.outHeight - 1) * info.strideHeight + info.filterHeight;
  const neededWidth = (info.outWidth - 1) * info.strideWidth + info.filterWidth;
  const bottom = Math.max(0, neededHeight - inHeight - top);
  const right = Math.max(0, neededWidth - inWidth - left);
  const temporaries: TensorInfo[] = [];
  const track = (t: TensorInfo): TensorInfo => (temporaries.push(t), t);

  try {
    let padded = x;
    if (top + bottom + left + right > 0) {
      padded = track(
        runWasmKernel(
          "PadV2",
          { x },
          { paddings: [[0, 0], [top, bottom], [left, right], [0, 0]], constantValue: 0 },
          backend,
        ),
      );
    }
    const image = track(runWasmKernel("Transpose", { x: padded }, { perm: [3, 1, 2, 0] }, backend));
    const kernel = track(runWasmKernel("Transpose", { x: dy }, { perm: [1, 2, 0, 3] }, backend));
    let convolved = track(
      runWasmKernel(
        "Conv2D",
        { x: image, filter: kernel },
        {
          strides: [1, 1],
          pad: "valid",
          dataFormat: "NHWC",
          dilations: [info.strideHeight, info.strideWidth],
          dimRoundingMode: undefined,
        },
        backend,
      ),
    );
    // Rows or columns of x that no output window reached give extra positions: drop them.
    if (convolved.shape[1] !== info.filterHeight || convolved.shape[2] !== info.filterWidth) {
      convolved = track(
        runWasmKernel(
          "Slice",
          { x: convolved },
          { begin: [0, 0, 0, 0], size: [info.inChannels, info.filterHeight, info.filterWidth, info.outChannels] },
          backend,
        ),
      );
    }
    return runWasmKernel("Transpose", { x: convolved }, { perm: [1, 2, 0, 3] }, backend);
  } finally {
    disposeIntermediates(backend, [x, dy], temporaries);
  }
}

interface KernelOverride {
  kernelName: string;
  kernelFunc: (args: KernelArgs) => TensorInfo;
}

/** Kernels wasm lacks and this project adds. */
const MISSING_KERNELS: KernelOverride[] = [
  { kernelName: "Conv2DBackpropFilter", kernelFunc: conv2DBackpropFilter },
];

const registeredByUs = new Set<string>();

/**
 * Registers the missing kernels on wasm (idempotent; a kernel TF.js itself provides, in a
 * later version, is left alone). Returns the names of the kernels this project provides.
 */
export function registerWasmKernels(): string[] {
  for (const { kernelName, kernelFunc } of MISSING_KERNELS) {
    if (registeredByUs.has(kernelName) || tf.getKernel(kernelName, BACKEND)) continue;
    tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc: kernelFunc as unknown as KernelFunc });
    registeredByUs.add(kernelName);
  }
  return [...registeredByUs];
}
