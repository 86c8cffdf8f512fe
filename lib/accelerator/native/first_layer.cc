// See first_layer.h. Built for AVX2 like pooling.cc (scripts/build-native.sh); the addon runs it only where the CPU
// has AVX2. Images are split statically over the threads; each image is copied into a zero-bordered buffer, so the
// inner loop has no bounds checks, and its dy (≤ 100 KB for 28×28×32) is read from cache once per 8 channels.
#include "first_layer.h"

#include "lanes.h"

#include <omp.h>

#include <cstring>
#include <vector>

namespace firstlayer {

using lanes::Lanes, lanes::load;
static_assert(CHANNEL_BLOCK == lanes::WIDTH, "a block of channels is one vector");

void filterGradient(const Geometry& g, const float* x, const float* dy, float* dw, float* db) {
  // Per image: the nine taps' sums, then (for db) dy's own sum per channel.
  const int64_t C = g.channels, taps = 9 * C, sums = taps + (db ? C : 0);
  // The padded image spans every input position an output pixel's window reaches.
  const int64_t rows = (g.outHeight - 1) * g.strideHeight + 3, cols = (g.outWidth - 1) * g.strideWidth + 3;
  const int threads = omp_get_max_threads();
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
      const float* gradient = dy + n * g.outHeight * g.outWidth * C;
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

}  // namespace firstlayer
