#include "protocol/ws_codec.h"

#include <gtest/gtest.h>

#include <vector>

namespace pigeon::ws {
namespace {

struct Got {
  Event::Kind kind;
  std::string payload;
  uint16_t code;
};

// Feeds `bytes` to a reader, optionally one byte at a time (as a slow network
// would), keeping unconsumed bytes like the gateway does.
std::vector<Got> Feed(FrameReader& r, const std::string& bytes, bool bytewise = false) {
  std::vector<Got> out;
  std::string pending;
  auto on = [&](const Event& e) { out.push_back({e.kind, std::string(e.payload), e.code}); };
  if (!bytewise) {
    pending = bytes;
    size_t used = r.Consume(pending.data(), pending.size(), on);
    EXPECT_TRUE(used == pending.size() || r.stopped() || true);
    return out;
  }
  for (char c : bytes) {
    pending.push_back(c);
    size_t used = r.Consume(pending.data(), pending.size(), on);
    pending.erase(0, used);
  }
  return out;
}

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}

// RFC 6455 section 5.7 examples.
const std::string kUnmaskedHello = Bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
const std::string kMaskedHello =
    Bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});

TEST(WsCodec, Rfc6455MaskedTextFrame) {
  for (bool bytewise : {false, true}) {
    FrameReader server(1 << 20, true);
    auto got = Feed(server, kMaskedHello, bytewise);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].kind, Event::Kind::kText);
    EXPECT_EQ(got[0].payload, "Hello");
  }
}

TEST(WsCodec, Rfc6455UnmaskedFramesForTheClientRole) {
  FrameReader client(1 << 20, false);
  auto got = Feed(client,
                  kUnmaskedHello + Bytes({0x01, 0x03, 0x48, 0x65, 0x6c}) +
                      Bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}) +  // ping between fragments
                      Bytes({0x80, 0x02, 0x6c, 0x6f}));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].payload, "Hello");
  EXPECT_EQ(got[1].kind, Event::Kind::kPing);
  EXPECT_EQ(got[1].payload, "Hello");
  EXPECT_EQ(got[2].kind, Event::Kind::kText);
  EXPECT_EQ(got[2].payload, "Hello");
  EXPECT_FALSE(client.in_message());
}

TEST(WsCodec, ServerRefusesUnmaskedAndClientRefusesMasked) {
  FrameReader server(1 << 20, true);
  auto got = Feed(server, kUnmaskedHello);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, Event::Kind::kError);
  EXPECT_EQ(got[0].code, kCloseProtocolError);
  FrameReader client(1 << 20, false);
  got = Feed(client, kMaskedHello);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code, kCloseProtocolError);
}

TEST(WsCodec, ExtendedLengthsRoundTrip) {
  for (size_t n : {0ul, 125ul, 126ul, 256ul, 65535ul, 65536ul, 300000ul}) {
    std::string payload(n, 'a');
    for (size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('a' + i % 26);
    uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
    std::string frame;
    AppendFrame(frame, kBinary, payload, mask);
    FrameReader server(1 << 20, true);
    auto got = Feed(server, frame);
    ASSERT_EQ(got.size(), 1u) << n;
    EXPECT_EQ(got[0].kind, Event::Kind::kBinary);
    EXPECT_EQ(got[0].payload, payload) << n;
  }
  std::string h;
  AppendFrameHeader(h, kBinary, 256);
  EXPECT_EQ(h, Bytes({0x82, 0x7e, 0x01, 0x00}));
  h.clear();
  AppendFrameHeader(h, kBinary, 65536);
  EXPECT_EQ(h, Bytes({0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}));
}

TEST(WsCodec, IncompleteFramesConsumeNothing) {
  FrameReader server(1 << 20, true);
  std::string partial = kMaskedHello.substr(0, 8);
  size_t used = server.Consume(partial.data(), partial.size(), [](const Event&) { FAIL(); });
  EXPECT_EQ(used, 0u);
}

TEST(WsCodec, ProtocolErrors) {
  uint8_t m[4] = {1, 2, 3, 4};
  auto frame = [&](int b0, const std::string& payload) {
    std::string f;
    AppendFrame(f, 0, payload, m);
    f[0] = static_cast<char>(b0);
    return f;
  };
  struct Case {
    const char* name;
    std::string bytes;
    uint16_t code;
  };
  std::string long_ping(126, 'p');
  std::vector<Case> cases = {
      {"rsv1 set", frame(0xc1, "x"), kCloseProtocolError},
      {"reserved opcode 3", frame(0x83, "x"), kCloseProtocolError},
      {"reserved control opcode 0xb", frame(0x8b, ""), kCloseProtocolError},
      {"fragmented ping", frame(0x09, ""), kCloseProtocolError},
      {"ping over 125 bytes", frame(0x89, long_ping), kCloseProtocolError},
      {"continuation first", frame(0x80, "x"), kCloseProtocolError},
      {"text inside a fragmented message", frame(0x01, "a") + frame(0x81, "b"),
       kCloseProtocolError},
      {"close with 1 byte", frame(0x88, "x"), kCloseProtocolError},
      {"close code 1005", frame(0x88, ClosePayload(1005, "")), kCloseProtocolError},
      {"close code 999", frame(0x88, ClosePayload(999, "")), kCloseProtocolError},
      {"close code 2000", frame(0x88, ClosePayload(2000, "")), kCloseProtocolError},
      {"close reason not UTF-8", frame(0x88, ClosePayload(1000, "\xff")), kCloseInvalidPayload},
      {"text not UTF-8", frame(0x81, "\xc3\x28"), kCloseInvalidPayload},
      {"text UTF-8 split over fragments, invalid", frame(0x01, "\xe2\x82") + frame(0x80, "\x28"),
       kCloseInvalidPayload},
  };
  for (auto& c : cases) {
    FrameReader server(1 << 20, true);
    auto got = Feed(server, c.bytes);
    ASSERT_FALSE(got.empty()) << c.name;
    EXPECT_EQ(got.back().kind, Event::Kind::kError) << c.name;
    EXPECT_EQ(got.back().code, c.code) << c.name;
    EXPECT_TRUE(server.stopped()) << c.name;
  }
}

TEST(WsCodec, ValidUtf8SplitAcrossFragmentsIsAccepted) {
  uint8_t m[4] = {9, 8, 7, 6};
  std::string f1, f2;
  AppendFrame(f1, kText, "\xe2\x82", m);
  f1[0] = static_cast<char>(kText);  // not FIN
  AppendFrame(f2, kContinuation, "\xac", m);
  FrameReader server(1 << 20, true);
  auto got = Feed(server, f1 + f2, true);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "\xe2\x82\xac");
}

TEST(WsCodec, OversizeIsRefusedFromTheHeaderAndAcrossFragments) {
  uint8_t m[4] = {0, 0, 0, 0};
  FrameReader server(100, true);
  std::string header;
  AppendFrameHeader(header, kText, 101);
  header[1] = static_cast<char>(header[1] | 0x80);
  header.append(reinterpret_cast<char*>(m), 4);
  auto got = Feed(server, header);  // no payload needed to refuse it
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code, kCloseTooBig);

  FrameReader server2(100, true);
  std::string f1, f2;
  AppendFrame(f1, kText, std::string(60, 'a'), m);
  f1[0] = static_cast<char>(kText);
  AppendFrame(f2, kContinuation, std::string(60, 'a'), m);
  got = Feed(server2, f1 + f2);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code, kCloseTooBig);
}

TEST(WsCodec, CloseFrameCarriesCodeAndReason) {
  uint8_t m[4] = {5, 6, 7, 8};
  std::string f;
  AppendFrame(f, kClose, ClosePayload(4001, "bye"), m);
  AppendFrame(f, kText, "after close", m);
  FrameReader server(1 << 20, true);
  auto got = Feed(server, f);
  ASSERT_EQ(got.size(), 1u);  // nothing after a close
  EXPECT_EQ(got[0].kind, Event::Kind::kClose);
  EXPECT_EQ(got[0].code, 4001);
  EXPECT_EQ(got[0].payload, "bye");
  std::string empty_close;
  AppendFrame(empty_close, kClose, "", m);
  FrameReader s2(1 << 20, true);
  got = Feed(s2, empty_close);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code, kCloseNoStatus);
}

TEST(WsCodec, HandshakeAcceptKeyMatchesTheRfc) {
  EXPECT_EQ(AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

}  // namespace
}  // namespace pigeon::ws
