// What keeping activations in bf16 between a convolution and its batch norm could save on this CPU, measured on
// oneDNN's primitives alone (no TF.js): a vgg-bn-style network's convolutions and batch norms (+ relu), in the bf16
// steps the project runs today (convolutions read bf16 copies and write fp32; batch norm in fp32; every convolution
// input and incoming gradient converted fp32 → bf16 once per step) against the same primitives reading and writing
// bf16 throughout, as PyTorch's bf16 autocast runs them. Built and run by scripts/bench-bf16-chain.sh; prints a
// table per layer and the totals per step (medians of repeats), so the gain is known before the fused op is built.
// Bf16 throughout is an upper bound: TF.js's tensors are fp32, so an op built into the project still converts where
// a tensor leaves it or enters it. Two such designs are timed too, with the bf16 chain's primitives and their own
// conversions: a convolution + batch norm + relu op per layer (its output copied to fp32 for TF.js, its incoming
// gradient converted to bf16, its input converted only after a pooling, since a previous op's bf16 output is reused)
// and one op per block of two such layers (the same at the block's edges only).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

engine cpu(engine::kind::cpu, 0);
stream queue(cpu);
int repeats = 15;
// Written over before each timed call when timing with cold caches ("cold"): in a training step the other layers'
// tensors pass through the caches between two calls of one primitive, so its operands come from memory.
std::vector<char> evictor;

// The median of `repeats` timed calls after three untimed ones, in milliseconds.
template <typename Work>
double medianMs(Work work) {
  std::vector<double> times;
  for (int i = 0; i < 3 + repeats; i++) {
    for (size_t k = 0; k < evictor.size(); k += 64) evictor[k]++;
    const auto start = std::chrono::steady_clock::now();
    work();
    queue.wait();
    if (i >= 3) times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// A buffer for `desc` filled with bytes 0x3f: ~0.75 read as fp32 or as bf16, so no operand is a denormal or NaN that
// could change a kernel's speed.
memory filled(const memory::desc& desc) {
  memory m(desc, cpu);
  std::memset(m.get_data_handle(), 0x3f, desc.get_size());
  return m;
}

// A 'same' 3×3 convolution of a vgg-bn block and the batch norm after it.
struct Layer {
  memory::dim size, in, out;
};

struct Times {
  double forward = 0, backwardData = 0, norm = 0, conversions = 0;
  double total() const { return forward + backwardData + norm + conversions; }
  void add(const Times& t) { forward += t.forward, backwardData += t.backwardData, norm += t.norm, conversions += t.conversions; }
};

// The implementations oneDNN picked (e.g. "forward brgconv:avx512_core_amx_bf16"), each printed once.
std::vector<std::string> implementations;
void picked(const std::string& name) {
  if (std::find(implementations.begin(), implementations.end(), name) == implementations.end()) implementations.push_back(name);
}

// Convolution forward and input gradient with bf16 operands and outputs of type `output`.
void convolution(const Layer& l, memory::dim batch, dt output, Times& t) {
  const memory::dims src = {batch, l.in, l.size, l.size}, weights = {l.out, l.in, 3, 3}, dst = {batch, l.out, l.size, l.size};
  convolution_forward::primitive_desc forward(
      convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, memory::desc(src, dt::bf16, tag::nhwc),
                                memory::desc(weights, dt::bf16, tag::any), memory::desc(dst, output, tag::nhwc), {1, 1}, {1, 1}, {1, 1}),
      cpu);
  memory x = filled(forward.src_desc()), w = filled(forward.weights_desc()), y = filled(forward.dst_desc());
  convolution_forward conv(forward);
  t.forward += medianMs([&] { conv.execute(queue, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}}); });
  if (l.in == 1) return;  // a first layer (one input channel): a special case for oneDNN, and no input gradient is asked for
  picked(std::string("forward ") + forward.impl_info_str());
  convolution_backward_data::primitive_desc backward(
      convolution_backward_data::desc(algorithm::convolution_direct, memory::desc(src, output, tag::nhwc), memory::desc(weights, dt::bf16, tag::any),
                                      memory::desc(dst, dt::bf16, tag::nhwc), {1, 1}, {1, 1}, {1, 1}),
      cpu, forward);
  memory dx = filled(backward.diff_src_desc()), wb = filled(backward.weights_desc()), dy = filled(backward.diff_dst_desc());
  convolution_backward_data grad(backward);
  t.backwardData += medianMs([&] { grad.execute(queue, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, wb}, {DNNL_ARG_DIFF_SRC, dx}}); });
  picked(std::string("input gradient ") + backward.impl_info_str());
}

// Batch norm + relu forward and backward over the convolution's output, in `type`.
void norm(const Layer& l, memory::dim batch, dt type, Times& t) {
  const memory::desc data({batch, l.out, l.size, l.size}, type, tag::nhwc), perChannel({l.out}, dt::f32, tag::x);
  const auto flags = normalization_flags::use_scale | normalization_flags::use_shift | normalization_flags::fuse_norm_relu;
  batch_normalization_forward::primitive_desc forward(batch_normalization_forward::desc(prop_kind::forward_training, data, 1e-3f, flags), cpu);
  batch_normalization_backward::primitive_desc backward(batch_normalization_backward::desc(prop_kind::backward, data, data, 1e-3f, flags), cpu, forward);
  memory x = filled(data), y = filled(data), dy = filled(data), dx = filled(data), workspace = filled(forward.workspace_desc());
  memory gamma = filled(perChannel), beta = filled(perChannel), mean = filled(perChannel), variance = filled(perChannel), dGamma = filled(perChannel),
         dBeta = filled(perChannel);
  picked(std::string("batch norm ") + (type == dt::bf16 ? "bf16 " : "fp32 ") + forward.impl_info_str() + " / " + backward.impl_info_str());
  batch_normalization_forward apply(forward);
  batch_normalization_backward grad(backward);
  t.norm += medianMs([&] {
    apply.execute(queue, {{DNNL_ARG_SRC, x}, {DNNL_ARG_SCALE, gamma}, {DNNL_ARG_SHIFT, beta}, {DNNL_ARG_DST, y}, {DNNL_ARG_MEAN, mean},
                          {DNNL_ARG_VARIANCE, variance}, {DNNL_ARG_WORKSPACE, workspace}});
    grad.execute(queue, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_SRC, x}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, variance}, {DNNL_ARG_SCALE, gamma},
                         {DNNL_ARG_SHIFT, beta}, {DNNL_ARG_DIFF_SRC, dx}, {DNNL_ARG_DIFF_SCALE, dGamma}, {DNNL_ARG_DIFF_SHIFT, dBeta},
                         {DNNL_ARG_WORKSPACE, workspace}});
  });
}

// One conversion of an NHWC tensor: fp32 → bf16 as the addon makes of each convolution input and incoming gradient,
// or bf16 → fp32 as a fused op's output copy for TF.js.
double conversion(const memory::dims& dims, dt fromType = dt::f32, dt toType = dt::bf16) {
  memory from = filled(memory::desc(dims, fromType, tag::nhwc)), to = filled(memory::desc(dims, toType, tag::nhwc));
  reorder convert(from, to);
  return medianMs([&] { convert.execute(queue, from, to); });
}

}  // namespace

int main(int argc, char** argv) {
  // bench_bf16_chain [width (32: vgg-bn)] [batch (128)] [repeats (15)] [warm|cold (warm)]
  const memory::dim width = argc > 1 ? std::atol(argv[1]) : 32, batch = argc > 2 ? std::atol(argv[2]) : 128;
  if (argc > 3) repeats = std::atoi(argv[3]);
  const std::string caches = argc > 4 ? argv[4] : "warm";
  if (width < 1 || batch < 1 || repeats < 1 || (caches != "warm" && caches != "cold")) {
    std::fprintf(stderr, "usage: bench_bf16_chain [width >= 1] [batch >= 1] [repeats >= 1] [warm|cold]\n");
    return 2;
  }
  // 256 MB: well past the last-level cache of these machines.
  if (caches == "cold") evictor.assign(size_t(256) << 20, 1);
  const std::vector<Layer> layers = {{28, 1, width},         {28, width, width},         {14, width, 2 * width},
                                     {14, 2 * width, 2 * width}, {7, 2 * width, 4 * width}, {7, 4 * width, 4 * width}};
  std::printf("oneDNN %d.%d.%d, width %ld, batch %ld, medians of %d, %s caches; ms per call\n", dnnl_version()->major, dnnl_version()->minor,
              dnnl_version()->patch, long(width), long(batch), repeats, caches.c_str());
  std::printf("%-16s | %-27s | %-20s | %-13s\n", "layer", "today: fwd, bwd-data, BN, conv.", "bf16 chain: fwd, bwd, BN", "conv.: layer, block op");
  Times today, chain, layerOp, blockOp;
  for (size_t i = 0; i < layers.size(); i++) {
    const Layer& l = layers[i];
    const memory::dims input = {batch, l.in, l.size, l.size}, output = {batch, l.out, l.size, l.size};
    // A block's first layer reads a pooling's output (or the image); its second ends the block, before a pooling.
    const bool afterPooling = i > 0 && layers[i - 1].size != l.size, endsBlock = i + 1 == layers.size() || layers[i + 1].size != l.size;
    Times t, c;
    convolution(l, batch, dt::f32, t);
    norm(l, batch, dt::f32, t);
    // Today the convolution's input is converted (not the image: the first layer's is small) and so is its incoming gradient.
    if (i > 0) t.conversions += conversion(input);
    const double incoming = conversion(output);
    t.conversions += incoming;
    convolution(l, batch, dt::bf16, c);
    norm(l, batch, dt::bf16, c);
    const double pooled = afterPooling ? conversion(input) : 0, copy = conversion(output, dt::bf16, dt::f32);
    Times perLayer = c, perBlock = c;
    perLayer.conversions = pooled + copy + incoming;
    perBlock.conversions = pooled + (endsBlock ? copy + incoming : 0);
    std::printf("%2ldx%-2ld %4ld->%-4ld | %6.2f %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f | %6.2f %6.2f\n", long(l.size), long(l.size), long(l.in),
                long(l.out), t.forward, t.backwardData, t.norm, t.conversions, c.forward, c.backwardData, c.norm, perLayer.conversions,
                perBlock.conversions);
    today.add(t);
    chain.add(c);
    layerOp.add(perLayer);
    blockOp.add(perBlock);
  }
  std::printf("%-16s | %6.2f %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f | %6.2f %6.2f\n", "per step", today.forward, today.backwardData, today.norm,
              today.conversions, chain.forward, chain.backwardData, chain.norm, layerOp.conversions, blockOp.conversions);
  for (const std::string& name : implementations) std::printf("%s\n", name.c_str());
  const auto saving = [&](const char* what, const Times& t) {
    std::printf("%s %.2f ms per step: %.2f ms (%.0f%%) less than today's %.2f ms in these primitives\n", what, t.total(), today.total() - t.total(),
                100 * (today.total() - t.total()) / today.total(), today.total());
  };
  saving("bf16 chain (upper bound)", chain);
  saving("op per layer", layerOp);
  saving("op per block", blockOp);
}
