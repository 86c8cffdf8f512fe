// See first_layer.h. Built for AVX2 like pooling.cc (scripts/build-native.sh); the addon runs it only where the CPU
// has AVX2. Images are split statically over the threads; each image is copied into a zero-bordered buffer, so the
// inner loop has no bounds checks, and its dy (≤ 100 KB for 28×28×32) is read from cache once per 8 channels.
#include "first_layer.h"

#include "lanes.h"

#include <omp.h>

#include <cstring>
#include <vector>

namespace firstlayer {

using lanes::Lanes, lanes::load, lanes::store;
static_assert(CHANNEL_BLOCK == lanes::WIDTH, "a block of channels is one vector");

namespace {

// The filter and bias gradients of `threads` threads' shares of the images, summed as filterGradient documents;
// gradientOf(n, t) gives image n's dy [outHeight, outWidth, channels] on thread t.
template <typename GradientOf>
void sumImages(const Geometry& g, const float* x, float* dw, float* db, int threads, GradientOf gradientOf) {
  // Per image: the nine taps' sums, then (for db) dy's own sum per channel.
  const int64_t C = g.channels, taps = 9 * C, sums = taps + (db ? C : 0);
  // The padded image spans every input position an output pixel's window reaches.
  const int64_t rows = (g.outHeight - 1) * g.strideHeight + 3, cols = (g.outWidth - 1) * g.strideWidth + 3;
  std::vector<double> partial(static_cast<size_t>(threads) * sums, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    std::vector<float> padded(rows * cols), image(sums);
    double* total = partial.data() + static_cast<size_t>(t) * sums;
    for (int64_t n = g.batch * t / T; n < g.batch * (t + 1) / T; n++) {
      const float* source = x + n * g.height * g.width;
      for (int64_t r = 0; r < rows; r++) {
        const int64_t y = r - g.padTop;
        for (int64_t c = 0; c < cols; c++) {
          const int64_t xx = c - g.padLeft;
          padded[r * cols + c] = y >= 0 && y < g.height && xx >= 0 && xx < g.width ? source[y * g.width + xx] : 0.0f;
        }
      }
      const float* gradient = gradientOf(n, t);
      for (int64_t block = 0; block < C; block += CHANNEL_BLOCK) {
        Lanes acc[10] = {};
        for (int64_t oy = 0; oy < g.outHeight; oy++) {
          const float* top = padded.data() + oy * g.strideHeight * cols;
          const float* d = gradient + oy * g.outWidth * C + block;
          for (int64_t ox = 0; ox < g.outWidth; ox++, d += C) {
            const float* p = top + ox * g.strideWidth;
            const Lanes v = load(d);
            acc[0] += p[0] * v, acc[1] += p[1] * v, acc[2] += p[2] * v;
            acc[3] += p[cols] * v, acc[4] += p[cols + 1] * v, acc[5] += p[cols + 2] * v;
            acc[6] += p[2 * cols] * v, acc[7] += p[2 * cols + 1] * v, acc[8] += p[2 * cols + 2] * v;
            acc[9] += v;
          }
        }
        for (int k = 0; k < (db ? 10 : 9); k++) std::memcpy(image.data() + k * C + block, &acc[k], sizeof(Lanes));
      }
      for (int64_t i = 0; i < sums; i++) total[i] += image[i];
    }
  }
  // Threads' sums added in thread order: the same result for the same thread count.
  for (int64_t i = 0; i < sums; i++) {
    double sum = 0;
    for (int t = 0; t < threads; t++) sum += partial[static_cast<size_t>(t) * sums + i];
    (i < taps ? dw[i] : db[i - taps]) = static_cast<float>(sum);
  }
}

typedef uint32_t Bits __attribute__((vector_size(lanes::WIDTH * sizeof(uint32_t))));
typedef int32_t Mask __attribute__((vector_size(lanes::WIDTH * sizeof(int32_t))));
typedef uint16_t HalfBits __attribute__((vector_size(lanes::WIDTH * sizeof(uint16_t))));

// Eight activations from `at`: floats, or bfloat16s widened (their bits are a float's upper half).
template <bool BF16>
Lanes activationsAt(const void* activation, int64_t at) {
  if constexpr (BF16) {
    HalfBits half;
    std::memcpy(&half, static_cast<const uint16_t*>(activation) + at, sizeof half);
    const Bits wide = __builtin_convertvector(half, Bits) << 16;
    Lanes v;
    std::memcpy(&v, &wide, sizeof v);
    return v;
  } else {
    return load(static_cast<const float*>(activation) + at);
  }
}

// v rounded to the nearest bfloat16s (ties to even), as oneDNN's fp32 → bf16 reorder rounds finite values.
Lanes roundedToBf16(Lanes v) {
  Bits bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Image n's gradient before the pool and relu, into `out` [outHeight, outWidth, channels]: per window and channel, dy
// at the winner where the winner is positive, 0 elsewhere (also where no window reaches).
template <bool BF16>
void unpooledGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const void* activation, const float* dy, int64_t n, float* out) {
  const int64_t C = g.channels, pooledHeight = g.outHeight / poolHeight, pooledWidth = g.outWidth / poolWidth;
  const int64_t imageFloats = g.outHeight * g.outWidth * C, base = n * imageFloats;
  // The rows and columns that no window reaches.
  for (int64_t oy = 0; oy < g.outHeight; oy++) {
    const int64_t from = oy < pooledHeight * poolHeight ? pooledWidth * poolWidth : 0;
    std::memset(out + (oy * g.outWidth + from) * C, 0, (g.outWidth - from) * C * sizeof(float));
  }
  const int64_t size = poolHeight * poolWidth;
  for (int64_t py = 0; py < pooledHeight; py++) {
    for (int64_t px = 0; px < pooledWidth; px++) {
      const float* d = dy + ((n * pooledHeight + py) * pooledWidth + px) * C;
      const int64_t corner = (py * poolHeight * g.outWidth + px * poolWidth) * C;
      const auto offset = [&](int64_t k) { return corner + ((k / poolWidth) * g.outWidth + k % poolWidth) * C; };
      for (int64_t block = 0; block < C; block += lanes::WIDTH) {
        // The first maximum in row-major order wins: only a strictly greater value replaces it.
        Lanes best = activationsAt<BF16>(activation, base + corner + block);
        Mask which = {};
        for (int32_t k = 1; k < size; k++) {
          const Lanes a = activationsAt<BF16>(activation, base + offset(k) + block);
          const Mask above = a > best;
          best = above ? a : best;
          which = above ? k : which;
        }
        Lanes v = load(d + block);
        if constexpr (BF16) v = roundedToBf16(v);
        const Mask positive = best > 0.0f;
        for (int32_t k = 0; k < size; k++) {
          const Mask carries = (which == k) & positive;
          store(out + offset(k) + block, carries ? v : Lanes{});
        }
      }
    }
  }
}

}  // namespace

void filterGradient(const Geometry& g, const float* x, const float* dy, float* dw, float* db) {
  const int64_t imageFloats = g.outHeight * g.outWidth * g.channels;
  sumImages(g, x, dw, db, omp_get_max_threads(), [&](int64_t n, int) { return dy + n * imageFloats; });
}

void pooledFilterGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const void* activation, bool activationBf16,
                          const float* dy, float* dw, float* db) {
  const int threads = omp_get_max_threads();
  const int64_t imageFloats = g.outHeight * g.outWidth * g.channels;
  // One image's gradient per thread (26×26×32 floats: 87 KB, in cache when the sums read it).
  std::vector<float> buffers(static_cast<size_t>(threads) * imageFloats);
  sumImages(g, x, dw, db, threads, [&](int64_t n, int t) {
    float* out = buffers.data() + static_cast<size_t>(t) * imageFloats;
    if (activationBf16) unpooledGradient<true>(g, poolHeight, poolWidth, activation, dy, n, out);
    else unpooledGradient<false>(g, poolHeight, poolWidth, activation, dy, n, out);
    return static_cast<const float*>(out);
  });
}

}  // namespace firstlayer
