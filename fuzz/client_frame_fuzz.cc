// libFuzzer: a WebSocket text message from a client, parsed as a frame. Two
// parsers must give the same answer: simdjson's (the server's) and Boost.JSON's
// (the one every frame went through before), down to the error's message.
//
// Except where Boost.JSON refuses valid JSON: a number whose exponent is
// beyond its range (RFC 8259 sets none; `0e750956297025341214` is 0). There
// simdjson reads the frame, and pigeon answers what the frame lacks or holds
// (both bad_request) rather than "not valid JSON".
#include <boost/json/error.hpp>
#include <boost/json/parse.hpp>
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
    boost::system::error_code ec;
    (void)boost::json::parse(text, ec);
    if (ec == boost::json::error::exponent_overflow) return 0;
    std::fprintf(stderr, "simdjson:   %s\nBoost.JSON: %s\n", simd.c_str(), boost.c_str());
    std::abort();
  }
  return 0;
}
