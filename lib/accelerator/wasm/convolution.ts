/**
 * Convolution gradients on wasm: the filter gradient TF.js lacks there, a faster input
 * gradient, and the depthwise gradients (also missing).
 */
import * as tf from "@tensorflow/tfjs";
import { runWasmKernel, disposeIntermediates, type BackendUtil, type KernelArgs, type KernelFunc, type NamedAttrMap, type Pad, type TensorInfo, type WasmBackendLike } from "./common";
import { heapOffset, simdKernels, simdKernelsBuilt } from "./simd";

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
  const float32 = x.dtype === "float32" && dy.dtype === "float32";
  if (float32 && firstLayerSimdCase(info)) {
    return filterGradient3x3OneChannel(x, dy, info, [top, bottom, left, right], backend);
  }
  if (float32 && info.inChannels <= IM2COL_MAX_CHANNELS) {
    return filterGradientByIm2col(x, dy, info, backend);
  }
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

/**
 * Whether a filter gradient is a first layer's (3×3, one input channel, filters in fours) that the
 * project's SIMD kernel computes: faster than im2col, and than oneDNN on the AMX Xeon (cnn3 step,
 * side by side: 3.1 vs 4.0–5.5 ms). Where the native addon's loops run, they take these cases
 * (lib/accelerator/native/first_layer.cc, on all threads).
 */
export const firstLayerSimdCase = (info: BackendUtil.Conv2DInfo): boolean =>
  info.inChannels === 1 && info.filterHeight === 3 && info.filterWidth === 3 && info.outChannels % 4 === 0 &&
  info.dilationHeight === 1 && info.dilationWidth === 1 && simdKernelsBuilt();

/**
 * A first layer's filter gradient (3×3, one input channel) by the project's SIMD kernel
 * (lib/accelerator/wasm/simd/kernels.c): one pass over dy with the nine taps' sums in registers, where
 * the im2col product below ran at ~3 GFLOP/s (a 9-row product that packs all of dy).
 */
function filterGradient3x3OneChannel(
  x: TensorInfo,
  dy: TensorInfo,
  info: BackendUtil.Conv2DInfo,
  [top, bottom, left, right]: [number, number, number, number],
  backend: WasmBackendLike,
): TensorInfo {
  const padded = top + bottom + left + right > 0
    ? runWasmKernel("PadV2", { x }, { paddings: [[0, 0], [top, bottom], [left, right], [0, 0]], constantValue: 0 }, backend)
    : x;
  try {
    const dw = backend.makeOutput([3, 3, 1, info.outChannels], "float32");
    const at = (t: TensorInfo) => heapOffset(backend, t);
    const [, height, width] = padded.shape;
    simdKernels(backend).conv3x3_c1_filter_grad(
      at(padded), at(dy), info.batchSize, height, width, info.outHeight, info.outWidth, info.strideHeight, info.strideWidth, info.outChannels, at(dw),
    );
    return dw;
  } finally {
    if (padded !== x) backend.disposeData(padded.dataId);
  }
}

/**
 * Below this many input channels, the filter gradient goes through an explicit im2col: for a
 * first layer (1 channel) the convolution above runs at ~2 GFLOP/s (9 output pixels, a huge
 * "filter" to pack), the im2col product 4× faster. With many channels the im2col copy itself
 * (strided reads in JavaScript) costs more than it saves.
 */
const IM2COL_MAX_CHANNELS = 4;

/**
 * dW = Pᵀ·dy, with Pᵀ [kh·kw·C, N·H'·W'] the transposed im2col matrix of x written straight
 * into the wasm heap (zeros where a window reads padding), and dy viewed as [N·H'·W', F].
 */
function filterGradientByIm2col(
  x: TensorInfo,
  dy: TensorInfo,
  info: BackendUtil.Conv2DInfo,
  backend: WasmBackendLike,
): TensorInfo {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  const positions = batchSize * outHeight * outWidth;
  const rows = filterHeight * filterWidth * inChannels;
  const patches = backend.makeOutput([1, rows, positions], "float32");
  try {
    const out = backend.typedArrayFromHeap(patches) as Float32Array;
    const xValues = backend.typedArrayFromHeap(x) as Float32Array;
    let o = 0;
    for (let i = 0; i < filterHeight; i++) {
      for (let j = 0; j < filterWidth; j++) {
        for (let c = 0; c < inChannels; c++) {
          for (let n = 0; n < batchSize; n++) {
            for (let y = 0; y < outHeight; y++) {
              const inY = y * strideHeight + i - top;
              if (inY < 0 || inY >= inHeight) {
                out.fill(0, o, o + outWidth);
                o += outWidth;
                continue;
              }
              const rowStart = (n * inHeight + inY) * inWidth;
              for (let xo = 0; xo < outWidth; xo++, o++) {
                const inX = xo * strideWidth + j - left;
                out[o] = inX >= 0 && inX < inWidth ? xValues[(rowStart + inX) * inChannels + c] : 0;
              }
            }
          }
        }
      }
    }
    const gradients: TensorInfo = { dataId: dy.dataId, shape: [1, positions, outChannels], dtype: "float32" };
    const result = runWasmKernel("BatchMatMul", { a: patches, b: gradients }, { transposeA: false, transposeB: false }, backend);
    result.shape = [filterHeight, filterWidth, inChannels, outChannels];
    return result;
  } finally {
    backend.disposeData(patches.dataId);
  }
}

/**
 * When dx has this many times more pixels than dy (a `valid` conv on a small map, e.g. the
 * capstone CNN's 5×5 → 3×3 third layer), the transposed convolution wastes most of its work
 * on padding zeros and dy·Wᵀ followed by col2im is ~2.5× faster. Strided convs always take it.
 */
const COL2IM_MIN_AREA_RATIO = 2;

/**
 * dx by columns: cols = dy·Wᵀ, [N·H'·W', F]·[F, kh·kw·C] on XNNPACK, then each row of cols
 * is added back into the window it came from (col2im), in JavaScript on the wasm heap.
 */
function inputGradientByCol2im(
  dy: TensorInfo,
  filter: TensorInfo,
  info: BackendUtil.Conv2DInfo,
  backend: WasmBackendLike,
): TensorInfo {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  const positions = batchSize * outHeight * outWidth;
  const windowSize = filterHeight * filterWidth * inChannels;
  const cols = runWasmKernel(
    "BatchMatMul",
    {
      a: { dataId: dy.dataId, shape: [1, positions, outChannels], dtype: "float32" },
      b: { dataId: filter.dataId, shape: [1, windowSize, outChannels], dtype: "float32" },
    },
    { transposeA: false, transposeB: true },
    backend,
  );
  try {
    const dx = backend.makeOutput([batchSize, inHeight, inWidth, inChannels], "float32");
    const dxValues = backend.typedArrayFromHeap(dx) as Float32Array;
    const colValues = backend.typedArrayFromHeap(cols) as Float32Array;
    dxValues.fill(0);
    let row = 0;
    for (let n = 0; n < batchSize; n++) {
      for (let y = 0; y < outHeight; y++) {
        for (let x = 0; x < outWidth; x++, row += windowSize) {
          for (let i = 0; i < filterHeight; i++) {
            const inY = y * strideHeight + i - top;
            if (inY < 0 || inY >= inHeight) continue;
            for (let j = 0; j < filterWidth; j++) {
              const inX = x * strideWidth + j - left;
              if (inX < 0 || inX >= inWidth) continue;
              const target = ((n * inHeight + inY) * inWidth + inX) * inChannels;
              const source = row + (i * filterWidth + j) * inChannels;
              for (let c = 0; c < inChannels; c++) dxValues[target + c] += colValues[source + c];
            }
          }
        }
      }
    }
    return dx;
  } finally {
    backend.disposeData(cols.dataId);
  }
}

/**
 * dx of a stride-1 convolution is itself a convolution: dy, padded by (kernel − 1 − pad),
 * convolved with the filter reversed spatially and its in/out channels swapped. It runs on
 * XNNPACK, where the stock wasm kernel is a scalar loop (~10× slower on the capstone CNN).
 */
export function conv2DBackpropInput(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  const strides = attrs.strides as [number, number] | number;
  const inputShape = attrs.inputShape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    attrs.pad as "same" | "valid" | number | BackendUtil.ExplicitPadding,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
  if (attrs.dataFormat !== "NCHW" && dy.dtype === "float32" && filter.dtype === "float32" &&
      (info.strideHeight > 1 || info.strideWidth > 1 ||
       info.inHeight * info.inWidth > COL2IM_MIN_AREA_RATIO * info.outHeight * info.outWidth)) {
    return inputGradientByCol2im(dy, filter, info, backend);
  }
  const padTop = info.filterHeight - 1 - info.padInfo.top;
  const padLeft = info.filterWidth - 1 - info.padInfo.left;
  const padBottom = info.inHeight + info.filterHeight - 1 - info.outHeight - padTop;
  const padRight = info.inWidth + info.filterWidth - 1 - info.outWidth - padLeft;
  const fastPath =
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    attrs.dataFormat !== "NCHW" &&
    dy.dtype === "float32" &&
    Math.min(padTop, padLeft, padBottom, padRight) >= 0;
  if (!fastPath) return original(args as never) as TensorInfo;

  const temporaries: TensorInfo[] = [];
  const track = (t: TensorInfo): TensorInfo => (temporaries.push(t), t);
  try {
    const reversed = track(runWasmKernel("Reverse", { x: filter }, { dims: [0, 1] }, backend));
    const swapped = track(runWasmKernel("Transpose", { x: reversed }, { perm: [0, 1, 3, 2] }, backend));
    return runWasmKernel(
      "Conv2D",
      { x: dy, filter: swapped },
      {
        strides: [1, 1],
        pad: [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]],
        dataFormat: "NHWC",
        dilations: [1, 1],
        dimRoundingMode: undefined,
      },
      backend,
    );
  } finally {
    disposeIntermediates(backend, [dy, filter], temporaries);
  }
}

/** Geometry of a depthwise convolution (channel multiplier = filter's last dimension). */
function depthwiseInfo(xShape: number[], filterShape: number[], attrs: NamedAttrMap): BackendUtil.Conv2DInfo {
  const dilations = (attrs.dilations as [number, number] | number | undefined) ?? 1;
  if ((Array.isArray(dilations) ? dilations : [dilations]).some((d) => d !== 1)) {
    // As in TF.js's own gradients (and its cpu backend, which ignores them here).
    throw new Error("Depthwise convolution gradients on wasm support dilation 1 only.");
  }
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as [number, number] | number,
    dilations,
    attrs.pad as Pad,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
    true,
  );
}

/**
 * Calls fn(xIndex, dyIndex, filterIndex) for every multiply of a depthwise convolution:
 * x[n, y·s + i − top, x·s + j − left, c] · W[i, j, c, m] → y[n, y, x, c·M + m].
 */
function forEachDepthwiseTap(info: BackendUtil.Conv2DInfo, fn: (xIndex: number, dyIndex: number, filterIndex: number) => void): void {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  const multiplier = outChannels / inChannels;
  for (let n = 0; n < batchSize; n++) {
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < outWidth; x++) {
        const dyBase = ((n * outHeight + y) * outWidth + x) * outChannels;
        for (let i = 0; i < filterHeight; i++) {
          const inY = y * strideHeight + i - top;
          if (inY < 0 || inY >= inHeight) continue;
          for (let j = 0; j < filterWidth; j++) {
            const inX = x * strideWidth + j - left;
            if (inX < 0 || inX >= inWidth) continue;
            const xBase = ((n * inHeight + inY) * inWidth + inX) * inChannels;
            const filterBase = (i * filterWidth + j) * outChannels;
            for (let c = 0; c < inChannels; c++) {
              for (let m = 0; m < multiplier; m++) fn(xBase + c, dyBase + c * multiplier + m, filterBase + c * multiplier + m);
            }
          }
        }
      }
    }
  }
}

/** Missing on wasm: the filter gradient of a depthwise convolution, in JavaScript on the heap. */
export function depthwiseConv2dNativeBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, dy } = inputs;
  const filterShape = attrs.filterShape as number[];
  const info = depthwiseInfo(x.shape, filterShape, attrs);
  const dw = backend.makeOutput(filterShape, "float32");
  const dwValues = backend.typedArrayFromHeap(dw) as Float32Array;
  const xValues = backend.typedArrayFromHeap(x) as Float32Array;
  const dyValues = backend.typedArrayFromHeap(dy) as Float32Array;
  const totals = new Float64Array(dwValues.length);
  forEachDepthwiseTap(info, (xIndex, dyIndex, filterIndex) => {
    totals[filterIndex] += xValues[xIndex] * dyValues[dyIndex];
  });
  dwValues.set(totals);
  return dw;
}

/** Missing on wasm: the input gradient of a depthwise convolution, in JavaScript on the heap. */
export function depthwiseConv2dNativeBackpropInput({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { dy, filter } = inputs;
  const inputShape = attrs.inputShape as number[];
  const info = depthwiseInfo(inputShape, filter.shape, attrs);
  const dx = backend.makeOutput(inputShape, "float32");
  const dxValues = backend.typedArrayFromHeap(dx) as Float32Array;
  const dyValues = backend.typedArrayFromHeap(dy) as Float32Array;
  const filterValues = backend.typedArrayFromHeap(filter) as Float32Array;
  dxValues.fill(0);
  forEachDepthwiseTap(info, (xIndex, dyIndex, filterIndex) => {
    dxValues[xIndex] += dyValues[dyIndex] * filterValues[filterIndex];
  });
  return dx;
}
