// The C++ side of the shims' calling convention (src/shim.rs): every `extern "C"` entry runs
// its body through `m3ae::guarded`, which returns 0, or 1 after writing a NUL-terminated
// message into the caller's buffer. No exception of any type unwinds into Rust (a C++
// exception crossing a Rust frame aborts the process).
#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>

namespace m3ae {

// Writes `msg` into `err` (at most `len` bytes, always NUL-terminated) and returns 1.
inline int fail(char* err, size_t len, const char* msg) {
  if (err != nullptr && len > 0) {
    std::strncpy(err, msg, len - 1);
    err[len - 1] = '\0';
  }
  return 1;
}

// Runs `body`, turning any exception into a return code and a message: c10's without its
// C++ backtrace, any other std::exception's what(), and a fixed message for the rest (a
// thrown int, a foreign exception).
template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return fail(err, len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(err, len, e.what());
  } catch (...) {
    return fail(err, len, "unknown C++ exception (not a std::exception)");
  }
}

}  // namespace m3ae
