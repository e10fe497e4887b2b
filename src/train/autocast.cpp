// The one autocast setting tch 0.24 does not expose: CUDA autocast's dtype (fp16 by default,
// bf16 for `precision: "bf16"`). Errors come back as a return code, never as an exception.
#include <ATen/autocast_mode.h>

extern "C" int m3ae_set_cuda_autocast_dtype(int bf16) {
  try {
    at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
    return 0;
  } catch (...) {
    return 1;
  }
}

extern "C" int m3ae_cuda_autocast_dtype_is_bf16() {
  try {
    return at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16 ? 1 : 0;
  } catch (...) {
    return -1;
  }
}
