// 2-D convolutions (forward, input gradient, filter gradient), matrix products and training-mode batch norm by oneDNN (Debian's libdnnl),
// reading and writing TF.js wasm tensors in place: every call gets the wasm memory's buffer
// and byte offsets, so nothing is copied in or out. Built by scripts/build-native.sh and
// loaded by lib/accelerator/native/onednn.ts. Layouts are TF.js's: activations NHWC, filters [h, w, in, out].
// Max pooling over disjoint windows and its gradient (pooling.cc) run on the same OpenMP threads.
//
// oneDNN picks its own weight layout (format `any`); the [h, w, in, out] filters are
// reordered to it per call (small) and filter gradients reordered back. Primitives are
// created once per shape (oneDNN JIT-compiles them) and cached.
//
// bf16 mode (setBf16): the operands a product reads (activations, filters, incoming gradients)
// are reordered to bf16 (round to nearest even) into buffers the cache owns, and the product
// accumulates and writes fp32, so TF.js's tensors and weights stay fp32. On a CPU with AMX
// oneDNN then runs its AMX kernels. oneDNN 2.6.3 does not act on the fpmath_mode attribute for
// f32 convolutions (measured: same kernels, same speed), hence the explicit bf16 operands.
// A training step reads each convolution's input twice (forward, filter gradient) and each
// incoming gradient twice (input and filter gradients): the caller names such a tensor by a key
// (TF.js tensors are immutable, so one key is one content), and its bf16 copy is made once and
// kept in a small pool (Converted) until it is the least recently used.
#include <node.h>
#include <pthread.h>
#include <signal.h>
#include <v8.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "first_layer.h"
#include "pooled_conv.h"
#include "pooling.h"

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// One convolution's geometry, as the JavaScript side sends it (a Float64Array of 17).
struct Geometry {
  memory::dim batch, height, width, channels, kh, kw, filters, outHeight, outWidth;
  memory::dim strideH, strideW, dilationH, dilationW, top, left, bottom, right;
  memory::dims src() const { return {batch, channels, height, width}; }
  memory::dims weights() const { return {filters, channels, kh, kw}; }
  memory::dims dst() const { return {batch, filters, outHeight, outWidth}; }
  memory::dims strides() const { return {strideH, strideW}; }
  // oneDNN counts dilation from 0 (no dilation), TF.js from 1.
  memory::dims dilates() const { return {dilationH - 1, dilationW - 1}; }
  memory::dims padL() const { return {top, left}; }
  memory::dims padR() const { return {bottom, right}; }
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

memory::desc plain(const memory::dims& dims, tag format) { return memory::desc(dims, dt::f32, format); }

// Whether products read bf16 operands (setBf16); part of every cache key.
bool bf16 = false;
// The data type of the operands a product reads.
dt operand() { return bf16 ? dt::bf16 : dt::f32; }
memory::desc any(const memory::dims& dims) { return memory::desc(dims, operand(), tag::any); }
memory::desc operandNhwc(const memory::dims& dims) { return memory::desc(dims, operand(), tag::nhwc); }

// bf16 copies of keyed tensors (see the header), least recently used first out. A copy is found
// by its key and checked against the tensor's heap offset and size; a slot is reused by a tensor
// that fits it, so that a training step's shapes recycle the same buffers (no allocation, no
// page faults) once the pool holds a step's worth.
struct Converted {
  double key = 0;
  size_t offset = 0, bytes = 0, capacity = 0;
  uint64_t lastUse = 0, call = 0;
  void* data = nullptr;
};
std::vector<Converted> pool;
uint64_t useClock = 0;
// The native call running now (guarded() counts them): a copy handed out in it stays until it returns,
// since the product reads all its operands at once.
uint64_t currentCall = 0;
// Enough for the copies a step keeps between its forward and backward passes (one per
// convolution, plus the gradient in flight) in the project's deepest presets; a deeper network
// only converts more often. At most 24 of the largest copies are held (vgg-bn, batch 128: ~70 MB).
constexpr size_t POOL_SLOTS = 24;
// Counts of conversions made and avoided, for tests (conversionCounts()).
double conversionsMade = 0, conversionsReused = 0;

// The slot for `key` at `offset` (bytes of bf16): found (hit = true), else a free, fitting or least recently used one.
Converted& slotFor(double key, size_t offset, size_t bytes, bool& hit) {
  useClock++;
  Converted* leastRecent = nullptr;
  Converted* fitting = nullptr;
  for (Converted& c : pool) {
    if (c.key == key && c.offset == offset && c.bytes == bytes) {
      c.lastUse = useClock;
      c.call = currentCall;
      hit = true;
      return c;
    }
    if (c.call == currentCall) continue;
    if (!leastRecent || c.lastUse < leastRecent->lastUse) leastRecent = &c;
    if (c.capacity >= bytes && (!fitting || c.lastUse < fitting->lastUse)) fitting = &c;
  }
  hit = false;
  Converted* slot;
  if (pool.size() < POOL_SLOTS || !leastRecent) {
    pool.emplace_back();
    slot = &pool.back();
  } else {
    slot = fitting ? fitting : leastRecent;
  }
  if (slot->capacity < bytes) {
    std::free(slot->data);
    slot->capacity = (bytes + 63) / 64 * 64;
    slot->data = std::aligned_alloc(64, slot->capacity);
    if (!slot->data) throw std::bad_alloc();
  }
  slot->key = key;
  slot->offset = offset;
  slot->bytes = bytes;
  slot->lastUse = useClock;
  slot->call = currentCall;
  return *slot;
}

// An fp32 tensor of the heap as a product's operand: in bf16 mode converted by `convert` (into
// the pool when the caller keyed the tensor, else into `converted`, owned by the cache entry),
// else the tensor itself.
struct Operand {
  memory::desc half;
  memory converted;
  dnnl::reorder convert;
  static Operand of(const memory::desc& fp32) {
    if (!bf16) return {};
    memory::desc half(fp32.dims(), dt::bf16, strides(fp32));
    return {half, memory(), dnnl::reorder(memory(fp32, engine(), nullptr), memory(half, engine(), nullptr))};
  }
  static memory::dims strides(const memory::desc& d) {
    const auto& s = d.data.format_desc.blocking.strides;
    return memory::dims(s, s + d.data.ndims);
  }
  // `key` > 0 names the tensor's content (see the header); 0: no copy is kept.
  memory from(memory fp32, char* heap, double key) {
    if (!convert) return fp32;
    if (key <= 0) {
      if (!converted) converted = memory(half, engine());
      convert.execute(stream(), fp32, converted);
      conversionsMade++;
      return converted;
    }
    const size_t offset = static_cast<char*>(fp32.get_data_handle()) - heap;
    bool hit;
    Converted& slot = slotFor(key, offset, half.get_size(), hit);
    memory copy(half, engine(), slot.data);
    if (hit) {
      conversionsReused++;
    } else {
      convert.execute(stream(), fp32, copy);
      conversionsMade++;
    }
    return copy;
  }
};

dnnl::convolution_forward::primitive_desc forwardDesc(const Geometry& g, bool bias, bool relu, dnnl::prop_kind kind) {
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  auto src = operandNhwc(g.src()), dst = plain(g.dst(), tag::nhwc);
  if (bias) {
    dnnl::convolution_forward::desc d(kind, dnnl::algorithm::convolution_direct, src, any(g.weights()), plain({g.filters}, tag::x), dst,
                                      g.strides(), g.dilates(), g.padL(), g.padR());
    return dnnl::convolution_forward::primitive_desc(d, attr, engine());
  }
  dnnl::convolution_forward::desc d(kind, dnnl::algorithm::convolution_direct, src, any(g.weights()), dst, g.strides(), g.dilates(),
                                    g.padL(), g.padR());
  return dnnl::convolution_forward::primitive_desc(d, attr, engine());
}

// A cached primitive with its weights in oneDNN's layout and the reorder to or from TF.js's.
struct Entry {
  dnnl::primitive op;
  memory weights;          // in the primitive's layout, owned by oneDNN
  dnnl::reorder toOrFrom;  // user [h, w, in, out] → weights, or the gradient back
  std::string impl;
  Operand input;           // bf16 mode: the activation (or, for the input gradient, the incoming gradient)
  Operand gradient;        // bf16 mode, filter gradient: the incoming gradient
};
std::map<std::string, Entry> cache;

std::string key(const char* kind, const Geometry& g, int flags) {
  std::ostringstream s;
  s << kind << flags << (bf16 ? "bf16" : "f32");
  for (memory::dim v : {g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.filters, g.outHeight, g.outWidth, g.strideH, g.strideW,
                        g.dilationH, g.dilationW, g.top, g.left, g.bottom, g.right})
    s << ',' << v;
  return s.str();
}

memory userWeights(const Geometry& g, void* data) { return memory(plain(g.weights(), tag::hwio), engine(), data); }

// ---- V8 glue ------------------------------------------------------------------------------

using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Value;

char* heapBase(Local<Value> buffer) {
  if (buffer->IsSharedArrayBuffer()) return static_cast<char*>(buffer.As<v8::SharedArrayBuffer>()->GetBackingStore()->Data());
  if (buffer->IsArrayBuffer()) return static_cast<char*>(buffer.As<v8::ArrayBuffer>()->GetBackingStore()->Data());
  throw std::invalid_argument("the first argument must be the wasm memory's buffer");
}

Geometry geometry(Local<Value> value) {
  if (!value->IsFloat64Array() || value.As<v8::Float64Array>()->Length() != 17)
    throw std::invalid_argument("the geometry must be a Float64Array of 17 numbers");
  double d[17];
  value.As<v8::Float64Array>()->CopyContents(d, sizeof d);
  auto i = [&](int k) { return static_cast<memory::dim>(d[k]); };
  return {i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), i(10), i(11), i(12), i(13), i(14), i(15), i(16)};
}

double number(const FunctionCallbackInfo<Value>& args, int index) {
  return args[index]->NumberValue(args.GetIsolate()->GetCurrentContext()).FromMaybe(-1);
}

// A tensor's key for the bf16 pool (argument `index`): a positive number, else 0 (no copy kept).
double keyAt(const FunctionCallbackInfo<Value>& args, int index) {
  const double key = index < args.Length() ? number(args, index) : 0;
  return key > 0 ? key : 0;
}

// Every signal held back for the lifetime of this object on the calling thread, then delivered.
// oneDNN's JIT gemm kernels point the stack pointer into the heap while they run (oneDNN issue
// #4845, also in 2.6): a signal handled there writes its frame over heap memory. V8's CPU profiler
// (node --cpu-prof) sampled the matrix products to a glibc abort within seconds; Ctrl-C or a child's
// exit can land the same way. OpenMP's threads start inside such a call and inherit the mask, so
// process-wide signals go to other threads. Two system calls per call, against ≥ 0.1 ms of work.
struct SignalsHeld {
  sigset_t previous;
  SignalsHeld() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);
  }
  ~SignalsHeld() { pthread_sigmask(SIG_SETMASK, &previous, nullptr); }
};

template <typename Body>
void guarded(const FunctionCallbackInfo<Value>& args, Body body) {
  Isolate* isolate = args.GetIsolate();
  currentCall++;
  try {
    SignalsHeld held;
    body();
  } catch (const std::exception& e) {
    std::string message = std::string("oneDNN: ") + e.what();
    isolate->ThrowException(v8::Exception::Error(v8::String::NewFromUtf8(isolate, message.c_str()).ToLocalChecked()));
  }
}

void setImpl(const FunctionCallbackInfo<Value>& args, const std::string& impl) {
  args.GetReturnValue().Set(v8::String::NewFromUtf8(args.GetIsolate(), impl.c_str()).ToLocalChecked());
}

// The primitive cached under `k`, made on first use.
template <typename Make>
Entry& cached(const std::string& k, Make make) {
  auto found = cache.find(k);
  if (found == cache.end()) found = cache.emplace(k, make()).first;
  return found->second;
}

// An NHWC tensor of the wasm heap at the byte offset in argument `index`.
memory nhwcAt(const memory::dims& dims, char* heap, const FunctionCallbackInfo<Value>& args, int index) {
  return memory(plain(dims, tag::nhwc), engine(), heap + static_cast<size_t>(number(args, index)));
}

// forward(buffer, geometry, x, filter, bias (−1: none), y, relu (0/1), training (0/1), x's key) → implementation name
void Forward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    Geometry g = geometry(args[1]);
    const double biasAt = number(args, 4);
    const bool bias = biasAt >= 0, relu = number(args, 6) != 0, training = number(args, 7) != 0;
    Entry& e = cached(key("fwd", g, bias + 2 * relu + 4 * training), [&] {
      auto pd = forwardDesc(g, bias, relu, training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
      memory weights(pd.weights_desc(), engine());
      dnnl::reorder reorder(memory(plain(g.weights(), tag::hwio), engine(), nullptr), weights);
      return Entry{dnnl::convolution_forward(pd), weights, reorder, pd.impl_info_str(), Operand::of(plain(g.src(), tag::nhwc))};
    });
    memory user = userWeights(g, heap + static_cast<size_t>(number(args, 3)));
    e.toOrFrom.execute(stream(), user, e.weights);
    std::unordered_map<int, memory> io{
        {DNNL_ARG_SRC, e.input.from(nhwcAt(g.src(), heap, args, 2), heap, keyAt(args, 8))},
        {DNNL_ARG_WEIGHTS, e.weights},
        {DNNL_ARG_DST, nhwcAt(g.dst(), heap, args, 5)},
    };
    if (bias) io.emplace(DNNL_ARG_BIAS, memory(plain({g.filters}, tag::x), engine(), heap + static_cast<size_t>(biasAt)));
    e.op.execute(stream(), io);
    stream().wait();
    setImpl(args, e.impl);
  });
}

// backwardData(buffer, geometry, dy, filter, dx, dy's key) → implementation name
void BackwardData(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    Geometry g = geometry(args[1]);
    Entry& e = cached(key("bwd-data", g, 0), [&] {
      auto hint = forwardDesc(g, false, false, dnnl::prop_kind::forward_training);
      dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, plain(g.src(), tag::nhwc), any(g.weights()),
                                              operandNhwc(g.dst()), g.strides(), g.dilates(), g.padL(), g.padR());
      dnnl::convolution_backward_data::primitive_desc pd(d, engine(), hint);
      memory weights(pd.weights_desc(), engine());
      dnnl::reorder reorder(memory(plain(g.weights(), tag::hwio), engine(), nullptr), weights);
      return Entry{dnnl::convolution_backward_data(pd), weights, reorder, pd.impl_info_str(), Operand::of(plain(g.dst(), tag::nhwc))};
    });
    memory user = userWeights(g, heap + static_cast<size_t>(number(args, 3)));
    e.toOrFrom.execute(stream(), user, e.weights);
    e.op.execute(stream(), {{DNNL_ARG_DIFF_DST, e.input.from(nhwcAt(g.dst(), heap, args, 2), heap, keyAt(args, 5))}, {DNNL_ARG_WEIGHTS, e.weights}, {DNNL_ARG_DIFF_SRC, nhwcAt(g.src(), heap, args, 4)}});
    stream().wait();
    setImpl(args, e.impl);
  });
}

// Filter gradients of convolutions whose output has at most this many pixels per image run as one matrix product
// over the input's patches (below): oneDNN's backward-weights kernels parallelise over the output's rows and
// columns, which such outputs have few of. cnn3's third convolution (5×5 → 3×3, 64 → 128 channels): ~2.5× faster
// in bf16 and ~1.2× in fp32 on an AVX512-BF16 EPYC; from 5×5 outputs on, oneDNN's kernel is as fast or faster in
// fp32 (docs/backend.md).
constexpr memory::dim kPatchOutputPixels = 16;

// Writes each output pixel's input patch as a row (im2col): row (n, oh, ow) holds the kh × kw × channels input values
// the pixel's filter taps read, in the filter's [h, w, in] order (zeros where the patch reaches into the padding).
// `bytes` is 4 for fp32 and 2 for bf16 operands.
void writePatches(const Geometry& g, const char* x, size_t bytes, char* patches) {
  const memory::dim rowBytes = g.kh * g.kw * g.channels * bytes, tapBytes = g.channels * bytes;
#pragma omp parallel for collapse(2) schedule(static)
  for (memory::dim n = 0; n < g.batch; n++) {
    for (memory::dim oh = 0; oh < g.outHeight; oh++) {
      for (memory::dim ow = 0; ow < g.outWidth; ow++) {
        char* row = patches + ((n * g.outHeight + oh) * g.outWidth + ow) * rowBytes;
        for (memory::dim i = 0; i < g.kh; i++) {
          for (memory::dim j = 0; j < g.kw; j++) {
            const memory::dim ih = oh * g.strideH + i * g.dilationH - g.top, iw = ow * g.strideW + j * g.dilationW - g.left;
            char* tap = row + (i * g.kw + j) * tapBytes;
            if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) std::memset(tap, 0, tapBytes);
            else std::memcpy(tap, x + ((n * g.height + ih) * g.width + iw) * tapBytes, tapBytes);
          }
        }
      }
    }
  }
}

// The filter gradient as patchesᵀ · dy: [kh·kw·in, pixels] × [pixels, out], written in fp32 straight into the
// [h, w, in, out] tensor.
struct PatchProduct {
  memory::desc patchesT, gradient, filterGradient;
  explicit PatchProduct(const Geometry& g) {
    const memory::dim pixels = g.batch * g.outHeight * g.outWidth, taps = g.kh * g.kw * g.channels;
    patchesT = memory::desc({1, taps, pixels}, operand(), memory::dims{taps * pixels, 1, taps});
    gradient = memory::desc({1, pixels, g.filters}, operand(), memory::dims{pixels * g.filters, g.filters, 1});
    filterGradient = memory::desc({1, taps, g.filters}, dt::f32, memory::dims{taps * g.filters, g.filters, 1});
  }
};

// The cached matrix product; the entry's `weights` holds the patches.
Entry patchesEntry(const Geometry& g) {
  PatchProduct d(g);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(d.patchesT, d.gradient, d.filterGradient), engine());
  return Entry{dnnl::matmul(pd), memory(d.patchesT, engine()), dnnl::reorder(), std::string("patches + matmul ") + pd.impl_info_str(),
               Operand::of(plain(g.src(), tag::nhwc)), Operand::of(plain(g.dst(), tag::nhwc))};
}

// backwardWeights(buffer, geometry, x, dy, dw, x's key, dy's key) → implementation name
void BackwardWeights(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    Geometry g = geometry(args[1]);
    if (g.outHeight * g.outWidth <= kPatchOutputPixels) {
      Entry& e = cached(key("bwd-weights-patches", g, 0), [&] { return patchesEntry(g); });
      memory x = e.input.from(nhwcAt(g.src(), heap, args, 2), heap, keyAt(args, 5));
      memory dy = e.gradient.from(nhwcAt(g.dst(), heap, args, 3), heap, keyAt(args, 6));
      writePatches(g, static_cast<const char*>(x.get_data_handle()), bf16 ? 2 : 4, static_cast<char*>(e.weights.get_data_handle()));
      PatchProduct d(g);
      e.op.execute(stream(), {{DNNL_ARG_SRC, e.weights},
                              {DNNL_ARG_WEIGHTS, memory(d.gradient, engine(), dy.get_data_handle())},
                              {DNNL_ARG_DST, memory(d.filterGradient, engine(), heap + static_cast<size_t>(number(args, 4)))}});
      stream().wait();
      setImpl(args, e.impl);
      return;
    }
    Entry& e = cached(key("bwd-weights", g, 0), [&] {
      auto hint = forwardDesc(g, false, false, dnnl::prop_kind::forward_training);
      // The filter gradient accumulates and is written in fp32 (format `any`, then reordered to [h, w, in, out]).
      dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, operandNhwc(g.src()), memory::desc(g.weights(), dt::f32, tag::any),
                                                 operandNhwc(g.dst()), g.strides(), g.dilates(), g.padL(), g.padR());
      dnnl::convolution_backward_weights::primitive_desc pd(d, engine(), hint);
      memory weights(pd.diff_weights_desc(), engine());
      dnnl::reorder reorder(weights, memory(plain(g.weights(), tag::hwio), engine(), nullptr));
      return Entry{dnnl::convolution_backward_weights(pd), weights, reorder, pd.impl_info_str(), Operand::of(plain(g.src(), tag::nhwc)),
                   Operand::of(plain(g.dst(), tag::nhwc))};
    });
    e.op.execute(stream(), {{DNNL_ARG_SRC, e.input.from(nhwcAt(g.src(), heap, args, 2), heap, keyAt(args, 5))},
                            {DNNL_ARG_DIFF_DST, e.gradient.from(nhwcAt(g.dst(), heap, args, 3), heap, keyAt(args, 6))},
                            {DNNL_ARG_DIFF_WEIGHTS, e.weights}});
    memory user = userWeights(g, heap + static_cast<size_t>(number(args, 4)));
    e.toOrFrom.execute(stream(), e.weights, user);
    stream().wait();
    setImpl(args, e.impl);
  });
}

// A batch of matrix products c = a·b (+ bias, relu): geometry [batch, m, k, n, transposeA,
// transposeB, bias, relu]; a holds [batch, m, k] or, transposed, [batch, k, m]; b [batch, k, n]
// or [batch, n, k]; bias [n]; c [batch, m, n].
struct MatMulEntry {
  dnnl::matmul op;
  memory::desc a, b, bias, c;
  std::string impl;
  Operand convertedA, convertedB;  // bf16 mode
};
std::map<std::string, MatMulEntry> matmuls;

// matMul(buffer, geometry, a, b, bias (−1: none), c) → implementation name
void MatMul(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    if (!args[1]->IsFloat64Array() || args[1].As<v8::Float64Array>()->Length() != 8)
      throw std::invalid_argument("the matrix product's geometry must be a Float64Array of 8 numbers");
    double d[8];
    args[1].As<v8::Float64Array>()->CopyContents(d, sizeof d);
    const memory::dim batch = d[0], m = d[1], k = d[2], n = d[3];
    const bool transposeA = d[4] != 0, transposeB = d[5] != 0, bias = d[6] != 0, relu = d[7] != 0;
    std::ostringstream name;
    for (double v : d) name << v << ',';
    name << (bf16 ? "bf16" : "f32");
    auto found = matmuls.find(name.str());
    if (found == matmuls.end()) {
      memory::desc a({batch, m, k}, dt::f32, transposeA ? memory::dims{m * k, 1, m} : memory::dims{m * k, k, 1});
      memory::desc b({batch, k, n}, dt::f32, transposeB ? memory::dims{k * n, 1, k} : memory::dims{k * n, n, 1});
      memory::desc c({batch, m, n}, dt::f32, memory::dims{m * n, n, 1});
      memory::desc biasDesc({1, 1, n}, dt::f32, memory::dims{n, n, 1});
      dnnl::primitive_attr attr;
      if (relu) {
        dnnl::post_ops ops;
        ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
        attr.set_post_ops(ops);
      }
      Operand convertedA = Operand::of(a), convertedB = Operand::of(b);
      auto operandA = bf16 ? convertedA.half : a, operandB = bf16 ? convertedB.half : b;
      auto desc = bias ? dnnl::matmul::desc(operandA, operandB, biasDesc, c) : dnnl::matmul::desc(operandA, operandB, c);
      dnnl::matmul::primitive_desc pd(desc, attr, engine());
      found = matmuls.emplace(name.str(), MatMulEntry{dnnl::matmul(pd), a, b, biasDesc, c, pd.impl_info_str(), convertedA, convertedB}).first;
    }
    MatMulEntry& e = found->second;
    auto at = [&](int index) { return heap + static_cast<size_t>(number(args, index)); };
    std::unordered_map<int, memory> io{
        {DNNL_ARG_SRC, e.convertedA.from(memory(e.a, engine(), at(2)), heap, 0)},
        {DNNL_ARG_WEIGHTS, e.convertedB.from(memory(e.b, engine(), at(3)), heap, 0)},
        {DNNL_ARG_DST, memory(e.c, engine(), at(5))},
    };
    if (bias) io.emplace(DNNL_ARG_BIAS, memory(e.bias, engine(), at(4)));
    e.op.execute(stream(), io);
    stream().wait();
    setImpl(args, e.impl);
  });
}

// Batch normalisation in training mode over rows × channels (every axis of an NHWC tensor but
// the last folded into rows), as FastBatchNorm (lib/accelerator/layers.ts) needs it: the forward
// pass writes y and the batch statistics (variance biased, as Keras's), the backward pass dx, dγ
// and dβ. oneDNN's JIT kernels run on every OpenMP thread; the wasm SIMD ones on one. Always fp32.
// With relu fused (fuse_norm_relu) the forward pass writes relu(y) and a workspace (which outputs were
// positive) that the backward pass reads; the caller keeps it between the two, as a tensor.
struct NormEntry {
  dnnl::batch_normalization_forward forward;
  dnnl::batch_normalization_backward backward;
  memory::desc data, perChannel;
  memory unusedShift;  // oneDNN 2.6 asks for the shift in the backward pass, which does not read it
  std::string impl;
  memory::desc workspace;  // with relu; else empty
};
std::map<std::string, NormEntry> norms;

NormEntry& norm(memory::dim rows, memory::dim channels, float epsilon, bool relu) {
  std::ostringstream name;
  name << rows << ',' << channels << ',' << epsilon << ',' << relu;
  auto found = norms.find(name.str());
  if (found != norms.end()) return found->second;
  // rows × channels as an NHWC tensor with 1 × 1 images: the same bytes.
  memory::desc data = plain({rows, channels, 1, 1}, tag::nhwc), perChannel = plain({channels}, tag::x);
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift |
                     (relu ? dnnl::normalization_flags::fuse_norm_relu : dnnl::normalization_flags::none);
  dnnl::batch_normalization_forward::primitive_desc forward(
      dnnl::batch_normalization_forward::desc(dnnl::prop_kind::forward_training, data, epsilon, flags), engine());
  dnnl::batch_normalization_backward::primitive_desc backward(
      dnnl::batch_normalization_backward::desc(dnnl::prop_kind::backward, data, data, epsilon, flags), engine(), forward);
  NormEntry entry{dnnl::batch_normalization_forward(forward), dnnl::batch_normalization_backward(backward), data, perChannel,
                  memory(perChannel, engine()), forward.impl_info_str(), relu ? forward.workspace_desc() : memory::desc()};
  return norms.emplace(name.str(), entry).first->second;
}

// The workspace argument (−1: no relu) at `index`.
double workspaceAt(const FunctionCallbackInfo<Value>& args, int index) { return index < args.Length() ? number(args, index) : -1; }

// batchNormWorkspaceBytes(rows, channels, epsilon) → bytes of the workspace a fused relu needs
void BatchNormWorkspaceBytes(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    NormEntry& e = norm(number(args, 0), number(args, 1), number(args, 2), true);
    args.GetReturnValue().Set(v8::Number::New(args.GetIsolate(), static_cast<double>(e.workspace.get_size())));
  });
}

// batchNormForward(buffer, rows, channels, epsilon, x, gamma, beta, y, mean, variance, workspace (−1: no relu)) → implementation name
void BatchNormForward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    const double workspace = workspaceAt(args, 10);
    NormEntry& e = norm(number(args, 1), number(args, 2), number(args, 3), workspace >= 0);
    auto at = [&](int index, const memory::desc& d) { return memory(d, engine(), heap + static_cast<size_t>(number(args, index))); };
    std::unordered_map<int, memory> io{{DNNL_ARG_SRC, at(4, e.data)}, {DNNL_ARG_SCALE, at(5, e.perChannel)}, {DNNL_ARG_SHIFT, at(6, e.perChannel)},
                                       {DNNL_ARG_DST, at(7, e.data)}, {DNNL_ARG_MEAN, at(8, e.perChannel)}, {DNNL_ARG_VARIANCE, at(9, e.perChannel)}};
    if (workspace >= 0) io.emplace(DNNL_ARG_WORKSPACE, at(10, e.workspace));
    e.forward.execute(stream(), io);
    stream().wait();
    setImpl(args, e.impl);
  });
}

// batchNormBackward(buffer, rows, channels, epsilon, dy, x, mean, variance, gamma, dx, dgamma, dbeta, workspace (−1: no relu))
// → implementation name; with relu, dy is the gradient of the relu's output.
void BatchNormBackward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    const double workspace = workspaceAt(args, 12);
    NormEntry& e = norm(number(args, 1), number(args, 2), number(args, 3), workspace >= 0);
    auto at = [&](int index, const memory::desc& d) { return memory(d, engine(), heap + static_cast<size_t>(number(args, index))); };
    std::unordered_map<int, memory> io{{DNNL_ARG_DIFF_DST, at(4, e.data)}, {DNNL_ARG_SRC, at(5, e.data)}, {DNNL_ARG_MEAN, at(6, e.perChannel)},
                                       {DNNL_ARG_VARIANCE, at(7, e.perChannel)}, {DNNL_ARG_SCALE, at(8, e.perChannel)}, {DNNL_ARG_SHIFT, e.unusedShift},
                                       {DNNL_ARG_DIFF_SRC, at(9, e.data)}, {DNNL_ARG_DIFF_SCALE, at(10, e.perChannel)},
                                       {DNNL_ARG_DIFF_SHIFT, at(11, e.perChannel)}};
    if (workspace >= 0) io.emplace(DNNL_ARG_WORKSPACE, at(12, e.workspace));
    e.backward.execute(stream(), io);
    stream().wait();
    setImpl(args, e.impl);
  });
}

// ---- Blocks of two convolution + batch norm + relu layers ---------------------------------------
//
// A vgg-bn block (conv → batch norm + relu → conv → batch norm + relu, convolutions without bias) as one op each way,
// for ConvBnBlock training steps (lib/accelerator/layers.ts). In bf16 mode the block keeps what stays inside it in bf16,
// as PyTorch's autocast does: the convolutions write bf16, batch norm reads and writes bf16 (its statistics, γ and β
// stay fp32), so only the block's edges convert (its input, keyed like a product's operand; an fp32 copy of its output
// for TF.js; the incoming gradient). The activations the backward pass reads (both convolutions' outputs, the middle
// activation, batch norm's two relu workspaces) are tensors the caller keeps between the passes (blockSavedBytes says
// how large). In fp32 mode the same primitives run in fp32, with no conversion at all.
// A max pool over disjoint windows right after the block (vgg-bn's) can run inside the op too: the block's output is then
// the pooled one, so the fp32 copy and the incoming gradient are a pool's window smaller, and the pool reads and writes
// the operand type; its workspace (which input was each window's maximum) is one more tensor the caller keeps.
// A reorder of rvalues (dnnl::reorder::execute takes lvalue references).
void convert(const dnnl::reorder& reorder, memory from, memory to) { reorder.execute(stream(), from, to); }

// A max pool over disjoint windows from the top left (a remainder of rows or columns left out: oneDNN's size check
// divides down, as TF.js's 'valid' pooling), for training: both primitives and the workspace the backward pass reads.
struct MaxPoolOps {
  dnnl::pooling_forward forward;
  dnnl::pooling_backward backward;
  memory::desc workspace;
  std::string impl;
};
MaxPoolOps maxPoolOps(const memory::desc& src, const memory::desc& dst, memory::dim poolHeight, memory::dim poolWidth) {
  const memory::dims window{poolHeight, poolWidth}, noPadding{0, 0};
  const auto max = dnnl::algorithm::pooling_max;
  dnnl::pooling_forward::primitive_desc f(
      dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training, max, src, dst, window, window, noPadding, noPadding), engine());
  dnnl::pooling_backward::primitive_desc b(dnnl::pooling_backward::desc(max, src, dst, window, window, noPadding, noPadding), engine(), f);
  return {dnnl::pooling_forward(f), dnnl::pooling_backward(b), f.workspace_desc(), f.impl_info_str()};
}

// Whether a convolution's filter gradient runs in the addon's loops (first_layer.h: 3×3 over one input channel, filters
// in eights, undilated; oneDNN's kernel for that shape is ~4x slower), and the loops' geometry.
bool firstLayerLoopsFit(const Geometry& g) {
  return g.channels == 1 && g.kh == 3 && g.kw == 3 && g.dilationH == 1 && g.dilationW == 1 && pooling::supported() &&
         g.filters % firstlayer::CHANNEL_BLOCK == 0;
}
firstlayer::Geometry loopsGeometry(const Geometry& g) {
  return {g.batch, g.height, g.width, g.filters, g.outHeight, g.outWidth, g.strideH, g.strideW, g.top, g.left};
}

struct BlockEntry {
  Geometry g1, g2;
  memory::desc x, middle, out, y;  // x and y fp32; middle (z1, a1) and out (z2) in the operand type
  memory::desc perChannel1, perChannel2, workspace1, workspace2;
  dnnl::convolution_forward conv1, conv2;
  memory weights1, weights2;  // the forward passes' weights, in their layouts
  dnnl::reorder toWeights1, toWeights2;
  dnnl::batch_normalization_forward norm1, norm2;
  Operand input;           // bf16 mode: x
  memory normOut;          // bf16 mode: the second batch norm's output, before its fp32 copy y
  dnnl::reorder toOutput;  // bf16 → fp32
  Operand gradient;        // bf16 mode: dy
  dnnl::batch_normalization_backward normGrad1, normGrad2;
  memory unusedShift1, unusedShift2;
  memory dz2, da1, dz1;  // the gradients inside the block, in the operand type
  dnnl::convolution_backward_weights filterGrad1, filterGrad2;  // filterGrad1 not built where the first-layer loops run
  memory dWeights1, dWeights2;  // fp32, in the primitives' layouts
  dnnl::reorder fromDWeights1, fromDWeights2;
  dnnl::convolution_backward_data inputGrad1, inputGrad2;
  memory dataWeights1, dataWeights2;
  dnnl::reorder toDataWeights1, toDataWeights2;
  // A first layer's filter gradient (one input channel) by the addon's loops, as backwardWeights' caller does it
  // (oneDNN's kernel for that shape is ~4x slower): dz1 in fp32 for them.
  bool firstLayerLoops = false;
  memory dz1Fp32;
  dnnl::reorder dz1ToFp32;
  // The max pool inside the op (pooled): the second batch norm's output (normOut) is its input; pooledOut its output in
  // bf16 mode, before the fp32 copy y; da2 its input gradient.
  bool pooled = false;
  MaxPoolOps pool;
  memory pooledOut, da2;
  std::string impl;
};
std::map<std::string, BlockEntry> blocks;

BlockEntry makeBlock(const Geometry& g1, const Geometry& g2, float epsilon1, float epsilon2, memory::dim poolHeight, memory::dim poolWidth) {
  if (g2.batch != g1.batch || g2.channels != g1.filters || g2.height != g1.outHeight || g2.width != g1.outWidth)
    throw std::invalid_argument("the block's second convolution must read the first one's output");
  if (poolHeight < 0 || poolWidth < 0 || (poolHeight == 0) != (poolWidth == 0) ||
      (poolHeight > 0 && (g2.outHeight % poolHeight != 0 || g2.outWidth % poolWidth != 0)))
    throw std::invalid_argument("the block's max pool must tile its output with disjoint windows (or be 0 × 0: none)");
  BlockEntry b;
  b.g1 = g1, b.g2 = g2;
  b.pooled = poolHeight > 0;
  const dt type = operand();
  const auto forward = dnnl::prop_kind::forward_training;
  const auto direct = dnnl::algorithm::convolution_direct;
  const memory::dims pooledDims = b.pooled ? memory::dims{g2.batch, g2.filters, g2.outHeight / poolHeight, g2.outWidth / poolWidth} : g2.dst();
  b.x = plain(g1.src(), tag::nhwc), b.y = plain(pooledDims, tag::nhwc);
  b.middle = memory::desc(g1.dst(), type, tag::nhwc), b.out = memory::desc(g2.dst(), type, tag::nhwc);
  b.perChannel1 = plain({g1.filters}, tag::x), b.perChannel2 = plain({g2.filters}, tag::x);
  auto convolution = [&](const Geometry& g, const memory::desc& src, const memory::desc& dst) {
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(forward, direct, src, any(g.weights()), dst, g.strides(), g.dilates(), g.padL(), g.padR()), engine());
  };
  auto f1 = convolution(g1, operandNhwc(g1.src()), b.middle), f2 = convolution(g2, b.middle, b.out);
  b.conv1 = dnnl::convolution_forward(f1), b.conv2 = dnnl::convolution_forward(f2);
  b.weights1 = memory(f1.weights_desc(), engine()), b.weights2 = memory(f2.weights_desc(), engine());
  b.toWeights1 = dnnl::reorder(memory(plain(g1.weights(), tag::hwio), engine(), nullptr), b.weights1);
  b.toWeights2 = dnnl::reorder(memory(plain(g2.weights(), tag::hwio), engine(), nullptr), b.weights2);
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift | dnnl::normalization_flags::fuse_norm_relu;
  auto normalisation = [&](const memory::desc& data, float epsilon) {
    dnnl::batch_normalization_forward::primitive_desc pd(dnnl::batch_normalization_forward::desc(forward, data, epsilon, flags), engine());
    dnnl::batch_normalization_backward::primitive_desc grad(
        dnnl::batch_normalization_backward::desc(dnnl::prop_kind::backward, data, data, epsilon, flags), engine(), pd);
    return std::make_pair(pd, grad);
  };
  auto [n1, nb1] = normalisation(b.middle, epsilon1);
  auto [n2, nb2] = normalisation(b.out, epsilon2);
  b.norm1 = dnnl::batch_normalization_forward(n1), b.norm2 = dnnl::batch_normalization_forward(n2);
  b.normGrad1 = dnnl::batch_normalization_backward(nb1), b.normGrad2 = dnnl::batch_normalization_backward(nb2);
  b.workspace1 = n1.workspace_desc(), b.workspace2 = n2.workspace_desc();
  b.unusedShift1 = memory(b.perChannel1, engine()), b.unusedShift2 = memory(b.perChannel2, engine());
  b.input = Operand::of(b.x);
  b.gradient = Operand::of(b.y);
  if (bf16 || b.pooled) b.normOut = memory(b.out, engine());
  if (b.pooled) {
    const memory::desc pooledDesc(pooledDims, type, tag::nhwc);
    b.pool = maxPoolOps(b.out, pooledDesc, poolHeight, poolWidth);
    b.da2 = memory(b.out, engine());
    if (bf16) b.pooledOut = memory(pooledDesc, engine());
  }
  if (bf16) b.toOutput = dnnl::reorder(b.pooled ? b.pooledOut : b.normOut, memory(b.y, engine(), nullptr));
  b.dz2 = memory(b.out, engine()), b.da1 = memory(b.middle, engine()), b.dz1 = memory(b.middle, engine());
  auto filterGradient = [&](const Geometry& g, const memory::desc& src, const memory::desc& dst, const dnnl::convolution_forward::primitive_desc& hint) {
    return dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(direct, src, memory::desc(g.weights(), dt::f32, tag::any), dst, g.strides(), g.dilates(), g.padL(),
                                                 g.padR()),
        engine(), hint);
  };
  b.firstLayerLoops = firstLayerLoopsFit(g1);
  if (!b.firstLayerLoops) {
    auto w1 = filterGradient(g1, operandNhwc(g1.src()), b.middle, f1);
    b.filterGrad1 = dnnl::convolution_backward_weights(w1);
    b.dWeights1 = memory(w1.diff_weights_desc(), engine());
    b.fromDWeights1 = dnnl::reorder(b.dWeights1, memory(plain(g1.weights(), tag::hwio), engine(), nullptr));
  }
  auto w2 = filterGradient(g2, b.middle, b.out, f2);
  b.filterGrad2 = dnnl::convolution_backward_weights(w2);
  b.dWeights2 = memory(w2.diff_weights_desc(), engine());
  b.fromDWeights2 = dnnl::reorder(b.dWeights2, memory(plain(g2.weights(), tag::hwio), engine(), nullptr));
  auto inputGradient = [&](const Geometry& g, const memory::desc& diffSrc, const memory::desc& diffDst, const dnnl::convolution_forward::primitive_desc& hint) {
    return dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(direct, diffSrc, any(g.weights()), diffDst, g.strides(), g.dilates(), g.padL(), g.padR()), engine(), hint);
  };
  auto d2 = inputGradient(g2, b.middle, b.out, f2);
  b.inputGrad2 = dnnl::convolution_backward_data(d2);
  b.dataWeights2 = memory(d2.weights_desc(), engine());
  b.toDataWeights2 = dnnl::reorder(memory(plain(g2.weights(), tag::hwio), engine(), nullptr), b.dataWeights2);
  // A first layer (one input channel) gives no input gradient: its input is the data.
  if (g1.channels > 1) {
    auto d1 = inputGradient(g1, b.x, b.middle, f1);
    b.inputGrad1 = dnnl::convolution_backward_data(d1);
    b.dataWeights1 = memory(d1.weights_desc(), engine());
    b.toDataWeights1 = dnnl::reorder(memory(plain(g1.weights(), tag::hwio), engine(), nullptr), b.dataWeights1);
  }
  if (b.firstLayerLoops && bf16) {
    b.dz1Fp32 = memory(plain(g1.dst(), tag::nhwc), engine());
    b.dz1ToFp32 = dnnl::reorder(b.dz1, b.dz1Fp32);
  }
  b.impl = std::string(f1.impl_info_str()) + ", " + n1.impl_info_str() + (b.pooled ? ", pooled" : "") + (bf16 ? " (bf16 inside)" : " (fp32)");
  return b;
}

// The block of arguments 1–6: its convolutions' geometries, its batch norms' epsilons, its max pool's window (0 × 0: none).
BlockEntry& block(const FunctionCallbackInfo<Value>& args) {
  Geometry g1 = geometry(args[1]), g2 = geometry(args[2]);
  const float epsilon1 = number(args, 3), epsilon2 = number(args, 4);
  const auto poolHeight = memory::dim(number(args, 5)), poolWidth = memory::dim(number(args, 6));
  std::ostringstream name;
  name << key("block1", g1, 0) << ';' << key("block2", g2, 0) << ';' << epsilon1 << ',' << epsilon2 << ';' << poolHeight << 'x' << poolWidth;
  auto found = blocks.find(name.str());
  if (found == blocks.end()) found = blocks.emplace(name.str(), makeBlock(g1, g2, epsilon1, epsilon2, poolHeight, poolWidth)).first;
  return found->second;
}

// A call's tensors in the wasm heap: argument 0 is the heap, argument `index` a Float64Array of `count` byte offsets
// into it (−1: absent).
struct HeapTensors {
  char* heap;
  std::vector<double> at;
  HeapTensors(const FunctionCallbackInfo<Value>& args, int index, size_t count) : heap(heapBase(args[0])), at(count) {
    Local<Value> value = args[index];
    if (!value->IsFloat64Array() || value.As<v8::Float64Array>()->Length() != count)
      throw std::invalid_argument("the op's tensors must be a Float64Array of " + std::to_string(count) + " offsets");
    value.As<v8::Float64Array>()->CopyContents(at.data(), count * sizeof(double));
  }
  bool present(int i) const { return at[i] >= 0; }
  char* data(int i) const { return heap + static_cast<size_t>(at[i]); }
  memory operator()(int i, const memory::desc& d) const { return memory(d, engine(), data(i)); }
};

// blockSavedBytes(buffer, geometry1, geometry2, epsilon1, epsilon2, poolHeight, poolWidth) → bytes of [z1, a1, workspace1, z2,
// workspace2, pool's workspace (0 without a pool)] in the current mode: the tensors the caller keeps from the forward pass for the
// backward pass.
void BlockSavedBytes(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    BlockEntry& b = block(args);
    Isolate* isolate = args.GetIsolate();
    const size_t sizes[] = {b.middle.get_size(), b.middle.get_size(), b.workspace1.get_size(), b.out.get_size(), b.workspace2.get_size(),
                            b.pooled ? b.pool.workspace.get_size() : 0};
    Local<v8::Array> bytes = v8::Array::New(isolate, 6);
    for (uint32_t i = 0; i < 6; i++) bytes->Set(isolate->GetCurrentContext(), i, v8::Number::New(isolate, double(sizes[i]))).Check();
    args.GetReturnValue().Set(bytes);
  });
}

// blockForward(buffer, geometry1, geometry2, epsilon1, epsilon2, poolHeight, poolWidth,
//              Float64Array [x, filter1, gamma1, beta1, filter2, gamma2, beta2, y, mean1, variance1, mean2, variance2,
//                            z1, a1, workspace1, z2, workspace2, pool's workspace (−1: no pool)], x's key) → implementation names
void BlockForward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    BlockEntry& b = block(args);
    const HeapTensors tensor(args, 7, 18);
    char* heap = tensor.heap;
    if (b.pooled != tensor.present(17)) throw std::invalid_argument("a pooled block needs its pool's workspace, and only a pooled one");
    memory z1 = tensor(12, b.middle), a1 = tensor(13, b.middle), z2 = tensor(15, b.out), y = tensor(7, b.y);
    convert(b.toWeights1, tensor(1, plain(b.g1.weights(), tag::hwio)), b.weights1);
    convert(b.toWeights2, tensor(4, plain(b.g2.weights(), tag::hwio)), b.weights2);
    b.conv1.execute(stream(), {{DNNL_ARG_SRC, b.input.from(tensor(0, b.x), heap, keyAt(args, 8))}, {DNNL_ARG_WEIGHTS, b.weights1}, {DNNL_ARG_DST, z1}});
    b.norm1.execute(stream(), {{DNNL_ARG_SRC, z1}, {DNNL_ARG_SCALE, tensor(2, b.perChannel1)}, {DNNL_ARG_SHIFT, tensor(3, b.perChannel1)},
                               {DNNL_ARG_DST, a1}, {DNNL_ARG_MEAN, tensor(8, b.perChannel1)}, {DNNL_ARG_VARIANCE, tensor(9, b.perChannel1)},
                               {DNNL_ARG_WORKSPACE, tensor(14, b.workspace1)}});
    b.conv2.execute(stream(), {{DNNL_ARG_SRC, a1}, {DNNL_ARG_WEIGHTS, b.weights2}, {DNNL_ARG_DST, z2}});
    b.norm2.execute(stream(), {{DNNL_ARG_SRC, z2}, {DNNL_ARG_SCALE, tensor(5, b.perChannel2)}, {DNNL_ARG_SHIFT, tensor(6, b.perChannel2)},
                               {DNNL_ARG_DST, b.normOut ? b.normOut : y}, {DNNL_ARG_MEAN, tensor(10, b.perChannel2)},
                               {DNNL_ARG_VARIANCE, tensor(11, b.perChannel2)}, {DNNL_ARG_WORKSPACE, tensor(16, b.workspace2)}});
    if (b.pooled)
      b.pool.forward.execute(stream(), {{DNNL_ARG_SRC, b.normOut}, {DNNL_ARG_DST, bf16 ? b.pooledOut : y}, {DNNL_ARG_WORKSPACE, tensor(17, b.pool.workspace)}});
    if (bf16) convert(b.toOutput, b.pooled ? b.pooledOut : b.normOut, y);
    stream().wait();
    setImpl(args, b.impl);
  });
}

// blockBackward(buffer, geometry1, geometry2, epsilon1, epsilon2, poolHeight, poolWidth,
//               Float64Array [dy, x, filter1, gamma1, filter2, gamma2, mean1, variance1, mean2, variance2, z1, a1, workspace1, z2,
//                             workspace2, dx (−1: not asked for), dfilter1, dgamma1, dbeta1, dfilter2, dgamma2, dbeta2,
//                             pool's workspace (−1: no pool)], x's key)
// → implementation names
void BlockBackward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    BlockEntry& b = block(args);
    const HeapTensors tensor(args, 7, 23);
    char* heap = tensor.heap;
    if (b.pooled != tensor.present(22)) throw std::invalid_argument("a pooled block needs its pool's workspace, and only a pooled one");
    memory z1 = tensor(10, b.middle), a1 = tensor(11, b.middle), z2 = tensor(13, b.out);
    auto normGradient = [&](dnnl::batch_normalization_backward& op, const memory& dy, const memory& src, int mean, int gamma,
                            const memory::desc& perChannel, const memory& unusedShift, int workspace, const memory::desc& workspaceDesc,
                            const memory& dx, int dGamma) {
      op.execute(stream(), {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_SRC, src}, {DNNL_ARG_MEAN, tensor(mean, perChannel)},
                            {DNNL_ARG_VARIANCE, tensor(mean + 1, perChannel)}, {DNNL_ARG_SCALE, tensor(gamma, perChannel)},
                            {DNNL_ARG_SHIFT, unusedShift}, {DNNL_ARG_WORKSPACE, tensor(workspace, workspaceDesc)}, {DNNL_ARG_DIFF_SRC, dx},
                            {DNNL_ARG_DIFF_SCALE, tensor(dGamma, perChannel)}, {DNNL_ARG_DIFF_SHIFT, tensor(dGamma + 1, perChannel)}});
    };
    // The pool's gradient (where the op pools), then the second layer: batch norm's gradient, then the convolution's two.
    memory dy = b.gradient.from(tensor(0, b.y), heap, 0);
    if (b.pooled) {
      b.pool.backward.execute(stream(), {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WORKSPACE, tensor(22, b.pool.workspace)}, {DNNL_ARG_DIFF_SRC, b.da2}});
      dy = b.da2;
    }
    normGradient(b.normGrad2, dy, z2, 8, 5, b.perChannel2, b.unusedShift2, 14, b.workspace2, b.dz2, 20);
    b.filterGrad2.execute(stream(), {{DNNL_ARG_SRC, a1}, {DNNL_ARG_DIFF_DST, b.dz2}, {DNNL_ARG_DIFF_WEIGHTS, b.dWeights2}});
    convert(b.fromDWeights2, b.dWeights2, tensor(19, plain(b.g2.weights(), tag::hwio)));
    convert(b.toDataWeights2, tensor(4, plain(b.g2.weights(), tag::hwio)), b.dataWeights2);
    b.inputGrad2.execute(stream(), {{DNNL_ARG_DIFF_DST, b.dz2}, {DNNL_ARG_WEIGHTS, b.dataWeights2}, {DNNL_ARG_DIFF_SRC, b.da1}});
    // The first layer.
    normGradient(b.normGrad1, b.da1, z1, 6, 3, b.perChannel1, b.unusedShift1, 12, b.workspace1, b.dz1, 17);
    float* dFilter1 = reinterpret_cast<float*>(tensor.data(16));
    if (b.firstLayerLoops) {
      if (bf16) convert(b.dz1ToFp32, b.dz1, b.dz1Fp32);
      stream().wait();
      const memory& dz1 = bf16 ? b.dz1Fp32 : b.dz1;
      firstlayer::filterGradient(loopsGeometry(b.g1), reinterpret_cast<const float*>(tensor.data(1)), static_cast<const float*>(dz1.get_data_handle()),
                                 dFilter1);
    } else {
      b.filterGrad1.execute(stream(), {{DNNL_ARG_SRC, b.input.from(tensor(1, b.x), heap, keyAt(args, 8))}, {DNNL_ARG_DIFF_DST, b.dz1},
                                       {DNNL_ARG_DIFF_WEIGHTS, b.dWeights1}});
      convert(b.fromDWeights1, b.dWeights1, memory(plain(b.g1.weights(), tag::hwio), engine(), dFilter1));
    }
    if (tensor.present(15)) {
      if (!b.inputGrad1) throw std::invalid_argument("a block over one input channel gives no input gradient");
      convert(b.toDataWeights1, tensor(2, plain(b.g1.weights(), tag::hwio)), b.dataWeights1);
      b.inputGrad1.execute(stream(), {{DNNL_ARG_DIFF_DST, b.dz1}, {DNNL_ARG_WEIGHTS, b.dataWeights1}, {DNNL_ARG_DIFF_SRC, tensor(15, b.x)}});
    }
    stream().wait();
    setImpl(args, b.impl);
  });
}

// ---- A convolution with bias + relu and the max pool after it ------------------------------------
//
// cnn3's first two layers (conv with bias and relu → max pool) as one op each way, for training steps (ConvReluPool in
// lib/accelerator/layers.ts): the convolution writes relu(conv(x) + b) in the operand type, the pool reads it there, so
// in bf16 mode only the op's input, its pooled output (an fp32 copy for TF.js) and the incoming gradient convert. The
// backward pass runs the pool's gradient, relu's (from its output), and the convolution's filter and bias gradients and,
// where asked for, its input gradient. The caller keeps the relu output and the pool's workspace between the passes.
// The pool's windows are disjoint and inside the convolution's output (floor, as TF.js's 'valid' pooling). Where the
// windows' winners serve (below), the backward pass needs neither oneDNN's pool gradient nor the whole activation, and a
// first layer's forward pass runs in the addon's loops, recording the winners instead of writing the activation.

// Whether the op's backward pass runs from the windows' winners (setWinnerGradients), where they fit.
bool winnerGradients = true;

struct ConvPoolEntry {
  Geometry g;
  memory::desc x, activation, y;  // x and y fp32 (y pooled); activation: relu(conv(x) + b) in the operand type
  dnnl::convolution_forward conv;
  memory weights;
  dnnl::reorder toWeights;
  MaxPoolOps pool;
  Operand input, gradient;  // bf16 mode: x, dy
  memory pooledOut;         // bf16 mode: the pool's output before its fp32 copy y
  dnnl::reorder toOutput;
  dnnl::eltwise_backward reluGrad;
  memory dz;  // in the operand type: the pool's input gradient, then relu's in place
  dnnl::convolution_backward_weights filterGrad;  // with the bias gradient; not built where the loops run
  memory dWeights;
  dnnl::reorder fromDWeights;
  dnnl::convolution_backward_data inputGrad;
  memory dataWeights;
  dnnl::reorder toDataWeights;
  // A first layer's filter and bias gradients by the addon's loops (as in BlockEntry): dz in fp32 for them.
  bool firstLayerLoops = false;
  memory dzFp32;
  dnnl::reorder dzToFp32;
  // The backward pass from the pool windows' winners alone (pooled_conv.h), where it fits and winnerGradients is on.
  pooledconv::Geometry winners;
  bool winnersFit = false;
  // A first layer whose forward pass records the winners (first_layer.h's pooledForward) where winnerGradients is on:
  // the caller then keeps the winners (a byte per pooled output) instead of the activation, and no pool workspace.
  bool recordsWinners = false;
  std::string impl, winnersImpl, recordedImpl;
  // Whether this op's forward pass records the winners now, and the bytes of the tensors it saves for the backward pass.
  bool recording() const { return recordsWinners && winnerGradients; }
  size_t winnerBytes() const { return size_t(g.batch * (g.outHeight / winners.poolHeight) * (g.outWidth / winners.poolWidth) * g.filters); }
  size_t activationBytes() const { return recording() ? winnerBytes() : activation.get_size(); }
  size_t workspaceBytes() const { return recording() ? 0 : pool.workspace.get_size(); }
};
std::map<std::string, ConvPoolEntry> convPools;

ConvPoolEntry makeConvPool(const Geometry& g, memory::dim poolHeight, memory::dim poolWidth) {
  if (poolHeight < 1 || poolWidth < 1 || poolHeight > g.outHeight || poolWidth > g.outWidth)
    throw std::invalid_argument("the op's max pool needs a window inside the convolution's output");
  ConvPoolEntry c;
  c.g = g;
  const dt type = operand();
  const auto direct = dnnl::algorithm::convolution_direct;
  const memory::dims pooledDims{g.batch, g.filters, g.outHeight / poolHeight, g.outWidth / poolWidth};
  c.x = plain(g.src(), tag::nhwc), c.y = plain(pooledDims, tag::nhwc), c.activation = memory::desc(g.dst(), type, tag::nhwc);
  const memory::desc bias = plain({g.filters}, tag::x);
  dnnl::primitive_attr withRelu;
  dnnl::post_ops ops;
  ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  withRelu.set_post_ops(ops);
  dnnl::convolution_forward::primitive_desc f(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, direct, operandNhwc(g.src()), any(g.weights()), bias, c.activation,
                                      g.strides(), g.dilates(), g.padL(), g.padR()),
      withRelu, engine());
  c.conv = dnnl::convolution_forward(f);
  c.weights = memory(f.weights_desc(), engine());
  c.toWeights = dnnl::reorder(memory(plain(g.weights(), tag::hwio), engine(), nullptr), c.weights);
  const memory::desc pooledDesc(pooledDims, type, tag::nhwc);
  c.pool = maxPoolOps(c.activation, pooledDesc, poolHeight, poolWidth);
  c.input = Operand::of(c.x), c.gradient = Operand::of(c.y);
  if (bf16) {
    c.pooledOut = memory(pooledDesc, engine());
    c.toOutput = dnnl::reorder(c.pooledOut, memory(c.y, engine(), nullptr));
  }
  const auto reluUsingOutput = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
  dnnl::eltwise_forward::primitive_desc reluHint(
      dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, reluUsingOutput, c.activation, 0.f, 0.f), engine());
  c.reluGrad = dnnl::eltwise_backward(
      dnnl::eltwise_backward::primitive_desc(dnnl::eltwise_backward::desc(reluUsingOutput, c.activation, c.activation, 0.f, 0.f), engine(), reluHint));
  c.dz = memory(c.activation, engine());
  c.firstLayerLoops = firstLayerLoopsFit(g);
  if (!c.firstLayerLoops) {
    dnnl::convolution_backward_weights::primitive_desc w(
        dnnl::convolution_backward_weights::desc(direct, operandNhwc(g.src()), memory::desc(g.weights(), dt::f32, tag::any), bias, c.activation,
                                                 g.strides(), g.dilates(), g.padL(), g.padR()),
        engine(), f);
    c.filterGrad = dnnl::convolution_backward_weights(w);
    c.dWeights = memory(w.diff_weights_desc(), engine());
    c.fromDWeights = dnnl::reorder(c.dWeights, memory(plain(g.weights(), tag::hwio), engine(), nullptr));
  }
  if (g.channels > 1) {
    dnnl::convolution_backward_data::primitive_desc d(
        dnnl::convolution_backward_data::desc(direct, c.x, any(g.weights()), c.activation, g.strides(), g.dilates(), g.padL(), g.padR()), engine(), f);
    c.inputGrad = dnnl::convolution_backward_data(d);
    c.dataWeights = memory(d.weights_desc(), engine());
    c.toDataWeights = dnnl::reorder(memory(plain(g.weights(), tag::hwio), engine(), nullptr), c.dataWeights);
  }
  if (c.firstLayerLoops && bf16) {
    c.dzFp32 = memory(plain(g.dst(), tag::nhwc), engine());
    c.dzToFp32 = dnnl::reorder(c.dz, c.dzFp32);
  }
  c.impl = std::string(f.impl_info_str()) + ", " + c.pool.impl + (bf16 ? " (bf16 inside)" : " (fp32)");
  c.winners = {g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.filters, g.outHeight, g.outWidth, g.strideH, g.strideW, g.top, g.left,
               poolHeight, poolWidth};
  // A first layer's filter gradient from the winners is first_layer.h's loops over a per-image gradient made from them.
  c.winnersFit = c.firstLayerLoops ? g.outHeight * g.outWidth * g.filters < INT32_MAX : g.dilationH == 1 && g.dilationW == 1 && pooledconv::fits(c.winners);
  c.winnersImpl = c.impl + ", gradients from the pool's winners (addon loops, fp32)";
  c.recordsWinners = c.firstLayerLoops && c.winnersFit && poolHeight * poolWidth <= firstlayer::MAX_WINDOW;
  c.recordedImpl = std::string("addon loops: first layer's conv + relu + pool recording the winners, gradients from them") +
                   (bf16 ? " (bf16 operands, fp32 sums)" : " (fp32)");
  return c;
}

// The op of arguments 1–3: its convolution's geometry and its max pool's window.
ConvPoolEntry& convPool(const FunctionCallbackInfo<Value>& args) {
  Geometry g = geometry(args[1]);
  const auto poolHeight = memory::dim(number(args, 2)), poolWidth = memory::dim(number(args, 3));
  std::ostringstream name;
  name << key("conv-pool", g, 0) << ';' << poolHeight << 'x' << poolWidth;
  auto found = convPools.find(name.str());
  if (found == convPools.end()) found = convPools.emplace(name.str(), makeConvPool(g, poolHeight, poolWidth)).first;
  return found->second;
}

// convPoolSavedBytes(buffer, geometry, poolHeight, poolWidth) → bytes of [activation, pool's workspace] in the current mode:
// the tensors the caller keeps from the forward pass for the backward pass (the winners and nothing where the forward
// pass records them).
void ConvPoolSavedBytes(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    ConvPoolEntry& c = convPool(args);
    Isolate* isolate = args.GetIsolate();
    Local<v8::Array> bytes = v8::Array::New(isolate, 2);
    bytes->Set(isolate->GetCurrentContext(), 0, v8::Number::New(isolate, double(c.activationBytes()))).Check();
    bytes->Set(isolate->GetCurrentContext(), 1, v8::Number::New(isolate, double(c.workspaceBytes()))).Check();
    args.GetReturnValue().Set(bytes);
  });
}

// convPoolForward(buffer, geometry, poolHeight, poolWidth, Float64Array [x, filter, bias, y, activation, pool's workspace], x's key)
// → implementation names
void ConvPoolForward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    ConvPoolEntry& c = convPool(args);
    const HeapTensors tensor(args, 4, 6);
    char* heap = tensor.heap;
    if (c.recording()) {
      firstlayer::pooledForward(loopsGeometry(c.g), c.winners.poolHeight, c.winners.poolWidth, reinterpret_cast<const float*>(tensor.data(0)),
                                reinterpret_cast<const float*>(tensor.data(1)), reinterpret_cast<const float*>(tensor.data(2)), bf16,
                                reinterpret_cast<float*>(tensor.data(3)), reinterpret_cast<uint8_t*>(tensor.data(4)));
      setImpl(args, c.recordedImpl);
      return;
    }
    memory activation = tensor(4, c.activation);
    convert(c.toWeights, tensor(1, plain(c.g.weights(), tag::hwio)), c.weights);
    c.conv.execute(stream(), {{DNNL_ARG_SRC, c.input.from(tensor(0, c.x), heap, keyAt(args, 5))}, {DNNL_ARG_WEIGHTS, c.weights},
                              {DNNL_ARG_BIAS, tensor(2, plain({c.g.filters}, tag::x))}, {DNNL_ARG_DST, activation}});
    c.pool.forward.execute(stream(), {{DNNL_ARG_SRC, activation}, {DNNL_ARG_DST, bf16 ? c.pooledOut : tensor(3, c.y)},
                                      {DNNL_ARG_WORKSPACE, tensor(5, c.pool.workspace)}});
    if (bf16) convert(c.toOutput, c.pooledOut, tensor(3, c.y));
    stream().wait();
    setImpl(args, c.impl);
  });
}

// convPoolBackward(buffer, geometry, poolHeight, poolWidth,
//                  Float64Array [dy, x, filter, activation, pool's workspace, dx (−1: not asked for), dfilter, dbias], x's key,
//                  the activation tensor's bytes) → implementation names
void ConvPoolBackward(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    ConvPoolEntry& c = convPool(args);
    const HeapTensors tensor(args, 4, 8);
    char* heap = tensor.heap;
    const Geometry& g = c.g;
    // The saved tensors must be what the forward pass in this mode saved (convPoolSavedBytes, rounded up to whole float32s
    // per convolution output pixel by the caller), else winnerGradients or the precision changed between the passes.
    const size_t pixels = size_t(g.batch * g.outHeight * g.outWidth), saved = size_t(number(args, 6));
    if (saved != (c.activationBytes() + 4 * pixels - 1) / (4 * pixels) * 4 * pixels)
      throw std::invalid_argument("the saved activation is not this mode's: winner gradients or the precision changed between the forward and backward passes");
    if (c.recording()) {
      if (tensor.present(5)) throw std::invalid_argument("a convolution over one input channel gives no input gradient here");
      firstlayer::winnerFilterGradient(loopsGeometry(g), c.winners.poolHeight, c.winners.poolWidth, reinterpret_cast<const float*>(tensor.data(1)),
                                       reinterpret_cast<const uint8_t*>(tensor.data(3)), bf16, reinterpret_cast<const float*>(tensor.data(0)),
                                       reinterpret_cast<float*>(tensor.data(6)), reinterpret_cast<float*>(tensor.data(7)));
      setImpl(args, c.recordedImpl);
      return;
    }
    if (winnerGradients && c.winnersFit && c.firstLayerLoops && !tensor.present(5)) {
      firstlayer::pooledFilterGradient(loopsGeometry(g), c.winners.poolHeight, c.winners.poolWidth, reinterpret_cast<const float*>(tensor.data(1)),
                                       tensor.data(3), bf16, reinterpret_cast<const float*>(tensor.data(0)), reinterpret_cast<float*>(tensor.data(6)),
                                       reinterpret_cast<float*>(tensor.data(7)));
      setImpl(args, c.winnersImpl);
      return;
    }
    if (winnerGradients && c.winnersFit && !c.firstLayerLoops) {
      pooledconv::gradients(c.winners, reinterpret_cast<const float*>(tensor.data(1)), tensor.data(3), bf16, reinterpret_cast<const float*>(tensor.data(0)),
                            reinterpret_cast<const float*>(tensor.data(2)), reinterpret_cast<float*>(tensor.data(6)), reinterpret_cast<float*>(tensor.data(7)),
                            tensor.present(5) ? reinterpret_cast<float*>(tensor.data(5)) : nullptr);
      setImpl(args, c.winnersImpl);
      return;
    }
    c.pool.backward.execute(stream(), {{DNNL_ARG_DIFF_DST, c.gradient.from(tensor(0, c.y), heap, 0)}, {DNNL_ARG_WORKSPACE, tensor(4, c.pool.workspace)},
                                       {DNNL_ARG_DIFF_SRC, c.dz}});
    c.reluGrad.execute(stream(), {{DNNL_ARG_DST, tensor(3, c.activation)}, {DNNL_ARG_DIFF_DST, c.dz}, {DNNL_ARG_DIFF_SRC, c.dz}});
    float* dFilter = reinterpret_cast<float*>(tensor.data(6));
    const memory dBias = tensor(7, plain({g.filters}, tag::x));
    if (c.firstLayerLoops) {
      if (bf16) convert(c.dzToFp32, c.dz, c.dzFp32);
      stream().wait();
      const memory& dz = bf16 ? c.dzFp32 : c.dz;
      firstlayer::filterGradient(loopsGeometry(g), reinterpret_cast<const float*>(tensor.data(1)), static_cast<const float*>(dz.get_data_handle()),
                                 dFilter, static_cast<float*>(dBias.get_data_handle()));
    } else {
      c.filterGrad.execute(stream(), {{DNNL_ARG_SRC, c.input.from(tensor(1, c.x), heap, keyAt(args, 5))}, {DNNL_ARG_DIFF_DST, c.dz},
                                      {DNNL_ARG_DIFF_WEIGHTS, c.dWeights}, {DNNL_ARG_DIFF_BIAS, dBias}});
      convert(c.fromDWeights, c.dWeights, memory(plain(g.weights(), tag::hwio), engine(), dFilter));
    }
    if (tensor.present(5)) {
      if (!c.inputGrad) throw std::invalid_argument("a convolution over one input channel gives no input gradient here");
      convert(c.toDataWeights, tensor(2, plain(g.weights(), tag::hwio)), c.dataWeights);
      c.inputGrad.execute(stream(), {{DNNL_ARG_DIFF_DST, c.dz}, {DNNL_ARG_WEIGHTS, c.dataWeights}, {DNNL_ARG_DIFF_SRC, tensor(5, c.x)}});
    }
    stream().wait();
    setImpl(args, c.impl);
  });
}

// ---- Max pooling on OpenMP's threads (pooling.h) ---------------------------------------------

float* floatsAt(char* heap, const FunctionCallbackInfo<Value>& args, int index) {
  return reinterpret_cast<float*>(heap + static_cast<size_t>(number(args, index)));
}

// A pooling geometry as the JavaScript side sends it: a Float64Array of the 8 fields of pooling::Pool, in order.
pooling::Pool poolGeometry(Local<Value> value) {
  if (!value->IsFloat64Array() || value.As<v8::Float64Array>()->Length() != 8)
    throw std::invalid_argument("the pooling geometry must be a Float64Array of 8 numbers");
  double d[8];
  value.As<v8::Float64Array>()->CopyContents(d, sizeof d);
  pooling::Pool p{int64_t(d[0]), int64_t(d[1]), int64_t(d[2]), int64_t(d[3]), int64_t(d[4]), int64_t(d[5]), int64_t(d[6]), int64_t(d[7])};
  if (!pooling::supported()) throw std::invalid_argument("this CPU lacks AVX2, for which the pooling loops are built");
  // Offsets within a window are 32-bit.
  if (p.poolHeight * p.width * p.channels > INT32_MAX) throw std::invalid_argument("a pooling window spans more than 2³¹ floats");
  if (p.channels > pooling::MAX_CHANNELS || p.poolHeight < 1 || p.poolWidth < 1 || p.outHeight * p.poolHeight > p.height ||
      p.outWidth * p.poolWidth > p.width)
    throw std::invalid_argument("the pooling geometry is not one of disjoint windows inside the image with at most 1,024 channels");
  return p;
}

// maxPool(buffer, geometry, x, y)
void MaxPool(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    pooling::maxPool(poolGeometry(args[1]), floatsAt(heap, args, 2), floatsAt(heap, args, 3));
  });
}

// maxPoolGrad(buffer, geometry, x, dy, dx)
void MaxPoolGrad(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    char* heap = heapBase(args[0]);
    pooling::maxPoolGrad(poolGeometry(args[1]), floatsAt(heap, args, 2), floatsAt(heap, args, 3), floatsAt(heap, args, 4));
  });
}

// loopsSupported() → whether this CPU runs the addon's own loops (pooling.cc, first_layer.cc: built for AVX2)
void LoopsSupported(const FunctionCallbackInfo<Value>& args) { args.GetReturnValue().Set(pooling::supported()); }

// ---- A first layer's filter gradient on OpenMP's threads (first_layer.h) -----------------------

// firstLayerFilterGrad(buffer, geometry, x, dy, dw); geometry: a Float64Array of the 10 fields of firstlayer::Geometry.
void FirstLayerFilterGrad(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    if (!args[1]->IsFloat64Array() || args[1].As<v8::Float64Array>()->Length() != 10)
      throw std::invalid_argument("the first layer's geometry must be a Float64Array of 10 numbers");
    double d[10];
    args[1].As<v8::Float64Array>()->CopyContents(d, sizeof d);
    const firstlayer::Geometry g{int64_t(d[0]), int64_t(d[1]), int64_t(d[2]), int64_t(d[3]), int64_t(d[4]),
                                 int64_t(d[5]), int64_t(d[6]), int64_t(d[7]), int64_t(d[8]), int64_t(d[9])};
    if (!pooling::supported()) throw std::invalid_argument("this CPU lacks AVX2, for which the addon's loops are built");
    if (g.batch < 1 || g.height < 1 || g.width < 1 || g.outHeight < 1 || g.outWidth < 1 || g.strideHeight < 1 || g.strideWidth < 1 ||
        g.padTop < 0 || g.padLeft < 0 || g.channels < 1 || g.channels % firstlayer::CHANNEL_BLOCK != 0)
      throw std::invalid_argument("the first layer's geometry needs positive sizes and strides, pads ≥ 0 and channels in eights");
    char* heap = heapBase(args[0]);
    firstlayer::filterGradient(g, floatsAt(heap, args, 2), floatsAt(heap, args, 3), floatsAt(heap, args, 4));
  });
}

// setBf16(on): products read bf16 operands from now on (primitives are cached per mode). The
// pool's copies stay: training switches to bf16 and back around every step.
void SetBf16(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] { bf16 = args[0]->BooleanValue(args.GetIsolate()); });
}

// setWinnerGradients(on): whether the conv + relu + pool op's backward pass runs from the pool windows' winners (pooled_conv.h)
// where it fits, or as oneDNN's pool, relu and convolution gradients over the whole output.
void SetWinnerGradients(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] { winnerGradients = args[0]->BooleanValue(args.GetIsolate()); });
}

// conversionCounts() → [bf16 conversions made, conversions avoided by the pool] since the addon loaded.
void ConversionCounts(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<v8::Array> counts = v8::Array::New(isolate, 2);
  counts->Set(isolate->GetCurrentContext(), 0, v8::Number::New(isolate, conversionsMade)).Check();
  counts->Set(isolate->GetCurrentContext(), 1, v8::Number::New(isolate, conversionsReused)).Check();
  args.GetReturnValue().Set(counts);
}

// isa() → the instruction set oneDNN dispatches to on this CPU, e.g. "avx512_core_amx".
void Isa(const FunctionCallbackInfo<Value>& args) {
  guarded(args, [&] {
    const char* names[] = {"all", "sse41", "avx", "avx2", "avx512_mic", "avx512_mic_4ops", "avx512_core", "avx512_core_vnni", "avx512_core_bf16", "avx512_core_amx", "avx2_vnni"};
    const dnnl::cpu_isa values[] = {dnnl::cpu_isa::all, dnnl::cpu_isa::sse41, dnnl::cpu_isa::avx, dnnl::cpu_isa::avx2, dnnl::cpu_isa::avx512_mic,
                                    dnnl::cpu_isa::avx512_mic_4ops, dnnl::cpu_isa::avx512_core, dnnl::cpu_isa::avx512_core_vnni,
                                    dnnl::cpu_isa::avx512_core_bf16, dnnl::cpu_isa::avx512_core_amx, dnnl::cpu_isa::avx2_vnni};
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    std::string found = "unknown";
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
      if (values[i] == isa) found = names[i];
    setImpl(args, found);
  });
}

void Initialize(Local<v8::Object> exports) {
  NODE_SET_METHOD(exports, "setBf16", SetBf16);
  NODE_SET_METHOD(exports, "setWinnerGradients", SetWinnerGradients);
  NODE_SET_METHOD(exports, "isa", Isa);
  NODE_SET_METHOD(exports, "conversionCounts", ConversionCounts);
  NODE_SET_METHOD(exports, "matMul", MatMul);
  NODE_SET_METHOD(exports, "forward", Forward);
  NODE_SET_METHOD(exports, "backwardData", BackwardData);
  NODE_SET_METHOD(exports, "backwardWeights", BackwardWeights);
  NODE_SET_METHOD(exports, "batchNormForward", BatchNormForward);
  NODE_SET_METHOD(exports, "batchNormBackward", BatchNormBackward);
  NODE_SET_METHOD(exports, "batchNormWorkspaceBytes", BatchNormWorkspaceBytes);
  NODE_SET_METHOD(exports, "blockForward", BlockForward);
  NODE_SET_METHOD(exports, "blockBackward", BlockBackward);
  NODE_SET_METHOD(exports, "blockSavedBytes", BlockSavedBytes);
  NODE_SET_METHOD(exports, "convPoolForward", ConvPoolForward);
  NODE_SET_METHOD(exports, "convPoolBackward", ConvPoolBackward);
  NODE_SET_METHOD(exports, "convPoolSavedBytes", ConvPoolSavedBytes);
  NODE_SET_METHOD(exports, "maxPool", MaxPool);
  NODE_SET_METHOD(exports, "loopsSupported", LoopsSupported);
  NODE_SET_METHOD(exports, "firstLayerFilterGrad", FirstLayerFilterGrad);
  NODE_SET_METHOD(exports, "maxPoolGrad", MaxPoolGrad);
}

}  // namespace

NODE_MODULE(NODE_GYP_MODULE_NAME, Initialize)
