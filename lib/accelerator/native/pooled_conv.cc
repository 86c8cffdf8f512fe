// See pooled_conv.h. Built for AVX2 like pooling.cc (scripts/build-native.sh). Images are split statically over the
// threads, each copied into a zero-bordered buffer. Per image, the windows' winners are listed twice: per filter (where
// each won, and its gradient) and per window element (which filters won there). The filter's gradient sums, per filter,
// its winners' input patches (a filter row is a contiguous run of kernelWidth × channels floats in the bordered image,
// as in the filter); the input gradient sums, per window element, the filters that won there, times their gradients,
// and adds that once to the element's patch of a bordered buffer. Both sums stay in registers (sumRuns).
#include "pooled_conv.h"

#include "lanes.h"

#include <omp.h>

#include <cstring>
#include <vector>

namespace pooledconv {

namespace {
using lanes::Lanes, lanes::load, lanes::store;
static_assert(VECTOR == lanes::WIDTH, "a filter row is multiplied in whole vectors");

float bf16ToFloat(uint16_t bits) {
  const uint32_t wide = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

// out[0 .. U·VECTOR) += Σ_k gradient[k] · from[at[k] .. + U·VECTOR): U independent sums, so that the multiply-adds'
// latency overlaps.
template <int U>
void sumRunsOf(const float* from, const int32_t* at, const float* gradient, int64_t count, float* out) {
  Lanes sum[U] = {};
  for (int64_t k = 0; k < count; k++) {
    const float* p = from + at[k];
    const float v = gradient[k];
    for (int u = 0; u < U; u++) sum[u] += v * load(p + u * VECTOR);
  }
  for (int u = 0; u < U; u++) store(out + u * VECTOR, load(out + u * VECTOR) + sum[u]);
}

// sumRunsOf over a run of `length` floats (whole vectors), four vectors at a time.
void sumRuns(const float* from, const int32_t* at, const float* gradient, int64_t count, float* out, int64_t length) {
  int64_t c = 0;
  for (; c + 4 * VECTOR <= length; c += 4 * VECTOR) sumRunsOf<4>(from + c, at, gradient, count, out + c);
  for (; c < length; c += VECTOR) sumRunsOf<1>(from + c, at, gradient, count, out + c);
}

// Each filter's winner over one window: its value (best) and its index in the window, row-major (which). The first
// maximum in row-major order wins (strictly greater replaces).
template <bool BF16>
void windowWinners(const Geometry& g, const void* activation, int64_t n, int64_t py, int64_t px, float* best, int32_t* which) {
  const int64_t O = g.filters;
  for (int64_t i = 0; i < g.poolHeight; i++) {
    for (int64_t j = 0; j < g.poolWidth; j++) {
      const int64_t from = ((n * g.outHeight + py * g.poolHeight + i) * g.outWidth + px * g.poolWidth + j) * O;
      const int32_t index = static_cast<int32_t>(i * g.poolWidth + j);
      const bool first = index == 0;
#pragma omp simd
      for (int64_t o = 0; o < O; o++) {
        const float a = BF16 ? bf16ToFloat(static_cast<const uint16_t*>(activation)[from + o]) : static_cast<const float*>(activation)[from + o];
        const bool above = first || a > best[o];
        best[o] = above ? a : best[o];
        which[o] = above ? index : which[o];
      }
    }
  }
}

// The offset in the bordered image (cols columns) of the first input that window element `which` of window (py, px)
// reads.
int64_t cornerOf(const Geometry& g, int64_t py, int64_t px, int32_t which, int64_t cols) {
  const int64_t oy = py * g.poolHeight + which / g.poolWidth, ox = px * g.poolWidth + which % g.poolWidth;
  return (oy * g.strideHeight * cols + ox * g.strideWidth) * g.channels;
}

}  // namespace

bool fits(const Geometry& g) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && (g.kernelWidth * g.channels) % VECTOR == 0 &&
         g.poolHeight >= 1 && g.poolWidth >= 1 && g.poolHeight <= g.outHeight && g.poolWidth <= g.outWidth && g.strideHeight >= 1 &&
         g.strideWidth >= 1 &&
         // Offsets in the bordered image are 32-bit.
         ((g.outHeight - 1) * g.strideHeight + g.kernelHeight) * ((g.outWidth - 1) * g.strideWidth + g.kernelWidth) * g.channels < INT32_MAX;
}

void gradients(const Geometry& g, const float* x, const void* activation, bool activationBf16, const float* dy, const float* w, float* dw,
               float* db, float* dx) {
  const int64_t C = g.channels, O = g.filters, KH = g.kernelHeight;
  const int64_t row = g.kernelWidth * C, perFilter = KH * row;  // a filter row and a filter, in floats
  const int64_t pooledHeight = g.outHeight / g.poolHeight, pooledWidth = g.outWidth / g.poolWidth, windows = pooledHeight * pooledWidth;
  // The bordered image spans every input position an output pixel reads.
  const int64_t height = (g.outHeight - 1) * g.strideHeight + KH, cols = (g.outWidth - 1) * g.strideWidth + g.kernelWidth;
  const int64_t imageFloats = height * cols * C;
  // The filter by filter ([filters][kernelHeight][kernelWidth][channels]), for the input gradient.
  std::vector<float> byFilter(dx ? O * perFilter : 0);
  for (int64_t o = 0; dx && o < O; o++)
    for (int64_t i = 0; i < perFilter; i++) byFilter[o * perFilter + i] = w[i * O + o];

  const int threads = omp_get_max_threads();
  const int64_t sumsPerThread = O * (perFilter + 1);
  std::vector<float> partial(static_cast<size_t>(threads) * sumsPerThread, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    // The filter's gradient ([filters][perFilter]), then the bias's.
    float* filterSums = partial.data() + static_cast<size_t>(t) * sumsPerThread;
    float* biasSums = filterSums + O * perFilter;
    std::vector<float> image(imageFloats), gradImage(dx ? imageFloats : 0), best(O);
    std::vector<int32_t> which(O);
    // The winners that carry a gradient, per filter: their offsets in the bordered image, their gradients, their count;
    // per window element (dx only): the filters' offsets in byFilter, their gradients, their count.
    const int64_t elements = windows * g.poolHeight * g.poolWidth;
    std::vector<float> gradient(O * windows), elementGradient(dx ? elements * O : 0);
    std::vector<int32_t> winner(O * windows), elementFilter(dx ? elements * O : 0);
    std::vector<int64_t> count(O), elementCount(dx ? elements : 0);
    for (int64_t n = g.batch * t / T; n < g.batch * (t + 1) / T; n++) {
      for (int64_t r = 0; r < height; r++) {
        const int64_t y = r - g.padTop;
        for (int64_t c = 0; c < cols; c++) {
          const int64_t xx = c - g.padLeft;
          float* to = image.data() + (r * cols + c) * C;
          if (y >= 0 && y < g.height && xx >= 0 && xx < g.width) std::memcpy(to, x + ((n * g.height + y) * g.width + xx) * C, C * sizeof(float));
          else std::memset(to, 0, C * sizeof(float));
        }
      }
      std::fill(count.begin(), count.end(), 0);
      std::fill(elementCount.begin(), elementCount.end(), 0);
      for (int64_t py = 0; py < pooledHeight; py++) {
        for (int64_t px = 0; px < pooledWidth; px++) {
          if (activationBf16) windowWinners<true>(g, activation, n, py, px, best.data(), which.data());
          else windowWinners<false>(g, activation, n, py, px, best.data(), which.data());
          // A winner carries the pooled gradient where relu's output is positive.
          const float* d = dy + ((n * pooledHeight + py) * pooledWidth + px) * O;
          for (int64_t o = 0; o < O; o++) {
            if (!(best[o] > 0.0f) || d[o] == 0.0f) continue;
            winner[o * windows + count[o]] = static_cast<int32_t>(cornerOf(g, py, px, which[o], cols));
            gradient[o * windows + count[o]++] = d[o];
            if (!dx) continue;
            const int64_t e = (py * pooledWidth + px) * g.poolHeight * g.poolWidth + which[o];
            elementFilter[e * O + elementCount[e]] = static_cast<int32_t>(o * perFilter);
            elementGradient[e * O + elementCount[e]++] = d[o];
          }
        }
      }
      for (int64_t o = 0; o < O; o++) {
        const int32_t* where = winner.data() + o * windows;
        const float* v = gradient.data() + o * windows;
        for (int64_t i = 0; i < count[o]; i++) biasSums[o] += v[i];
        for (int64_t i = 0; i < KH; i++) sumRuns(image.data() + i * cols * C, where, v, count[o], filterSums + o * perFilter + i * row, row);
      }
      if (!dx) continue;
      std::fill(gradImage.begin(), gradImage.end(), 0.0f);
      for (int64_t e = 0; e < elements; e++) {
        if (elementCount[e] == 0) continue;
        const int64_t window = e / (g.poolHeight * g.poolWidth);
        float* patch = gradImage.data() + cornerOf(g, window / pooledWidth, window % pooledWidth, static_cast<int32_t>(e % (g.poolHeight * g.poolWidth)), cols);
        for (int64_t i = 0; i < KH; i++)
          sumRuns(byFilter.data() + i * row, elementFilter.data() + e * O, elementGradient.data() + e * O, elementCount[e], patch + i * cols * C, row);
      }
      // The image's part of the bordered gradient; inputs no output pixel reads get 0.
      for (int64_t y = 0; y < g.height; y++) {
        for (int64_t xx = 0; xx < g.width; xx++) {
          float* to = dx + ((n * g.height + y) * g.width + xx) * C;
          const int64_t r = y + g.padTop, c = xx + g.padLeft;
          if (r < height && c < cols) std::memcpy(to, gradImage.data() + (r * cols + c) * C, C * sizeof(float));
          else std::memset(to, 0, C * sizeof(float));
        }
      }
    }
  }
  // Threads' sums added in thread order, into TF.js's layouts ([kernelHeight][kernelWidth][channels][filters]).
  auto sumOver = [&](int64_t at) {
    float sum = 0;
    for (int t = 0; t < threads; t++) sum += partial[static_cast<size_t>(t) * sumsPerThread + at];
    return sum;
  };
  for (int64_t o = 0; o < O; o++) {
    for (int64_t i = 0; i < perFilter; i++) dw[i * O + o] = sumOver(o * perFilter + i);
    db[o] = sumOver(O * perFilter + o);
  }
}

}  // namespace pooledconv
