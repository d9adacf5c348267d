// The crash test: clients pipeline sends from four devices into one
// conversation; pigeond gets SIGKILL at a random moment; it restarts on the
// same data. Every acked message must be in both members' feeds exactly once,
// with gap-free seq, and re-sending every message with its original
// client_msg_id must create nothing new (acked ones answer with their ack).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "client/pigeon_client.h"

namespace pigeon::test {
namespace {

using namespace ::pigeon::client;

struct Ack {
  std::string server_msg_id;
  int64_t seq;
};

std::string S(const json::value& v) { return std::string(v.as_string()); }
int64_t I(const json::value& v) { return v.to_number<int64_t>(); }

json::object Send(const std::string& conv, const std::string& cmid) {
  return json::object{{"type", "send"},
                      {"conversation_id", conv},
                      {"client_msg_id", cmid},
                      {"body", "payload of " + cmid}};
}

// Every message (or, with `receipts`, every receipt) of `a`'s feed, in feed order.
std::vector<json::object> WholeFeed(uint16_t port, const Account& a, bool receipts = false) {
  std::vector<json::object> out;
  std::string since;
  for (;;) {
    auto r =
        Http(port, "GET", "/api/v1/messages?limit=1000" + (since.empty() ? "" : "&since=" + since),
             "", a.token);
    if (r.status != 200) throw std::runtime_error("feed read failed: " + r.body);
    for (auto& m : r.json.at(receipts ? "receipts" : "messages").as_array())
      out.push_back(m.as_object());
    since = S(r.json.at("next_cursor"));
    if (!r.json.at("has_more").as_bool()) return out;
  }
}

struct SeenReceipt {
  std::string status;
  int64_t seq;
};

// Every receipt a device saw live must be in the feed, at the same cursor;
// per status, receipt seqs only grow (watermarks).
void CheckReceipts(const std::vector<json::object>& feed,
                   const std::map<std::string, SeenReceipt>& live) {
  std::map<std::string, SeenReceipt> by_cursor;
  std::map<std::string, int64_t> last;
  for (auto& r : feed) {
    SeenReceipt x{S(r.at("status")), I(r.at("seq"))};
    EXPECT_GT(x.seq, last[x.status]) << "a " << x.status << " watermark moved back";
    last[x.status] = x.seq;
    by_cursor[S(r.at("cursor"))] = x;
  }
  for (auto& [cursor, x] : live) {
    auto it = by_cursor.find(cursor);
    EXPECT_NE(it, by_cursor.end()) << "a receipt seen live was lost: " << cursor;
    if (it != by_cursor.end()) {
      EXPECT_EQ(it->second.status, x.status);
      EXPECT_EQ(it->second.seq, x.seq);
    }
  }
}

// Checks one feed: unique server_msg_ids, seq exactly 1..n in order, every
// acked message present with its acked seq. Returns n.
size_t CheckFeed(const std::vector<json::object>& feed, const std::map<std::string, Ack>& acked,
                 const std::string& who) {
  std::set<std::string> ids;
  int64_t expect = 1;
  for (auto& m : feed) {
    EXPECT_TRUE(ids.insert(S(m.at("server_msg_id"))).second)
        << who << ": duplicate " << S(m.at("server_msg_id"));
    EXPECT_EQ(I(m.at("seq")), expect) << who << ": seq gap or reorder";
    ++expect;
  }
  std::map<std::string, int64_t> seq_of;
  for (auto& m : feed) seq_of[S(m.at("server_msg_id"))] = I(m.at("seq"));
  for (auto& [cmid, ack] : acked) {
    auto it = seq_of.find(ack.server_msg_id);
    EXPECT_NE(it, seq_of.end()) << who << ": acked message lost: " << cmid;
    if (it != seq_of.end()) {
      EXPECT_EQ(it->second, ack.seq) << who << ": " << cmid;
    }
  }
  return feed.size();
}

// With the WAL written through the page cache (the default) and with O_DIRECT.
class Crash : public testing::TestWithParam<const char*> {};

TEST_P(Crash, AckedMessagesSurviveSigkillExactlyOnce) {
  TestServer server({"--store-wal-write", GetParam()});
  server.Start();
  const uint16_t port = server.port();
  std::vector<Account> devices = {Login(port, "alice"), Login(port, "alice"), Login(port, "bob"),
                                  Login(port, "bob")};
  const std::string conv = OpenConversation(port, devices[0], "bob");
  unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));

  const Account bob_reader = Login(port, "bob");  // reads and confirms: makes receipts
  std::mutex mu;
  std::map<std::string, SeenReceipt> live_receipts;  // alice's, by cursor
  std::map<std::string, Ack> acked;                  // cmid -> its ack
  std::vector<std::pair<size_t, std::string>> sent;  // (device, cmid), every send attempted
  const int kRounds = 4;
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (size_t d = 0; d < devices.size(); ++d) {
      writers.emplace_back([&, d] {
        try {
          auto ws = WsClient::Connect(port, devices[d].token);
          if (!ws) return;
          for (int batch = 0; !stop; ++batch) {
            const int kPipeline = 25;
            std::set<std::string> waiting;
            for (int i = 0; i < kPipeline; ++i) {
              std::string cmid = "r" + std::to_string(round) + "-d" + std::to_string(d) + "-" +
                                 std::to_string(batch * kPipeline + i);
              {
                std::lock_guard lock(mu);
                sent.emplace_back(d, cmid);
              }
              waiting.insert(cmid);
              ws->SendJson(Send(conv, cmid));
            }
            while (!waiting.empty()) {
              auto m = ws->Next(5000);
              if (!m) return;  // the server is gone
              if (S(m->at("type")) == "receipt" && devices[d].user_id == "alice") {
                std::lock_guard lock(mu);
                live_receipts[S(m->at("cursor"))] =
                    SeenReceipt{S(m->at("status")), I(m->at("seq"))};
              }
              if (S(m->at("type")) != "ack") continue;
              std::lock_guard lock(mu);
              acked[S(m->at("client_msg_id"))] = Ack{S(m->at("server_msg_id")), I(m->at("seq"))};
              waiting.erase(S(m->at("client_msg_id")));
            }
          }
        } catch (const std::exception&) {
          // The connection died with the server: expected.
        }
      });
    }
    writers.emplace_back([&] {
      try {
        auto ws = WsClient::Connect(port, bob_reader.token);
        if (!ws) return;
        for (int n = 0; !stop; ++n) {
          auto m = ws->NextOfType("message", 5000);
          if (!m) return;
          if (n % 50 != 0) continue;
          ws->SendJson(json::object{{"type", "received"}, {"cursor", m->at("cursor")}});
          ws->SendJson(
              json::object{{"type", "read"}, {"conversation_id", conv}, {"seq", m->at("seq")}});
        }
      } catch (const std::exception&) {
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 900));
    server.Kill();
    stop = true;
    for (auto& w : writers) w.join();
    server.Start();

    size_t acked_before_resend = acked.size();
    ASSERT_GT(acked_before_resend, 0u);
    size_t n_alice = CheckFeed(WholeFeed(port, devices[0]), acked, "alice");
    size_t n_bob = CheckFeed(WholeFeed(port, devices[2]), acked, "bob");
    EXPECT_EQ(n_alice, n_bob);
    EXPECT_GE(n_alice, acked.size());
    CheckReceipts(WholeFeed(port, devices[0], /*receipts=*/true), live_receipts);
    if (::testing::Test::HasFailure()) return;

    // Re-send everything ever sent, with the original keys.
    std::map<std::string, Ack> resend_acks;
    for (size_t d = 0; d < devices.size(); ++d) {
      auto ws = WsClient::Connect(port, devices[d].token);
      ASSERT_TRUE(ws);
      std::vector<std::string> mine;
      for (auto& [dev, cmid] : sent)
        if (dev == d) mine.push_back(cmid);
      for (size_t i = 0; i < mine.size(); i += 200) {
        size_t end = std::min(mine.size(), i + 200);
        for (size_t j = i; j < end; ++j) ws->SendJson(Send(conv, mine[j]));
        for (size_t j = i; j < end; ++j) {
          auto a = ws->NextOfType("ack", 10000);
          ASSERT_TRUE(a);
          resend_acks[S(a->at("client_msg_id"))] = Ack{S(a->at("server_msg_id")), I(a->at("seq"))};
        }
      }
    }
    for (auto& [cmid, ack] : acked) {
      ASSERT_TRUE(resend_acks.count(cmid));
      EXPECT_EQ(resend_acks[cmid].server_msg_id, ack.server_msg_id) << cmid;
      EXPECT_EQ(resend_acks[cmid].seq, ack.seq) << cmid;
    }
    // Now every message sent exists exactly once.
    acked = resend_acks;
    EXPECT_EQ(CheckFeed(WholeFeed(port, devices[0]), acked, "alice"), sent.size());
    EXPECT_EQ(CheckFeed(WholeFeed(port, devices[3]), acked, "bob"), sent.size());
    std::cout << "round " << round << ": " << acked_before_resend << " acked before the kill, "
              << sent.size() << " sent in all, " << live_receipts.size() << " receipts seen live"
              << std::endl;
  }
}

INSTANTIATE_TEST_SUITE_P(WalWrites, Crash, testing::Values("page-cache", "direct"),
                         [](const testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "direct" ? "Direct" : "PageCache";
                         });

}  // namespace
}  // namespace pigeon::test
