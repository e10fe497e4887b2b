// m3ae's own declaration-only stand-in (see ../README.md): the one member of gloo's context
// that ProcessGroupGloo.hpp's inline code names.
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
