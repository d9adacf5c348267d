// Receipts, presence and typing, black-box against the real pigeond.
#include <gtest/gtest.h>

#include <thread>

#include "client/pigeon_client.h"

namespace pigeon::test {
namespace {

using namespace ::pigeon::client;

std::string S(const json::value& v) { return std::string(v.as_string()); }
int64_t I(const json::value& v) { return v.to_number<int64_t>(); }

json::object SendFrame(const std::string& conv, const std::string& cmid) {
  return json::object{
      {"type", "send"}, {"conversation_id", conv}, {"client_msg_id", cmid}, {"body", "b"}};
}

class Live : public ::testing::Test {
 protected:
  // Short heartbeat and debounce so that presence changes show quickly.
  Live() : server_({"--heartbeat-interval-ms", "1000", "--presence-debounce-ms", "300"}) {}
  void SetUp() override {
    server_.Start();
    alice_ = Login(port(), "alice");
    bob_ = Login(port(), "bob");
    conv_ = OpenConversation(port(), alice_, "bob");
  }
  uint16_t port() const { return server_.port(); }

  // Sends n messages from `who`, returns the last ack.
  json::object SendN(WsClient& ws, int n, const std::string& prefix) {
    json::object last;
    for (int i = 0; i < n; ++i) ws.SendJson(SendFrame(conv_, prefix + std::to_string(i)));
    for (int i = 0; i < n; ++i) last = *ws.NextOfType("ack");
    return last;
  }
  json::value Feed(const Account& a, const std::string& since = "") {
    auto r = Http(port(), "GET", "/api/v1/messages" + (since.empty() ? "" : "?since=" + since), "",
                  a.token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json;
  }

  TestServer server_;
  Account alice_, bob_;
  std::string conv_;
};

TEST_F(Live, DeliveredReceiptFollowsAReceivedFrame) {
  auto wa = WsClient::Connect(port(), alice_.token), wb = WsClient::Connect(port(), bob_.token);
  SendN(*wa, 3, "m");
  json::object last;
  for (int i = 0; i < 3; ++i) last = *wb->NextOfType("message");
  wb->SendJson(json::object{{"type", "received"}, {"cursor", last.at("cursor")}});
  auto r = wa->NextOfType("receipt");
  ASSERT_TRUE(r);
  EXPECT_EQ(S(r->at("status")), "delivered");
  EXPECT_EQ(S(r->at("user")), "bob");
  EXPECT_EQ(S(r->at("conversation_id")), conv_);
  EXPECT_EQ(I(r->at("seq")), 3);
  EXPECT_TRUE(r->contains("cursor"));
  EXPECT_TRUE(r->contains("ts"));
  // Also in alice's feed, in the receipts array.
  auto feed = Feed(alice_);
  ASSERT_EQ(feed.at("receipts").as_array().size(), 1u);
  EXPECT_EQ(I(feed.at("receipts").as_array()[0].at("seq")), 3);
  EXPECT_EQ(S(feed.at("receipts").as_array()[0].at("type")), "receipt");
  EXPECT_EQ(feed.at("messages").as_array().size(), 3u);
}

TEST_F(Live, DeliveredReceiptFollowsAFeedRead) {
  auto wa = WsClient::Connect(port(), alice_.token);
  SendN(*wa, 2, "m");
  auto page = Feed(bob_);  // since omitted: confirms nothing
  EXPECT_FALSE(wa->NextOfType("receipt", 300));
  Feed(bob_, S(page.at("next_cursor")));  // confirms what the first read returned
  auto r = wa->NextOfType("receipt");
  ASSERT_TRUE(r);
  EXPECT_EQ(S(r->at("status")), "delivered");
  EXPECT_EQ(I(r->at("seq")), 2);
}

TEST_F(Live, ReadReceiptReachesAnOfflineSenderThroughTheFeed) {
  auto bob_phone = WsClient::Connect(port(), bob_.token);
  auto bob_laptop_acct = Login(port(), "bob");
  auto bob_laptop = WsClient::Connect(port(), bob_laptop_acct.token);
  std::string alice_cursor;
  {
    auto wa = WsClient::Connect(port(), alice_.token);
    SendN(*wa, 2, "m");
    alice_cursor = S(wa->NextOfType("message")->at("cursor"));  // alice's own copy of seq 1
  }
  bob_phone->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 2}});
  // The reader's other device learns it at once.
  auto own = bob_laptop->NextOfType("receipt");
  ASSERT_TRUE(own);
  EXPECT_EQ(S(own->at("status")), "read");
  EXPECT_EQ(I(own->at("seq")), 2);
  // Alice, offline, finds it in her feed.
  auto feed = Feed(alice_, alice_cursor);
  auto& receipts = feed.at("receipts").as_array();
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(S(receipts[0].at("status")), "read");
  EXPECT_EQ(S(receipts[0].at("user")), "bob");
  EXPECT_EQ(I(receipts[0].at("seq")), 2);
  auto list = Http(port(), "GET", "/api/v1/conversations", "", bob_.token);
  EXPECT_EQ(I(list.json.at("conversations").as_array()[0].at("read_seq")), 2);
  auto alist = Http(port(), "GET", "/api/v1/conversations", "", alice_.token);
  EXPECT_EQ(I(alist.json.at("conversations").as_array()[0].at("read_seq")), 0);
}

TEST_F(Live, WatermarksNeverMoveBackAndOwnMessagesNeverMoveThem) {
  auto wa = WsClient::Connect(port(), alice_.token), wb = WsClient::Connect(port(), bob_.token);
  SendN(*wa, 2, "a");
  wb->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 2}});
  ASSERT_TRUE(wa->NextOfType("receipt"));
  // Lower, repeated: nothing. Beyond the last: bad_request.
  wb->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 1}});
  wb->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 2}});
  wb->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 99}});
  auto e = wb->NextOfType("error");
  ASSERT_TRUE(e);
  EXPECT_EQ(S(e->at("code")), "bad_request");
  EXPECT_FALSE(wa->NextOfType("receipt", 300));
  // Bob's own message (seq 3) does not move bob's marks...
  SendN(*wb, 1, "b");
  wb->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 3}});
  EXPECT_FALSE(wa->NextOfType("receipt", 300));
  // ...but alice reading it sends bob a receipt.
  wa->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 3}});
  auto r = wb->NextOfType("receipt");
  ASSERT_TRUE(r);
  EXPECT_EQ(S(r->at("user")), "alice");
  EXPECT_EQ(I(r->at("seq")), 3);
  // A stranger cannot mark it read.
  auto carol = Login(port(), "carol");
  auto wc = WsClient::Connect(port(), carol.token);
  wc->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 1}});
  EXPECT_EQ(S(wc->NextOfType("error")->at("code")), "forbidden");
}

TEST_F(Live, ReceiptsAreReplayedBySinceInFeedOrder) {
  std::string start = S(Feed(alice_).at("next_cursor"));
  {
    auto wa = WsClient::Connect(port(), alice_.token);
    SendN(*wa, 2, "a");
  }
  auto wb = WsClient::Connect(port(), bob_.token);
  wb->SendJson(json::object{{"type", "read"}, {"conversation_id", conv_}, {"seq", 2}});
  ASSERT_TRUE(wb->NextOfType("receipt"));  // bob's own copy
  auto wa = WsClient::Connect(port(), alice_.token, start);
  EXPECT_EQ(I(wa->NextOfType("message")->at("seq")), 1);
  EXPECT_EQ(I(wa->NextOfType("message")->at("seq")), 2);
  auto r = wa->Next();
  ASSERT_TRUE(r);
  EXPECT_EQ(S(r->at("type")), "receipt");
  EXPECT_EQ(S(r->at("status")), "read");
}

TEST_F(Live, PresenceGoesOnlineAndOfflineForSubscribers) {
  auto wa = WsClient::Connect(port(), alice_.token);
  wa->SendJson(json::object{{"type", "presence_subscribe"}, {"users", json::array{"bob"}}});
  auto now = wa->NextOfType("presence");
  ASSERT_TRUE(now);
  EXPECT_EQ(S(now->at("user_id")), "bob");
  EXPECT_FALSE(now->at("online").as_bool());
  EXPECT_TRUE(now->at("last_seen").is_null());  // never connected
  auto before = std::chrono::system_clock::now();
  {
    auto wb = WsClient::Connect(port(), bob_.token);
    auto on = wa->NextOfType("presence");
    ASSERT_TRUE(on);
    EXPECT_TRUE(on->at("online").as_bool());
    EXPECT_FALSE(on->at("last_seen").is_null());
  }
  auto off = wa->NextOfType("presence", 5000);
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->at("online").as_bool());
  auto seen = I(off->at("last_seen"));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count();
  EXPECT_GE(seen, ms);
  auto r = Http(port(), "GET", "/api/v1/presence/bob", "", alice_.token);
  ASSERT_EQ(r.status, 200);
  EXPECT_FALSE(r.json.at("online").as_bool());
  EXPECT_EQ(I(r.json.at("last_seen")), seen);
}

TEST_F(Live, AMissedHeartbeatTakesAUserOffline) {
  auto wa = WsClient::Connect(port(), alice_.token);
  auto wb = WsClient::Connect(port(), bob_.token);  // never read: never answers pings
  wa->SendJson(json::object{{"type", "presence_subscribe"}, {"users", json::array{"bob"}}});
  auto now = wa->NextOfType("presence");
  ASSERT_TRUE(now);
  EXPECT_TRUE(now->at("online").as_bool());
  // alice's client answers pings (it reads); bob's does not.
  auto off = wa->NextOfType("presence", 5000);
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->at("online").as_bool());
  EXPECT_EQ(wa->NextOfType("presence", 700), std::nullopt);  // alice herself stays connected
}

TEST_F(Live, AQuickReconnectAnnouncesNothing) {
  auto wb = WsClient::Connect(port(), bob_.token);
  auto wa = WsClient::Connect(port(), alice_.token);
  wa->SendJson(json::object{{"type", "presence_subscribe"}, {"users", json::array{"bob"}}});
  ASSERT_TRUE(wa->NextOfType("presence"));
  wb.reset();
  wb = WsClient::Connect(port(), bob_.token);  // well within the 300 ms debounce
  for (int i = 0; i < 5; ++i) {
    (void)wb->Next(100);  // bob reads, so he answers the heartbeat pings
    EXPECT_EQ(wa->NextOfType("presence", 150), std::nullopt);
  }
}

TEST_F(Live, LastSeenSurvivesARestart) {
  { auto wb = WsClient::Connect(port(), bob_.token); }
  int64_t seen = -1;
  for (int i = 0; i < 100 && seen < 0; ++i) {
    auto r = Http(port(), "GET", "/api/v1/presence/bob", "", alice_.token);
    if (!r.json.at("online").as_bool() && !r.json.at("last_seen").is_null())
      seen = I(r.json.at("last_seen"));
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(seen, 0);
  ASSERT_EQ(server_.Terminate(), 0);
  server_.Start();
  auto r = Http(port(), "GET", "/api/v1/presence/bob", "", alice_.token);
  EXPECT_FALSE(r.json.at("online").as_bool());
  EXPECT_EQ(I(r.json.at("last_seen")), seen);
}

TEST_F(Live, StrangersGetForbiddenAndNothingElse) {
  auto carol = Login(port(), "carol");
  auto wc = WsClient::Connect(port(), carol.token);
  wc->SendJson(json::object{{"type", "presence_subscribe"},
                            {"users", json::array{"alice", "ghost", "carol"}}});
  std::vector<json::object> got;
  for (int i = 0; i < 3; ++i) got.push_back(*wc->Next());
  int forbidden = 0, presence = 0;
  for (auto& f : got) {
    if (S(f.at("type")) == "error") {
      EXPECT_EQ(S(f.at("code")), "forbidden");
      ++forbidden;
    } else {
      EXPECT_EQ(S(f.at("type")), "presence");
      EXPECT_EQ(S(f.at("user_id")), "carol");  // oneself is allowed
      ++presence;
    }
  }
  EXPECT_EQ(forbidden, 2);
  EXPECT_EQ(presence, 1);
  // alice coming online tells carol nothing.
  auto wa = WsClient::Connect(port(), alice_.token);
  EXPECT_EQ(wc->NextOfType("presence", 500), std::nullopt);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/presence/alice", "", carol.token).status, 403);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/presence/ghost", "", carol.token).status, 403);
  EXPECT_EQ(Http(port(), "GET", "/api/v1/presence/carol", "", carol.token).status, 200);
}

TEST_F(Live, HidingLastSeenWorksBothWays) {
  { auto wa = WsClient::Connect(port(), alice_.token); }
  { auto wb = WsClient::Connect(port(), bob_.token); }
  std::this_thread::sleep_for(std::chrono::milliseconds(900));  // both offline, last_seen stored
  auto seen = [&](const Account& viewer, const std::string& user) {
    return Http(port(), "GET", "/api/v1/presence/" + user, "", viewer.token).json.at("last_seen");
  };
  EXPECT_FALSE(seen(alice_, "bob").is_null());
  auto put = Http(port(), "PUT", "/api/v1/me/settings", R"({"last_seen":"nobody"})", bob_.token);
  ASSERT_EQ(put.status, 200);
  EXPECT_EQ(S(Http(port(), "GET", "/api/v1/me/settings", "", bob_.token).json.at("last_seen")),
            "nobody");
  EXPECT_TRUE(seen(alice_, "bob").is_null());  // hidden from others
  EXPECT_TRUE(seen(bob_, "alice").is_null());  // and bob sees nobody's
  EXPECT_FALSE(seen(bob_, "bob").is_null());   // but his own
  EXPECT_EQ(
      Http(port(), "PUT", "/api/v1/me/settings", R"({"last_seen":"friends"})", bob_.token).status,
      400);
  ASSERT_EQ(
      Http(port(), "PUT", "/api/v1/me/settings", R"({"last_seen":"everyone"})", bob_.token).status,
      200);
  EXPECT_FALSE(seen(alice_, "bob").is_null());
  EXPECT_FALSE(seen(bob_, "alice").is_null());
}

TEST_F(Live, TypingReachesThePeerLiveAndIsNeverStored) {
  auto wa = WsClient::Connect(port(), alice_.token), wb = WsClient::Connect(port(), bob_.token);
  wa->SendJson(
      json::object{{"type", "typing"}, {"conversation_id", conv_}, {"state", "composing"}});
  auto t = wb->NextOfType("typing");
  ASSERT_TRUE(t);
  EXPECT_EQ(S(t->at("user")), "alice");
  EXPECT_EQ(S(t->at("state")), "composing");
  EXPECT_EQ(S(t->at("conversation_id")), conv_);
  EXPECT_TRUE(Feed(bob_).at("messages").as_array().empty());
  // Excess typing frames are dropped silently.
  for (int i = 0; i < 60; ++i)
    wa->SendJson(json::object{{"type", "typing"}, {"conversation_id", conv_}, {"state", "paused"}});
  int got = 0;
  while (wb->NextOfType("typing", 300)) ++got;
  EXPECT_GT(got, 0);
  EXPECT_LT(got, 60);
  EXPECT_EQ(wa->NextOfType("error", 200), std::nullopt);
}

}  // namespace
}  // namespace pigeon::test
