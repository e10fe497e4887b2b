// The autocast settings tch 0.24 does not expose: CUDA autocast's dtype (fp16 by default,
// bf16 for `precision: "bf16"`), and CPU autocast itself (tch's `autocast` is CUDA only), as
// Python's `torch.autocast("cpu", dtype=torch.bfloat16)` enters and leaves it; and the CPU's
// bf16 features as libtorch's cpuinfo sees them. Errors come back as a return code and a
// message (src/shim.h).
#include <ATen/autocast_mode.h>
#include <ATen/cpu/Utils.h>

#include "shim.h"

extern "C" int m3ae_set_cuda_autocast_dtype(int bf16, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] { at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf); });
}

// *is_bf16 = whether CUDA autocast computes in bf16 (else fp16)
extern "C" int m3ae_cuda_autocast_dtype_is_bf16(int* is_bf16, char* err, size_t len) {
  return m3ae::guarded(err, len,
                       [&] { *is_bf16 = at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16 ? 1 : 0; });
}

// torch.autocast("cpu", dtype=torch.bfloat16).__enter__: saves the thread's CPU autocast state
// in *prev_enabled / *prev_dtype (an at::ScalarType), enables it in bf16 and counts one more
// nesting level.
extern "C" int m3ae_cpu_autocast_enter(int* prev_enabled, int* prev_dtype, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] {
    *prev_enabled = at::autocast::is_autocast_enabled(at::kCPU) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(at::kCPU));
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::increment_nesting();
  });
}

// __exit__: one nesting level less (the cast-weight cache is cleared when none is left),
// then the saved state back.
extern "C" int m3ae_cpu_autocast_exit(int prev_enabled, int prev_dtype, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCPU, prev_enabled != 0);
    at::autocast::set_autocast_dtype(at::kCPU, static_cast<at::ScalarType>(prev_dtype));
  });
}

// 1 when CPU autocast is on for this thread and computes in bf16
extern "C" int m3ae_cpu_autocast_bf16_active() {
  try {
    return at::autocast::is_autocast_enabled(at::kCPU) && at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}

// *value = 1 / 0 for a boolean capability `name` of at::cpu::get_cpu_capabilities() (cpuinfo's
// ISA flags: "avx512_bf16", "amx_bf16", ...), -1 when libtorch does not report it.
extern "C" int m3ae_cpu_capability(const char* name, int* value, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] {
    const auto caps = at::cpu::get_cpu_capabilities();
    const auto it = caps.find(name);
    *value = it == caps.end() || !it->second.isBool() ? -1 : (it->second.toBool() ? 1 : 0);
  });
}
