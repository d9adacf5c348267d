// libFuzzer: a WebSocket text message from a client, parsed as a frame. Two
// parsers must give the same answer: simdjson's (the server's) and Boost.JSON's
// (the one every frame went through before), down to the error's message.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/frames.h"
#include "protocol/frames_describe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pigeon;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  FrameLimits limits;
  limits.max_body_bytes = 64;
  const std::string simd = DescribeParse(ParseClientFrame(text, limits));
  const std::string boost = DescribeParse(ParseClientFrameWithBoostJson(text, limits));
  if (simd != boost) {
    std::fprintf(stderr, "simdjson:   %s\nBoost.JSON: %s\n", simd.c_str(), boost.c_str());
    std::abort();
  }
  return 0;
}
