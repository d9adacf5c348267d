// The chat service and the commit pipeline against the store interface, with
// the embedded store, presence and bus, and a sink that records deliveries.
#include "chat/chat_service.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "bus/local/local_bus.h"
#include "core/wake_batch.h"
#include "presence/local/local_presence.h"
#include "store/rocksdb/rocks_store.h"

namespace pigeon {
namespace {

struct RecordingSink : DeliverySink {
  struct Entry {
    std::string user;
    FeedPos pos;
    std::string frame;
  };
  std::mutex mu;
  std::vector<Entry> entries;
  std::vector<std::pair<std::string, std::string>> closed;
  // The users with a socket here; the others' frames are never made.
  std::function<bool(const std::string&)> reaches = [](const std::string&) { return true; };
  void DeliverFeedEntry(const std::string& user, FeedPos pos,
                        FunctionRef<SharedFrame()> frame) override {
    if (!reaches(user)) return;
    SharedFrame made = frame();
    std::lock_guard l(mu);
    entries.push_back({user, pos, std::string(*made)});
  }
  void DeliverEphemeral(const std::string& user, SharedFrame frame) override {
    std::lock_guard l(mu);
    entries.push_back({user, 0, std::string(*frame)});
  }
  void CloseDevice(const std::string& user, const std::string& device, uint16_t) override {
    std::lock_guard l(mu);
    closed.emplace_back(user, device);
  }
  void PresenceChanged(const std::string& user, bool online, int64_t last_seen_ms) override {
    std::lock_guard l(mu);
    presence.push_back({user, online, last_seen_ms});
  }
  void PrivacyChanged(const std::string& user, bool hides) override {
    std::lock_guard l(mu);
    privacy.emplace_back(user, hides);
  }
  struct PresenceEvent {
    std::string user;
    bool online;
    int64_t last_seen_ms;
  };
  std::vector<PresenceEvent> presence;
  std::vector<std::pair<std::string, bool>> privacy;
};

template <typename T>
T Wait(std::function<void(std::function<void(T)>)> start) {
  std::promise<T> p;
  auto f = p.get_future();
  start([&p](T v) { p.set_value(std::move(v)); });
  return f.get();
}

class ChatServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    char tmpl[] = "/tmp/pigeon-chat-test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    store_ = std::move(*RocksStore::Open({.path = dir_}));
    pipeline_ = std::make_unique<CommitPipeline>(*store_, metrics_, CommitPipeline::Options{});
    bus_.Attach(&sink_);
    // As the gateway's registry: only a user with a socket gets frames.
    sink_.reaches = [this](const std::string& user) { return presence_.IsOnline(user); };
    chat_ = std::make_unique<ChatService>(
        *store_, *pipeline_, bus_, metrics_,
        ChatService::Options{
            .pwhash_opslimit = 1, .pwhash_memlimit = 1 << 20, .on_push_outbox = {}});
  }
  void TearDown() override {
    pipeline_->Stop();
    std::filesystem::remove_all(dir_);
  }
  LoginResult User(const std::string& name) {
    auto id = Wait<Result<std::string>>([&](auto done) { chat_->SignUp(name, "password1", done); });
    EXPECT_TRUE(id.ok()) << id.status().message();
    auto r =
        Wait<Result<LoginResult>>([&](auto done) { chat_->Login(name, "password1", "", done); });
    EXPECT_TRUE(r.ok());
    return *r;
  }
  std::string Conv(const std::string& a, const std::string& b) {
    return Wait<Result<Conversation>>([&](auto done) { chat_->OpenConversation(a, b, done); })->id;
  }
  SendOutcome SendOne(const LoginResult& who, const std::string& conv, const std::string& cmid) {
    return Wait<SendOutcome>([&](auto done) {
      chat_->Send({who.user_id, who.device_id}, SendFrame{conv, cmid, "hi"}, done);
    });
  }

  std::string dir_;
  Metrics metrics_;
  std::unique_ptr<RocksStore> store_;
  std::unique_ptr<CommitPipeline> pipeline_;
  LocalPresence presence_;
  LocalBus bus_;
  RecordingSink sink_;
  std::unique_ptr<ChatService> chat_;
};

TEST_F(ChatServiceTest, SignUpValidatesAndHashesWithArgon2id) {
  User("alice");
  auto dup = Wait<Result<std::string>>([&](auto d) { chat_->SignUp("alice", "password1", d); });
  EXPECT_EQ(dup.status().code(), ErrorCode::kConflict);
  EXPECT_EQ(Wait<Result<std::string>>([&](auto d) { chat_->SignUp("Alice", "password1", d); })
                .status()
                .code(),
            ErrorCode::kBadRequest);
  EXPECT_EQ(
      Wait<Result<std::string>>([&](auto d) { chat_->SignUp("zed", "short", d); }).status().code(),
      ErrorCode::kBadRequest);
  auto u = store_->GetUser("alice");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->password_hash.rfind("$argon2id$", 0), 0u);
  EXPECT_EQ(u->password_hash.find("password1"), std::string::npos);
  auto bad = Wait<Result<LoginResult>>([&](auto d) { chat_->Login("alice", "wrong-pass", "", d); });
  EXPECT_EQ(bad.status().code(), ErrorCode::kUnauthorized);
}

TEST_F(ChatServiceTest, TokensAreStoredOnlyAsHashes) {
  auto a = User("alice");
  auto who = chat_->Authenticate(a.token);
  ASSERT_TRUE(who.ok());
  EXPECT_EQ(who->device_id, a.device_id);
  EXPECT_EQ(store_->LookupToken(a.token).status().code(), ErrorCode::kUnauthorized);
  EXPECT_TRUE(Wait<Status>([&](auto d) { chat_->Logout(a.token, d); }).ok());
  EXPECT_EQ(chat_->Authenticate(a.token).status().code(), ErrorCode::kUnauthorized);
  ASSERT_EQ(sink_.closed.size(), 1u);
  EXPECT_EQ(sink_.closed[0].second, a.device_id);
}

TEST_F(ChatServiceTest, CommittedMessagesRouteToOnlineMembersInCommitOrder) {
  auto a = User("alice"), b = User("bob");
  auto conv = Conv("alice", "bob");
  presence_.SocketOpened("bob");  // alice is offline: her copies wait in her feed
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(SendOne(a, conv, std::to_string(i)).status.ok());
  auto dup = SendOne(a, conv, "3");
  EXPECT_EQ(dup.seq, 4u);
  std::lock_guard l(sink_.mu);
  ASSERT_EQ(sink_.entries.size(), 20u);  // the duplicate routed nothing
  for (size_t i = 0; i < sink_.entries.size(); ++i) {
    EXPECT_EQ(sink_.entries[i].user, "bob");
    EXPECT_EQ(sink_.entries[i].pos, i + 1);
    EXPECT_NE(sink_.entries[i].frame.find("\"seq\":" + std::to_string(i + 1) + ","),
              std::string::npos);
  }
  EXPECT_EQ(store_->ReadFeed("alice", 0, 100)->entries.size(), 20u);
}

TEST_F(ChatServiceTest, HistoryIsForMembersOnly) {
  User("alice");
  User("bob");
  User("carol");
  auto conv = Conv("alice", "bob");
  EXPECT_TRUE(chat_->History("alice", conv, ~0ull, 10).ok());
  EXPECT_EQ(chat_->History("carol", conv, ~0ull, 10).status().code(), ErrorCode::kForbidden);
  EXPECT_EQ(chat_->History("carol", "nope", ~0ull, 10).status().code(), ErrorCode::kForbidden);
}

// A store that takes a while to commit, like a disk's fsync, and counts commits.
struct CountingStore final : MessageStore {
  explicit CountingStore(MessageStore& inner) : inner(inner) {}
  Status Commit(std::span<WriteOp> ops, int64_t now, std::vector<OpResult>* r) override {
    ++commits;
    if (gate_.valid()) gate_.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return inner.Commit(ops, now, r);
  }
  Result<UserRecord> GetUser(std::string_view u) override { return inner.GetUser(u); }
  Result<DeviceSession> LookupToken(std::string_view t) override { return inner.LookupToken(t); }
  Result<Conversation> GetConversation(std::string_view c) override {
    return inner.GetConversation(c);
  }
  Result<std::vector<ConversationSummary>> ListConversations(std::string_view u) override {
    return inner.ListConversations(u);
  }
  Result<std::vector<StoredMessage>> History(std::string_view c, uint64_t b, size_t l) override {
    return inner.History(c, b, l);
  }
  Result<FeedPage> ReadFeed(std::string_view u, FeedPos a, size_t l) override {
    return inner.ReadFeed(u, a, l);
  }
  Result<FeedPos> FeedHead(std::string_view u) override { return inner.FeedHead(u); }
  Result<std::vector<DeviceInfo>> Devices(std::string_view u) override { return inner.Devices(u); }
  Result<OutboxEntry> GetOutbox(std::string_view u) override { return inner.GetOutbox(u); }
  Result<std::vector<OutboxEntry>> ListOutbox(size_t n) override { return inner.ListOutbox(n); }
  Result<ExpiredSlice> FindExpired(int64_t before_ms, std::string_view resume,
                                   size_t max_keys) override {
    return inner.FindExpired(before_ms, resume, max_keys);
  }
  Status Check() override { return inner.Check(); }
  StoreHealth Health() override { return inner.Health(); }
  MessageStore& inner;
  std::atomic<int> commits{0};
  // Commits wait from CloseGate() until OpenGate().
  void CloseGate() { gate_ = open_.get_future().share(); }
  void OpenGate() { open_.set_value(); }
  std::promise<void> open_;
  std::shared_future<void> gate_;
};

// A callback that expects its op to commit, and counts it.
CommitPipeline::Done CountCommitted(std::atomic<int>& done) {
  return [&done](OpResult& r) {
    EXPECT_TRUE(r.status.ok());
    ++done;
  };
}

TEST_F(ChatServiceTest, PipelineGroupsManyOpsIntoFewCommits) {
  CountingStore counting(*store_);
  CommitPipeline pipeline(counting, metrics_, {});
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i)
        ASSERT_TRUE(
            pipeline.Submit(op::CreateUser{"u" + std::to_string(t) + "x" + std::to_string(i), "h"},
                            CountCommitted(done)));
    });
  }
  for (auto& t : threads) t.join();
  pipeline.Stop();  // commits what is queued
  EXPECT_EQ(done.load(), 1000);
  EXPECT_LT(counting.commits.load(), 500);
  EXPECT_TRUE(store_->GetUser("u3x249").ok());
}

TEST_F(ChatServiceTest, PipelineRefusesWhenItsQueueIsFull) {
  CountingStore counting(*store_);
  counting.CloseGate();
  CommitPipeline pipeline(counting, metrics_, {.max_queue = 10, .max_batch = 10});
  std::atomic<int> done{0};
  auto cb = [&](OpResult&) { ++done; };
  // The first op is taken by the committer, which blocks on the gate.
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"first", "h"}, cb));
  while (counting.commits.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(pipeline.Submit(op::CreateUser{"q" + std::to_string(i), "h"}, cb));
  EXPECT_FALSE(pipeline.Submit(op::CreateUser{"overflow", "h"}, cb));
  counting.OpenGate();
  pipeline.Stop();
  EXPECT_EQ(done.load(), 11);
}

TEST_F(ChatServiceTest, CommitDelayGathersASmallBatchUntilItIsFull) {
  CountingStore counting(*store_);
  // A delay far longer than the test: only reaching delay_ops can end it.
  CommitPipeline pipeline(counting, metrics_, {.delay_us = 600'000'000, .delay_ops = 3});
  std::atomic<int> done{0};
  auto cb = [&] { return CountCommitted(done); };
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"d1", "h"}, cb()));
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"d2", "h"}, cb()));
  EXPECT_EQ(done.load(), 0);  // still waiting for company (nothing can commit them yet)
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"d3", "h"}, cb()));
  while (done.load() < 3) std::this_thread::yield();
  EXPECT_EQ(counting.commits.load(), 1);  // the three went in one commit
  // Stopping commits a waiting batch at once.
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"d4", "h"}, cb()));
  pipeline.Stop();
  EXPECT_EQ(done.load(), 4);
  EXPECT_EQ(counting.commits.load(), 2);
  EXPECT_TRUE(store_->GetUser("d4").ok());
}

TEST_F(ChatServiceTest, CommitDelayEndsForASmallBatchWhenItsTimeIsUp) {
  CountingStore counting(*store_);
  // Far more ops than will come: only the delay running out can commit them.
  CommitPipeline pipeline(counting, metrics_, {.delay_us = 20'000, .delay_ops = 1000});
  std::atomic<int> done{0};
  auto cb = [&] { return CountCommitted(done); };
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"t1", "h"}, cb()));
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"t2", "h"}, cb()));
  while (done.load() < 2) std::this_thread::yield();
  EXPECT_EQ(counting.commits.load(), 1);
  // The next batch sets the timer again.
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"t3", "h"}, cb()));
  while (done.load() < 3) std::this_thread::yield();
  EXPECT_EQ(counting.commits.load(), 2);
  EXPECT_TRUE(store_->GetUser("t3").ok());
}

// Records how a closing WakeBatch asked it to wake.
struct WakeRecorder : Wakeable {
  std::atomic<int> woken{0};
  std::atomic<int> run_here{0};
  void Wake() override { ++woken; }
  void WakeFromBatch() override { ++run_here; }
  // The batch closes after its callbacks: wait for it.
  void WaitFor(int wakes) const {
    while (woken.load() + run_here.load() < wakes) std::this_thread::yield();
  }
};

// The callbacks of a batch hand work to network threads through a WakeBatch.
CommitPipeline::Done CountAndDefer(std::atomic<int>& done, WakeRecorder& to) {
  return [&done, &to](OpResult& r) {
    EXPECT_TRUE(r.status.ok());
    EXPECT_TRUE(WakeBatch::Defer(&to));
    ++done;
  };
}

TEST_F(ChatServiceTest, PipelineRunsASmallBatchsHandOffsHereUnlessTheNextBatchIsDue) {
  CountingStore counting(*store_);
  counting.CloseGate();
  // A small batch is at most delay_ops / 2 = 2 ops.
  CommitPipeline pipeline(counting, metrics_, {.delay_us = 1000, .delay_ops = 4});
  std::atomic<int> done{0};
  WakeRecorder small_due, large, small_idle;
  // One op, alone: the committer takes it after 1 ms and waits at the gate...
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"s1", "h"}, CountAndDefer(done, small_due)));
  while (counting.commits.load() == 0) std::this_thread::yield();
  // ...while a full batch gathers behind it: due as soon as the first is done.
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(
        pipeline.Submit(op::CreateUser{"l" + std::to_string(i), "h"}, CountAndDefer(done, large)));
  counting.OpenGate();
  small_due.WaitFor(1);
  large.WaitFor(4);
  EXPECT_EQ(small_due.run_here.load(), 0);  // the next commit goes first
  EXPECT_EQ(small_due.woken.load(), 1);
  EXPECT_EQ(large.run_here.load(), 0);  // a large batch's hand-offs would hold up the next one
  EXPECT_EQ(large.woken.load(), 4);
  // A small batch with nothing due after it: its hand-offs run here.
  ASSERT_TRUE(pipeline.Submit(op::CreateUser{"s2", "h"}, CountAndDefer(done, small_idle)));
  small_idle.WaitFor(1);
  pipeline.Stop();
  EXPECT_EQ(done.load(), 6);
  EXPECT_EQ(small_idle.run_here.load(), 1);
  EXPECT_EQ(small_idle.woken.load(), 0);
}

}  // namespace
}  // namespace pigeon
