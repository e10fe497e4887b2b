// MKL's packed sgemm for inference: the two operators PyTorch registers under `mkl::`
// (torch.ops.mkl._mkl_reorder_linear_weight and torch.ops.mkl._mkl_linear), reached through
// the dispatcher because tch binds only `aten::`. Each function returns a new at::Tensor*
// (tch's C_tensor) or nullptr with the exception's text in `err`.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>

#include <cstdio>
#include <exception>
#include <optional>

namespace {

using Pack = at::Tensor(const at::Tensor&, int64_t);
using PackedLinear = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, int64_t);

std::optional<c10::OperatorHandle> find(const char* name) {
  return c10::Dispatcher::singleton().findSchema({name, ""});
}

void fail(char* err, size_t len, const char* what) {
  if (err && len) std::snprintf(err, len, "%s", what);
}

}  // namespace

extern "C" {

// 1 when this libtorch registers both operators (x86 builds with MKL), else 0.
int m3ae_mkl_packed_available() {
  static const bool ok = find("mkl::_mkl_reorder_linear_weight").has_value() && find("mkl::_mkl_linear").has_value();
  return ok ? 1 : 0;
}

// Whether autograd records operations on this thread (tch::no_grad turns it off).
int m3ae_grad_mode_enabled() { return c10::GradMode::is_enabled() ? 1 : 0; }

// The tensor's in-place version counter: it moves on every in-place write (copy_, add_...).
int64_t m3ae_tensor_version(const at::Tensor* t) { return t->_version(); }

// weight [N, K] packed for inputs of `rows` rows.
at::Tensor* m3ae_mkl_pack(const at::Tensor* weight, int64_t rows, char* err, size_t len) {
  try {
    static auto op = find("mkl::_mkl_reorder_linear_weight").value().typed<Pack>();
    return new at::Tensor(op.call(*weight, rows));
  } catch (const std::exception& e) {
    fail(err, len, e.what());
    return nullptr;
  }
}

// input [..., K] -> [..., N]; `bias` may be null. Inputs of another row count than `rows`
// take the operator's own fallback, at::linear on the unpacked weight.
at::Tensor* m3ae_mkl_linear(const at::Tensor* input, const at::Tensor* packed, const at::Tensor* weight, const at::Tensor* bias, int64_t rows, char* err, size_t len) {
  try {
    static auto op = find("mkl::_mkl_linear").value().typed<PackedLinear>();
    std::optional<at::Tensor> b = bias ? std::optional<at::Tensor>(*bias) : std::nullopt;
    return new at::Tensor(op.call(*input, *packed, *weight, b, rows));
  } catch (const std::exception& e) {
    fail(err, len, e.what());
    return nullptr;
  }
}

}  // extern "C"
