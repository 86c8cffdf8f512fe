// See first_layer.h. Built for AVX2 like pooling.cc (scripts/build-native.sh); the addon runs it only where the CPU
// has AVX2. Images are split statically over the threads; each image is copied into a zero-bordered buffer, so the
// inner loop has no bounds checks, and its dy (≤ 100 KB for 28×28×32) is read from cache once per 8 channels.
#include "first_layer.h"

#include "lanes.h"

#include <immintrin.h>
#include <omp.h>

#include <cstring>
#include <vector>

namespace firstlayer {

using lanes::Lanes, lanes::load, lanes::store;
static_assert(CHANNEL_BLOCK == lanes::WIDTH, "a block of channels is one vector");

namespace {

// The rows × cols input positions an image's output pixels read, from its top left padding corner: the image, zeros around.
void padImage(const Geometry& g, const float* source, int64_t rows, int64_t cols, float* padded) {
  for (int64_t r = 0; r < rows; r++) {
    const int64_t y = r - g.padTop;
    for (int64_t c = 0; c < cols; c++) {
      const int64_t xx = c - g.padLeft;
      padded[r * cols + c] = y >= 0 && y < g.height && xx >= 0 && xx < g.width ? source[y * g.width + xx] : 0.0f;
    }
  }
}

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
      padImage(g, x + n * g.height * g.width, rows, cols, padded.data());
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

typedef uint8_t Bytes __attribute__((vector_size(lanes::WIDTH)));

// Image n's gradient before the pool and relu, into `out` [outHeight, outWidth, channels]: per window and channel, dy
// (rounded to bf16 where BF16) at the window's winner, 0 elsewhere (also where no window reaches).
// winnerOf(at, offset) gives the winners of the eight channels whose window's first pixel is at `at` (window pixel k's
// at + offset(k)) as indexes into the window, NO_WINNER where relu's gradient is 0.
template <bool BF16, typename WinnerOf>
void unpooledGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* dy, int64_t n, float* out, WinnerOf winnerOf) {
  const int64_t C = g.channels, pooledHeight = g.outHeight / poolHeight, pooledWidth = g.outWidth / poolWidth;
  const int64_t base = n * g.outHeight * g.outWidth * C;
  // The rows and columns that no window reaches.
  for (int64_t oy = 0; oy < g.outHeight; oy++) {
    const int64_t from = oy < pooledHeight * poolHeight ? pooledWidth * poolWidth : 0;
    std::memset(out + (oy * g.outWidth + from) * C, 0, (g.outWidth - from) * C * sizeof(float));
  }
  const int64_t size = poolHeight * poolWidth;
  // Where window pixel k is, from the window's first pixel (no division in the loops).
  std::vector<int64_t> offsets(size);
  for (int64_t k = 0; k < size; k++) offsets[k] = ((k / poolWidth) * g.outWidth + k % poolWidth) * C;
  const auto offset = [&](int64_t k) { return offsets[k]; };
  for (int64_t py = 0; py < pooledHeight; py++) {
    for (int64_t px = 0; px < pooledWidth; px++) {
      const int64_t cell = (n * pooledHeight + py) * pooledWidth + px;
      const float* d = dy + cell * C;
      const int64_t corner = (py * poolHeight * g.outWidth + px * poolWidth) * C;
      for (int64_t block = 0; block < C; block += lanes::WIDTH) {
        const Mask which = winnerOf(base + corner + block, cell * C + block, offset);
        Lanes v = load(d + block);
        if constexpr (BF16) v = roundedToBf16(v);
        for (int32_t k = 0; k < size; k++) store(out + corner + offset(k) + block, which == k ? v : Lanes{});
      }
    }
  }
}

// The winners of a window of `size` activations (valueAt(k): pixel k's eight channels, k in row-major order): per
// channel, the index of the first maximum (only a strictly greater value replaces it) where that maximum is positive,
// NO_WINNER where it is not; the maximum itself into `best`.
template <typename ValueAt>
Mask firstMaximum(int64_t size, ValueAt valueAt, Lanes& best) {
  best = valueAt(0);
  Mask which = {};
  for (int32_t k = 1; k < size; k++) {
    const Lanes a = valueAt(k);
    const Mask above = a > best;
    best = above ? a : best;
    which = above ? k : which;
  }
  return best > 0.0f ? which : Mask{} + NO_WINNER;
}

// The winners of a window's eight channels from the activation relu(conv(x) + b) (float32, or bfloat16 where BF16).
template <bool BF16>
auto winnersFromActivation(const void* activation, int64_t size) {
  return [activation, size](int64_t at, int64_t, auto offset) {
    Lanes best;
    return firstMaximum(size, [&](int32_t k) { return activationsAt<BF16>(activation, at + offset(k)); }, best);
  };
}

// The winners pooledForward recorded.
auto recordedWinners(const uint8_t* winners) {
  return [winners](int64_t, int64_t cell, auto) {
    Bytes bytes;
    std::memcpy(&bytes, winners + cell, sizeof bytes);
    return __builtin_convertvector(bytes, Mask);
  };
}

// Eight values in 0-255 stored as bytes (packs with unsigned saturation: __builtin_convertvector extracts them one by one).
void storeBytes(uint8_t* to, Mask values) {
  const __m256i wide = reinterpret_cast<__m256i>(values);
  const __m128i shorts = _mm_packus_epi32(_mm256_castsi256_si128(wide), _mm256_extracti128_si256(wide, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(to), _mm_packus_epi16(shorts, shorts));
}

Lanes fma(float a, Lanes b, Lanes c) { return _mm256_fmadd_ps(_mm256_set1_ps(a), b, c); }

}  // namespace

void filterGradient(const Geometry& g, const float* x, const float* dy, float* dw, float* db) {
  const int64_t imageFloats = g.outHeight * g.outWidth * g.channels;
  sumImages(g, x, dw, db, omp_get_max_threads(), [&](int64_t n, int) { return dy + n * imageFloats; });
}

namespace {

// sumImages over each image's gradient made by unpooledGradient (one image per thread at a time: 26×26×32 floats, 87 KB,
// in cache when the sums read it).
template <bool BF16, typename WinnerOf>
void sumUnpooled(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const float* dy, float* dw, float* db, WinnerOf winnerOf) {
  const int threads = omp_get_max_threads();
  const int64_t imageFloats = g.outHeight * g.outWidth * g.channels;
  std::vector<float> buffers(static_cast<size_t>(threads) * imageFloats);
  sumImages(g, x, dw, db, threads, [&](int64_t n, int t) {
    float* out = buffers.data() + static_cast<size_t>(t) * imageFloats;
    unpooledGradient<BF16>(g, poolHeight, poolWidth, dy, n, out, winnerOf);
    return static_cast<const float*>(out);
  });
}

}  // namespace

void pooledFilterGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const void* activation, bool activationBf16,
                          const float* dy, float* dw, float* db) {
  const int64_t size = poolHeight * poolWidth;
  if (activationBf16) sumUnpooled<true>(g, poolHeight, poolWidth, x, dy, dw, db, winnersFromActivation<true>(activation, size));
  else sumUnpooled<false>(g, poolHeight, poolWidth, x, dy, dw, db, winnersFromActivation<false>(activation, size));
}

void winnerFilterGradient(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const uint8_t* winners, bool bf16, const float* dy,
                          float* dw, float* db) {
  if (bf16) sumUnpooled<true>(g, poolHeight, poolWidth, x, dy, dw, db, recordedWinners(winners));
  else sumUnpooled<false>(g, poolHeight, poolWidth, x, dy, dw, db, recordedWinners(winners));
}

namespace {

// relu(sum + bias), rounded to bf16 where BF16 (oneDNN's bf16 convolution writes its output so).
template <bool BF16>
Lanes activationOf(Lanes sum, Lanes bias) {
  const Lanes z = sum + bias;
  const Lanes a = z > 0.0f ? z : Lanes{};
  return BF16 ? roundedToBf16(a) : a;
}

// COUNT output pixels' activations relu(conv + b) for a block of eight channels, the pixels' windows at `at` in the
// padded image: the taps in row-major order, one rounding each, then the bias, as oneDNN sums them (the tests compare
// bits); the pixels' sums are independent chains, so they overlap in the pipeline.
template <int COUNT, bool BF16>
void activations(const float* const* at, const Lanes* tap, Lanes bias, int64_t cols, Lanes* out) {
  Lanes sum[COUNT] = {};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      for (int q = 0; q < COUNT; q++) sum[q] = fma(at[q][i * cols + j], tap[i * 3 + j], sum[q]);
  for (int q = 0; q < COUNT; q++) out[q] = activationOf<BF16>(sum[q], bias);
}

// The four activations of a 2×2 window at stride 1 (cnn1-3's first layers): each pixel's sum as activations<4> makes it
// (its taps in row-major order), each of the 16 input pixels they read loaded once for all four. (Two windows at once,
// eight chains, spill AVX2's 16 registers and ran ~10% slower.)
template <bool BF16>
void twoByTwoWindow(const float* corner, const Lanes* tap, Lanes bias, int64_t cols, Lanes* out) {
  Lanes sum[4] = {};
  // Unrolled whole: the tap each pixel takes from each input pixel is then known when compiling.
#pragma GCC unroll 4
  for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
      const Lanes v = _mm256_set1_ps(corner[r * cols + c]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; q++) {
        const int i = r - q / 2, j = c - q % 2;
        if (i >= 0 && i < 3 && j >= 0 && j < 3) sum[q] = _mm256_fmadd_ps(v, tap[i * 3 + j], sum[q]);
      }
    }
  for (int q = 0; q < 4; q++) out[q] = activationOf<BF16>(sum[q], bias);
}

template <bool BF16>
void pooledForwardIn(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const float* w, const float* b, float* y, uint8_t* winners) {
  const int64_t C = g.channels, pooledHeight = g.outHeight / poolHeight, pooledWidth = g.outWidth / poolWidth, size = poolHeight * poolWidth;
  const int64_t rows = (g.outHeight - 1) * g.strideHeight + 3, cols = (g.outWidth - 1) * g.strideWidth + 3;
  // bf16 operands are rounded from fp32 as oneDNN's reorders round them; their products are exact in fp32.
  const auto operand = [](float v) { return BF16 ? roundedToBf16(Lanes{} + v)[0] : v; };
  std::vector<float> taps(9 * C);
  for (int64_t i = 0; i < 9 * C; i++) taps[i] = operand(w[i]);
  // Where window pixel k's taps start in the padded image, from the window's first pixel's (no division in the loops).
  std::vector<int64_t> windowOffsets(size);
  for (int64_t k = 0; k < size; k++) windowOffsets[k] = (k / poolWidth) * g.strideHeight * cols + (k % poolWidth) * g.strideWidth;
  const bool twoByTwo = poolHeight == 2 && poolWidth == 2 && g.strideHeight == 1 && g.strideWidth == 1;
#pragma omp parallel
  {
    std::vector<float> padded(rows * cols);
    std::vector<Lanes> activation(size);  // a window's, outside 2×2 windows at stride 1
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.batch; n++) {
      padImage(g, x + n * g.height * g.width, rows, cols, padded.data());
      if constexpr (BF16) for (float& v : padded) v = operand(v);
      for (int64_t block = 0; block < C; block += CHANNEL_BLOCK) {
        Lanes tap[9];
        for (int k = 0; k < 9; k++) tap[k] = load(taps.data() + k * C + block);
        const Lanes bias = load(b + block);
        for (int64_t py = 0; py < pooledHeight; py++) {
          const float* row = padded.data() + py * poolHeight * g.strideHeight * cols;
          // A window's activations a[k] (k in row-major order) into y and the winners.
          const auto pool = [&](int64_t px, const Lanes* a) {
            Lanes best;
            const Mask which = firstMaximum(size, [a](int32_t k) { return a[k]; }, best);
            const int64_t cell = ((n * pooledHeight + py) * pooledWidth + px) * C + block;
            store(y + cell, best);
            storeBytes(winners + cell, which);
          };
          int64_t px = 0;
          if (twoByTwo) {
            for (; px < pooledWidth; px++) {
              Lanes a[4];
              twoByTwoWindow<BF16>(row + px * 2, tap, bias, cols, a);
              pool(px, a);
            }
          }
          for (; px < pooledWidth; px++) {
            const float* corner = row + px * poolWidth * g.strideWidth;
            int32_t k = 0;
            for (; k + 4 <= size; k += 4) {
              const float* at[4] = {corner + windowOffsets[k], corner + windowOffsets[k + 1], corner + windowOffsets[k + 2], corner + windowOffsets[k + 3]};
              activations<4, BF16>(at, tap, bias, cols, activation.data() + k);
            }
            for (; k < size; k++) {
              const float* at[1] = {corner + windowOffsets[k]};
              activations<1, BF16>(at, tap, bias, cols, activation.data() + k);
            }
            pool(px, activation.data());
          }
        }
      }
    }
  }
}

}  // namespace

void pooledForward(const Geometry& g, int64_t poolHeight, int64_t poolWidth, const float* x, const float* w, const float* b, bool bf16, float* y,
                   uint8_t* winners) {
  if (bf16) pooledForwardIn<true>(g, poolHeight, poolWidth, x, w, b, y, winners);
  else pooledForwardIn<false>(g, poolHeight, poolWidth, x, w, b, y, winners);
}

}  // namespace firstlayer
