// The filter, bias and input gradients of maxPool(relu(conv(x) + b)) over disjoint pool windows, from each window's
// winner alone, on OpenMP's threads over TF.js's NHWC tensors in the wasm heap. A max pool passes each output gradient
// to one pixel of its window (the first maximum in row-major order, as TF.js's cpu backend), and relu passes it on only
// where that maximum is positive: per channel, at most one convolution output in poolHeight × poolWidth carries a
// gradient. oneDNN's convolution gradients multiply the whole zero-filled gradient; these loops multiply only the
// winners', poolHeight × poolWidth times fewer multiply-adds (4x for 2×2 windows), and fewer where relu zeroes a window.
#pragma once
#include <cstdint>

namespace pooledconv {

// x [batch, height, width, channels]; the convolution's output pixel (oy, ox) reads x at
// (oy·strideHeight − padTop + i, ox·strideWidth − padLeft + j), i < kernelHeight, j < kernelWidth, zero outside the
// image; its output [batch, outHeight, outWidth, filters] is pooled in windows of poolHeight × poolWidth with the same
// stride (what does not fill a window is left out).
struct Geometry {
  int64_t batch, height, width, channels, kernelHeight, kernelWidth, filters, outHeight, outWidth;
  int64_t strideHeight, strideWidth, padTop, padLeft, poolHeight, poolWidth;
};
// A filter row (kernelWidth × channels floats) is multiplied in vectors of this many.
constexpr int64_t VECTOR = 8;
// Whether the loops take this geometry (filter rows in whole vectors, windows inside the output) on this CPU (AVX2:
// scripts/build-native.sh builds this file for it). A first layer's one channel does not fit: its winners' gradients
// vectorised over the filters ran slower than first_layer.h's dense loops, which pooledFilterGradient feeds instead.
bool fits(const Geometry& g);
// From x, relu(conv(x) + b) (`activation`, float32, or bfloat16 where activationBf16), the pooled output's gradient dy
// [batch, outHeight / poolHeight, outWidth / poolWidth, filters] and the filter w [kernelHeight, kernelWidth, channels,
// filters]: dw (w's shape), db [filters] and, where dx is given, dx (x's shape). Each thread sums its images in float32,
// the threads' sums are added in thread order: the same result for the same thread count.
void gradients(const Geometry& g, const float* x, const void* activation, bool activationBf16, const float* dy, const float* w, float* dw,
               float* db, float* dx);

}  // namespace pooledconv
