// The one autocast setting tch 0.24 does not expose: CUDA autocast's dtype (fp16 by default,
// bf16 for `precision: "bf16"`). Errors come back as a return code and a message (src/shim.h).
#include <ATen/autocast_mode.h>

#include "shim.h"

extern "C" int m3ae_set_cuda_autocast_dtype(int bf16, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] { at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf); });
}

// *is_bf16 = whether CUDA autocast computes in bf16 (else fp16)
extern "C" int m3ae_cuda_autocast_dtype_is_bf16(int* is_bf16, char* err, size_t len) {
  return m3ae::guarded(err, len,
                       [&] { *is_bf16 = at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16 ? 1 : 0; });
}
