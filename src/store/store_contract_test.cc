// The MessageStore contract. Every backend runs this suite (GoogleTest typed
// tests): add a backend by adding a Backend class to kBackends.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <sched.h>

#include <filesystem>
#include <future>
#include <random>

#include "core/ids.h"
#include "store/message_store.h"
#include "store/rocksdb/rocks_store.h"
#include "store/store_test_ops.h"

namespace pigeon {
namespace {

class RocksBackend {
 public:
  RocksBackend() {
    char tmpl[] = "/tmp/pigeon-store-test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~RocksBackend() { std::filesystem::remove_all(dir_); }
  // Opens (or reopens) the same database.
  std::unique_ptr<MessageStore> Open() {
    auto s = RocksStore::Open({.path = dir_ + "/db"});
    EXPECT_TRUE(s.ok()) << s.status().message();
    return std::move(*s);
  }

 private:
  std::string dir_;
};

template <typename Backend>
class StoreContract : public ::testing::Test {
 protected:
  void SetUp() override { store_ = backend_.Open(); }
  void Reopen() {
    store_.reset();
    store_ = backend_.Open();
  }

  std::vector<OpResult> Commit(std::vector<WriteOp> ops) {
    return CommitOps(*store_, now_, std::move(ops));
  }
  OpResult One(WriteOp op) { return CommitOne(*store_, now_, std::move(op)); }
  std::string Conv(const std::string& a, const std::string& b) {
    return OpenConversation(*store_, now_, a, b);
  }
  AppendResult Append(const std::string& sender, const std::string& conv, const std::string& cmid,
                      const std::string& body = "b") {
    auto r = One(op::AppendMessage{sender, conv, cmid, body});
    EXPECT_TRUE(r.status.ok()) << r.status.message();
    return r.status.ok() ? std::get<AppendResult>(r.value) : AppendResult{};
  }

  Backend backend_;
  std::unique_ptr<MessageStore> store_;
  int64_t now_ = 1000;
};

using kBackends = ::testing::Types<RocksBackend>;
TYPED_TEST_SUITE(StoreContract, kBackends);

TYPED_TEST(StoreContract, UsersAreUniqueEvenWithinOneBatch) {
  auto rs = this->Commit({op::CreateUser{"alice", "h1"}, op::CreateUser{"alice", "h2"}});
  EXPECT_TRUE(rs[0].status.ok());
  EXPECT_EQ(rs[1].status.code(), ErrorCode::kConflict);
  EXPECT_EQ(this->One(op::CreateUser{"alice", "h3"}).status.code(), ErrorCode::kConflict);
  auto u = this->store_->GetUser("alice");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->password_hash, "h1");
  EXPECT_EQ(this->store_->GetUser("nobody").status().code(), ErrorCode::kNotFound);
}

TYPED_TEST(StoreContract, SessionsResolveUntilDeleted) {
  (void)this->One(op::CreateUser{"alice", "h"});
  EXPECT_TRUE(this->One(op::CreateSession{"alice", "dev1", "phone", TokenHash("t1")}).status.ok());
  EXPECT_EQ(this->One(op::CreateSession{"ghost", "dev2", "", TokenHash("t2")}).status.code(),
            ErrorCode::kNotFound);
  auto s = this->store_->LookupToken(TokenHash("t1"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->user_id, "alice");
  EXPECT_EQ(s->device_id, "dev1");
  auto del = this->One(op::DeleteSession{TokenHash("t1"), "", ""});
  ASSERT_TRUE(del.status.ok());
  EXPECT_EQ(std::get<DeviceSession>(del.value).device_id, "dev1");
  EXPECT_EQ(this->store_->LookupToken(TokenHash("t1")).status().code(), ErrorCode::kUnauthorized);
  EXPECT_EQ(this->One(op::DeleteSession{TokenHash("t1"), "", ""}).status.code(),
            ErrorCode::kUnauthorized);
}

// A device's session ends by its id too, and only by its owner's id.
TYPED_TEST(StoreContract, ADeviceIsListedAndRevokedByItsOwnerOnly) {
  (void)this->One(op::CreateUser{"alice", "h"});
  (void)this->One(op::CreateUser{"bob", "h"});
  ASSERT_TRUE(this->One(op::CreateSession{"alice", "dev1", "phone", TokenHash("t1")}).status.ok());
  ASSERT_TRUE(this->One(op::CreateSession{"alice", "dev2", "laptop", TokenHash("t2")}).status.ok());
  auto devices = this->store_->Devices("alice");
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].device_id, "dev1");
  EXPECT_EQ((*devices)[0].name, "phone");
  EXPECT_EQ((*devices)[1].name, "laptop");
  EXPECT_EQ(this->One(op::DeleteSession{"", "bob", "dev1"}).status.code(), ErrorCode::kNotFound);
  EXPECT_EQ(this->One(op::DeleteSession{"", "alice", "dev9"}).status.code(), ErrorCode::kNotFound);
  auto del = this->One(op::DeleteSession{"", "alice", "dev2"});
  ASSERT_TRUE(del.status.ok()) << del.status.message();
  EXPECT_EQ(std::get<DeviceSession>(del.value).device_id, "dev2");
  EXPECT_EQ(this->store_->LookupToken(TokenHash("t2")).status().code(), ErrorCode::kUnauthorized);
  EXPECT_TRUE(this->store_->LookupToken(TokenHash("t1")).ok());
  EXPECT_EQ(this->store_->Devices("alice")->size(), 1u);
  EXPECT_EQ(this->One(op::DeleteSession{"", "alice", "dev2"}).status.code(), ErrorCode::kNotFound);
}

TYPED_TEST(StoreContract, DirectConversationIsOnePerPair) {
  auto id = this->Conv("alice", "bob");
  auto again = this->One(op::OpenDirectConversation{"bob", "alice"});
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(std::get<Conversation>(again.value).id, id);
  EXPECT_EQ(this->One(op::OpenDirectConversation{"alice", "ghost"}).status.code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(this->One(op::OpenDirectConversation{"alice", "alice"}).status.code(),
            ErrorCode::kBadRequest);
  auto c = this->store_->GetConversation(id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->members, (std::vector<std::string>{"alice", "bob"}));
  auto list = this->store_->ListConversations("bob");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, id);
}

TYPED_TEST(StoreContract, AppendAssignsGapFreeSeqAndFeedPositions) {
  auto id = this->Conv("alice", "bob");
  auto other = this->Conv("alice", "carol");
  std::vector<WriteOp> batch;
  for (int i = 0; i < 10; ++i)
    batch.push_back(op::AppendMessage{i % 2 ? "bob" : "alice", id, "k" + std::to_string(i),
                                      "m" + std::to_string(i)});
  batch.push_back(op::AppendMessage{"alice", other, "o1", "to carol"});
  auto rs = this->Commit(std::move(batch));
  for (int i = 0; i < 10; ++i) {
    auto& a = std::get<AppendResult>(rs[i].value);
    EXPECT_EQ(a.message.seq, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(a.message.ts, this->now_);
    ASSERT_EQ(a.fanout.size(), 2u);
    for (auto& d : a.fanout) EXPECT_EQ(d.pos, static_cast<FeedPos>(i + 1));
  }
  auto& to_carol = std::get<AppendResult>(rs[10].value);
  EXPECT_EQ(to_carol.message.seq, 1u);
  for (auto& d : to_carol.fanout) EXPECT_EQ(d.pos, d.user_id == "alice" ? 11u : 1u);
  auto feed = this->store_->ReadFeed("alice", 0, 100);
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(feed->entries.size(), 11u);
  EXPECT_EQ(feed->entries[3].message.body, "m3");
  EXPECT_EQ(feed->entries[3].message.sender, "bob");
  EXPECT_EQ(feed->entries[10].message.conversation_id, other);
  EXPECT_EQ(*this->store_->FeedHead("alice"), 11u);
  EXPECT_EQ(*this->store_->FeedHead("carol"), 1u);
}

TYPED_TEST(StoreContract, DuplicateClientMsgIdReturnsTheOriginalAndWritesNothing) {
  auto id = this->Conv("alice", "bob");
  auto first = this->Append("alice", id, "same", "original");
  auto rs = this->Commit({op::AppendMessage{"alice", id, "same", "changed"},
                          op::AppendMessage{"alice", id, "fresh", "x"},
                          op::AppendMessage{"alice", id, "fresh", "y"}});
  auto& dup = std::get<AppendResult>(rs[0].value);
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.message.seq, first.message.seq);
  EXPECT_EQ(dup.message.ts, first.message.ts);
  EXPECT_EQ(dup.message.body, "original");
  EXPECT_TRUE(dup.fanout.empty());
  EXPECT_FALSE(std::get<AppendResult>(rs[1].value).duplicate);
  EXPECT_TRUE(std::get<AppendResult>(rs[2].value).duplicate);  // repeated within the batch
  EXPECT_EQ(std::get<AppendResult>(rs[2].value).message.seq, 2u);
  EXPECT_EQ(std::get<AppendResult>(rs[2].value).message.body, "x");
  // The key is the sender's: bob may use the same client_msg_id.
  EXPECT_FALSE(this->Append("bob", id, "same").duplicate);
  EXPECT_EQ(this->store_->ReadFeed("bob", 0, 100)->entries.size(), 3u);
  // The next batch's writes reuse the last one's buffers: nothing of theirs shows.
  rs = this->Commit(
      {op::AppendMessage{"alice", id, "again", "z"}, op::AppendMessage{"alice", id, "again", "w"}});
  EXPECT_FALSE(std::get<AppendResult>(rs[0].value).duplicate);
  EXPECT_TRUE(std::get<AppendResult>(rs[1].value).duplicate);
  EXPECT_EQ(std::get<AppendResult>(rs[1].value).message.body, "z");
  EXPECT_EQ(std::get<AppendResult>(rs[1].value).message.client_msg_id, "again");
  EXPECT_EQ(std::get<AppendResult>(rs[1].value).message.seq, 4u);
}

TYPED_TEST(StoreContract, NonMembersCannotAppend) {
  auto id = this->Conv("alice", "bob");
  (void)this->One(op::CreateUser{"carol", "h"});
  EXPECT_EQ(this->One(op::AppendMessage{"carol", id, "k", "b"}).status.code(),
            ErrorCode::kForbidden);
  EXPECT_EQ(this->One(op::AppendMessage{"alice", "nosuch", "k", "b"}).status.code(),
            ErrorCode::kForbidden);
  EXPECT_EQ(this->store_->GetConversation(id)->last_seq, 0u);
}

TYPED_TEST(StoreContract, FeedPagesAndHistoryPagesBackwards) {
  auto id = this->Conv("alice", "bob");
  for (int i = 0; i < 7; ++i) (void)this->Append("alice", id, std::to_string(i));
  auto p1 = this->store_->ReadFeed("bob", 0, 3);
  ASSERT_EQ(p1->entries.size(), 3u);
  EXPECT_TRUE(p1->has_more);
  auto p3 = this->store_->ReadFeed("bob", 6, 3);
  ASSERT_EQ(p3->entries.size(), 1u);
  EXPECT_FALSE(p3->has_more);
  EXPECT_EQ(p3->entries[0].pos, 7u);
  auto exact = this->store_->ReadFeed("bob", 4, 3);
  EXPECT_EQ(exact->entries.size(), 3u);
  EXPECT_FALSE(exact->has_more);
  auto h = this->store_->History(id, ~0ull, 3);
  ASSERT_EQ(h->size(), 3u);
  EXPECT_EQ((*h)[0].seq, 7u);
  EXPECT_EQ((*h)[2].seq, 5u);
  auto older = this->store_->History(id, 3, 100);
  ASSERT_EQ(older->size(), 2u);
  EXPECT_EQ((*older)[0].seq, 2u);
  EXPECT_TRUE(this->store_->History(id, 1, 100)->empty());
}

TYPED_TEST(StoreContract, EverythingSurvivesReopenAndCountersContinue) {
  auto id = this->Conv("alice", "bob");
  auto a = this->Append("alice", id, "k1");
  this->Reopen();
  auto again = this->One(op::AppendMessage{"alice", id, "k1", "z"});
  EXPECT_TRUE(std::get<AppendResult>(again.value).duplicate);
  auto b = this->Append("bob", id, "k2");
  EXPECT_EQ(b.message.seq, a.message.seq + 1);
  for (auto& d : b.fanout) EXPECT_EQ(d.pos, 2u);
  EXPECT_TRUE(this->store_->Check().ok());
}

// Readers see a conversation's last seq as of the last commit, before and
// after a reopen, never a neighbouring conversation's (ids that sort next to it).
TYPED_TEST(StoreContract, ConversationsReportTheirLastSeqAcrossReopen) {
  auto ab = this->Conv("alice", "bob");
  auto ac = this->Conv("alice", "carol");
  EXPECT_EQ(this->store_->GetConversation(ab)->last_seq, 0u);
  for (int i = 0; i < 3; ++i) this->Append("alice", ab, "k" + std::to_string(i));
  this->Append("carol", ac, "c0");
  auto check = [&] {
    EXPECT_EQ(this->store_->GetConversation(ab)->last_seq, 3u);
    EXPECT_EQ(this->store_->GetConversation(ac)->last_seq, 1u);
    auto list = this->store_->ListConversations("alice");
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 2u);
    for (auto& c : *list) EXPECT_EQ(c.last_seq, c.id == ab ? 3u : 1u);
  };
  check();
  this->Reopen();
  check();
  // The next message continues the sequence; reading past the end is refused.
  EXPECT_EQ(this->Append("bob", ab, "b0").message.seq, 4u);
  EXPECT_EQ(this->One(op::MarkRead{"alice", ac, 2}).status.code(), ErrorCode::kBadRequest);
}

TYPED_TEST(StoreContract, ConfirmingTheFeedMakesOneDeliveredReceiptPerAdvance) {
  auto id = this->Conv("alice", "bob");
  (void)this->Append("alice", id, "a1");
  (void)this->Append("alice", id, "a2");
  (void)this->Append("bob", id, "b1");  // seq 3, bob's own
  (void)this->One(op::CreateSession{"bob", "phone", "", TokenHash("t")});
  auto r = this->One(op::ConfirmFeed{"bob", "phone", 3});
  ASSERT_TRUE(r.status.ok());
  auto& rs = std::get<ReceiptsResult>(r.value).receipts;
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].receipt.status, ReceiptStatus::kDelivered);
  EXPECT_EQ(rs[0].receipt.seq, 2u);  // bob's own seq 3 does not count
  EXPECT_EQ(rs[0].receipt.user, "bob");
  ASSERT_EQ(rs[0].fanout.size(), 1u);
  EXPECT_EQ(rs[0].fanout[0].user_id, "alice");
  // Again, or lower: nothing.
  EXPECT_TRUE(std::get<ReceiptsResult>(this->One(op::ConfirmFeed{"bob", "phone", 3}).value)
                  .receipts.empty());
  EXPECT_TRUE(std::get<ReceiptsResult>(this->One(op::ConfirmFeed{"bob", "phone", 1}).value)
                  .receipts.empty());
  // A position past the head is clamped: nothing beyond what exists.
  EXPECT_TRUE(std::get<ReceiptsResult>(this->One(op::ConfirmFeed{"bob", "phone", 99}).value)
                  .receipts.empty());
  auto feed = this->store_->ReadFeed("alice", 0, 100);
  ASSERT_EQ(feed->entries.size(), 4u);  // three messages and the receipt
  EXPECT_EQ(feed->entries[3].kind, FeedEntry::Kind::kReceipt);
  EXPECT_EQ(feed->entries[3].receipt.seq, 2u);
  EXPECT_EQ((*this->store_->ListConversations("bob"))[0].delivered_seq, 2u);
}

TYPED_TEST(StoreContract, LongScansResumeWhereTheyStopped) {
  auto id = this->Conv("alice", "bob");
  for (int i = 0; i < 10; ++i) (void)this->Append("alice", id, std::to_string(i));
  (void)this->One(op::CreateSession{"bob", "phone", "", TokenHash("t")});
  auto first = std::get<ReceiptsResult>(this->One(op::ConfirmFeed{"bob", "phone", 10, 4}).value);
  EXPECT_NE(first.resume_from, 0u);
  ASSERT_EQ(first.receipts.size(), 1u);
  EXPECT_EQ(first.receipts[0].receipt.seq, 4u);
  auto second = std::get<ReceiptsResult>(this->One(op::ConfirmFeed{"bob", "phone", 10, 100}).value);
  EXPECT_EQ(second.resume_from, 0u);
  ASSERT_EQ(second.receipts.size(), 1u);
  EXPECT_EQ(second.receipts[0].receipt.seq, 10u);
}

TYPED_TEST(StoreContract, ReadMarksOnlyMoveForwardOverTheOthersMessages) {
  auto id = this->Conv("alice", "bob");
  (void)this->One(op::CreateUser{"carol", "h"});
  (void)this->Append("alice", id, "a1");
  (void)this->Append("bob", id, "b1");
  EXPECT_EQ(this->One(op::MarkRead{"bob", id, 3}).status.code(), ErrorCode::kBadRequest);
  EXPECT_EQ(this->One(op::MarkRead{"carol", id, 1}).status.code(), ErrorCode::kForbidden);
  auto r = this->One(op::MarkRead{"bob", id, 2});
  ASSERT_TRUE(r.status.ok());
  auto& rs = std::get<ReceiptsResult>(r.value).receipts;
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].receipt.status, ReceiptStatus::kRead);
  EXPECT_EQ(rs[0].receipt.seq, 1u);    // the newest of alice's messages at or before 2
  EXPECT_EQ(rs[0].fanout.size(), 2u);  // both feeds
  EXPECT_TRUE(
      std::get<ReceiptsResult>(this->One(op::MarkRead{"bob", id, 1}).value).receipts.empty());
  EXPECT_TRUE(
      std::get<ReceiptsResult>(this->One(op::MarkRead{"bob", id, 2}).value).receipts.empty());
  auto list = this->store_->ListConversations("bob");
  EXPECT_EQ((*list)[0].read_seq, 1u);
  EXPECT_EQ((*list)[0].delivered_seq, 1u);  // read implies delivered
}

TYPED_TEST(StoreContract, LastSeenAndPrivacyPersist) {
  (void)this->One(op::CreateUser{"alice", "h"});
  EXPECT_TRUE(this->One(op::SetLastSeen{"alice", 12345}).status.ok());
  EXPECT_TRUE(this->One(op::SetPrivacy{"alice", true}).status.ok());
  EXPECT_EQ(this->One(op::SetLastSeen{"ghost", 1}).status.code(), ErrorCode::kNotFound);
  this->Reopen();
  auto u = this->store_->GetUser("alice");
  EXPECT_EQ(u->last_seen_ms, 12345);
  EXPECT_TRUE(u->hides_last_seen);
  EXPECT_EQ(u->password_hash, "h");
}

// Retention (chat/retention.h): what was committed before the cutoff goes,
// slice by slice; what came after stays, and positions and seqs go on.
TYPED_TEST(StoreContract, RetentionRemovesWhatIsOlderThanTheCutoffAndNothingElse) {
  auto id = this->Conv("alice", "bob");
  auto other = this->Conv("alice", "carol");
  for (int i = 0; i < 5; ++i) this->Append(i % 2 ? "bob" : "alice", id, "old" + std::to_string(i));
  this->Append("alice", other, "old-to-carol");
  (void)this->One(op::CreateSession{"bob", "phone", "", TokenHash("tb")});
  // bob's devices hold his feed: a delivered receipt for alice's 3 messages, in her feed.
  ASSERT_EQ(
      std::get<ReceiptsResult>(this->One(op::ConfirmFeed{"bob", "phone", 5}).value).receipts.size(),
      1u);
  const int64_t cutoff = this->now_ + 1;
  this->now_ += 10;
  auto kept = this->Append("bob", id, "new1", "kept");
  auto head_alice = *this->store_->FeedHead("alice");
  EXPECT_EQ(head_alice, 8u);  // 5 + carol's + the receipt + kept

  // A slice read before a message arrives is still right to commit after it.
  auto early = this->store_->FindExpired(cutoff, "", 3);
  ASSERT_TRUE(early.ok());
  auto late = this->Append("alice", id, "new2", "also kept");
  ASSERT_TRUE(this->One(std::move(early->expire)).status.ok());
  auto swept = SweepExpired(*this->store_, this->now_, cutoff, 3);
  EXPECT_EQ(early->feed_entries + swept.feed_entries, 7u + 5u + 1u);  // alice's, bob's, carol's
  EXPECT_EQ(early->messages + swept.messages, 6u);
  EXPECT_GT(swept.slices, 2u);

  auto feed = this->store_->ReadFeed("alice", 0, 100);
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(feed->entries.size(), 2u);
  EXPECT_EQ(feed->entries[0].pos, 8u);
  EXPECT_EQ(feed->entries[0].message.body, "kept");
  EXPECT_EQ(feed->entries[1].pos, 9u);
  EXPECT_EQ(feed->last_pos, 9u);
  EXPECT_EQ(feed->removed_to, 7u);  // a reader from before missed 1-7
  EXPECT_EQ(this->store_->ReadFeed("alice", 5, 100)->removed_to, 7u);
  EXPECT_EQ(this->store_->ReadFeed("alice", 7, 100)->removed_to, 0u);
  EXPECT_EQ(this->store_->ReadFeed("alice", 9, 100)->removed_to, 0u);
  auto history = this->store_->History(id, UINT64_MAX, 100);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[1].seq, kept.message.seq);
  // The dedup keys went with their messages; the kept message's stays.
  auto again = this->Append("alice", id, "old0", "a new message");
  EXPECT_FALSE(again.duplicate);
  EXPECT_EQ(again.message.seq, late.message.seq + 1);
  EXPECT_TRUE(this->Append("bob", id, "new1").duplicate);
  // Nothing older is left.
  auto rest = this->store_->FindExpired(cutoff, "", 100);
  ASSERT_TRUE(rest.ok());
  EXPECT_TRUE(rest->done);
  EXPECT_TRUE(rest->expire.keys.empty());
}

TYPED_TEST(StoreContract, RetentionThatEmptiesAFeedAndAConversationKeepsTheirPlace) {
  auto id = this->Conv("alice", "bob");
  for (int i = 0; i < 4; ++i) this->Append("alice", id, "m" + std::to_string(i));
  auto swept = SweepExpired(*this->store_, this->now_, this->now_ + 1, 100);
  EXPECT_EQ(swept.messages, 4u);
  EXPECT_EQ(swept.feed_entries, 8u);
  EXPECT_TRUE(this->store_->ReadFeed("bob", 0, 100)->entries.empty());
  EXPECT_EQ(this->store_->ReadFeed("bob", 0, 100)->removed_to, 4u);
  EXPECT_EQ(this->store_->ReadFeed("bob", 4, 100)->removed_to, 0u);
  EXPECT_TRUE(this->store_->History(id, UINT64_MAX, 100)->empty());
  // A device's cursor stays valid: the head and the last seq are kept.
  EXPECT_EQ(*this->store_->FeedHead("bob"), 4u);
  EXPECT_EQ(this->store_->GetConversation(id)->last_seq, 4u);
  EXPECT_EQ((*this->store_->ListConversations("bob"))[0].last_seq, 4u);
  this->Reopen();  // nothing cached: read from the store
  auto next = this->Append("alice", id, "m0", "after");
  EXPECT_FALSE(next.duplicate);
  EXPECT_EQ(next.message.seq, 5u);
  for (auto& d : next.fanout) EXPECT_EQ(d.pos, 5u);
  auto feed = this->store_->ReadFeed("bob", 4, 100);
  ASSERT_EQ(feed->entries.size(), 1u);
  EXPECT_EQ(feed->entries[0].message.body, "after");
}

// RocksDB-specific: a feed entry whose message is gone (retention removed it
// first, as when the clock was set back between them) is skipped, and the
// page still reads past it, so a device's cursor moves on.
TEST(RocksStoreRetention, AFeedEntryWhoseMessageIsGoneIsSkippedAndReadPast) {
  RocksBackend backend;
  auto store = backend.Open();
  int64_t now = 1000;
  auto id = OpenConversation(*store, now, "alice", "bob");
  for (const char* cmid : {"a", "b", "c"})
    ASSERT_TRUE(CommitOne(*store, now, op::AppendMessage{"alice", id, cmid, cmid}).status.ok());
  op::Expire gone;
  for (uint64_t seq : {2u, 3u}) {
    std::string key = "M" + id;
    key.push_back('\0');
    for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(seq >> shift));
    gone.keys.push_back(std::move(key));
  }
  ASSERT_TRUE(CommitOne(*store, now, std::move(gone)).status.ok());
  auto feed = store->ReadFeed("bob", 0, 100);
  ASSERT_TRUE(feed.ok()) << feed.status().message();
  ASSERT_EQ(feed->entries.size(), 1u);
  EXPECT_EQ(feed->entries[0].message.body, "a");
  EXPECT_EQ(feed->last_pos, 3u);
  EXPECT_FALSE(feed->has_more);
  auto rest = store->ReadFeed("bob", 1, 100);
  EXPECT_TRUE(rest->entries.empty());
  EXPECT_EQ(rest->last_pos, 3u);
  // A sweep stops at a feed's first entry to keep, with what follows it...
  auto swept = SweepExpired(*store, now, 0, 100);
  EXPECT_EQ(swept.feed_entries, 0u);
  EXPECT_EQ(store->ReadFeed("bob", 0, 100)->entries.size(), 1u);
  // ... and takes entries whose message is gone with the expired ones before them.
  swept = SweepExpired(*store, now, now + 1, 100);
  EXPECT_EQ(swept.feed_entries, 6u);
  EXPECT_EQ(swept.messages, 1u);
  EXPECT_TRUE(store->ReadFeed("bob", 0, 100)->entries.empty());
  EXPECT_EQ(*store->FeedHead("bob"), 3u);
}

// RocksDB-specific: an online backup (a checkpoint) is the store as it was
// when taken, openable as a store, while the store goes on.
TEST(RocksStoreBackup, ACheckpointOpensAsTheStoreAsItWasWhenTaken) {
  RocksBackend backend;
  auto store = backend.Open();
  auto* rocks = dynamic_cast<RocksStore*>(store.get());
  ASSERT_NE(rocks, nullptr);
  int64_t now = 1000;
  auto id = OpenConversation(*store, now, "alice", "bob");
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(CommitOne(*store, now, op::AppendMessage{"alice", id, "k" + std::to_string(i), "m"})
                    .status.ok());
  char tmpl[] = "/tmp/pigeon-backup-test.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string backup = dir + "/nested/backup";
  ASSERT_TRUE(rocks->Checkpoint(backup).ok());
  EXPECT_EQ(rocks->Checkpoint(backup).code(), ErrorCode::kConflict);
  ASSERT_TRUE(CommitOne(*store, now, op::AppendMessage{"alice", id, "after", "later"}).status.ok());
  EXPECT_EQ(*store->FeedHead("bob"), 51u);

  auto copy = RocksStore::Open({.path = backup});
  ASSERT_TRUE(copy.ok()) << copy.status().message();
  EXPECT_EQ(*(*copy)->FeedHead("bob"), 50u);
  auto feed = (*copy)->ReadFeed("bob", 0, 100);
  ASSERT_TRUE(feed.ok());
  EXPECT_EQ(feed->entries.size(), 50u);
  EXPECT_TRUE((*copy)->GetUser("alice").ok());
  // Its dedup keys came along, and it takes commits of its own.
  int64_t later = now;
  auto again = CommitOne(**copy, later, op::AppendMessage{"alice", id, "k7", "retry"});
  EXPECT_TRUE(std::get<AppendResult>(again.value).duplicate);
  auto next = CommitOne(**copy, later, op::AppendMessage{"alice", id, "new", "n"});
  EXPECT_EQ(std::get<AppendResult>(next.value).message.seq, 51u);
  copy->reset();
  std::filesystem::remove_all(dir);
}

// RocksDB-specific (not part of the contract): the store's flushes and
// compactions run on its environment's HIGH and LOW pools, which an open
// RocksStore puts under SCHED_IDLE so they never take a core from the network
// threads or the committer (docs/operations.md, Threads).
TEST(RocksStoreBackground, FlushesAndCompactionsRunUnderSchedIdle) {
  RocksBackend backend;
  auto store = backend.Open();
  for (auto pool : {rocksdb::Env::Priority::HIGH, rocksdb::Env::Priority::LOW}) {
    std::promise<int> policy;
    rocksdb::Env::Default()->Schedule(
        [](void* p) { static_cast<std::promise<int>*>(p)->set_value(sched_getscheduler(0)); },
        &policy, pool);
    EXPECT_EQ(policy.get_future().get(), SCHED_IDLE) << "pool " << static_cast<int>(pool);
  }
}

// Health (on /metrics) shows whether flushes and compactions keep up. A fresh
// store has no tables; reopening one flushes what its WAL held into level 0.
TEST(RocksStoreBackground, HealthCountsTheTablesAndTheFreeDisk) {
  RocksBackend backend;
  auto store = backend.Open();
  StoreHealth fresh = store->Health();
  EXPECT_EQ(fresh.level0_files, 0u);
  EXPECT_EQ(fresh.table_bytes, 0u);
  EXPECT_EQ(fresh.delayed_write_rate, 0u);
  EXPECT_FALSE(fresh.writes_stopped);
  EXPECT_GT(fresh.disk_free_bytes, 0u);
  std::vector<OpResult> rs;
  WriteOp op = op::CreateUser{"alice", "hash"};
  ASSERT_TRUE(store->Commit(std::span<WriteOp>(&op, 1), 1000, &rs).ok());
  EXPECT_EQ(store->Health().level0_files, 0u);  // still in the memtable
  store.reset();
  store = backend.Open();
  StoreHealth reopened = store->Health();
  EXPECT_GE(reopened.level0_files, 1u);
  EXPECT_GT(reopened.table_bytes, 0u);  // the replayed log, flushed into a table
}

// Universal compaction is the default; a store written with levelled
// compaction (files in several levels) opens with it, and the other way
// round: every message, the seqs after it and the dedup keys survive.
TEST(RocksStoreCompaction, AStoreWrittenWithOneStyleOpensWithTheOther) {
  using Compaction = RocksStore::Options::Compaction;
  char tmpl[] = "/tmp/pigeon-store-test.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string path = dir + "/db";
  std::vector<OpResult> rs;
  auto open = [&](Compaction c) {
    auto s = RocksStore::Open({.path = path, .compaction = c});
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  };
  auto commit = [&](MessageStore& store, WriteOp op) {
    EXPECT_TRUE(store.Commit(std::span<WriteOp>(&op, 1), 1000, &rs).ok());
    return rs.at(0);
  };
  // Appends messages "<tag>0".."<tag>49", each its own commit.
  auto append = [&](MessageStore& store, const std::string& conv, const std::string& tag) {
    for (int i = 0; i < 50; ++i) {
      auto r = commit(store, op::AppendMessage{"alice", conv, tag + std::to_string(i), "b"});
      ASSERT_TRUE(r.status.ok()) << r.status.message();
    }
  };
  // Opens the database raw with `style`, writes the memtables to tables and
  // compacts everything into level `level`: a layout of `style`'s own.
  auto compact = [&](rocksdb::CompactionStyle style, int level) {
    rocksdb::DBOptions o;
    rocksdb::ColumnFamilyOptions cf;
    cf.compaction_style = style;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, cf}, {RocksStore::kDedupFamily, cf}};
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, families, &h, &db).ok());
    rocksdb::CompactRangeOptions c;
    c.change_level = true;
    c.target_level = level;
    for (auto* f : h) {
      EXPECT_TRUE(db->Flush({}, f).ok());
      EXPECT_TRUE(db->CompactRange(c, f, nullptr, nullptr).ok());
      (void)db->DestroyColumnFamilyHandle(f);
    }
    delete db;
  };
  std::string conv;
  {
    auto store = open(Compaction::kLevel);
    ASSERT_TRUE(store);
    for (const char* u : {"alice", "bob"}) (void)commit(*store, op::CreateUser{u, "hash"});
    conv =
        std::get<Conversation>(commit(*store, op::OpenDirectConversation{"alice", "bob"}).value).id;
    append(*store, conv, "a");
  }
  compact(rocksdb::kCompactionStyleLevel, 3);
  {
    auto store = open(Compaction::kLevel);  // and one more table, in level 0
    ASSERT_TRUE(store);
    append(*store, conv, "b");
  }
  for (Compaction c : {Compaction::kUniversal, Compaction::kLevel}) {
    auto store = open(c);
    ASSERT_TRUE(store);
    auto dup = commit(*store, op::AppendMessage{"alice", conv, "a0", "again"});
    ASSERT_TRUE(dup.status.ok());
    EXPECT_TRUE(std::get<AppendResult>(dup.value).duplicate);
    EXPECT_EQ(std::get<AppendResult>(dup.value).message.seq, 1u);
    append(*store, conv, c == Compaction::kUniversal ? "c" : "d");
    auto h = store->History(conv, ~0ull, 1000);
    ASSERT_TRUE(h.ok());
    const size_t n = c == Compaction::kUniversal ? 150 : 200;
    ASSERT_EQ(h->size(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ((*h)[i].seq, n - i);
    store.reset();
    if (c == Compaction::kUniversal) compact(rocksdb::kCompactionStyleUniversal, 0);
  }
  std::filesystem::remove_all(dir);
}

// The WAL is written through the page cache by default, or with O_DIRECT; a
// store whose logs were written one way opens with the other, and back,
// and each commit was made durable by one of the two syncs.
TEST(RocksStoreWal, AStoreWrittenThroughThePageCacheOpensWithADirectWalAndBack) {
  char tmpl[] = "/tmp/pigeon-store-test.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::vector<OpResult> rs;
  auto commit = [&](MessageStore& store, WriteOp op) {
    EXPECT_TRUE(store.Commit(std::span<WriteOp>(&op, 1), 1000, &rs).ok());
    return rs.at(0);
  };
  std::string conv;
  size_t sent = 0;
  for (WalWrite w : {WalWrite::kPageCache, WalWrite::kDirect, WalWrite::kPageCache}) {
    auto opened = RocksStore::Open({.path = dir + "/db", .wal_write = w});
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    auto& store = **opened;
    const StoreHealth before = store.Health();
    if (conv.empty()) {
      for (const char* u : {"alice", "bob"}) (void)commit(store, op::CreateUser{u, "hash"});
      conv = std::get<Conversation>(commit(store, op::OpenDirectConversation{"alice", "bob"}).value)
                 .id;
    }
    for (int i = 0; i < 40; ++i, ++sent) {
      auto r = commit(store, op::AppendMessage{"alice", conv, "m" + std::to_string(sent), "b"});
      ASSERT_TRUE(r.status.ok()) << r.status.message();
      EXPECT_EQ(std::get<AppendResult>(r.value).message.seq, sent + 1);
    }
    const StoreHealth after = store.Health();
    EXPECT_GE(after.wal_fdatasyncs + after.wal_flushes,
              before.wal_fdatasyncs + before.wal_flushes + 40);
    auto h = store.History(conv, ~0ull, 1000);
    ASSERT_TRUE(h.ok());
    ASSERT_EQ(h->size(), sent);
    auto dup = commit(store, op::AppendMessage{"alice", conv, "m0", "again"});
    EXPECT_TRUE(std::get<AppendResult>(dup.value).duplicate);
  }
  std::filesystem::remove_all(dir);
}

// The dedup keys live in a column family of their own (a hash memtable). A
// store written before it existed has them in the default family: they move
// at open, and a retry of a message sent before the upgrade is still caught,
// from the memtable and from a table file alike.
TEST(RocksStoreDedup, KeysOfAnOlderStoreMoveToTheirFamilyAndStillCatchRetries) {
  char tmpl[] = "/tmp/pigeon-store-test.XXXXXX";
  std::string path = std::string(::mkdtemp(tmpl)) + "/db";
  auto open = [&] {
    auto s = RocksStore::Open({.path = path});
    EXPECT_TRUE(s.ok()) << s.status().message();
    return std::move(*s);
  };
  std::vector<OpResult> rs;
  auto commit = [&](MessageStore& store, WriteOp op) {
    EXPECT_TRUE(store.Commit(std::span<WriteOp>(&op, 1), 1000, &rs).ok());
    return rs.at(0);
  };
  std::string conv;
  {
    auto store = open();
    for (const char* u : {"alice", "bob"}) (void)commit(*store, op::CreateUser{u, "hash"});
    conv =
        std::get<Conversation>(commit(*store, op::OpenDirectConversation{"alice", "bob"}).value).id;
  }
  // Opens the database raw, with both families, and runs `body` on it;
  // returns the X keys it found in each (default, dedup) before `body` ran.
  auto raw = [&](auto&& body) {
    rocksdb::DBOptions o;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {RocksStore::kDedupFamily, {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    EXPECT_TRUE(rocksdb::DB::Open(o, path, families, &h, &db).ok());
    std::array<int, 2> xs{};
    for (int f = 0; f < 2; ++f) {
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, h[f]));
      for (it->Seek("X"); it->Valid() && it->key().starts_with("X"); it->Next()) ++xs[f];
    }
    body(*db, h);
    for (auto* f : h) (void)db->DestroyColumnFamilyHandle(f);
    delete db;
    return xs;
  };
  {
    auto store = open();
    auto r = commit(*store, op::AppendMessage{"alice", conv, "before", "b"});
    ASSERT_TRUE(r.status.ok());
  }
  // Make it an older store: its X keys in the default family, no dedup family.
  auto before = raw([](rocksdb::DB& db, std::vector<rocksdb::ColumnFamilyHandle*>& h) {
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator({}, h[1]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ASSERT_TRUE(db.Put({}, h[0], it->key(), it->value()).ok());
      ASSERT_TRUE(db.Delete({}, h[1], it->key()).ok());
    }
    ASSERT_TRUE(db.Flush({}, h[0]).ok());
    ASSERT_TRUE(db.DropColumnFamily(h[1]).ok());
  });
  EXPECT_EQ(before, (std::array<int, 2>{0, 1}));
  {
    auto store = open();
    auto dup = commit(*store, op::AppendMessage{"alice", conv, "before", "again"});
    ASSERT_TRUE(dup.status.ok());
    EXPECT_TRUE(std::get<AppendResult>(dup.value).duplicate);
    EXPECT_EQ(std::get<AppendResult>(dup.value).message.seq, 1u);
    auto next = commit(*store, op::AppendMessage{"alice", conv, "after", "b"});
    EXPECT_EQ(std::get<AppendResult>(next.value).message.seq, 2u);
  }
  // Both keys in their own family now, and from its table file after a flush.
  auto after = raw([](rocksdb::DB& db, std::vector<rocksdb::ColumnFamilyHandle*>& h) {
    ASSERT_TRUE(db.Flush({}, h[1]).ok());
  });
  EXPECT_EQ(after, (std::array<int, 2>{0, 2}));
  auto store = open();
  for (const char* cmid : {"before", "after"}) {
    auto dup = commit(*store, op::AppendMessage{"alice", conv, cmid, "again"});
    ASSERT_TRUE(dup.status.ok());
    EXPECT_TRUE(std::get<AppendResult>(dup.value).duplicate) << cmid;
  }
  store.reset();
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

}  // namespace
}  // namespace pigeon
