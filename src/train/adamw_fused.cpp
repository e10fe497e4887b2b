// One transformers-4.6 AdamW step for an fp32 CPU parameter in a single pass over memory.
// The op-by-op form (src/train/optim.rs `update`) reads and writes the parameter, its
// gradient and both moments about seven times; this loop reads each once and writes three.
// Per element it computes what those ops compute, in the same order and rounding:
//   m = fma(1-b1, g - m, m)              exp_avg.lerp_(grad, 1 - beta1)   (ATen's lerp_vec)
//   v = fma(1-b2, g*g - v, v)            exp_avg_sq.lerp_(grad², 1 - beta2)
//   d = (sqrt(v) + eps) * (-1/step_size) denom, with -1/step_size folded in
//   p = (p + m / d) * (1 - lr*wd)        p.addcdiv_(exp_avg, denom); p.mul_(1 - lr*wd)
// The loop is compiled twice: for AVX2+FMA (chosen at run time where the CPU has them) and
// plain. Errors come back as a return code and a message (src/shim.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "shim.h"

namespace {

struct Coef {
  float w1, w2, eps, neg_inv_step, decay;
};

inline __attribute__((always_inline)) void body(float* __restrict p, const float* __restrict g, float* __restrict m,
                                                float* __restrict v, int64_t n, Coef c) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = std::fma(c.w1, gi - m[i], m[i]);
    const float vi = std::fma(c.w2, gi * gi - v[i], v[i]);
    const float d = (std::sqrt(vi) + c.eps) * c.neg_inv_step;
    p[i] = (p[i] + mi / d) * c.decay;
    m[i] = mi;
    v[i] = vi;
  }
}

__attribute__((target("avx2,fma"))) void chunk_avx2(float* p, const float* g, float* m, float* v, int64_t n, Coef c) {
  body(p, g, m, v, n, c);
}

void chunk_plain(float* p, const float* g, float* m, float* v, int64_t n, Coef c) {
  body(p, g, m, v, n, c);
}

bool usable(const at::Tensor& t, int64_t n) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == n;
}

}  // namespace

extern "C" int m3ae_adamw_fused(const at::Tensor* p, const at::Tensor* g, const at::Tensor* m, const at::Tensor* v,
                                double w1, double w2, double eps, double neg_inv_step, double decay, char* err,
                                size_t len) {
  return m3ae::guarded(err, len, [&] {
    const int64_t n = p->numel();
    TORCH_CHECK(usable(*p, n) && usable(*g, n) && usable(*m, n) && usable(*v, n),
                "fused AdamW takes contiguous fp32 CPU tensors of one size");
    float* P = p->data_ptr<float>();
    const float* G = g->data_ptr<float>();
    float* M = m->data_ptr<float>();
    float* V = v->data_ptr<float>();
    const Coef c{float(w1), float(w2), float(eps), float(neg_inv_step), float(decay)};
    static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    at::parallel_for(0, n, 1 << 15, [&](int64_t begin, int64_t end) {
      if (avx2) {
        chunk_avx2(P + begin, G + begin, M + begin, V + begin, end - begin, c);
      } else {
        chunk_plain(P + begin, G + begin, M + begin, V + begin, end - begin, c);
      }
    });
  });
}
