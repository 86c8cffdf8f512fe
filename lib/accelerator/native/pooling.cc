// See pooling.h. Plain loops that the compiler vectorises into branch-free selects (scripts/build-native.sh builds
// this file for AVX2; 32-bit offsets, so that the winners' offsets fill a vector as the floats do), split statically
// over images (the gradient) or image rows (the pool).
#include "pooling.h"

#include <cstring>

namespace pooling {

bool supported() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

void maxPool(const Pool& p, const float* x, float* y) {
  const int64_t row = p.width * p.channels, C = p.channels;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < p.batch; n++) {
    for (int64_t oy = 0; oy < p.outHeight; oy++) {
      float* out = y + ((n * p.outHeight + oy) * p.outWidth) * C;
      for (int64_t ox = 0; ox < p.outWidth; ox++, out += C) {
        const float* corner = x + (n * p.height + oy * p.poolHeight) * row + ox * p.poolWidth * C;
        std::memcpy(out, corner, C * sizeof(float));
        for (int64_t i = 0; i < p.poolHeight; i++) {
          for (int64_t j = i == 0 ? 1 : 0; j < p.poolWidth; j++) {
            const float* v = corner + i * row + j * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) out[c] = v[c] > out[c] ? v[c] : out[c];
          }
        }
      }
    }
  }
}

void maxPoolGrad(const Pool& p, const float* x, const float* dy, float* dx) {
  const int64_t row = p.width * p.channels, C = p.channels;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < p.batch; n++) {
    float best[MAX_CHANNELS];
    int32_t at[MAX_CHANNELS];
    std::memset(dx + n * p.height * row, 0, p.height * row * sizeof(float));
    const float* g = dy + n * p.outHeight * p.outWidth * C;
    for (int64_t oy = 0; oy < p.outHeight; oy++) {
      for (int64_t ox = 0; ox < p.outWidth; ox++, g += C) {
        const int64_t base = (n * p.height + oy * p.poolHeight) * row + ox * p.poolWidth * C;
        const float* corner = x + base;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) best[c] = corner[c], at[c] = static_cast<int32_t>(c);
        for (int64_t i = 0; i < p.poolHeight; i++) {
          for (int64_t j = i == 0 ? 1 : 0; j < p.poolWidth; j++) {
            const int64_t offset = i * row + j * C;
            const float* v = corner + offset;
            // Strictly greater: the first maximum in row-major order keeps the gradient, as on cpu.
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
              const bool above = v[c] > best[c];
              best[c] = above ? v[c] : best[c];
              at[c] = above ? static_cast<int32_t>(offset + c) : at[c];
            }
          }
        }
        float* out = dx + base;
        for (int64_t c = 0; c < C; c++) out[at[c]] = g[c];
      }
    }
  }
}

}  // namespace pooling
