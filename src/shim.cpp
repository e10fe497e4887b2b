// The shims' error guard (shim.h) on each kind of exception, for tests/model/shims.rs: a
// c10::Error (TORCH_CHECK), another std::exception, and something that is no std::exception
// at all. Every other entry runs its body through the same guard.
#include <stdexcept>

#include "shim.h"

// kind 0: returns normally; 1: TORCH_CHECK fails; 2: std::runtime_error; 3: throws an int
extern "C" int m3ae_shim_guard_check(int kind, char* err, size_t len) {
  return m3ae::guarded(err, len, [&] {
    TORCH_CHECK(kind != 1, "TORCH_CHECK failed as asked (kind ", kind, ")");
    if (kind == 2) throw std::runtime_error("std::runtime_error as asked");
    if (kind == 3) throw kind;
  });
}
