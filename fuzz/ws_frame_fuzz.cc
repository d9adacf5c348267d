// libFuzzer: the bytes a client sends on an upgraded socket, arriving in
// chunks (the first input byte picks their size), through the server's
// frame reader, as a connection feeds it.
#include <cstdlib>
#include <string>

#include "protocol/ws_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pigeon;
  if (size == 0) return 0;
  constexpr size_t kMaxMessage = 4096;
  const size_t chunk = 1 + data[0] % 64;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  ws::FrameReader reader(kMaxMessage, /*server_role=*/true);
  std::string pending;
  for (size_t off = 0; off < input.size() && !reader.stopped(); off += chunk) {
    pending.append(input, off, chunk);
    const size_t used = reader.Consume(pending.data(), pending.size(), [&](const ws::Event& ev) {
      using K = ws::Event::Kind;
      // A message is never larger than the limit, and a text one is UTF-8.
      if ((ev.kind == K::kText || ev.kind == K::kBinary) && ev.payload.size() > kMaxMessage)
        std::abort();
      if (ev.kind == K::kText && !ws::IsValidUtf8(ev.payload)) std::abort();
      if ((ev.kind == K::kPing || ev.kind == K::kPong) && ev.payload.size() > 125) std::abort();
    });
    if (used > pending.size()) std::abort();
    pending.erase(0, used);
  }
  return 0;
}
