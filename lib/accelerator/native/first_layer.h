// A first layer (3×3 filters over one input channel) on OpenMP's threads, over TF.js's NHWC float32 tensors in the wasm
// heap: its filter gradient, a pass over dy with nine multiply-adds per element, which oneDNN's kernel for this shape and
// the wasm module's SIMD one (one thread) ran at ~13 GFLOP/s on the AMX Xeon (lib/accelerator/native/onednn.ts); and,
// followed by relu and a max pool (the conv + relu + pool op), its forward pass, which records the pool's winners for
// the backward pass instead of writing out the activation (oneDNN's convolution and pool took twice as long).
#pragma once
#include <cstdint>

namespace firstlayer {

// x [batch, height, width, 1], dy [batch, outHeight, outWidth, channels], dw [3, 3, 1, channels]; output pixel (oy, ox)
// reads x at (oy·strideHeight − padTop + i, ox·strideWidth − padLeft + j), zero outside the image.
struct Geometry {
  int64_t batch, height, width, channels, outHeight, outWidth, strideHeight, strideWidth, padTop, padLeft;
};
// Channels come in vectors of this many (the callers keep other counts elsewhere).
constexpr int64_t CHANNEL_BLOCK = 8;
// dw = Σ over images and output pixels of x's 3×3 neighbourhood times dy, and, where db is given, db = Σ dy per channel
// (a bias's gradient, in the same pass); each image summed in float32, images in float64, in an order that depends only
// on the geometry and the thread count.
void filterGradient(const Geometry& g, const float* x, const float* dy, float* dw, float* db = nullptr);

// The same dw and db for a first layer that a relu and a max pool over disjoint poolHeight × poolWidth windows follow
// (the conv + relu + pool op), from the pooled gradient dy [batch, outHeight / poolHeight, outWidth / poolWidth,
// channels] and the activation relu(conv(x) + b) (float32, or bfloat16 where activationBf16: dy is then rounded to
// bfloat16, as oneDNN's bf16 pass rounds it). The full-size gradient is not written out: each image's is made in a
// cache-sized buffer (each window's winner, the first maximum in row-major order, carries dy where it is positive; every
// other output pixel 0, as oneDNN's pool and relu gradients make it) and summed as filterGradient sums it, so the two
// give the same bits where oneDNN's pool picks the same winners.
void pooledFilterGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const void* activation, bool activationBf16,
                          const float* dy, float* dw, float* db);

// A window's winner, per pooled output and channel: the row-major index in its window of its first maximum where that
// maximum is positive, NO_WINNER where it is not (relu's gradient is 0 there). Windows of up to 255 pixels.
constexpr uint8_t NO_WINNER = 0xFF;
constexpr int64_t MAX_WINDOW = NO_WINNER;

// The conv + relu + pool op's forward pass for a first layer (filters w [3, 3, 1, channels], bias b): y = maxPool(relu(
// conv(x) + b)) [batch, outHeight / poolHeight, outWidth / poolWidth, channels], and each window's winner (a byte per
// element of y) for winnerFilterGradient; the activation itself is never written out. Each output pixel sums its nine
// taps in row-major order with one rounding each, then adds b: oneDNN's fp32 results. In bf16, x and w are rounded to
// bfloat16 first (their products are exact in fp32) and the activation after relu is, as oneDNN's bf16 convolution
// computes them.
void pooledForward(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const float* w, const float* b, bool bf16, float* y,
                   uint8_t* winners);
// pooledFilterGradient's dw and db from the winners pooledForward recorded (dy rounded to bfloat16 where bf16).
void winnerFilterGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const uint8_t* winners, bool bf16, const float* dy,
                          float* dw, float* db);

}  // namespace firstlayer
