// `nn.Linear` in fp32 on CPU through oneDNN's matmul, with autograd: the forward and both
// backward GEMMs call at::native::mkldnn_matmul (exported by libtorch_cpu, declared below
// because the wheel ships no header for it), which runs oneDNN on views of the dense tensors:
// no layout conversion, and autograd keeps the same tensors F.linear keeps (x and w).
// build.rs checks the declaration against the libtorch at hand (build/onednn_check.rs) and,
// on a mismatch, defines M3AE_NO_ONEDNN_MATMUL: the route is compiled out and its entry
// reports that it is off. Errors come back as a return code and a message (src/shim.h).
#include "shim.h"

#ifndef M3AE_NO_ONEDNN_MATMUL
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace at {
namespace native {
// ATen/native/mkldnn/Matmul.h of torch 2.11: result = beta * result + alpha * gemm(mat1, mat2)
void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta, float alpha);
}  // namespace native
}  // namespace at

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// a [m, k] @ b [k, n] (each contiguous or a transposed contiguous)
at::Tensor onednn_mm(const at::Tensor& a, const at::Tensor& b) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  at::native::mkldnn_matmul(a, b, out, 0.0f, 1.0f);
  return out;
}

struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  // x [rows, k], w [n, k], b [n] or none -> [rows, n]. The bias is an optional, not an
  // undefined at::Tensor: Function::apply reads the device of every at::Tensor argument
  // (VariableInfo), and an undefined one throws "tensor does not have a device".
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = b.has_value();
    if (!b.has_value()) return onednn_mm(x, w.t());
    // y = x @ w.T + 1 * y, y starting as the bias (oneDNN's sum post-op)
    auto y = b->expand({x.size(0), w.size(0)}).contiguous();
    at::native::mkldnn_matmul(x, w.t(), y, 1.0f, 1.0f);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    auto g = grads[0].contiguous();
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = onednn_mm(g, w);       // [rows, n] @ [n, k]
    if (ctx->needs_input_grad(1)) gw = onednn_mm(g.t(), x);   // [n, rows] @ [rows, k]
    // without a bias, input 2 is no variable: its gradient stays undefined
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = g.sum(0);
    return {gx, gw, gb};
  }
};

}  // namespace

extern "C" int m3ae_onednn_linear_built() { return 1; }

extern "C" int m3ae_onednn_linear(const at::Tensor* x, const at::Tensor* w, const at::Tensor* b, at::Tensor** out,
                                  char* err, size_t len) {
  return m3ae::guarded(err, len, [&] { *out = new at::Tensor(OneDnnLinear::apply(*x, *w, b ? std::optional<at::Tensor>(*b) : std::nullopt)); });
}

#else  // M3AE_NO_ONEDNN_MATMUL

namespace at {
class Tensor;
}

extern "C" int m3ae_onednn_linear_built() { return 0; }

extern "C" int m3ae_onednn_linear(const at::Tensor*, const at::Tensor*, const at::Tensor*, at::Tensor**, char* err,
                                  size_t len) {
  return m3ae::fail(err, len,
                    "this build has no oneDNN linear route: build.rs found a libtorch whose "
                    "at::native::mkldnn_matmul it did not check (see its warning)");
}

#endif
