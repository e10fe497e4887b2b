// `F.dropout(x, p, training=True)` for fp32 CPU tensors in one parallel pass, with autograd.
//
// ATen's CPU dropout draws its Bernoulli mask one element at a time from the generator, on one
// thread (its vectorised MKL path is for Intel CPUs only), then divides the mask by 1-p and
// multiplies: three passes over memory, one of them serial, and a float mask kept for backward.
// Here element i is kept where a counter-based hash of (key, i) falls below (1-p)·2^32, and
// the kept values are x·(1/(1-p)) with the float scale ATen multiplies by. The key is one
// 64-bit draw from torch's default CPU generator, so `manual_seed` decides the mask as it
// decides ATen's; the mask does not depend on the number of threads; and backward recomputes
// it from the key instead of keeping it.
//
// The loop is compiled twice: for AVX2 (chosen at run time where the CPU has it) and plain.
// Errors come back as a return code and a message (src/shim.h).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "shim.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// murmur3's 32-bit finaliser
inline __attribute__((always_inline)) uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct Mask {
  uint64_t key;
  uint32_t threshold;  // keep where hash < threshold
  float scale;         // 1/(1-p)
};

// y[i] = x[i] · (kept ? 1/(1-p) : 0), as ATen's x · noise (a NaN or inf stays one where dropped).
// Element i's 32-bit draw: two keyed rounds of the finaliser over its index, whose high 32 bits
// are constant within a block of 2^32 elements (the inner loop is over the low bits, in
// 32-bit lanes, so it vectorises).
inline __attribute__((always_inline)) void body(const float* __restrict x, float* __restrict y, int64_t begin,
                                                int64_t end, Mask m) {
  const uint32_t k0 = static_cast<uint32_t>(m.key);
  while (begin < end) {
    const int64_t block_end = std::min(end, ((begin >> 32) + 1) << 32);
    const uint32_t k1 = static_cast<uint32_t>(m.key >> 32) ^ static_cast<uint32_t>(begin >> 32) * 0x632BE5ABu;
    const uint32_t lo = static_cast<uint32_t>(begin);
    const uint32_t len = static_cast<uint32_t>(block_end - begin);
    const float* xs = x + begin;
    float* ys = y + begin;
    for (uint32_t j = 0; j < len; ++j) {
      const uint32_t h = fmix32(fmix32((lo + j) * 0x9E3779B9u + k0) ^ k1);
      ys[j] = xs[j] * (h < m.threshold ? m.scale : 0.0f);
    }
    begin = block_end;
  }
}

__attribute__((target("avx2"))) void chunk_avx2(const float* x, float* y, int64_t begin, int64_t end, Mask m) {
  body(x, y, begin, end, m);
}

void chunk_plain(const float* x, float* y, int64_t begin, int64_t end, Mask m) { body(x, y, begin, end, m); }

// y = x where kept, scaled; 0 elsewhere. x and y contiguous fp32 of one size.
void apply_mask(const at::Tensor& x, const at::Tensor& y, Mask m) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, x.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    if (avx2) {
      chunk_avx2(xp, yp, begin, end, m);
    } else {
      chunk_plain(xp, yp, begin, end, m);
    }
  });
}

Mask mask_for(double p, uint64_t key) {
  // keep probability 1-p as a 32-bit threshold; p = 1 keeps nothing
  const double t = std::ldexp(1.0 - p, 32);
  const uint32_t threshold = t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(std::llround(t));
  return Mask{key, threshold, 1.0f / static_cast<float>(1.0 - p)};
}

struct FusedDropout : public torch::autograd::Function<FusedDropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double p) {
    uint64_t key;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      key = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
    }
    ctx->saved_data["key"] = static_cast<int64_t>(key);
    ctx->saved_data["p"] = p;
    auto xc = x.contiguous();
    auto y = at::empty_like(xc);
    apply_mask(xc, y, mask_for(p, key));
    return y;
  }

  // d/dx: the same mask and scale on the incoming gradient
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto key = static_cast<uint64_t>(ctx->saved_data["key"].toInt());
    const double p = ctx->saved_data["p"].toDouble();
    auto g = grads[0].contiguous();
    auto gx = at::empty_like(g);
    apply_mask(g, gx, mask_for(p, key));
    return {gx, at::Tensor()};
  }
};

}  // namespace

extern "C" int m3ae_fused_dropout(const at::Tensor* x, double p, at::Tensor** out, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] {
    TORCH_CHECK(x->device().is_cpu() && x->scalar_type() == at::kFloat, "fused dropout takes fp32 CPU tensors, not ",
                x->toString());
    TORCH_CHECK(p >= 0.0 && p <= 1.0, "dropout probability has to be between 0 and 1, but got ", p);
    *out = new at::Tensor(FusedDropout::apply(*x, p));
  });
}
