#include "protocol/frames.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <random>
#include <type_traits>

#include "protocol/frames_describe.h"

namespace pigeon {
namespace {

FrameError Err(std::string_view text, FrameLimits limits = {}) {
  auto r = ParseClientFrame(text, limits);
  EXPECT_TRUE(std::holds_alternative<FrameError>(r)) << text;
  return std::holds_alternative<FrameError>(r) ? std::get<FrameError>(r) : FrameError{};
}

ClientFrame Ok(std::string_view text) {
  auto r = ParseClientFrame(text, {});
  EXPECT_TRUE(std::holds_alternative<ClientFrame>(r)) << text;
  return std::holds_alternative<ClientFrame>(r) ? std::get<ClientFrame>(r)
                                                : ClientFrame{PingFrame{}};
}

TEST(Frames, ParsesEveryClientFrameType) {
  auto send = std::get<SendFrame>(Ok(
      R"({"type":"send","conversation_id":"c","client_msg_id":"m","body":"h\u00e9\n","extra":1})"));
  EXPECT_EQ(send.conversation_id, "c");
  EXPECT_EQ(send.client_msg_id, "m");
  EXPECT_EQ(send.body, "h\xc3\xa9\n");
  EXPECT_EQ(std::get<ReceivedFrame>(Ok(R"({"type":"received","cursor":"f000000000000000a"})")).pos,
            10u);
  auto read = std::get<ReadFrame>(Ok(R"({"type":"read","conversation_id":"c","seq":7})"));
  EXPECT_EQ(read.seq, 7u);
  EXPECT_TRUE(
      std::get<TypingFrame>(Ok(R"({"type":"typing","conversation_id":"c","state":"composing"})"))
          .composing);
  EXPECT_FALSE(
      std::get<TypingFrame>(Ok(R"({"type":"typing","conversation_id":"c","state":"paused"})"))
          .composing);
  EXPECT_EQ(
      std::get<PresenceSubscribeFrame>(Ok(R"({"type":"presence_subscribe","users":["a","b"]})"))
          .users.size(),
      2u);
  EXPECT_TRUE(std::holds_alternative<PingFrame>(Ok(R"({"type":"ping"})")));
}

TEST(Frames, RefusesBadFramesWithBadRequest) {
  for (const char* bad :
       {"", "x", "[]", "null", "1", R"({"type":1})", "{}", R"({"type":"nope"})",
        R"({"type":"send"})", R"({"type":"send","client_msg_id":"m"})",
        R"({"type":"send","client_msg_id":"m","conversation_id":"c"})",
        R"({"type":"send","client_msg_id":"m","conversation_id":"","body":""})",
        R"({"type":"send","client_msg_id":7,"conversation_id":"c","body":""})",
        R"({"type":"read","conversation_id":"c","seq":1.5})",
        R"({"type":"read","conversation_id":"c","seq":"1"})",
        R"({"type":"received","cursor":"f1"})", R"({"type":"presence_subscribe","users":[1]})",
        R"({"type":"send","client_msg_id":"m","conversation_id":"c","body":"x"} trailing)"}) {
    EXPECT_EQ(Err(bad).code, ErrorCode::kBadRequest) << bad;
  }
}

TEST(Frames, EchoesClientMsgIdAndSaysTooLargeForAnOversizeBody) {
  FrameLimits limits;
  limits.max_body_bytes = 4;
  auto e =
      Err(R"({"type":"send","conversation_id":"c","client_msg_id":"m1","body":"12345"})", limits);
  EXPECT_EQ(e.code, ErrorCode::kTooLarge);
  EXPECT_EQ(e.client_msg_id, "m1");
  EXPECT_TRUE(std::holds_alternative<ClientFrame>(ParseClientFrame(
      R"({"type":"send","conversation_id":"c","client_msg_id":"m1","body":"1234"})", limits)));
  e = Err(R"({"type":"send","client_msg_id":"m2"})");
  EXPECT_EQ(e.client_msg_id, "m2");
  EXPECT_EQ(Err(R"({"type":"send","conversation_id":"c","client_msg_id":"","body":"x"})").code,
            ErrorCode::kBadRequest);
  std::string long_id(65, 'k');
  EXPECT_EQ(Err(R"({"type":"send","conversation_id":"c","client_msg_id":")" + long_id +
                R"(","body":"x"})")
                .code,
            ErrorCode::kBadRequest);
}

// Frames parse with simdjson, and those it refuses with boost::json, as all
// frames did before: either way a frame means the same.
TEST(Frames, ParseTheSameWhicheverParserTakesThem) {
  // An integer beyond 64 bits in an unknown field: JSON, refused by simdjson.
  EXPECT_EQ(std::get<SendFrame>(
                Ok(R"({"type":"send","conversation_id":"c","client_msg_id":"m","body":"b",)"
                   R"("n":123456789012345678901234567890})"))
                .body,
            "b");
  // Nesting: up to 16 levels is taken (boost::json's limit), 17 is refused.
  auto nested = [](int depth) {
    return R"({"type":"ping","x":)" + std::string(depth - 1, '[') + std::string(depth - 1, ']') +
           "}";
  };
  EXPECT_TRUE(std::holds_alternative<PingFrame>(Ok(nested(2))));
  EXPECT_TRUE(std::holds_alternative<PingFrame>(Ok(nested(12))));
  EXPECT_TRUE(std::holds_alternative<PingFrame>(Ok(nested(16))));
  EXPECT_EQ(Err(nested(17)).code, ErrorCode::kBadRequest);
  // A repeated key: the last one counts.
  EXPECT_TRUE(std::holds_alternative<PingFrame>(Ok(R"({"type":"send","type":"ping"})")));
  EXPECT_EQ(std::get<ReadFrame>(Ok(R"({"type":"read","conversation_id":"c","seq":1,"seq":9})")).seq,
            9u);
  EXPECT_EQ(Err(R"({"type":"read","conversation_id":"c","seq":1,"seq":-1})").code,
            ErrorCode::kBadRequest);
  EXPECT_EQ(std::get<ReadFrame>(Ok(R"({"type":"read","conversation_id":"c",)"
                                   R"("seq":18446744073709551615})"))
                .seq,
            18446744073709551615u);
  // A frame over the reused parser's 64 KiB: 30,000 escaped characters.
  std::string big = R"({"type":"send","conversation_id":"c","client_msg_id":"m","body":")";
  for (int i = 0; i < 30000; ++i) big += "\\u00e9";
  big += "\"}";
  FrameLimits limits;
  limits.max_body_bytes = 1 << 20;
  auto r = ParseClientFrame(big, limits);
  ASSERT_TRUE(std::holds_alternative<ClientFrame>(r));
  EXPECT_EQ(std::get<SendFrame>(std::get<ClientFrame>(r)).body.size(), 60000u);
  std::string users = R"({"type":"presence_subscribe","users":[)";
  for (int i = 0; i < 1001; ++i) users += (i ? ",\"u\"" : "\"u\"");
  EXPECT_EQ(Err(users + "]}").message, "at most 1000 users per presence_subscribe");
  EXPECT_EQ(Err(R"({"type":"presence_subscribe","users":"a"})").message,
            "presence_subscribe needs an array \"users\"");
  EXPECT_EQ(Err(R"({"type":"presence_subscribe","users":["a",1]})").message,
            "\"users\" must hold strings");
  EXPECT_EQ(Err("[1]").message, "frame is not a JSON object");
  EXPECT_EQ(Err("{").message, "frame is not valid JSON");
}

// Every frame means what it meant when Boost.JSON parsed them all: valid
// frames of each type and 200,000 mutations of them (bytes flipped, cut,
// doubled, or replaced with JSON's own punctuation), compared answer by answer.
TEST(Frames, SimdjsonAnswersEveryFrameAsBoostJsonDid) {
  const std::vector<std::string> seeds = {
      R"({"type":"send","conversation_id":"d:alice:bob","client_msg_id":"5f0c-11","body":"hi \u00e9\n"})",
      R"({"type":"received","cursor":"f000000000000000a"})",
      R"({"type":"read","conversation_id":"c","seq":7})",
      R"({"type":"typing","conversation_id":"c","state":"composing"})",
      R"({"type":"presence_subscribe","users":["a","b\"c"]})",
      R"({"type":"ping","x":[1,2.5,-3,true,false,null,{"y":"z"}],"n":12345678901234567890})",
      R"( { "body" : "b" , "type" : "send" , "client_msg_id" : "m" , "conversation_id" : "c" } )",
  };
  const std::string punctuation = "{}[]\":,\\ 0-.eEtfnu";
  FrameLimits limits;
  limits.max_body_bytes = 8;
  std::mt19937 rng(7);
  size_t compared = 0, frames = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string text = seeds[rng() % seeds.size()];
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0 && !text.empty(); --edits) {
      size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text[at] = punctuation[rng() % punctuation.size()];
          break;
        case 1:
          text[at] = static_cast<char>(rng() % 256);
          break;
        case 2:
          text.erase(at, 1 + rng() % 4);
          break;
        default:
          text.insert(at, text.substr(at, 1 + rng() % 8));
      }
    }
    const std::string mine = DescribeParse(ParseClientFrame(text, limits));
    const std::string boost = DescribeParse(ParseClientFrameWithBoostJson(text, limits));
    ASSERT_EQ(mine, boost) << text;
    ++compared;
    if (!mine.starts_with("error")) ++frames;
  }
  for (auto& seed : seeds)
    EXPECT_EQ(DescribeParse(ParseClientFrame(seed, {})),
              DescribeParse(ParseClientFrameWithBoostJson(seed, {})));
  EXPECT_EQ(compared, 200000u);
  EXPECT_GT(frames, 4000u);  // the mutations reach valid frames too, not only errors
}

TEST(Frames, ServerFramesAreValidJsonWithEscapedStrings) {
  std::string body =
      "quote\" backslash\\ newline\n nul" + std::string(1, '\0') + " \xe2\x82\xac <script>";
  std::string frame;
  AppendMessageFramePrefix(frame, {"conv", 3, "alice", body, 1234});
  AppendMessageEnd(frame, 17);
  auto v = boost::json::parse(frame).as_object();
  EXPECT_EQ(v.at("type").as_string(), "message");
  EXPECT_EQ(v.at("body").as_string(), body);
  EXPECT_EQ(v.at("seq").as_int64(), 3);
  EXPECT_EQ(v.at("ts").as_int64(), 1234);
  EXPECT_EQ(v.at("cursor").as_string(), EncodeCursor(17));
  EXPECT_EQ(v.at("server_msg_id").as_string(), "conv-3");
  auto ack = boost::json::parse(AckFrame("id\"1", "conv", 3, 1234)).as_object();
  EXPECT_EQ(ack.at("client_msg_id").as_string(), "id\"1");
  EXPECT_EQ(ack.at("server_msg_id").as_string(), "conv-3");
  auto err = boost::json::parse(ErrorFrame(ErrorCode::kTooLarge, "big \"x\"", std::string("c")))
                 .as_object();
  EXPECT_EQ(err.at("code").as_string(), "too_large");
  EXPECT_EQ(err.at("client_msg_id").as_string(), "c");
  auto http = boost::json::parse(HttpErrorBody(ErrorCode::kConflict, "taken")).as_object();
  EXPECT_EQ(http.at("error").at("code").as_string(), "conflict");
}

TEST(Frames, JsonStringsAreWhatBoostJsonSerializes) {
  // Plain text takes a shortcut around the serializer: the bytes must match
  // either way, for every byte that may or may not need escaping.
  std::vector<std::string> cases = {"", "alice", "3f2a-17", "caf\xc3\xa9 \xe2\x82\xac / <a>"};
  for (int c = 0; c < 0x80; ++c) cases.push_back("x" + std::string(1, static_cast<char>(c)) + "y");
  for (auto& s : cases) {
    std::string out = "[";
    AppendJsonString(out, s);
    EXPECT_EQ(out, "[" + boost::json::serialize(boost::json::string(s))) << s;
  }
}

}  // namespace
}  // namespace pigeon
