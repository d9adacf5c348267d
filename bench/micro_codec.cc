// Microbenchmarks of the protocol codec: what every message costs before it
// reaches the store. Run: build/micro_bench --benchmark_filter=Codec
#include <benchmark/benchmark.h>

#include <cstring>

#include "core/shared_frame.h"
#include "protocol/frames.h"
#include "protocol/ws_codec.h"

namespace pigeon {
namespace {

const std::string kSend =
    R"({"type":"send","conversation_id":"23ce2a9e51e4bf25fca0f707","client_msg_id":"c-000123",)"
    R"("body":"t=1234567890;xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"})";

void BM_CodecParseSendFrame(benchmark::State& state) {
  FrameLimits limits;
  for (auto _ : state) {
    auto r = ParseClientFrame(kSend, limits);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_CodecParseSendFrame);

// One masked client frame through the reader (unmask, UTF-8 check, event).
void BM_CodecReadMaskedFrame(benchmark::State& state) {
  uint8_t mask[4] = {1, 2, 3, 4};
  std::string frame;
  ws::AppendFrame(frame, ws::kText, kSend, mask);
  std::string buf;
  ws::FrameReader reader(1 << 20, true);
  for (auto _ : state) {
    buf = frame;  // unmasking is in place
    size_t n = reader.Consume(buf.data(), buf.size(),
                              [](const ws::Event& e) { benchmark::DoNotOptimize(e); });
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * frame.size()));
}
BENCHMARK(BM_CodecReadMaskedFrame);

// The frames one message produces, as routing makes them: the shared prefix in
// a reused text, each of two members' copies its cursor on it and a copy into
// its SharedFrame, and the ack.
void BM_CodecWriteMessageFrames(benchmark::State& state) {
  std::string body(static_cast<size_t>(state.range(0)), 'x');
  std::string text, ack;
  for (auto _ : state) {
    text.clear();
    AppendMessageFramePrefix(text, {"23ce2a9e51e4bf25fca0f707", 42, "alice", body, 1733300000000});
    const size_t prefix = text.size();
    AppendMessageEnd(text, 100);
    SharedFrame a(text);
    text.resize(prefix);
    AppendMessageEnd(text, 200);
    SharedFrame b(text);
    ack.clear();
    AppendAckFrame(ack, "c-000123", "23ce2a9e51e4bf25fca0f707", 42, 1733300000000);
    benchmark::DoNotOptimize(a);
    benchmark::DoNotOptimize(b);
    benchmark::DoNotOptimize(ack);
  }
}
BENCHMARK(BM_CodecWriteMessageFrames)->Arg(100)->Arg(4096);

}  // namespace
}  // namespace pigeon
