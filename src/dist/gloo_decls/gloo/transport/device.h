// m3ae's own declaration-only stand-in (see ../../README.md): types ProcessGroupGloo.hpp only
// holds through smart pointers.
#pragma once

namespace gloo {
namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport
} // namespace gloo
