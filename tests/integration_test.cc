// Black-box tests: the real pigeond on a loopback port, the real protocol
// over real sockets. Each test names the behaviour it checks.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "client/pigeon_client.h"
#include "test_util.h"

namespace pigeon::test {
namespace {

using namespace ::pigeon::client;

// POST of a JSON body from 127.0.0.(1 + source_index), with an
// X-Forwarded-For header when `forwarded_for` is not empty.
HttpResult PostFrom(uint16_t port, const std::string& target, const json::object& body,
                    const std::string& forwarded_for = "", int source_index = 0) {
  const std::string text = json::serialize(body);
  std::string raw = "POST " + target +
                    " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(text.size()) +
                    "\r\n";
  if (!forwarded_for.empty()) raw += "X-Forwarded-For: " + forwarded_for + "\r\n";
  return RawHttp(port, raw + "\r\n" + text, source_index);
}

class Pigeon : public ::testing::Test {
 protected:
  void SetUp() override { server_.Start(); }
  uint16_t port() const { return server_.port(); }

  // All feed entries of `a` after `since`, following next_cursor.
  std::vector<json::object> ReadWholeFeed(const Account& a, std::string since = "",
                                          int limit = 100) {
    std::vector<json::object> out;
    for (int guard = 0; guard < 10000; ++guard) {
      std::string target = "/api/v1/messages?limit=" + std::to_string(limit);
      if (!since.empty()) target += "&since=" + since;
      auto r = Http(port(), "GET", target, "", a.token);
      EXPECT_EQ(r.status, 200) << r.body;
      for (auto& m : r.json.at("messages").as_array()) out.push_back(m.as_object());
      since = S(r.json.at("next_cursor"));
      if (!r.json.at("has_more").as_bool()) break;
    }
    return out;
  }

  TestServer server_;
};

TEST_F(Pigeon, LiveMessageReachesOnlineRecipientAfterAck) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wa = WsClient::Connect(port(), alice.token), wb = WsClient::Connect(port(), bob.token);
  ASSERT_TRUE(wa && wb);
  wa->SendJson(SendFrameJson(conv, "m1", "hello \"bob\" \u00e9"));
  auto ack = wa->NextOfType("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(S(ack->at("client_msg_id")), "m1");
  EXPECT_EQ(S(ack->at("conversation_id")), conv);
  EXPECT_EQ(I(ack->at("seq")), 1);
  auto msg = wb->NextOfType("message");
  ASSERT_TRUE(msg);
  EXPECT_EQ(S(msg->at("body")), "hello \"bob\" \u00e9");
  EXPECT_EQ(S(msg->at("sender")), "alice");
  EXPECT_EQ(S(msg->at("server_msg_id")), S(ack->at("server_msg_id")));
  EXPECT_EQ(I(msg->at("seq")), 1);
  EXPECT_EQ(I(msg->at("ts")), I(ack->at("ts")));
  EXPECT_TRUE(msg->contains("cursor"));
  // The same ts and id in the feed and the history.
  auto feed = ReadWholeFeed(bob);
  ASSERT_EQ(feed.size(), 1u);
  EXPECT_EQ(I(feed[0].at("ts")), I(ack->at("ts")));
  EXPECT_EQ(S(feed[0].at("cursor")), S(msg->at("cursor")));
  auto hist = Http(port(), "GET", "/api/v1/conversations/" + conv + "/messages", "", bob.token);
  ASSERT_EQ(hist.status, 200);
  EXPECT_EQ(I(hist.json.at("messages").as_array()[0].at("ts")), I(ack->at("ts")));
  EXPECT_FALSE(hist.json.at("messages").as_array()[0].as_object().contains("cursor"));
}

TEST_F(Pigeon, SendersOtherDevicesGetTheirOwnMessages) {
  auto phone = Login(port(), "alice"), laptop = Login(port(), "alice");
  Login(port(), "bob");
  EXPECT_NE(phone.device_id, laptop.device_id);
  auto conv = OpenConversation(port(), phone, "bob");
  auto wp = WsClient::Connect(port(), phone.token), wl = WsClient::Connect(port(), laptop.token);
  wp->SendJson(SendFrameJson(conv, "x", "from phone"));
  ASSERT_TRUE(wp->NextOfType("ack"));
  auto copy = wl->NextOfType("message");
  ASSERT_TRUE(copy);
  EXPECT_EQ(S(copy->at("body")), "from phone");
  EXPECT_EQ(S(copy->at("sender")), "alice");
}

TEST_F(Pigeon, RetryWithSameClientMsgIdFromAnotherDeviceCreatesNothing) {
  auto phone = Login(port(), "alice"), laptop = Login(port(), "alice");
  auto bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), phone, "bob");
  auto wp = WsClient::Connect(port(), phone.token);
  wp->SendJson(SendFrameJson(conv, "same-key", "first"));
  auto ack1 = wp->NextOfType("ack");
  ASSERT_TRUE(ack1);
  wp.reset();  // a reconnect...
  auto wl = WsClient::Connect(port(), laptop.token);
  wl->SendJson(SendFrameJson(conv, "same-key", "a different body"));
  auto ack2 = wl->NextOfType("ack");
  ASSERT_TRUE(ack2);
  EXPECT_EQ(S(ack2->at("server_msg_id")), S(ack1->at("server_msg_id")));
  EXPECT_EQ(I(ack2->at("seq")), I(ack1->at("seq")));
  EXPECT_EQ(I(ack2->at("ts")), I(ack1->at("ts")));
  auto feed = ReadWholeFeed(bob);
  ASSERT_EQ(feed.size(), 1u);
  EXPECT_EQ(S(feed[0].at("body")), "first");
  // Sends pipelined with a repeated key in one batch: still one message.
  for (int i = 0; i < 5; ++i) wl->SendJson(SendFrameJson(conv, "burst", "b"));
  std::set<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto a = wl->NextOfType("ack");
    ASSERT_TRUE(a);
    ids.insert(S(a->at("server_msg_id")));
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(ReadWholeFeed(bob).size(), 2u);
}

TEST_F(Pigeon, OfflineRecipientCatchesUpWithPagination) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wa = WsClient::Connect(port(), alice.token);
  for (int i = 0; i < 25; ++i)
    wa->SendJson(SendFrameJson(conv, "m" + std::to_string(i), "body " + std::to_string(i)));
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(wa->NextOfType("ack"));

  auto first = Http(port(), "GET", "/api/v1/messages?limit=10", "", bob.token);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.json.at("messages").as_array().size(), 10u);
  EXPECT_TRUE(first.json.at("has_more").as_bool());
  EXPECT_TRUE(first.json.at("receipts").as_array().empty());
  auto all = ReadWholeFeed(bob, "", 10);
  ASSERT_EQ(all.size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(I(all[i].at("seq")), i + 1);
    EXPECT_EQ(S(all[i].at("body")), "body " + std::to_string(i));
    EXPECT_EQ(S(all[i].at("type")), "message");
  }
  // Nothing new after the last cursor: next_cursor is the cursor itself.
  auto last = S(all.back().at("cursor"));
  auto none = Http(port(), "GET", "/api/v1/messages?since=" + last, "", bob.token);
  EXPECT_TRUE(none.json.at("messages").as_array().empty());
  EXPECT_EQ(S(none.json.at("next_cursor")), last);
  EXPECT_FALSE(none.json.at("has_more").as_bool());
  // limit is clamped, not refused, above 1000.
  EXPECT_EQ(Http(port(), "GET", "/api/v1/messages?limit=5000", "", bob.token).status, 200);
}

TEST_F(Pigeon, EmptyFeedGivesAStartCursor) {
  auto bob = Login(port(), "bob");
  auto r = Http(port(), "GET", "/api/v1/messages", "", bob.token);
  ASSERT_EQ(r.status, 200);
  auto start = S(r.json.at("next_cursor"));
  EXPECT_EQ(Http(port(), "GET", "/api/v1/messages?since=" + start, "", bob.token).status, 200);
  auto ws = WsClient::Connect(port(), bob.token, start);
  EXPECT_TRUE(ws);
}

TEST_F(Pigeon, SinceReplaysTheFeedThenGoesLiveWithoutGapOrRepeat) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wa = WsClient::Connect(port(), alice.token);
  for (int i = 1; i <= 30; ++i)
    wa->SendJson(SendFrameJson(conv, "a" + std::to_string(i), std::to_string(i)));
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(wa->NextOfType("ack"));
  auto feed = ReadWholeFeed(bob);
  ASSERT_EQ(feed.size(), 30u);
  // Reconnect from the 10th entry while alice keeps sending.
  std::thread sender([&] {
    for (int i = 31; i <= 60; ++i)
      wa->SendJson(SendFrameJson(conv, "a" + std::to_string(i), std::to_string(i)));
  });
  auto wb = WsClient::Connect(port(), bob.token, S(feed[9].at("cursor")));
  ASSERT_TRUE(wb);
  sender.join();
  for (int expect = 11; expect <= 60; ++expect) {
    auto m = wb->NextOfType("message");
    ASSERT_TRUE(m) << "missing seq " << expect;
    ASSERT_EQ(I(m->at("seq")), expect);
  }
  EXPECT_FALSE(wb->NextOfType("message", 300));
}

// A replay larger than the kernel's socket buffers, to a device that does not
// read at first: the server's writes hit EAGAIN, wait for the socket to drain
// (EPOLLOUT) and resume, page after page, with nothing lost or reordered.
TEST_F(Pigeon, ALargeReplayToAReaderThatStallsResumesWhenItDrains) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto start = S(Http(port(), "GET", "/api/v1/messages", "", bob.token).json.at("next_cursor"));
  auto wa = WsClient::Connect(port(), alice.token);
  const int kMessages = 2000;  // 8 KB each: 16 MB, past the kernel's buffers on both ends
  const std::string body(8000, 'b');
  for (int i = 1; i <= kMessages; ++i) {
    wa->SendJson(SendFrameJson(conv, "big" + std::to_string(i), body));
    if (i % 500 == 0) {
      for (int k = 0; k < 500; ++k) ASSERT_TRUE(wa->NextOfType("ack"));
    }
  }
  auto wb = WsClient::Connect(port(), bob.token, start);
  ASSERT_TRUE(wb);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // not reading: the server blocks
  for (int expect = 1; expect <= kMessages; ++expect) {
    auto m = wb->NextOfType("message");
    ASSERT_TRUE(m) << "missing seq " << expect;
    ASSERT_EQ(I(m->at("seq")), expect);
    ASSERT_EQ(S(m->at("body")).size(), body.size());
  }
  EXPECT_FALSE(wb->NextOfType("message", 300));
}

TEST_F(Pigeon, TwoDevicesSendingConcurrentlyKeepOneOrderForEveryone) {
  auto phone = Login(port(), "alice"), laptop = Login(port(), "alice");
  auto bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), phone, "bob");
  auto wb = WsClient::Connect(port(), bob.token);
  auto wb2 = WsClient::Connect(port(), Login(port(), "bob").token);
  const int kEach = 150;
  std::vector<int64_t> seqs[2];
  auto run = [&](const Account& a, int which) {
    auto w = WsClient::Connect(port(), a.token);
    for (int i = 0; i < kEach; ++i)
      w->SendJson(SendFrameJson(conv, std::to_string(which) + "-" + std::to_string(i), "x"));
    for (int i = 0; i < kEach; ++i) {
      auto ack = w->NextOfType("ack");
      ASSERT_TRUE(ack);
      seqs[which].push_back(I(ack->at("seq")));
    }
  };
  std::thread t1(run, phone, 0), t2(run, laptop, 1);
  t1.join();
  t2.join();
  std::set<int64_t> all(seqs[0].begin(), seqs[0].end());
  all.insert(seqs[1].begin(), seqs[1].end());
  ASSERT_EQ(all.size(), 2u * kEach);
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), 2 * kEach);
  // Each device's own sends get increasing seqs (commit order = send order).
  for (auto& s : seqs) EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  for (auto* w : {wb.get(), wb2.get()}) {
    for (int expect = 1; expect <= 2 * kEach; ++expect) {
      auto m = w->NextOfType("message");
      ASSERT_TRUE(m);
      ASSERT_EQ(I(m->at("seq")), expect);
    }
  }
}

TEST_F(Pigeon, ConversationIdIsTheSameForBothSidesEveryTime) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto c1 = OpenConversation(port(), alice, "bob");
  auto c2 = OpenConversation(port(), bob, "alice");
  EXPECT_EQ(c1, c2);
  EXPECT_EQ(OpenConversation(port(), alice, "bob"), c1);
  auto list = Http(port(), "GET", "/api/v1/conversations", "", bob.token);
  ASSERT_EQ(list.status, 200);
  auto& arr = list.json.at("conversations").as_array();
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(S(arr[0].at("conversation_id")), c1);
  EXPECT_EQ(I(arr[0].at("last_seq")), 0);
  EXPECT_EQ(I(arr[0].at("read_seq")), 0);
  EXPECT_EQ(arr[0].at("members").as_array().size(), 2u);
}

TEST_F(Pigeon, HistoryPagesBackwardsNewestFirst) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wa = WsClient::Connect(port(), alice.token);
  for (int i = 1; i <= 12; ++i)
    wa->SendJson(SendFrameJson(conv, std::to_string(i), std::to_string(i)));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(wa->NextOfType("ack"));
  auto page =
      Http(port(), "GET", "/api/v1/conversations/" + conv + "/messages?limit=5", "", bob.token);
  ASSERT_EQ(page.status, 200);
  auto& m = page.json.at("messages").as_array();
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(I(m[0].at("seq")), 12);
  EXPECT_EQ(I(m[4].at("seq")), 8);
  auto older =
      Http(port(), "GET", "/api/v1/conversations/" + conv + "/messages?before_seq=8&limit=100", "",
           bob.token);
  auto& o = older.json.at("messages").as_array();
  ASSERT_EQ(o.size(), 7u);
  EXPECT_EQ(I(o[0].at("seq")), 7);
  EXPECT_EQ(I(o[6].at("seq")), 1);
  auto list = Http(port(), "GET", "/api/v1/conversations", "", alice.token);
  EXPECT_EQ(I(list.json.at("conversations").as_array()[0].at("last_seq")), 12);
}

TEST_F(Pigeon, NonMembersAreRefused) {
  auto alice = Login(port(), "alice"), carol = Login(port(), "carol");
  Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wc = WsClient::Connect(port(), carol.token);
  wc->SendJson(SendFrameJson(conv, "sneak", "hi"));
  auto e = wc->NextOfType("error");
  ASSERT_TRUE(e);
  EXPECT_EQ(S(e->at("code")), "forbidden");
  EXPECT_EQ(S(e->at("client_msg_id")), "sneak");
  wc->SendJson(SendFrameJson("doesnotexist", "sneak2", "hi"));
  e = wc->NextOfType("error");
  ASSERT_TRUE(e);
  EXPECT_EQ(S(e->at("code")), "forbidden");
  wc->SendJson(json::object{{"type", "typing"}, {"conversation_id", conv}, {"state", "composing"}});
  e = wc->NextOfType("error");
  ASSERT_TRUE(e);
  EXPECT_EQ(S(e->at("code")), "forbidden");
  EXPECT_EQ(
      Http(port(), "GET", "/api/v1/conversations/" + conv + "/messages", "", carol.token).status,
      403);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/conversations/nope/messages", "", carol.token).status,
            403);
  // Nothing was written.
  auto list = Http(port(), "GET", "/api/v1/conversations", "", alice.token);
  EXPECT_EQ(I(list.json.at("conversations").as_array()[0].at("last_seq")), 0);
}

TEST_F(Pigeon, TokensAreCheckedAndLogoutClosesSockets) {
  auto alice = Login(port(), "alice");
  EXPECT_EQ(Http(port(), "GET", "/api/v1/conversations").status, 401);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/conversations", "", "not-a-token").status, 401);
  int status = 0;
  EXPECT_FALSE(WsClient::Connect(port(), "not-a-token", "", &status));
  EXPECT_EQ(status, 401);
  EXPECT_FALSE(WsClient::Connect(port(), alice.token, "garbage", &status));
  EXPECT_EQ(status, 400);
  auto wrong = Http(port(), "POST", "/api/v1/sessions",
                    R"({"username":"alice","password":"wrong-password"})");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(S(wrong.json.at("error").at("code")), "unauthorized");
  EXPECT_EQ(
      Http(port(), "POST", "/api/v1/sessions", R"({"username":"nobody","password":"whatever1"})")
          .status,
      401);

  auto ws = WsClient::Connect(port(), alice.token, "", nullptr, /*token_in_query=*/true);
  ASSERT_TRUE(ws);
  auto other = Login(port(), "alice");
  auto ws_other = WsClient::Connect(port(), other.token);
  EXPECT_EQ(Http(port(), "DELETE", "/api/v1/sessions/current", "", alice.token).status, 204);
  EXPECT_EQ(ws->WaitClose(), 4001);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/conversations", "", alice.token).status, 401);
  // The user's other device is untouched.
  ws_other->SendJson(json::object{{"type", "ping"}});
  EXPECT_TRUE(ws_other->NextOfType("pong"));
  EXPECT_EQ(Http(port(), "GET", "/api/v1/conversations", "", other.token).status, 200);
}

TEST_F(Pigeon, BadFramesGetErrorsAndTheSocketLives) {
  auto alice = Login(port(), "alice");
  Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto ws = WsClient::Connect(port(), alice.token);
  struct Case {
    std::string frame;
    std::string code;
    std::string cmid;
  };
  std::string big(65537, 'x');
  std::vector<Case> cases = {
      {"not json", "bad_request", ""},
      {"[1,2]", "bad_request", ""},
      {"\"str\"", "bad_request", ""},
      {"{}", "bad_request", ""},
      {R"({"type":42})", "bad_request", ""},
      {R"({"type":"launch_rockets"})", "bad_request", ""},
      {R"({"type":"send","conversation_id":")" + conv + R"(","client_msg_id":"c1"})", "bad_request",
       "c1"},
      {R"({"type":"send","conversation_id":")" + conv + R"(","client_msg_id":"c2","body":7})",
       "bad_request", "c2"},
      {R"({"type":"send","conversation_id":5,"client_msg_id":"c3","body":"x"})", "bad_request",
       "c3"},
      {R"({"type":"send","conversation_id":")" + conv + R"(","client_msg_id":"","body":"x"})",
       "bad_request", ""},
      {R"({"type":"send","conversation_id":")" + conv + R"(","client_msg_id":")" +
           std::string(65, 'k') + R"(","body":"x"})",
       "bad_request", std::string(65, 'k')},
      {R"({"type":"send","conversation_id":")" + conv + R"(","client_msg_id":"c4","body":")" + big +
           R"("})",
       "too_large", "c4"},
      {R"({"type":"received","cursor":"nope"})", "bad_request", ""},
      {R"({"type":"received"})", "bad_request", ""},
      {R"({"type":"typing","conversation_id":")" + conv + R"(","state":"dancing"})", "bad_request",
       ""},
      {R"({"type":"read","conversation_id":")" + conv + R"(","seq":-1})", "bad_request", ""},
  };
  for (auto& c : cases) {
    ws->SendText(c.frame);
    auto e = ws->NextOfType("error");
    ASSERT_TRUE(e) << c.frame.substr(0, 80);
    EXPECT_EQ(S(e->at("code")), c.code) << c.frame.substr(0, 80);
    if (!c.cmid.empty()) {
      EXPECT_EQ(S(e->at("client_msg_id")), c.cmid) << c.frame.substr(0, 80);
    }
  }
  ws->SendFrame(ws::kBinary, "\x01\x02");
  auto e = ws->NextOfType("error");
  ASSERT_TRUE(e);
  EXPECT_EQ(S(e->at("code")), "bad_request");
  // A body of exactly the limit is fine; the socket still works.
  ws->SendJson(SendFrameJson(conv, "ok", std::string(65536, 'y')));
  auto ack = ws->NextOfType("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(I(ack->at("seq")), 1);
  ws->SendJson(json::object{{"type", "ping"}});
  EXPECT_TRUE(ws->NextOfType("pong"));
}

TEST_F(Pigeon, FrameOverTheHardLimitClosesWith1009) {
  auto alice = Login(port(), "alice");
  auto ws = WsClient::Connect(port(), alice.token);
  std::string header;
  ws::AppendFrameHeader(header, ws::kText, (1 << 20) + 1);
  header[1] = static_cast<char>(header[1] | 0x80);  // masked
  header.append("\0\0\0\0", 4);
  ws->SendBytes(header);
  EXPECT_EQ(ws->WaitClose(), 1009);
}

TEST_F(Pigeon, ProtocolViolationsCloseWithTheRightCode) {
  auto alice = Login(port(), "alice");
  {
    auto ws = WsClient::Connect(port(), alice.token);
    std::string unmasked;
    ws::AppendFrame(unmasked, ws::kText, "{}");
    ws->SendBytes(unmasked);
    EXPECT_EQ(ws->WaitClose(), 1002);
  }
  {
    auto ws = WsClient::Connect(port(), alice.token);
    ws->SendText("\xff\xfe");
    EXPECT_EQ(ws->WaitClose(), 1007);
  }
  {
    // A message in fragments with a ping between them is fine.
    auto ws = WsClient::Connect(port(), alice.token);
    uint8_t mask[4] = {1, 2, 3, 4};
    std::string f;
    std::string part1 = R"({"type":)", part2 = R"("ping"})";
    ws::AppendFrame(f, ws::kText, part1, mask);
    f[0] = static_cast<char>(f[0] & 0x7f);  // not FIN
    ws::AppendFrame(f, ws::kPing, "hb", mask);
    std::string last;
    ws::AppendFrame(last, ws::kContinuation, part2, mask);
    ws->SendBytes(f + last);
    EXPECT_TRUE(ws->NextOfType("pong"));
    ws->SendFrame(ws::kClose, ws::ClosePayload(1000, "bye"));
    EXPECT_EQ(ws->WaitClose(), 1000);
  }
}

TEST_F(Pigeon, BadHttpInputGetsJsonErrors) {
  auto alice = Login(port(), "alice");
  Login(port(), "bob");
  struct Case {
    std::string method, target, body, token;
    int status;
  };
  std::vector<Case> cases = {
      {"POST", "/api/v1/users", "{", "", 400},
      {"POST", "/api/v1/users", R"({"username":"Alice2","password":"password1"})", "", 400},
      {"POST", "/api/v1/users", R"({"username":"ab","password":"password1"})", "", 400},
      {"POST", "/api/v1/users", R"({"username":"dave","password":"short"})", "", 400},
      {"POST", "/api/v1/users",
       R"({"username":"dave","password":")" + std::string(257, 'p') + "\"}", "", 400},
      {"POST", "/api/v1/users", R"({"username":"alice","password":"password1"})", "", 409},
      {"POST", "/api/v1/users", R"({"username":5,"password":"password1"})", "", 400},
      {"POST", "/api/v1/conversations", R"({"peer":"alice"})", alice.token, 400},
      {"POST", "/api/v1/conversations", R"({"peer":"ghost"})", alice.token, 404},
      {"POST", "/api/v1/conversations", R"({"peer":"GHOST"})", alice.token, 400},
      {"POST", "/api/v1/conversations", R"([])", alice.token, 400},
      {"GET", "/api/v1/messages?limit=0", "", alice.token, 400},
      {"GET", "/api/v1/messages?limit=abc", "", alice.token, 400},
      {"GET", "/api/v1/messages?since=f123", "", alice.token, 400},
      {"GET", "/api/v1/nothing-here", "", alice.token, 404},
      {"GET", "/api/v1/ws", "", alice.token, 400},
  };
  for (auto& c : cases) {
    auto r = Http(port(), c.method, c.target, c.body, c.token);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body.substr(0, 60);
    ASSERT_TRUE(r.json.is_object()) << r.body;
    EXPECT_TRUE(r.json.at("error").at("code").is_string());
    EXPECT_TRUE(r.json.at("error").at("message").is_string());
  }
  auto huge = Http(port(), "POST", "/api/v1/users", std::string(2 << 20, ' '));
  EXPECT_EQ(huge.status, 413);
  auto garbage = RawHttp(port(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(garbage.status, 400);
  // And the server is fine.
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
}

TEST_F(Pigeon, HealthReadinessAndMetrics) {
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(Http(port(), "GET", "/readyz").status, 200);
  auto alice = Login(port(), "alice");
  Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto ws = WsClient::Connect(port(), alice.token);
  ws->SendJson(SendFrameJson(conv, "1", "x"));
  ASSERT_TRUE(ws->NextOfType("ack"));
  ws->SendText("nope");
  ASSERT_TRUE(ws->NextOfType("error"));
  auto m = Http(port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("pigeon_open_sockets 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("pigeon_messages_committed_total 1"), std::string::npos);
  EXPECT_NE(m.body.find("pigeon_commit_batch_ops_bucket"), std::string::npos);
  EXPECT_NE(m.body.find("pigeon_commit_seconds_bucket"), std::string::npos);
  EXPECT_NE(m.body.find("pigeon_errors_total{code=\"bad_request\"} 1"), std::string::npos);
  EXPECT_NE(m.body.find("pigeon_store_level0_files 0"), std::string::npos);
  EXPECT_NE(m.body.find("pigeon_store_writes_stopped 0"), std::string::npos);
  EXPECT_NE(m.body.find("pigeon_store_write_stall_seconds_total 0"), std::string::npos);
  // Each commit (two sign-ups, two logins, a conversation, a message) was made
  // durable one way or the other.
  auto count = [&](const std::string& series) {
    auto at = m.body.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.body.substr(at + series.size() + 2));
  };
  const double fdatasyncs = count("pigeon_store_wal_syncs_total{method=\"fdatasync\"}");
  const double flushes = count("pigeon_store_wal_syncs_total{method=\"flush\"}");
  EXPECT_GE(fdatasyncs, 1) << m.body;
  EXPECT_GE(flushes, 0) << m.body;
  EXPECT_GE(fdatasyncs + flushes, 6) << m.body;
  EXPECT_GT(count("pigeon_store_disk_free_bytes"), 0) << m.body;
  EXPECT_GE(count("pigeon_store_table_bytes"), 0) << m.body;
}

// The server reads a socket until a short read (edge-triggered). When the
// peer's last bytes and its FIN arrive together, the EOF behind them must
// still be seen: the socket is closed at once, not left to the heartbeat.
TEST_F(Pigeon, ASocketWhoseLastFrameAndFinArriveTogetherIsClosed) {
  auto alice = Login(port(), "alice");
  auto ws = WsClient::Connect(port(), alice.token);
  ASSERT_TRUE(ws);
  auto open = [&] {
    auto m = Http(port(), "GET", "/metrics");
    return m.body.find("pigeon_open_sockets 1") != std::string::npos;
  };
  ASSERT_TRUE(open());
  // Corked, the frame waits in the send queue; shutdown sends it with the FIN
  // in one segment, so the server gets both in one event.
  int one = 1;
  ASSERT_EQ(setsockopt(ws->fd(), IPPROTO_TCP, TCP_CORK, &one, sizeof one), 0);
  ws->SendJson({{"type", "ping"}});
  ASSERT_EQ(::shutdown(ws->fd(), SHUT_WR), 0);
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    closed = !open();
    if (!closed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(closed) << "the server kept a socket whose peer had closed";
}

// A client that sends `Expect: 100-continue` waits for "100 Continue" before
// its body (curl, for a body over 1 KiB, waits a second without it).
TEST_F(Pigeon, ExpectContinueIsAnsweredBeforeTheBody) {
  int fd = ConnectLoopback(port());
  ASSERT_GE(fd, 0);
  timeval tv{5, 0};
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  auto read_response = [&] {
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    return in;
  };
  auto send_all = [&](const std::string& out) {
    ASSERT_EQ(::send(fd, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  };
  const std::string body = R"({"username":"carol","password":"password1"})";
  const std::string head =
      "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nExpect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  send_all(head);
  EXPECT_TRUE(read_response().starts_with("HTTP/1.1 100 Continue\r\n\r\n"));
  send_all(body);
  EXPECT_TRUE(read_response().starts_with("HTTP/1.1 201 ")) << "after the body";
  // A body sent with its header needs no interim answer, and gets none.
  const std::string body2 = R"({"username":"dave","password":"password1"})";
  send_all("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
           std::to_string(body2.size()) + "\r\n\r\n" + body2);
  EXPECT_TRUE(read_response().starts_with("HTTP/1.1 201 "));
  ::close(fd);
}

TEST_F(Pigeon, KeepAliveServesSeveralRequestsOnOneConnection) {
  std::string two =
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n";
  // RawHttp reads only the first response; the second must not break anything.
  EXPECT_EQ(RawHttp(port(), two).status, 200);
}

TEST_F(Pigeon, SlowConsumerIsDisconnectedNotBuffered) {
  server_.Terminate();
  TestServer small({"--max-output-bytes", "65536"});
  small.Start();
  auto alice = Login(small.port(), "alice"), bob = Login(small.port(), "bob");
  auto conv = OpenConversation(small.port(), alice, "bob");
  auto slow = WsClient::Connect(small.port(), bob.token);  // never reads
  auto wa = WsClient::Connect(small.port(), alice.token);
  const std::string body(60000, 'z');
  for (int i = 0; i < 400; ++i) {
    wa->SendJson(SendFrameJson(conv, std::to_string(i), body));
    ASSERT_TRUE(wa->NextOfType("ack", 10000));
  }
  auto m = Http(small.port(), "GET", "/metrics");
  EXPECT_NE(m.body.find("pigeon_slow_consumer_closes_total 1"), std::string::npos);
  // Nothing is lost: the feed has all of it.
  auto r = Http(small.port(), "GET", "/api/v1/messages?limit=1000", "", bob.token);
  EXPECT_EQ(r.json.at("messages").as_array().size(), 400u);
}

TEST_F(Pigeon, ASocketThatOverflowsWhileItsInputIsParsedIsClosedSafely) {
  server_.Terminate();
  TestServer small({"--max-output-bytes", "4096"});
  small.Start();
  auto alice = Login(small.port(), "alice");
  Login(small.port(), "bob");
  auto conv = OpenConversation(small.port(), alice, "bob");
  auto ws = WsClient::Connect(small.port(), alice.token);
  // 200 pipelined sends, never reading their acks. The first byte goes alone,
  // so that the server parses the rest from its per-socket buffer, and its
  // output limit is crossed in the middle of that parse.
  std::string frames;
  uint8_t mask[4] = {7, 7, 7, 7};
  for (int i = 0; i < 200; ++i)
    ws::AppendFrame(frames, ws::kText, json::serialize(SendFrameJson(conv, std::to_string(i), "x")),
                    mask);
  ws->SendBytes(frames.substr(0, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  try {
    ws->SendBytes(frames.substr(1));
  } catch (const std::exception&) {
    // The server may already have closed it.
  }
  EXPECT_TRUE(ws->WaitClose(5000).has_value());
  EXPECT_EQ(Http(small.port(), "GET", "/healthz").status, 200);
  EXPECT_NE(Http(small.port(), "GET", "/metrics").body.find("pigeon_slow_consumer_closes_total 1"),
            std::string::npos);
}

TEST_F(Pigeon, SigtermClosesSocketsWith1001AndExitsZero) {
  auto alice = Login(port(), "alice");
  auto ws = WsClient::Connect(port(), alice.token);
  std::thread stop([&] { EXPECT_EQ(server_.Terminate(), 0); });
  EXPECT_EQ(ws->WaitClose(), 1001);
  stop.join();
}

TEST_F(Pigeon, DataSurvivesARestart) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto ws = WsClient::Connect(port(), alice.token);
  ws->SendJson(SendFrameJson(conv, "k", "persisted"));
  ASSERT_TRUE(ws->NextOfType("ack"));
  ws.reset();
  ASSERT_EQ(server_.Terminate(), 0);
  server_.Start();
  auto feed = ReadWholeFeed(bob);
  ASSERT_EQ(feed.size(), 1u);
  EXPECT_EQ(S(feed[0].at("body")), "persisted");
  EXPECT_EQ(Http(port(), "GET", "/api/v1/conversations", "", alice.token).status, 200);
}

// A process's descriptor table grows by doubling, and once it has threads each
// doubling stalls the thread that opened the descriptor for an RCU grace
// period. pigeond sizes the table for its open-file limit before it starts any.
TEST_F(Pigeon, DescriptorTableIsSizedForTheOpenFileLimitAtStart) {
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  const uint64_t want = std::min<uint64_t>(lim.rlim_max, uint64_t{1} << 20);
  std::ifstream status("/proc/" + std::to_string(server_.pid()) + "/status");
  uint64_t fd_size = 0;
  for (std::string line; std::getline(status, line);)
    if (line.rfind("FDSize:", 0) == 0) fd_size = std::stoull(line.substr(7));
  EXPECT_GE(fd_size, want);
  // The soft limit was raised to the hard one.
  std::ifstream limits("/proc/" + std::to_string(server_.pid()) + "/limits");
  std::string soft;
  for (std::string line; std::getline(limits, line);)
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream in(line.substr(14));
      in >> soft;
    }
  EXPECT_EQ(soft, lim.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(lim.rlim_max));
}

TEST(AdminSeedUsers, SeededAccountsAreRealAndARepeatCreatesNothing) {
  TestServer server;
  std::string data = server.data_dir() + "/data";
  auto seeded = SeedUsers(data, "seed-", 300, "seedpass1");
  ASSERT_EQ(seeded.size(), 300u);
  EXPECT_EQ(seeded[7].user_id, "seed-7");
  // Seeding again over an existing name fails and writes no device for it.
  EXPECT_THROW(SeedUsers(data, "seed-", 1, "seedpass1", 299), std::runtime_error);
  server.Start();
  // The printed token is a logged-in device: it opens a WebSocket and messages flow.
  auto conv = OpenConversation(server.port(), seeded[0], "seed-299");
  auto a = WsClient::Connect(server.port(), seeded[0].token);
  auto b = WsClient::Connect(server.port(), seeded[299].token);
  ASSERT_TRUE(a && b);
  a->SendJson(SendFrameJson(conv, "s1", "hello seeded"));
  auto m = b->NextOfType("message");
  ASSERT_TRUE(m);
  EXPECT_EQ(S(m->at("body")), "hello seeded");
  // The password works for a new login; a wrong one does not.
  json::object creds{{"username", "seed-42"}, {"password", "seedpass1"}};
  EXPECT_EQ(Http(server.port(), "POST", "/api/v1/sessions", json::serialize(creds)).status, 200);
  creds["password"] = "seedpass2";
  EXPECT_EQ(Http(server.port(), "POST", "/api/v1/sessions", json::serialize(creds)).status, 401);
  // Real sign-up is unchanged: the seeded names are taken.
  creds["password"] = "whatever1";
  EXPECT_EQ(Http(server.port(), "POST", "/api/v1/users", json::serialize(creds)).status, 409);
}

TEST(LoginLimits, RepeatedWrongPasswordsLockTheUsernameUntilTheWindowEnds) {
  TestServer server({"--login-max-failures", "3", "--login-failure-window-s", "2"});
  server.Start();
  const Account alice = Login(server.port(), "alice");  // signs up with password1
  (void)Login(server.port(), "bob");
  auto login = [&](const std::string& user, const std::string& password) {
    json::object creds{{"username", user}, {"password", password}};
    return Http(server.port(), "POST", "/api/v1/sessions", json::serialize(creds));
  };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(login("alice", "guess" + std::to_string(i)).status, 401);
  // Locked: a fourth guess, and the right password too, get rate_limited.
  auto locked = login("alice", "guess3");
  EXPECT_EQ(locked.status, 429);
  EXPECT_EQ(S(locked.json.at("error").at("code")), "rate_limited");
  ASSERT_EQ(locked.headers.count("retry-after"), 1u);
  const int retry_after = std::stoi(locked.headers.at("retry-after"));
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 2);
  EXPECT_EQ(login("alice", "password1").status, 429);
  // Only alice's name is locked; her signed-in device still works.
  EXPECT_EQ(login("bob", "password1").status, 200);
  EXPECT_EQ(Http(server.port(), "GET", "/api/v1/conversations", "", alice.token).status, 200);
  // A name that does not exist is counted the same, so the answer tells nothing.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(login("nobody", "guess").status, 401);
  EXPECT_EQ(login("nobody", "guess").status, 429);
  // After the window, the right password logs in again.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(login("alice", "password1").status, 200);
  // A success clears the count: three more wrong ones are needed to lock it.
  for (int i = 0; i < 2; ++i) EXPECT_EQ(login("alice", "guess").status, 401);
  EXPECT_EQ(login("alice", "password1").status, 200);
}

// Guesses spread over many usernames from one client: after
// login_max_failures_per_client failures in the window, that client's logins
// are refused, whatever the name; other clients' are not.
TEST(LoginLimits, FailedLoginsFromOneClientLockItsLoginsWhateverTheName) {
  TestServer server({"--login-max-failures-per-client", "3", "--login-failure-window-s", "2"});
  server.Start();
  const uint16_t port = server.port();
  (void)Login(port, "alice");  // signs up with password1, then logs in: no failure
  auto login = [&](const std::string& user, const std::string& password, int source_index = 0) {
    return PostFrom(port, "/api/v1/sessions", {{"username", user}, {"password", password}}, "",
                    source_index);
  };
  EXPECT_EQ(login("nobody1", "guess").status, 401);
  EXPECT_EQ(login("nobody2", "guess").status, 401);
  // A success of its own does not clear the client's count.
  EXPECT_EQ(login("alice", "password1").status, 200);
  EXPECT_EQ(login("nobody3", "guess").status, 401);
  // Three failures, each of another name: this client is locked, the right password too.
  auto locked = login("alice", "password1");
  EXPECT_EQ(locked.status, 429) << locked.body;
  EXPECT_EQ(S(locked.json.at("error").at("code")), "rate_limited");
  ASSERT_EQ(locked.headers.count("retry-after"), 1u);
  EXPECT_LE(std::stoi(locked.headers.at("retry-after")), 2);
  // Another client is not.
  EXPECT_EQ(login("alice", "password1", 1).status, 200);
  // After the window, this one logs in again.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(login("alice", "password1").status, 200);
}

// Sign-ups from one client are bounded per window (account farming, and
// probing which names are taken): each one checked counts, a name found
// taken included; other clients are not affected.
TEST(SignUpLimits, SignUpsFromOneClientAreBoundedPerWindow) {
  TestServer server({"--signup-max-per-client", "3", "--signup-window-s", "2"});
  server.Start();
  auto signup = [&](const std::string& user, int source_index = 0) {
    return PostFrom(server.port(), "/api/v1/users", {{"username", user}, {"password", "password1"}},
                    "", source_index);
  };
  EXPECT_EQ(signup("user1").status, 201);
  EXPECT_EQ(signup("user2").status, 201);
  EXPECT_EQ(signup("ab").status, 400);  // not a valid name: not counted
  EXPECT_EQ(signup("user1").status, 409);
  auto refused = signup("user3");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(S(refused.json.at("error").at("code")), "rate_limited");
  ASSERT_EQ(refused.headers.count("retry-after"), 1u);
  EXPECT_LE(std::stoi(refused.headers.at("retry-after")), 2);
  EXPECT_EQ(signup("user3", 1).status, 201);  // from another address
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(signup("user4").status, 201);
}

// One client's sign-ups and logins take at most max_password_checks_per_client
// places of the password queue: past them it gets 429 at once, and other
// clients still get theirs. Behind a trusted proxy, the client is the address
// the proxy forwarded for.
TEST(PasswordThreads, OneClientCannotFillTheQueueForEveryoneElse) {
  // One password thread, a hash of about a second: checks stay queued while the test looks.
  TestServer server({"--password-threads", "1", "--max-pending-password-checks", "8",
                     "--max-password-checks-per-client", "2", "--trusted-proxies", "127.0.0.1",
                     "--pwhash-opslimit", "40", "--pwhash-memlimit-kib", "65536"});
  server.Start();
  // Logins of names that do not exist cost a whole check too (and get 401).
  auto login = [&](int n, const std::string& forwarded_for, int source_index = 0) {
    return PostFrom(server.port(), "/api/v1/sessions",
                    {{"username", "nobody" + std::to_string(n)}, {"password", "guess"}},
                    forwarded_for, source_index);
  };
  auto pending = [&](int n) {
    for (int i = 0; i < 500; ++i) {
      if (Http(server.port(), "GET", "/metrics")
              .body.find("pigeon_password_checks_pending " + std::to_string(n)) !=
          std::string::npos)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  // Client A, through the proxy (127.0.0.1), takes its two places.
  std::vector<std::thread> queued;
  std::atomic<int> answered_401{0};
  auto queue = [&](int n, std::string forwarded_for, int source_index) {
    queued.emplace_back([&, n, forwarded_for, source_index] {
      if (login(n, forwarded_for, source_index).status == 401) ++answered_401;
    });
  };
  queue(1, "198.51.100.1", 0);
  queue(2, "198.51.100.1", 0);
  ASSERT_TRUE(pending(2));
  // A third from A: refused at once, and not for the queue (that has room).
  auto refused = login(3, "192.0.2.9, 198.51.100.1");  // what A says of itself is not believed
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(S(refused.json.at("error").at("code")), "rate_limited");
  EXPECT_EQ(refused.headers["retry-after"], "1");
  // Client B, through the same proxy, and a client connecting from 127.0.0.2
  // that claims to be A (it is no proxy): both checked (401, not 429), as A's two.
  queue(4, "198.51.100.2", 0);
  queue(5, "198.51.100.1", 1);
  for (auto& t : queued) t.join();
  EXPECT_EQ(answered_401, 4);
}

// SIGUSR1: an online backup into backup_dir, while pigeond serves; the
// backup is a data directory another pigeond starts from, with the accounts,
// tokens and messages of that moment.
// A user sees its logged-in devices and revokes any of them (a lost phone):
// the device's token stops working and its sockets close with 4001. Nobody
// else's device can be named.
TEST_F(Pigeon, AUserListsItsDevicesAndRevokesOne) {
  (void)Login(port(), "bob");
  auto login = [&](const std::string& name) {
    auto r = Http(port(), "POST", "/api/v1/sessions",
                  json::serialize(json::object{
                      {"username", "alice"}, {"password", "password1"}, {"device_name", name}}));
    EXPECT_EQ(r.status, 200) << r.body;
    return Account{S(r.json.at("user_id")), S(r.json.at("token")), S(r.json.at("device_id"))};
  };
  (void)Login(port(), "alice");  // signs alice up (a first device, unnamed)
  auto phone = login("Pixel 9"), laptop = login("Firefox \"work\"");
  auto bob = Login(port(), "bob");
  auto list = Http(port(), "GET", "/api/v1/devices", "", phone.token);
  ASSERT_EQ(list.status, 200) << list.body;
  auto& devices = list.json.at("devices").as_array();
  ASSERT_EQ(devices.size(), 3u);
  int current = 0;
  for (auto& d : devices) {
    auto& o = d.as_object();
    if (S(o.at("device_id")) == phone.device_id) {
      EXPECT_EQ(S(o.at("name")), "Pixel 9");
      EXPECT_TRUE(o.at("current").as_bool());
      ++current;
    } else {
      EXPECT_FALSE(o.at("current").as_bool());
    }
    if (S(o.at("device_id")) == laptop.device_id) {
      EXPECT_EQ(S(o.at("name")), "Firefox \"work\"");
    }
    EXPECT_TRUE(o.at("push").is_null());
  }
  EXPECT_EQ(current, 1);

  auto ws = WsClient::Connect(port(), laptop.token);
  ASSERT_TRUE(ws);
  // bob cannot name alice's device; a device that does not exist is not found.
  EXPECT_EQ(Http(port(), "DELETE", "/api/v1/devices/" + laptop.device_id, "", bob.token).status,
            404);
  EXPECT_EQ(Http(port(), "DELETE", "/api/v1/devices/nosuchdevice", "", phone.token).status, 404);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/devices", "", laptop.token).status, 200);
  auto revoked = Http(port(), "DELETE", "/api/v1/devices/" + laptop.device_id, "", phone.token);
  EXPECT_EQ(revoked.status, 204) << revoked.body;
  EXPECT_EQ(ws->WaitClose(), std::optional<uint16_t>(4001));
  EXPECT_EQ(Http(port(), "GET", "/api/v1/devices", "", laptop.token).status, 401);
  list = Http(port(), "GET", "/api/v1/devices", "", phone.token);
  EXPECT_EQ(list.json.at("devices").as_array().size(), 2u);
  // "current" names the caller's own device: a logout.
  EXPECT_EQ(Http(port(), "DELETE", "/api/v1/devices/current", "", phone.token).status, 204);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/devices", "", phone.token).status, 401);
}

// Connections that never become WebSockets do not hold a socket forever:
// one that sends nothing, one stuck in the middle of a request, and a
// keep-alive one idle after its response are closed after
// http_idle_timeout_ms (to 1.5 times it); a WebSocket is not.
TEST(HttpIdleTimeout, IdleConnectionsAreClosedAndWebSocketsAreNot) {
  TestServer server({"--http-idle-timeout-ms", "600"});
  server.Start();
  const uint16_t port = server.port();
  auto alice = Login(port, "alice");
  auto ws = WsClient::Connect(port, alice.token);
  ASSERT_TRUE(ws);
  auto open_with = [&](const std::string& bytes) {
    int fd = ConnectLoopback(port);
    EXPECT_GE(fd, 0);
    if (!bytes.empty()) {
      EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(bytes.size()));
    }
    return fd;
  };
  int silent = open_with("");
  int partial = open_with("GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n");
  int kept = open_with("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto start = std::chrono::steady_clock::now();
  // Each reads to its end: the keep-alive one gets its response first.
  auto read_to_end = [](int fd) {
    std::string got;
    char buf[4096];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return got + "<timeout>";
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  };
  EXPECT_EQ(read_to_end(silent), "");
  EXPECT_EQ(read_to_end(partial), "");
  std::string kept_got = read_to_end(kept);
  EXPECT_EQ(kept_got.rfind("HTTP/1.1 200", 0), 0u) << kept_got;
  EXPECT_EQ(kept_got.find("<timeout>"), std::string::npos);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(500));  // not at once (a tick's slack)
  for (int fd : {silent, partial, kept}) ::close(fd);
  auto metrics = Http(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("pigeon_http_idle_closes_total 3"), std::string::npos) << metrics;
  // The WebSocket, as quiet, is still served.
  ws->SendJson(json::object{{"type", "ping"}});
  EXPECT_TRUE(ws->NextOfType("pong"));
}

TEST(Backups, SigusrOneTakesABackupAnotherPigeondStartsFrom) {
  char tmpl[] = "/tmp/pigeon-backups.XXXXXX";
  const std::string backups = ::mkdtemp(tmpl);
  TestServer server({"--backup-dir", backups});
  server.Start();
  auto alice = Login(server.port(), "alice"), bob = Login(server.port(), "bob");
  auto conv = OpenConversation(server.port(), alice, "bob");
  auto wa = WsClient::Connect(server.port(), alice.token);
  for (int i = 0; i < 20; ++i)
    wa->SendJson(SendFrameJson(conv, "m" + std::to_string(i), "body " + std::to_string(i)));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(wa->NextOfType("ack"));
  ASSERT_EQ(::kill(server.pid(), SIGUSR1), 0);
  bool done = false;
  for (int i = 0; i < 300 && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = Http(server.port(), "GET", "/metrics").body.find("pigeon_backups_total 1") !=
           std::string::npos;
  }
  ASSERT_TRUE(done) << server.log();
  // pigeond goes on: a message after the backup.
  wa->SendJson(SendFrameJson(conv, "after", "not in the backup"));
  ASSERT_TRUE(wa->NextOfType("ack"));

  std::vector<std::filesystem::path> taken;
  for (auto& e : std::filesystem::directory_iterator(backups)) taken.push_back(e.path());
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_TRUE(taken[0].filename().string().ends_with("Z")) << taken[0];  // its UTC time
  TestServer restored;
  std::filesystem::copy(taken[0], restored.data_dir() + "/data",
                        std::filesystem::copy_options::recursive);
  restored.Start();
  auto feed = Http(restored.port(), "GET", "/api/v1/messages", "", bob.token);
  ASSERT_EQ(feed.status, 200) << feed.body;
  auto& messages = feed.json.at("messages").as_array();
  ASSERT_EQ(messages.size(), 20u);
  EXPECT_EQ(S(messages[19].at("body")), "body 19");
  std::filesystem::remove_all(backups);
}

// backup_interval_s takes backups on a schedule; backup_keep deletes all but
// the newest after each, and nothing else in the directory.
TEST(Backups, ScheduledBackupsKeepOnlyTheNewestBackupKeep) {
  char tmpl[] = "/tmp/pigeon-backups.XXXXXX";
  const std::string backups = ::mkdtemp(tmpl);
  std::filesystem::create_directory(backups +
                                    "/20261206T094512.345Z.notes");  // not a backup's name
  std::ofstream(backups + "/README") << "an operator's file\n";
  TestServer server({"--backup-dir", backups, "--backup-interval-s", "1", "--backup-keep", "2"});
  server.Start();
  auto alice = Login(server.port(), "alice");
  auto count = [&] {
    int n = 0;
    for (auto& e : std::filesystem::directory_iterator(backups))
      n += e.path().filename().string().size() == 20;
    return n;
  };
  auto metric = [&](const std::string& name) { return MetricValue(server.port(), name); };
  bool done = false;
  for (int i = 0; i < 300 && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = metric("pigeon_backups_total") >= 4 && metric("pigeon_backups_removed_total") >= 2;
  }
  ASSERT_TRUE(done) << server.log();
  EXPECT_EQ(server.Terminate(), 0);  // the schedule stops with pigeond
  EXPECT_EQ(count(), 2);
  EXPECT_TRUE(std::filesystem::exists(backups + "/README"));
  EXPECT_TRUE(std::filesystem::exists(backups + "/20261206T094512.345Z.notes"));
  // The newest backup is a data directory with alice in it.
  std::vector<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(backups))
    if (e.path().filename().string().size() == 20) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  TestServer restored;
  std::filesystem::copy(backups + "/" + names.back(), restored.data_dir() + "/data",
                        std::filesystem::copy_options::recursive);
  restored.Start();
  EXPECT_EQ(Http(restored.port(), "GET", "/api/v1/conversations", "", alice.token).status, 200);
  std::filesystem::remove_all(backups);
}

TEST(Backups, SigusrOneWithoutABackupDirIsLoggedAndChangesNothing) {
  TestServer server;
  server.Start();
  ASSERT_EQ(::kill(server.pid(), SIGUSR1), 0);
  bool logged = false;
  for (int i = 0; i < 100 && !logged; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    logged = server.log().find("backup_dir is not set") != std::string::npos;
  }
  EXPECT_TRUE(logged) << server.log();
  EXPECT_EQ(Http(server.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(server.Terminate(), 0);
}

// Retention (retention_s): messages older than it leave the feed, the
// history and the dedup keys; cursors held from before stay valid, and the
// next message takes the next seq and position.
TEST(Retention, OldMessagesGoAndCursorsFromBeforeStayValid) {
  TestServer server({"--retention-s", "2", "--retention-sweep-interval-s", "1"});
  server.Start();
  const uint16_t port = server.port();
  auto alice = Login(port, "alice"), bob = Login(port, "bob");
  auto conv = OpenConversation(port, alice, "bob");
  // A device that saw none of what follows holds the start cursor.
  const std::string offline =
      S(Http(port, "GET", "/api/v1/messages", "", bob.token).json.at("next_cursor"));
  auto wa = WsClient::Connect(port, alice.token);
  for (const char* cmid : {"old1", "old2"}) wa->SendJson(SendFrameJson(conv, cmid, cmid));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(wa->NextOfType("ack"));
  auto before = Http(port, "GET", "/api/v1/messages", "", bob.token);
  ASSERT_EQ(before.json.at("messages").as_array().size(), 2u);
  const std::string held = S(before.json.at("next_cursor"));  // a device's cursor

  // Gone once a sweep runs after they are 2 s old.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = Http(port, "GET", "/metrics").body.find("pigeon_retention_messages_removed_total 2") !=
           std::string::npos;
  }
  ASSERT_TRUE(gone) << Http(port, "GET", "/metrics").body;
  auto all = Http(port, "GET", "/api/v1/messages", "", bob.token);
  EXPECT_TRUE(all.json.at("messages").as_array().empty()) << all.body;
  EXPECT_FALSE(all.json.at("gap").as_bool());  // from the retained start: nothing missed
  auto after_held = Http(port, "GET", "/api/v1/messages?since=" + held, "", bob.token);
  EXPECT_TRUE(after_held.json.at("messages").as_array().empty());
  EXPECT_EQ(S(after_held.json.at("next_cursor")), held);
  EXPECT_FALSE(after_held.json.at("gap").as_bool());
  // The device that was offline is told it missed what retention removed,
  // and its cursor moves past it.
  auto missed = Http(port, "GET", "/api/v1/messages?since=" + offline, "", bob.token);
  EXPECT_TRUE(missed.json.at("messages").as_array().empty());
  EXPECT_TRUE(missed.json.at("gap").as_bool()) << missed.body;
  EXPECT_EQ(S(missed.json.at("next_cursor")), held);
  auto history = Http(port, "GET", "/api/v1/conversations/" + conv + "/messages", "", bob.token);
  EXPECT_TRUE(history.json.at("messages").as_array().empty()) << history.body;

  // An old client_msg_id is new again; the seq and the feed go on from where they were.
  wa->SendJson(SendFrameJson(conv, "old1", "new"));
  auto ack = wa->NextOfType("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(I(ack->at("seq")), 3);
  auto wb = WsClient::Connect(port, bob.token, held);
  ASSERT_TRUE(wb);
  auto m = wb->Next();
  ASSERT_TRUE(m);
  EXPECT_EQ(S(m->at("type")), "message");  // no gap after the held cursor
  EXPECT_EQ(S(m->at("body")), "new");
  EXPECT_EQ(I(m->at("seq")), 3);
  // Over the WebSocket, a feed_gap frame comes first, with the cursor past what is gone.
  auto wb_offline = WsClient::Connect(port, bob.token, offline);
  ASSERT_TRUE(wb_offline);
  auto gap = wb_offline->Next();
  ASSERT_TRUE(gap);
  EXPECT_EQ(S(gap->at("type")), "feed_gap");
  EXPECT_EQ(S(gap->at("cursor")), held);
  m = wb_offline->Next();
  ASSERT_TRUE(m);
  EXPECT_EQ(S(m->at("body")), "new");
  auto list = Http(port, "GET", "/api/v1/conversations", "", alice.token);
  EXPECT_EQ(I(list.json.at("conversations").as_array()[0].at("last_seq")), 3);
}

// Password hashing has threads of its own, with a bounded queue: a login that
// is being hashed holds up neither the workers (store reads, typing,
// presence, upgrades) nor, past the bound, a queue of more logins.
TEST(PasswordThreads, ALoginBeingHashedHoldsUpNoOtherRequest) {
  // One worker, one password thread, one queued check; a hash of about a second.
  TestServer server({"--worker-threads", "1", "--password-threads", "1",
                     "--max-pending-password-checks", "1", "--pwhash-opslimit", "40",
                     "--pwhash-memlimit-kib", "65536"});
  server.Start();
  const Account alice = Login(server.port(), "alice");
  const std::string creds =
      json::serialize(json::object{{"username", "alice"}, {"password", "password1"}});
  std::atomic<bool> login_done{false};
  std::thread login([&] {
    EXPECT_EQ(Http(server.port(), "POST", "/api/v1/sessions", creds).status, 200);
    login_done = true;
  });
  // Until it is queued or hashing (the metrics are served by the one worker).
  for (int i = 0; i < 200; ++i) {
    if (Http(server.port(), "GET", "/metrics").body.find("pigeon_password_checks_pending 1") !=
        std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The queue is full: another login is refused at once, to be retried.
  auto busy = Http(server.port(), "POST", "/api/v1/sessions", creds);
  EXPECT_EQ(busy.status, 503) << busy.body;
  EXPECT_EQ(busy.headers["retry-after"], "1");
  // The one worker is free: a store read is answered while the login hashes.
  EXPECT_EQ(Http(server.port(), "GET", "/api/v1/conversations", "", alice.token).status, 200);
  EXPECT_FALSE(login_done) << "the read waited for the login's hash";
  login.join();
}

}  // namespace
}  // namespace pigeon::test
