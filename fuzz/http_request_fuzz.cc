// libFuzzer: the bytes a client sends before (or instead of) a WebSocket
// upgrade, in chunks (the first input byte picks their size), through the
// server's HTTP request parser, as a connection feeds it: requests one after
// another on a kept-alive connection, until one is refused.
#include <cstdlib>
#include <memory>
#include <string>

#include "gateway/http_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pigeon;
  if (size == 0) return 0;
  constexpr size_t kHeaderLimit = 2048, kBodyLimit = 4096;
  const size_t chunk = 1 + data[0] % 64;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto parser = std::make_unique<HttpRequestParser>(kHeaderLimit, kBodyLimit);
  std::string pending;
  for (size_t off = 0; off < input.size(); off += chunk) {
    pending.append(input, off, chunk);
    for (;;) {
      HttpRequestParser::State state;
      std::string error;
      const size_t used = parser->Put(pending.data(), pending.size(), &state, &error);
      if (used > pending.size()) std::abort();
      pending.erase(0, used);
      if (state == HttpRequestParser::State::kError) return 0;  // answered 400/413, closed
      (void)parser->TakeExpectContinue();
      if (state != HttpRequestParser::State::kDone) break;
      HttpRequest req = parser->Take();
      if (req.body.size() > kBodyLimit) std::abort();
      (void)req.path();
      parser = std::make_unique<HttpRequestParser>(kHeaderLimit, kBodyLimit);
      if (used == 0) break;
    }
  }
  return 0;
}
