// The project's own wasm SIMD kernels (built by scripts/build-wasm.sh with clang, loaded by
// lib/accelerator/wasm/simd.ts). They import TF.js's wasm memory and work on tensors in place, so they
// must not use a stack or static data: every buffer, scratch included, comes from the caller.
// Channels are the last axis; callers guarantee channels % 4 == 0.
#include <wasm_simd128.h>

typedef double f64;

static inline void accumulate(f64* sum, v128_t v) {
  // Two float64 lanes at a time: per-channel sums over ~10^5 rows need more than float32.
  wasm_v128_store(sum, wasm_f64x2_add(wasm_v128_load(sum), wasm_f64x2_promote_low_f32x4(v)));
  wasm_v128_store(sum + 2, wasm_f64x2_add(wasm_v128_load(sum + 2), wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1))));
}

// y = x·scale[c] + shift[c] for every row.
static void affine(const float* x, float* y, const float* scale, const float* shift, int rows, int channels) {
  for (int r = 0; r < rows; r++) {
    const float* xr = x + (long)r * channels;
    float* yr = y + (long)r * channels;
    for (int c = 0; c < channels; c += 4) {
      wasm_v128_store(yr + c, wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(xr + c), wasm_v128_load(scale + c)), wasm_v128_load(shift + c)));
    }
  }
}

// The same, then relu (x < 0 ? 0 : x, as TF.js's relu, NaN kept): one pass where a relu layer after batch norm takes two.
static void affineRelu(const float* x, float* y, const float* scale, const float* shift, int rows, int channels) {
  const v128_t zero = wasm_f32x4_splat(0);
  for (int r = 0; r < rows; r++) {
    const float* xr = x + (long)r * channels;
    float* yr = y + (long)r * channels;
    for (int c = 0; c < channels; c += 4) {
      v128_t v = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(xr + c), wasm_v128_load(scale + c)), wasm_v128_load(shift + c));
      wasm_v128_store(yr + c, wasm_v128_bitselect(zero, v, wasm_f32x4_lt(v, zero)));
    }
  }
}

// Batch norm, training forward: batch mean and (biased) variance per channel, and
// y = γ(x − μ)/√(σ² + ε) + β, or relu(y) where `relu` is 1. `scratch` holds 2·channels doubles.
__attribute__((export_name("batch_norm_forward")))
void batch_norm_forward(const float* x, int rows, int channels, const float* gamma, const float* beta, float epsilon,
                        float* y, float* mean, float* variance, f64* scratch, int relu) {
  f64* sum = scratch;
  f64* squares = scratch + channels;
  for (int c = 0; c < 2 * channels; c++) scratch[c] = 0;
  for (int r = 0; r < rows; r++) {
    const float* xr = x + (long)r * channels;
    for (int c = 0; c < channels; c += 4) {
      v128_t v = wasm_v128_load(xr + c);
      accumulate(sum + c, v);
      accumulate(squares + c, wasm_f32x4_mul(v, v));
    }
  }
  for (int c = 0; c < channels; c++) {
    f64 m = sum[c] / rows;
    f64 var = squares[c] / rows - m * m;
    mean[c] = (float)m;
    variance[c] = (float)(var > 0 ? var : 0);
  }
  // The doubles are read: reuse the scratch as per-channel float scale and shift.
  float* scale = (float*)scratch;
  float* shift = scale + channels;
  for (int c = 0; c < channels; c++) {
    f64 s = gamma[c] / __builtin_sqrt((f64)variance[c] + epsilon);
    scale[c] = (float)s;
    shift[c] = (float)(beta[c] - mean[c] * s);
  }
  if (relu) affineRelu(x, y, scale, shift, rows, channels);
  else affine(x, y, scale, shift, rows, channels);
}

// dy where the relu's output z > 0, else 0 (z null: dy itself), four channels at a time.
static inline v128_t maskedGradient(const float* dy, const float* z, long i) {
  v128_t d = wasm_v128_load(dy + i);
  return z ? wasm_v128_and(d, wasm_f32x4_gt(wasm_v128_load(z + i), wasm_f32x4_splat(0))) : d;
}

// Batch norm, training backward: dβ = Σdy, dγ = σ⁻¹·Σdy·(x − μ),
// dx = γσ⁻¹·(dy − dβ/n − (x − μ)·σ⁻¹·dγ/n), written as dx = a·dy + b·x + k per channel.
// With a relu fused into the forward pass, `z` is its output and dy the gradient of z: each pass
// reads dy where z > 0 (relu's gradient folded in, no pass of its own); z null: no relu.
// `scratch` holds 2·channels doubles.
__attribute__((export_name("batch_norm_backward")))
void batch_norm_backward(const float* dy, const float* x, int rows, int channels, const float* mean, const float* variance,
                         const float* gamma, float epsilon, float* dx, float* dgamma, float* dbeta, f64* scratch, const float* z) {
  f64* sumDy = scratch;
  f64* sumDyX = scratch + channels;
  for (int c = 0; c < 2 * channels; c++) scratch[c] = 0;
  for (int r = 0; r < rows; r++) {
    const float* xr = x + (long)r * channels;
    for (int c = 0; c < channels; c += 4) {
      v128_t d = maskedGradient(dy, z, (long)r * channels + c);
      accumulate(sumDy + c, d);
      accumulate(sumDyX + c, wasm_f32x4_mul(d, wasm_v128_load(xr + c)));
    }
  }
  for (int c = 0; c < channels; c++) {
    f64 inverseStd = 1 / __builtin_sqrt((f64)variance[c] + epsilon);
    f64 centered = sumDyX[c] - mean[c] * sumDy[c];  // Σdy·(x − μ)
    dbeta[c] = (float)sumDy[c];
    dgamma[c] = (float)(inverseStd * centered);
  }
  float* a = (float*)scratch;
  float* b = a + channels;
  float* k = b + channels;  // 3·channels floats fit in 2·channels doubles
  for (int c = 0; c < channels; c++) {
    f64 inverseStd = 1 / __builtin_sqrt((f64)variance[c] + epsilon);
    f64 ac = gamma[c] * inverseStd;
    f64 bc = -ac * inverseStd * dgamma[c] / rows;
    a[c] = (float)ac;
    b[c] = (float)bc;
    k[c] = (float)(-ac * dbeta[c] / rows - bc * mean[c]);
  }
  for (int r = 0; r < rows; r++) {
    const float* xr = x + (long)r * channels;
    float* dxr = dx + (long)r * channels;
    for (int c = 0; c < channels; c += 4) {
      v128_t v = wasm_f32x4_add(wasm_f32x4_mul(maskedGradient(dy, z, (long)r * channels + c), wasm_v128_load(a + c)),
                                wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(xr + c), wasm_v128_load(b + c)), wasm_v128_load(k + c)));
      wasm_v128_store(dxr + c, v);
    }
  }
}

// Max-pool gradient for disjoint 2×2 windows at stride 2 from the top-left corner: each dy goes
// to the first maximum of its window in row-major order (ties as on TF.js's cpu backend);
// rows and columns no window covers get 0.
__attribute__((export_name("max_pool_grad_2x2")))
void max_pool_grad_2x2(const float* x, const float* dy, int batch, int height, int width, int channels,
                       int outHeight, int outWidth, float* dx) {
  __builtin_memset(dx, 0, (unsigned long)batch * height * width * channels * sizeof(float));
  const long row = (long)width * channels;
  const float* d = dy;
  for (int n = 0; n < batch; n++) {
    for (int oy = 0; oy < outHeight; oy++) {
      long base = ((long)n * height + 2 * oy) * row;
      for (int ox = 0; ox < outWidth; ox++, base += 2 * channels) {
        for (int c = 0; c < channels; c += 4, d += 4) {
          long i0 = base + c, i1 = i0 + channels, i2 = i0 + row, i3 = i2 + channels;
          v128_t x0 = wasm_v128_load(x + i0), x1 = wasm_v128_load(x + i1), x2 = wasm_v128_load(x + i2), x3 = wasm_v128_load(x + i3);
          v128_t g = wasm_v128_load(d);
          // Window position k wins where it is strictly above every earlier one and not below any later one.
          v128_t w0 = wasm_v128_and(wasm_f32x4_ge(x0, x1), wasm_v128_and(wasm_f32x4_ge(x0, x2), wasm_f32x4_ge(x0, x3)));
          v128_t w1 = wasm_v128_and(wasm_f32x4_gt(x1, x0), wasm_v128_and(wasm_f32x4_ge(x1, x2), wasm_f32x4_ge(x1, x3)));
          v128_t w2 = wasm_v128_and(wasm_v128_and(wasm_f32x4_gt(x2, x0), wasm_f32x4_gt(x2, x1)), wasm_f32x4_ge(x2, x3));
          v128_t w3 = wasm_v128_and(wasm_v128_and(wasm_f32x4_gt(x3, x0), wasm_f32x4_gt(x3, x1)), wasm_f32x4_gt(x3, x2));
          wasm_v128_store(dx + i0, wasm_v128_and(w0, g));
          wasm_v128_store(dx + i1, wasm_v128_and(w1, g));
          wasm_v128_store(dx + i2, wasm_v128_and(w2, g));
          wasm_v128_store(dx + i3, wasm_v128_and(w3, g));
        }
      }
    }
  }
}

// Max-pool gradient for disjoint windows of any size (stride = window, no padding), e.g. a 7×7 pool that takes a
// whole feature map: four channels at a time, each dy to its window's first maximum in row-major order, as on cpu.
// The winners' offsets ride in a vector; lanes are read one by one (no arrays: the kernels have no stack).
__attribute__((export_name("max_pool_grad_disjoint")))
void max_pool_grad_disjoint(const float* x, const float* dy, int batch, int height, int width, int channels, int poolHeight,
                            int poolWidth, int outHeight, int outWidth, float* dx) {
  __builtin_memset(dx, 0, (unsigned long)batch * height * width * channels * sizeof(float));
  const long row = (long)width * channels;
  const float* d = dy;
  for (int n = 0; n < batch; n++) {
    for (int oy = 0; oy < outHeight; oy++) {
      for (int ox = 0; ox < outWidth; ox++) {
        const long base = ((long)n * height + (long)oy * poolHeight) * row + (long)ox * poolWidth * channels;
        for (int c = 0; c < channels; c += 4, d += 4) {
          const float* corner = x + base + c;
          v128_t best = wasm_v128_load(corner), at = wasm_i32x4_splat(0);
          for (int i = 0; i < poolHeight; i++) {
            for (int j = i == 0 ? 1 : 0; j < poolWidth; j++) {
              const int offset = (int)(i * row + (long)j * channels);
              v128_t v = wasm_v128_load(corner + offset), above = wasm_f32x4_gt(v, best);
              best = wasm_v128_bitselect(v, best, above);
              at = wasm_v128_bitselect(wasm_i32x4_splat(offset), at, above);
            }
          }
          float* out = dx + base + c;
          out[wasm_i32x4_extract_lane(at, 0)] = d[0];
          out[wasm_i32x4_extract_lane(at, 1) + 1] = d[1];
          out[wasm_i32x4_extract_lane(at, 2) + 2] = d[2];
          out[wasm_i32x4_extract_lane(at, 3) + 3] = d[3];
        }
      }
    }
  }
}

// Filter gradient of a 3×3 convolution of one-channel images (a network's first layer):
// dw[3i+j][f] = Σ_{n,y,x} x[n][y·sy+i][x·sx+j] · dy[n][y][x][f], x already padded by the caller.
// Per output row, four filters at a time with the nine taps' sums in registers, while the row's dy stays in cache.
__attribute__((export_name("conv3x3_c1_filter_grad")))
void conv3x3_c1_filter_grad(const float* x, const float* dy, int batch, int height, int width, int outHeight, int outWidth,
                            int strideY, int strideX, int filters, float* dw) {
  __builtin_memset(dw, 0, (unsigned long)9 * filters * sizeof(float));
  for (int n = 0; n < batch; n++) {
    for (int y = 0; y < outHeight; y++) {
      const float* r0 = x + ((long)n * height + (long)y * strideY) * width;
      const float* r1 = r0 + width;
      const float* r2 = r1 + width;
      const float* d = dy + ((long)n * outHeight + y) * (long)outWidth * filters;
      for (int f = 0; f < filters; f += 4) {
        v128_t a0 = wasm_v128_load(dw + f), a1 = wasm_v128_load(dw + filters + f), a2 = wasm_v128_load(dw + 2 * filters + f);
        v128_t a3 = wasm_v128_load(dw + 3 * filters + f), a4 = wasm_v128_load(dw + 4 * filters + f), a5 = wasm_v128_load(dw + 5 * filters + f);
        v128_t a6 = wasm_v128_load(dw + 6 * filters + f), a7 = wasm_v128_load(dw + 7 * filters + f), a8 = wasm_v128_load(dw + 8 * filters + f);
        for (int o = 0; o < outWidth; o++) {
          const int c = o * strideX;
          v128_t g = wasm_v128_load(d + (long)o * filters + f);
          a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_f32x4_splat(r0[c]), g));
          a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_f32x4_splat(r0[c + 1]), g));
          a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_f32x4_splat(r0[c + 2]), g));
          a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_f32x4_splat(r1[c]), g));
          a4 = wasm_f32x4_add(a4, wasm_f32x4_mul(wasm_f32x4_splat(r1[c + 1]), g));
          a5 = wasm_f32x4_add(a5, wasm_f32x4_mul(wasm_f32x4_splat(r1[c + 2]), g));
          a6 = wasm_f32x4_add(a6, wasm_f32x4_mul(wasm_f32x4_splat(r2[c]), g));
          a7 = wasm_f32x4_add(a7, wasm_f32x4_mul(wasm_f32x4_splat(r2[c + 1]), g));
          a8 = wasm_f32x4_add(a8, wasm_f32x4_mul(wasm_f32x4_splat(r2[c + 2]), g));
        }
        wasm_v128_store(dw + f, a0); wasm_v128_store(dw + filters + f, a1); wasm_v128_store(dw + 2 * filters + f, a2);
        wasm_v128_store(dw + 3 * filters + f, a3); wasm_v128_store(dw + 4 * filters + f, a4); wasm_v128_store(dw + 5 * filters + f, a5);
        wasm_v128_store(dw + 6 * filters + f, a6); wasm_v128_store(dw + 7 * filters + f, a7); wasm_v128_store(dw + 8 * filters + f, a8);
      }
    }
  }
}

// Gradient of y = relu(z + bias) with respect to z and bias: dz = dy where y > 0, else 0, and
// dbias[c] = Σ_rows dz[row][c] (float64 sums). `scratch` holds channels doubles.
__attribute__((export_name("relu_bias_grad")))
void relu_bias_grad(const float* dy, const float* y, int rows, int channels, float* dz, float* dbias, f64* scratch) {
  for (int c = 0; c < channels; c++) scratch[c] = 0;
  const v128_t zero = wasm_f32x4_splat(0);
  for (int r = 0; r < rows; r++) {
    const long at = (long)r * channels;
    for (int c = 0; c < channels; c += 4) {
      v128_t g = wasm_v128_and(wasm_v128_load(dy + at + c), wasm_f32x4_gt(wasm_v128_load(y + at + c), zero));
      wasm_v128_store(dz + at + c, g);
      accumulate(scratch + c, g);
    }
  }
  for (int c = 0; c < channels; c++) dbias[c] = (float)scratch[c];
}

// Relu's gradient: dx = dy where x > 0, else 0, in one pass (TF.js: step, then multiply).
__attribute__((export_name("relu_grad")))
void relu_grad(const float* dy, const float* x, int count, float* dx) {
  const v128_t zero = wasm_f32x4_splat(0);
  int i = 0;
  for (; i + 4 <= count; i += 4) wasm_v128_store(dx + i, wasm_v128_and(wasm_v128_load(dy + i), wasm_f32x4_gt(wasm_v128_load(x + i), zero)));
  for (; i < count; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
}

// Σ x[i], accumulated in float64 (four lanes, then the tail): full sums and means over millions of values.
__attribute__((export_name("sum_all")))
f64 sum_all(const float* x, int count) {
  v128_t low = wasm_f64x2_splat(0), high = wasm_f64x2_splat(0);
  int i = 0;
  for (; i + 4 <= count; i += 4) {
    const v128_t v = wasm_v128_load(x + i);
    low = wasm_f64x2_add(low, wasm_f64x2_promote_low_f32x4(v));
    high = wasm_f64x2_add(high, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1)));
  }
  f64 total = (wasm_f64x2_extract_lane(low, 0) + wasm_f64x2_extract_lane(low, 1)) + (wasm_f64x2_extract_lane(high, 0) + wasm_f64x2_extract_lane(high, 1));
  for (; i < count; i++) total += x[i];
  return total;
}

// One Adam step: m' = β₁m + (1 − β₁)g, v' = β₂v + (1 − β₂)g², w' = w − lr·(m'/c₁)/(√(v'/c₂) + ε),
// with c₁ = 1 − β₁ᵗ, c₂ = 1 − β₂ᵗ (float32, as TF.js's Adam).
__attribute__((export_name("adam_update")))
void adam_update(const float* w, const float* m, const float* v, const float* g, int n, float beta1, float beta2, float epsilon,
                 float learningRate, float correction1, float correction2, float* newW, float* newM, float* newV) {
  const v128_t b1 = wasm_f32x4_splat(beta1), b2 = wasm_f32x4_splat(beta2);
  const v128_t a1 = wasm_f32x4_splat(1 - beta1), a2 = wasm_f32x4_splat(1 - beta2);
  const v128_t eps = wasm_f32x4_splat(epsilon), rate = wasm_f32x4_splat(learningRate);
  const v128_t c1 = wasm_f32x4_splat(correction1), c2 = wasm_f32x4_splat(correction2);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t gi = wasm_v128_load(g + i);
    v128_t mi = wasm_f32x4_add(wasm_f32x4_mul(b1, wasm_v128_load(m + i)), wasm_f32x4_mul(a1, gi));
    v128_t vi = wasm_f32x4_add(wasm_f32x4_mul(b2, wasm_v128_load(v + i)), wasm_f32x4_mul(a2, wasm_f32x4_mul(gi, gi)));
    v128_t step = wasm_f32x4_div(wasm_f32x4_mul(rate, wasm_f32x4_div(mi, c1)), wasm_f32x4_add(wasm_f32x4_sqrt(wasm_f32x4_div(vi, c2)), eps));
    wasm_v128_store(newM + i, mi);
    wasm_v128_store(newV + i, vi);
    wasm_v128_store(newW + i, wasm_f32x4_sub(wasm_v128_load(w + i), step));
  }
  for (; i < n; i++) {
    float mi = beta1 * m[i] + (1 - beta1) * g[i];
    float vi = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
    newM[i] = mi;
    newV[i] = vi;
    newW[i] = w[i] - learningRate * (mi / correction1) / (__builtin_sqrtf(vi / correction2) + epsilon);
  }
}

// One step of SGD with momentum (Nesterov's or plain) for one variable, in TF.js's operation order
// and float32 rounding (no fused multiply-add), so it equals its MomentumOptimizer bit for bit:
// a' = momentum·a + g; w' = negRate·(g + a'·momentum) + w (Nesterov) or negRate·a' + w.
__attribute__((export_name("momentum_update")))
void momentum_update(const float* w, const float* a, const float* g, int n, float momentum, float negRate, int nesterov,
                     float* newW, float* newA) {
  const v128_t mu = wasm_f32x4_splat(momentum), c = wasm_f32x4_splat(negRate);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t gi = wasm_v128_load(g + i);
    v128_t ai = wasm_f32x4_add(wasm_f32x4_mul(mu, wasm_v128_load(a + i)), gi);
    v128_t direction = nesterov ? wasm_f32x4_add(gi, wasm_f32x4_mul(ai, mu)) : ai;
    wasm_v128_store(newA + i, ai);
    wasm_v128_store(newW + i, wasm_f32x4_add(wasm_f32x4_mul(c, direction), wasm_v128_load(w + i)));
  }
  for (; i < n; i++) {
    float ai = momentum * a[i] + g[i];
    float direction = nesterov ? g[i] + ai * momentum : ai;
    newA[i] = ai;
    newW[i] = negRate * direction + w[i];
  }
}

// y = x·scale[c] + shift[c] per channel: batch norm at inference, with scale and shift
// precomputed per channel by the caller.
__attribute__((export_name("channel_affine")))
void channel_affine(const float* x, int rows, int channels, const float* scale, const float* shift, float* y) {
  affine(x, y, scale, shift, rows, channels);
}

// One xorshift32 step (13, 17, 5) on four independent states.
static inline v128_t xorshift(v128_t s) {
  s = wasm_v128_xor(s, wasm_i32x4_shl(s, 13));
  s = wasm_v128_xor(s, wasm_u32x4_shr(s, 17));
  return wasm_v128_xor(s, wasm_i32x4_shl(s, 5));
}

// Dropout: y[i] = x[i] · m[i], where m[i] is `scale` if the next draw of lane i % 8 (eight xorshift32
// streams, states s0..s7) is below `threshold` (unsigned), else 0: the mask is drawn and applied in
// one pass, never stored. Applied to the incoming gradient with the same states, it is its own
// gradient. lib/accelerator/layers.ts MaskGenerator.fill draws the same m in JavaScript.
__attribute__((export_name("dropout")))
void dropout(const float* x, float* y, int count, unsigned threshold, float scale, unsigned s0, unsigned s1, unsigned s2,
             unsigned s3, unsigned s4, unsigned s5, unsigned s6, unsigned s7) {
  v128_t low = wasm_u32x4_make(s0, s1, s2, s3), high = wasm_u32x4_make(s4, s5, s6, s7);
  const v128_t limit = wasm_u32x4_splat(threshold), kept = wasm_f32x4_splat(scale);
  int i = 0;
  for (; i + 8 <= count; i += 8) {
    low = xorshift(low);
    high = xorshift(high);
    wasm_v128_store(y + i, wasm_f32x4_mul(wasm_v128_load(x + i), wasm_v128_and(wasm_u32x4_lt(low, limit), kept)));
    wasm_v128_store(y + i + 4, wasm_f32x4_mul(wasm_v128_load(x + i + 4), wasm_v128_and(wasm_u32x4_lt(high, limit), kept)));
  }
  if (i < count) {
    // The last elements: one more draw of each lane, the first count - i of them used.
    low = xorshift(low);
    high = xorshift(high);
    const v128_t a = wasm_v128_and(wasm_u32x4_lt(low, limit), kept), b = wasm_v128_and(wasm_u32x4_lt(high, limit), kept);
    const int left = count - i;  // 1..7; lanes are constants, hence the ladder (an array would need a stack)
    y[i] = x[i] * wasm_f32x4_extract_lane(a, 0);
    if (left > 1) y[i + 1] = x[i + 1] * wasm_f32x4_extract_lane(a, 1);
    if (left > 2) y[i + 2] = x[i + 2] * wasm_f32x4_extract_lane(a, 2);
    if (left > 3) y[i + 3] = x[i + 3] * wasm_f32x4_extract_lane(a, 3);
    if (left > 4) y[i + 4] = x[i + 4] * wasm_f32x4_extract_lane(b, 0);
    if (left > 5) y[i + 5] = x[i + 5] * wasm_f32x4_extract_lane(b, 1);
    if (left > 6) y[i + 6] = x[i + 6] * wasm_f32x4_extract_lane(b, 2);
  }
}
