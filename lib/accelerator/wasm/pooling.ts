/** Max-pool gradient on wasm: the project's SIMD kernels for disjoint windows, else JavaScript on the heap. */
import * as tf from "@tensorflow/tfjs";
import { type KernelArgs, type KernelFunc, type TensorInfo } from "./common";
import { heapOffset, simdKernels, simdKernelsBuilt } from "./simd";

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
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const { top, left } = info.padInfo;
  // Windows that neither overlap nor reach into padding (e.g. 2×2 pools, or a 7×7 one over a whole 7×7 map).
  const disjoint = strideHeight === filterHeight && strideWidth === filterWidth && top === 0 && left === 0 &&
    outHeight * filterHeight <= inHeight && outWidth * filterWidth <= inWidth;
  const disjoint2x2 = disjoint && filterHeight === 2 && filterWidth === 2;
  if (disjoint && channels % 4 === 0 && simdKernelsBuilt()) {
    // The project's SIMD kernels (lib/accelerator/wasm/simd/kernels.c): four channels at a time, same ties.
    const at = (t: TensorInfo) => heapOffset(backend, t);
    const kernels = simdKernels(backend);
    if (disjoint2x2) kernels.max_pool_grad_2x2(at(input), at(dy), batchSize, inHeight, inWidth, channels, outHeight, outWidth, at(dx));
    else kernels.max_pool_grad_disjoint(at(input), at(dy), batchSize, inHeight, inWidth, channels, filterHeight, filterWidth, outHeight, outWidth, at(dx));
    return dx;
  }
  // Views only after the allocation: growing the heap detaches earlier ones.
  const views: PoolGradViews = {
    dx: backend.typedArrayFromHeap(dx) as Float32Array,
    x: backend.typedArrayFromHeap(input) as Float32Array,
    dy: backend.typedArrayFromHeap(dy) as Float32Array,
  };
  views.dx.fill(0);
  if (disjoint2x2) maxPoolGrad2x2(views, info);
  else maxPoolGradAnyWindow(views, info);
  return dx;
}

interface PoolGradViews {
  dx: Float32Array;
  x: Float32Array;
  dy: Float32Array;
}

/** The capstone CNN's pooling: disjoint 2×2 windows, unrolled (2× faster than the general loop). */
function maxPoolGrad2x2(views: PoolGradViews, info: tf.backend_util.Conv2DInfo): void {
  const { dx: dxValues, x: xValues, dy: dyValues } = views;
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const rowStride = inWidth * channels;
  const imageStride = inHeight * rowStride;
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
}

/** Any window, stride and padding: each dy added at its window's first maximum. */
function maxPoolGradAnyWindow(views: PoolGradViews, info: tf.backend_util.Conv2DInfo): void {
  const { dx: dxValues, x: xValues, dy: dyValues } = views;
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const { top, left } = info.padInfo;
  const rowStride = inWidth * channels;
  const imageStride = inHeight * rowStride;
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
}
