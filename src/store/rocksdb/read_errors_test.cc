// A read error on the committer is an error, never "not there": a write
// decided on a failed read (a username free, a message never sent, a feed
// empty) would overwrite what is there. The store's table files are read
// through a file system that fails every read while told to.
#include <gtest/gtest.h>
#include <rocksdb/file_system.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>

#include "store/rocksdb/rocks_store.h"
#include "store/store_test_ops.h"

namespace pigeon {
namespace {

class FailingFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FailingFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file, const std::atomic<bool>* failing)
      : FSRandomAccessFileOwnerWrapper(std::move(file)), failing_(failing) {}
  rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options,
                         rocksdb::Slice* result, char* scratch,
                         rocksdb::IODebugContext* dbg) const override {
    if (failing_->load()) return rocksdb::IOStatus::IOError("injected read error");
    return target()->Read(offset, n, options, result, scratch, dbg);
  }
  rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (!failing_->load()) return target()->MultiRead(reqs, num_reqs, options, dbg);
    for (size_t i = 0; i < num_reqs; ++i)
      reqs[i].status = rocksdb::IOStatus::IOError("injected read error");
    return rocksdb::IOStatus::OK();
  }

 private:
  const std::atomic<bool>* failing_;
};

// The machine's file system, whose table files (*.sst) fail every read while
// `failing` is set.
class FailingReads : public rocksdb::FileSystemWrapper {
 public:
  FailingReads() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FailingReads"; }
  rocksdb::IOStatus NewRandomAccessFile(const std::string& name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* file,
                                        rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewRandomAccessFile(name, options, file, dbg);
    if (s.ok() && name.ends_with(".sst"))
      *file = std::make_unique<FailingFile>(std::move(*file), &failing);
    return s;
  }
  std::atomic<bool> failing{false};
};

class StoreReadErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pigeon-read-errors.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    Open();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    store_.reset();
    // No block cache: every read of a table's block goes to its file.
    auto s = RocksStore::Open({.path = dir_ + "/db", .block_cache_bytes = 0, .file_system = fs_});
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(*s);
  }
  // Reopened, everything written so far is in table files (RocksDB flushes
  // what it recovers from the WAL) and the store's caches are empty.
  void Reopen() { Open(); }

  std::vector<OpResult> Commit(std::vector<WriteOp> ops) {
    return CommitOps(*store_, now_, std::move(ops));
  }
  OpResult One(WriteOp op) { return CommitOne(*store_, now_, std::move(op)); }
  std::string Conversation(const std::string& a, const std::string& b) {
    return OpenConversation(*store_, now_, a, b);
  }
  std::vector<uint64_t> Seqs(const std::string& conversation) {
    auto h = store_->History(conversation, UINT64_MAX, 100);
    EXPECT_TRUE(h.ok()) << h.status().message();
    std::vector<uint64_t> seqs;
    for (auto& m : *h) seqs.push_back(m.seq);
    return seqs;
  }

  std::shared_ptr<FailingReads> fs_ = std::make_shared<FailingReads>();
  std::string dir_;
  std::unique_ptr<RocksStore> store_;
  int64_t now_ = 1000;
};

TEST_F(StoreReadErrors, ARetriedSendWhoseDedupKeyCannotBeReadFailsInsteadOfBeingStoredTwice) {
  const std::string conv = Conversation("alice", "bob");
  ASSERT_TRUE(One(op::AppendMessage{"alice", conv, "c1", "hello"}).status.ok());
  Reopen();
  // Another message caches the conversation, the feed heads and the push
  // flags again: the retry's only read from a table file is its dedup key.
  ASSERT_TRUE(One(op::AppendMessage{"alice", conv, "c2", "again"}).status.ok());

  fs_->failing = true;
  OpResult failed = One(op::AppendMessage{"alice", conv, "c1", "hello"});
  fs_->failing = false;
  EXPECT_EQ(failed.status.code(), ErrorCode::kUnavailable) << failed.status.message();
  // What the client is told: the kind of error, not RocksDB's text (the log has it).
  EXPECT_EQ(failed.status.message(), "store: an I/O error, retry later");

  OpResult retried = One(op::AppendMessage{"alice", conv, "c1", "hello"});
  ASSERT_TRUE(retried.status.ok()) << retried.status.message();
  const auto& a = std::get<AppendResult>(retried.value);
  EXPECT_TRUE(a.duplicate);
  EXPECT_EQ(a.message.seq, 1u);
  EXPECT_EQ(Seqs(conv), (std::vector<uint64_t>{2, 1}));
}

TEST_F(StoreReadErrors, ASignUpWhoseUserCannotBeReadFailsInsteadOfOverwritingTheUser) {
  ASSERT_TRUE(One(op::CreateUser{"alice", "alice's hash"}).status.ok());
  Reopen();

  fs_->failing = true;
  OpResult failed = One(op::CreateUser{"alice", "another hash"});
  fs_->failing = false;
  EXPECT_EQ(failed.status.code(), ErrorCode::kUnavailable) << failed.status.message();

  auto user = store_->GetUser("alice");
  ASSERT_TRUE(user.ok()) << user.status().message();
  EXPECT_EQ(user->password_hash, "alice's hash");
  EXPECT_EQ(One(op::CreateUser{"alice", "another hash"}).status.code(), ErrorCode::kConflict);
}

TEST_F(StoreReadErrors, ASendWhoseFeedHeadCannotBeReadWritesNothingAndTheBatchGoesOn) {
  const std::string conv = Conversation("alice", "bob");
  ASSERT_TRUE(One(op::AppendMessage{"alice", conv, "c1", "first"}).status.ok());
  Reopen();
  // The conversation is cached again; the members' feed heads are not.
  ASSERT_TRUE(One(op::OpenDirectConversation{"alice", "bob"}).status.ok());

  fs_->failing = true;
  auto results =
      Commit({op::AppendMessage{"alice", conv, "c2", "second"}, op::CreateUser{"carol", "hash"}});
  fs_->failing = false;
  EXPECT_EQ(results[0].status.code(), ErrorCode::kUnavailable) << results[0].status.message();
  EXPECT_TRUE(results[1].status.ok()) << results[1].status.message();
  EXPECT_EQ(Seqs(conv), (std::vector<uint64_t>{1}));

  // Sent again, the message takes the next seq and the next feed positions:
  // nothing of the failed send was written, and no position is used twice.
  OpResult sent = One(op::AppendMessage{"alice", conv, "c2", "second"});
  ASSERT_TRUE(sent.status.ok()) << sent.status.message();
  const auto& a = std::get<AppendResult>(sent.value);
  EXPECT_FALSE(a.duplicate);
  EXPECT_EQ(a.message.seq, 2u);
  for (auto& d : a.fanout) EXPECT_EQ(d.pos, 2u) << d.user_id;
  auto feed = store_->ReadFeed("bob", 0, 10);
  ASSERT_TRUE(feed.ok()) << feed.status().message();
  ASSERT_EQ(feed->entries.size(), 2u);
  EXPECT_EQ(feed->entries[0].message.body, "first");
  EXPECT_EQ(feed->entries[1].message.body, "second");
  EXPECT_TRUE(store_->GetUser("carol").ok());
}

TEST_F(StoreReadErrors, AFeedConfirmationThatCannotReadTheFeedFailsAndMovesNoMark) {
  const std::string conv = Conversation("alice", "bob");
  ASSERT_TRUE(One(op::CreateSession{"bob", "phone", "Phone", std::string(32, 'b')}).status.ok());
  ASSERT_TRUE(One(op::AppendMessage{"alice", conv, "c1", "hello"}).status.ok());
  Reopen();

  fs_->failing = true;
  OpResult failed = One(op::ConfirmFeed{"bob", "phone", 1});
  fs_->failing = false;
  EXPECT_EQ(failed.status.code(), ErrorCode::kUnavailable) << failed.status.message();
  auto alice = store_->ReadFeed("alice", 0, 10);
  ASSERT_TRUE(alice.ok()) << alice.status().message();
  EXPECT_EQ(alice->entries.size(), 1u);  // her message; no receipt yet

  // Confirmed again, the delivered receipt is written once, to alice's feed.
  OpResult confirmed = One(op::ConfirmFeed{"bob", "phone", 1});
  ASSERT_TRUE(confirmed.status.ok()) << confirmed.status.message();
  const auto& r = std::get<ReceiptsResult>(confirmed.value);
  ASSERT_EQ(r.receipts.size(), 1u);
  EXPECT_EQ(r.receipts[0].receipt.seq, 1u);
  ASSERT_EQ(r.receipts[0].fanout.size(), 1u);
  EXPECT_EQ(r.receipts[0].fanout[0].user_id, "alice");
  EXPECT_EQ(r.receipts[0].fanout[0].pos, 2u);
  auto devices = store_->Devices("bob");
  ASSERT_TRUE(devices.ok()) << devices.status().message();
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].confirmed, 1u);
}

}  // namespace
}  // namespace pigeon
