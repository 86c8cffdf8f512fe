// Max pooling over disjoint windows and its gradient on OpenMP's threads (the runtime oneDNN's threads come from),
// over TF.js's NHWC float32 tensors in the wasm heap. The wasm module computes them on one thread beside oneDNN
// (XNNPACK's max pool; the project's SIMD gradient, lib/accelerator/wasm/simd/kernels.c); with two or more OpenMP
// threads these take their place (lib/accelerator/native/onednn.ts). The same values, ties included.
#pragma once
#include <cstdint>

namespace pooling {

// Disjoint windows (stride = window, no padding) of an NHWC image batch; outHeight × poolHeight ≤ height and
// likewise for widths (what does not fit a window is left out, as TF.js's "valid" pooling does).
struct Pool {
  int64_t batch, height, width, channels, poolHeight, poolWidth, outHeight, outWidth;
};
// The largest channel count taken (the gradient's per-channel state lives on the stack).
constexpr int64_t MAX_CHANNELS = 1024;
// Whether this CPU runs the code built here (AVX2); elsewhere the callers keep the wasm kernels.
bool supported();
// y = each window's maximum.
void maxPool(const Pool& p, const float* x, float* y);
// dx = dy at each window's first maximum in row-major order (as TF.js's cpu backend), 0 elsewhere.
void maxPoolGrad(const Pool& p, const float* x, const float* dy, float* dx);

}  // namespace pooling
