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
  /** One more owner of the data (a tensor sharing it). */
  incRef(dataId: object): void;
  /** Allocates an output on the wasm heap (contents undefined). */
  makeOutput(shape: number[], dtype: string): TensorInfo;
  /** A view on a tensor's data in the wasm heap; invalid after the next allocation. */
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
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
  if (info.inChannels <= IM2COL_MAX_CHANNELS && x.dtype === "float32" && dy.dtype === "float32") {
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

/**
 * Max-pool gradient as one pass over the output positions in JavaScript on the wasm heap:
 * each dy goes to the first maximum of its window (row-major), as the cpu backend does, so
 * ties (e.g. flat relu(bias) background) get the same gradient. Any window, stride, padding.
 */
export function maxPoolGrad(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, input } = inputs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize as [number, number] | number,
    attrs.strides as [number, number] | number,
    1,
    attrs.pad as "same" | "valid" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
  if (input.dtype !== "float32" || dy.dtype !== "float32") return original(args as never) as TensorInfo;

  const dx = backend.makeOutput(input.shape, "float32");
  // Views only after the allocation: growing the heap detaches earlier ones.
  const dxValues = backend.typedArrayFromHeap(dx) as Float32Array;
  const xValues = backend.typedArrayFromHeap(input) as Float32Array;
  const dyValues = backend.typedArrayFromHeap(dy) as Float32Array;
  dxValues.fill(0);
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const { top, left } = info.padInfo;
  const rowStride = inWidth * channels;
  const imageStride = inHeight * rowStride;
  if (filterHeight === 2 && filterWidth === 2 && strideHeight === 2 && strideWidth === 2 && top === 0 && left === 0 &&
      outHeight * 2 <= inHeight && outWidth * 2 <= inWidth) {
    // The capstone CNN's pooling: disjoint 2×2 windows, unrolled (2× faster than the general loop).
    let dyIndex = 0;
    for (let n = 0; n < batchSize; n++) {
      for (let oy = 0; oy < outHeight; oy++) {
        let base = n * imageStride + 2 * oy * rowStride;
        for (let ox = 0; ox < outWidth; ox++, base += 2 * channels) {
          for (let c = 0; c < channels; c++, dyIndex++) {
            const i0 = base + c;
            const i1 = i0 + channels;
            const i2 = i0 + rowStride;
            const i3 = i2 + channels;
            // First maximum in row-major order wins ties, as on cpu.
            let bestIndex = i0;
            let best = xValues[i0];
            if (xValues[i1] > best) (best = xValues[i1]), (bestIndex = i1);
            if (xValues[i2] > best) (best = xValues[i2]), (bestIndex = i2);
            if (xValues[i3] > best) bestIndex = i3;
            dxValues[bestIndex] = dyValues[dyIndex];
          }
        }
      }
    }
    return dx;
  }
  let dyIndex = 0;
  for (let n = 0; n < batchSize; n++) {
    const imageStart = n * imageStride;
    for (let oy = 0; oy < outHeight; oy++) {
      const yStart = oy * strideHeight - top;
      const yFrom = Math.max(0, yStart);
      const yTo = Math.min(inHeight, yStart + filterHeight);
      for (let ox = 0; ox < outWidth; ox++) {
        const xStart = ox * strideWidth - left;
        const xFrom = Math.max(0, xStart);
        const xTo = Math.min(inWidth, xStart + filterWidth);
        for (let c = 0; c < channels; c++, dyIndex++) {
          let best = -Infinity;
          let bestIndex = -1;
          for (let y = yFrom; y < yTo; y++) {
            let index = imageStart + y * rowStride + xFrom * channels + c;
            for (let x = xFrom; x < xTo; x++, index += channels) {
              const value = xValues[index];
              if (value > best || bestIndex < 0) {
                best = value;
                bestIndex = index;
              }
            }
          }
          if (bestIndex >= 0) dxValues[bestIndex] += dyValues[dyIndex];
        }
      }
    }
  }
  return dx;
}

/**
 * Sum over leading axes (bias gradients: [N,H,W,C] → [C]) in two XNNPACK kernels: an average
 * pool over H·W per image, then a product with a row of (H·W)s over N. The stock kernel
 * transposes the whole input first (~7× slower on the capstone CNN's first conv bias).
 */
export function sum(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
  if (axes.length === x.shape.length && x.dtype === "float32") return fullReduction(x, backend, attrs.keepDims === true, "sum");
  const leading = axes.length > 0 && axes.length < x.shape.length && axes.every((axis, i) => axis === i);
  if (!leading || x.dtype !== "float32") return original(args as never) as TensorInfo;

  const keptShape = x.shape.slice(axes.length);
  const width = keptShape.reduce((a, b) => a * b, 1);
  const outer = x.shape[0];
  const inner = x.shape.slice(1, axes.length).reduce((a, b) => a * b, 1);
  const temporaries: TensorInfo[] = [];
  try {
    // A reshape is a new TensorInfo on the same data: no copy, nothing to dispose.
    let rows: TensorInfo = { dataId: x.dataId, shape: [1, outer, width], dtype: "float32" };
    if (inner > 1) {
      const means = runWasmKernel(
        "AvgPool",
        { x: { dataId: x.dataId, shape: [outer, inner, 1, width], dtype: "float32" } },
        { filterSize: [inner, 1], strides: [inner, 1], pad: "valid", dimRoundingMode: undefined },
        backend,
      );
      temporaries.push(means);
      rows = { dataId: means.dataId, shape: [1, outer, width], dtype: "float32" };
    }
    const weights = runWasmKernel("Fill", {}, { shape: [1, 1, outer], value: inner, dtype: "float32" }, backend);
    temporaries.push(weights);
    const out = runWasmKernel("BatchMatMul", { a: weights, b: rows }, { transposeA: false, transposeB: false }, backend);
    out.shape = attrs.keepDims ? [...axes.map(() => 1), ...keptShape] : keptShape;
    return out;
  } finally {
    for (const t of temporaries) backend.disposeData(t.dataId);
  }
}

/**
 * Sum or mean of every element, accumulated in float64. The stock wasm kernels accumulate
 * in float32 one element after another: over the 47 million pixels of the training set the
 * mean comes out 4.7% too high (0.2995 instead of 0.2860, measured) and a standard
 * deviation 14% too low.
 */
function fullReduction(x: TensorInfo, backend: WasmBackendLike, keepDims: boolean, kind: "sum" | "mean"): TensorInfo {
  const out = backend.makeOutput(keepDims ? x.shape.map(() => 1) : [], "float32");
  const outValues = backend.typedArrayFromHeap(out) as Float32Array;
  const values = backend.typedArrayFromHeap(x) as Float32Array;
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i];
  outValues[0] = kind === "sum" ? total : total / values.length;
  return out;
}

/**
 * Mean of every element in float64 (see fullReduction), or over leading axes (batch-norm
 * moments over N,H,W) as the fast leading-axis sum scaled; others use the stock kernel.
 */
export function mean(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { x } = args.inputs;
  const axes = tf.util.parseAxisParam(args.attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
  if (x.dtype !== "float32" || x.shape.some((d) => d === 0)) return original(args as never) as TensorInfo;
  if (axes.length === x.shape.length) return fullReduction(x, args.backend, args.attrs.keepDims === true, "mean");
  if (!axes.every((axis, i) => axis === i)) return original(args as never) as TensorInfo;
  const total = sum(args, original);
  const values = args.backend.typedArrayFromHeap(total) as Float32Array;
  const count = axes.reduce((n, axis) => n * x.shape[axis], 1);
  for (let i = 0; i < values.length; i++) values[i] /= count;
  return total;
}

/**
 * Tile that repeats a whole block (every repeated axis has extent 1 in x and comes before
 * the others, e.g. a batch-norm [1,1,1,C] over [N,H,W,1]) by doubling copies on the heap;
 * the stock kernel computes an index per element (~100 ms per capstone BN layer).
 */
export function tile(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const reps = attrs.reps as number[];
  const firstKept = reps.findIndex((r) => r === 1) === -1 ? reps.length : reps.findIndex((r) => r === 1);
  const blockRepeat = reps.slice(0, firstKept).every((r, axis) => x.shape[axis] === 1 || r === 1) && reps.slice(firstKept).every((r) => r === 1);
  if (!blockRepeat || x.dtype === "string" || x.dtype === "complex64") return original(args as never) as TensorInfo;
  const outShape = x.shape.map((d, axis) => d * reps[axis]);
  const out = backend.makeOutput(outShape, x.dtype);
  const outValues = backend.typedArrayFromHeap(out);
  const block = backend.typedArrayFromHeap(x);
  outValues.set(block, 0);
  for (let filled = block.length; filled < outValues.length; filled *= 2) {
    outValues.copyWithin(filled, 0, Math.min(filled, outValues.length - filled));
  }
  return out;
}

/**
 * Matrix products with a transpose flag fall back to a scalar loop in wasm (~2 GFLOP/s);
 * transposing the operand explicitly keeps them on XNNPACK. For BatchMatMul and _FusedMatMul.
 */
export function matMulWithoutTransposeFlags(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  if (!attrs.transposeA && !attrs.transposeB) return original(args as never) as TensorInfo;
  const transposeLastTwo = (t: TensorInfo) => {
    const perm = t.shape.map((_, i) => i);
    const rank = perm.length;
    [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
    return runWasmKernel("Transpose", { x: t }, { perm }, backend);
  };
  const temporaries: TensorInfo[] = [];
  try {
    const a = attrs.transposeA ? transposeLastTwo(inputs.a) : inputs.a;
    const b = attrs.transposeB ? transposeLastTwo(inputs.b) : inputs.b;
    if (a !== inputs.a) temporaries.push(a);
    if (b !== inputs.b) temporaries.push(b);
    return original({ ...args, inputs: { ...inputs, a, b }, attrs: { ...attrs, transposeA: false, transposeB: false } } as never) as TensorInfo;
  } finally {
    disposeIntermediates(backend, Object.values(inputs), temporaries);
  }
}

/**
 * Identity shares the input's data instead of copying it: wasm tensors are immutable, as on
 * the cpu backend, which shares too. The engine clones every tensor it keeps for a gradient,
 * so the stock copy cost ~11 ms per capstone CNN training step.
 */
export function identity(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { x } = args.inputs;
  if (x.dtype === "string") return original(args as never) as TensorInfo;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** A cast to the same dtype (the gradient of every engine clone) is an identity. */
export function cast(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { x } = args.inputs;
  if (x.dtype !== args.attrs.dtype || x.dtype === "string") return original(args as never) as TensorInfo;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

type Pad = "same" | "valid" | number | BackendUtil.ExplicitPadding;

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

interface KernelOverride {
  kernelName: string;
  kernelFunc: (args: KernelArgs) => TensorInfo;
}

/** Kernels wasm lacks and this project adds. */
const MISSING_KERNELS: KernelOverride[] = [
  { kernelName: "Conv2DBackpropFilter", kernelFunc: conv2DBackpropFilter },
  { kernelName: "DepthwiseConv2dNativeBackpropFilter", kernelFunc: depthwiseConv2dNativeBackpropFilter },
  { kernelName: "DepthwiseConv2dNativeBackpropInput", kernelFunc: depthwiseConv2dNativeBackpropInput },
];

/** Kernels wasm has but runs slowly; each falls back to the original outside its fast path. */
const FASTER_KERNELS: { kernelName: string; kernelFunc: (args: KernelArgs, original: KernelFunc) => TensorInfo }[] = [
  { kernelName: "Conv2DBackpropInput", kernelFunc: conv2DBackpropInput },
  { kernelName: "MaxPoolGrad", kernelFunc: maxPoolGrad },
  { kernelName: "Sum", kernelFunc: sum },
  { kernelName: "Mean", kernelFunc: mean },
  { kernelName: "Tile", kernelFunc: tile },
  { kernelName: "BatchMatMul", kernelFunc: matMulWithoutTransposeFlags },
  { kernelName: "_FusedMatMul", kernelFunc: matMulWithoutTransposeFlags },
  { kernelName: "Identity", kernelFunc: identity },
  { kernelName: "Cast", kernelFunc: cast },
];

const registeredByUs = new Set<string>();

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
    const original = tf.getKernel(kernelName, BACKEND);
    if (registeredByUs.has(kernelName) || !original) continue;
    tf.unregisterKernel(kernelName, BACKEND);
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      // Keeps the original's set-up, which its fall-back needs if the backend starts later.
      setupFunc: original.setupFunc,
      kernelFunc: ((args: KernelArgs) => kernelFunc(args, original.kernelFunc)) as unknown as KernelFunc,
    });
    registeredByUs.add(kernelName);
  }
  return [...registeredByUs];
}
