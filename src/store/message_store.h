// MessageStore: the durable state of pigeon (accounts, device sessions,
// conversations, messages, feeds, dedup keys). Implemented by the embedded
// RocksDB backend; a PostgreSQL backend implements the same contract, and the
// contract tests (store_contract_test.cc) run against every backend.
//
// Writes: Commit() applies a batch of WriteOps as ONE atomic and durable unit
// (one fsync'd WAL write, or one replicated transaction). It is the group
// commit: the CommitPipeline collects ops from every socket and calls Commit
// from a single thread. Commit is not safe to call concurrently with itself;
// reads are safe from any thread, concurrently with Commit.
//
// Ordering: within a batch, ops take effect in order. `seq` of a conversation
// and each user's feed positions are assigned inside Commit, so they follow
// commit order with no gaps.
//
// Errors: an op that is refused (conflict, forbidden, not_found) gets its own
// status and the rest of the batch still commits. So does an op whose read of
// the store fails (unavailable): a failed read is never taken for a key that
// is not there, and the op writes nothing. If the write itself fails, Commit
// returns the error and nothing of the batch is durable.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/cursor.h"
#include "core/status.h"

namespace pigeon {

struct UserRecord {
  std::string user_id;
  std::string password_hash;  // Argon2id, libsodium's crypto_pwhash_str format
  int64_t created_ms = 0;
  int64_t last_seen_ms = 0;      // 0: never connected
  bool hides_last_seen = false;  // privacy setting "last_seen": "nobody"
};

struct DeviceSession {
  std::string user_id;
  std::string device_id;
};

struct PushRegistration {
  enum class Provider : uint8_t { kNone = 0, kApns = 1, kFcm = 2, kWebhook = 3 };
  Provider provider = Provider::kNone;
  std::string token;
  std::string endpoint;  // webhook only
};

struct DeviceInfo {
  std::string device_id;
  std::string name;  // as given at login (device_name)
  FeedPos confirmed = 0;
  PushRegistration push;
};

// A user with messages that may need a push: written in the same commit as
// the messages (so no crash can lose the push), removed once handled.
struct OutboxEntry {
  std::string user_id;
  int64_t first_ms = 0;     // commit time of the first message not yet pushed
  FeedPos latest_pos = 0;   // feed position of the newest such message
  uint32_t count = 0;       // how many
  uint32_t attempts = 0;    // failed delivery rounds so far
  int64_t next_try_ms = 0;  // not before (retry backoff)
};

// How far the store's background work (flushes, compactions) is behind the
// writes. When it falls too far behind, the engine slows or stops writes, and
// every commit waits. A backend without such work reports zeros.
struct StoreHealth {
  uint64_t level0_files = 0;              // flushed tables not yet compacted into the levels
  uint64_t pending_compaction_bytes = 0;  // what compactions estimate they still have to rewrite
  uint64_t delayed_write_rate = 0;        // bytes/s writes are slowed to now; 0: not slowed
  bool writes_stopped = false;            // writes wait for compactions now
  uint64_t write_stall_us = 0;            // time writes were slowed or stopped since opening
  // Commits made durable with an fdatasync of the log, and with a write of its
  // pages and a flush of the disk's cache (RocksStore), since the process began.
  uint64_t wal_fdatasyncs = 0;
  uint64_t wal_flushes = 0;
  // The store's table files, and the space left for more on its disk: a
  // compaction writes its output before it deletes its input.
  uint64_t table_bytes = 0;
  uint64_t disk_free_bytes = 0;
};

struct Conversation {
  std::string id;
  std::vector<std::string> members;  // sorted
  uint64_t last_seq = 0;
  bool HasMember(std::string_view user) const {
    for (auto& m : members)
      if (m == user) return true;
    return false;
  }
};

// One user's marks in one conversation: the highest seq of the other member's
// messages that the user's devices hold (delivered) and that it read.
struct ReadMarks {
  uint64_t delivered = 0;
  uint64_t read = 0;
};

struct ConversationSummary {
  std::string id;
  std::vector<std::string> members;
  uint64_t last_seq = 0;
  uint64_t read_seq = 0;       // the asking user's own read mark
  uint64_t delivered_seq = 0;  // the asking user's own delivered mark
};

struct StoredMessage {
  std::string conversation_id;
  uint64_t seq = 0;
  std::string sender;
  std::string body;
  int64_t ts = 0;  // commit time, ms
  std::string client_msg_id;
};

enum class ReceiptStatus : uint8_t { kDelivered = 1, kRead = 2 };

// `user` received (or read) the other member's messages up to `seq`.
struct Receipt {
  std::string conversation_id;
  std::string user;
  ReceiptStatus status = ReceiptStatus::kDelivered;
  uint64_t seq = 0;
  int64_t ts = 0;
};

struct FeedEntry {
  enum class Kind : uint8_t { kMessage = 1, kReceipt = 2 };
  FeedPos pos = 0;
  Kind kind = Kind::kMessage;
  StoredMessage message;  // kMessage
  Receipt receipt;        // kReceipt
};

struct FeedPage {
  std::vector<FeedEntry> entries;  // positions ascending, all > the `after` asked
  bool has_more = false;
  // The position of the last entry read, returned or not (a reference to a
  // message retention removed is skipped); 0 when none was read. A reader
  // that got every entry resumes after it.
  FeedPos last_pos = 0;
  // Nonzero when retention removed entries after `after`: they were at most
  // this position (the feed's removal floor). The entries returned follow it.
  FeedPos removed_to = 0;
};

// ---- write operations -------------------------------------------------------
namespace op {
// conflict if the user exists.
struct CreateUser {
  std::string user_id;
  std::string password_hash;
};
// Registers a device and its token (a login). not_found if the user is gone.
struct CreateSession {
  std::string user_id;
  std::string device_id;
  std::string device_name;
  std::string token_hash;
};
// Revokes a token (a logout); the result carries the DeviceSession it ended.
// Ends a device's session: the one of `token_hash`, or, when it is empty, the
// device `device_id` of `user_id` (not_found if the user has no such device).
// The result is the DeviceSession that ended.
struct DeleteSession {
  std::string token_hash;
  std::string user_id;
  std::string device_id;
};
// Creates (or finds) the 1:1 conversation; not_found if the peer is unknown.
struct OpenDirectConversation {
  std::string user_id;
  std::string peer_id;
};
// Appends a message: dedup on (sender, client_msg_id) first (a repeat returns
// the original, duplicate = true, and writes nothing); forbidden if the sender
// is not a member or the conversation does not exist. Otherwise assigns seq,
// stores the message once and appends an entry to every member's feed.
struct AppendMessage {
  std::string sender;
  std::string conversation_id;
  std::string client_msg_id;
  std::string body;
};
// A device confirms it holds its feed up to `pos` (never moves back; clamped
// to the feed's committed head). When the user's furthest confirmed position
// advances, the delivered mark of each conversation with newly covered
// messages of the other member advances, and a delivered receipt goes into
// that member's feed. At most `max_scan` feed entries are examined; the result
// then says where to resume.
struct ConfirmFeed {
  std::string user_id;
  std::string device_id;
  FeedPos pos;
  size_t max_scan = 50000;
};
// The user read the conversation up to `seq`: forbidden for non-members,
// bad_request beyond the last seq. The read mark becomes the highest seq of
// the other member's messages at or before `seq` (never moving back; the
// delivered mark follows it up); a read receipt goes into both members' feeds.
struct MarkRead {
  std::string user_id;
  std::string conversation_id;
  uint64_t seq;
};
// Records when the user was last online.
struct SetLastSeen {
  std::string user_id;
  int64_t last_seen_ms;
};
struct SetPrivacy {
  std::string user_id;
  bool hides_last_seen;
};
// Sets (provider kNone: removes) the device's push registration; a device
// has at most one. not_found if the device is gone (logged out).
struct SetPush {
  std::string user_id;
  std::string device_id;
  PushRegistration push;
};
// The push worker handled the user's outbox up to `latest_pos` (`count`
// messages): removes it, or keeps only what arrived since.
struct CompleteOutbox {
  std::string user_id;
  FeedPos latest_pos;
  uint32_t count;
};
// A delivery round failed: try again after `next_try_ms`.
struct RetryOutbox {
  std::string user_id;
  uint32_t attempts;
  int64_t next_try_ms;
};
// Retention: removes what MessageStore::FindExpired of the same store found
// older than its cutoff (feed entries, messages and their dedup keys, in the
// backend's own keys). Each feed it takes entries from keeps the newest
// position removed as its floor: positions never restart (a device's cursor
// stays valid), and a read after an older cursor says what it missed
// (FeedPage::removed_to). A conversation that loses its newest message keeps
// its seq as its floor.
struct Expire {
  std::vector<std::string> keys;
  std::vector<std::pair<std::string, uint64_t>> feed_floors;  // user, newest position removed
  std::vector<std::pair<std::string, uint64_t>> conversation_floors;  // conversation, newest seq
};
}  // namespace op

using WriteOp =
    std::variant<op::CreateUser, op::CreateSession, op::DeleteSession, op::OpenDirectConversation,
                 op::AppendMessage, op::ConfirmFeed, op::MarkRead, op::SetLastSeen, op::SetPrivacy,
                 op::SetPush, op::CompleteOutbox, op::RetryOutbox, op::Expire>;

struct Delivery {
  std::string user_id;
  FeedPos pos;
};

struct AppendResult {
  StoredMessage message;
  bool duplicate = false;
  std::vector<Delivery> fanout;         // one per member; empty for a duplicate
  std::vector<std::string> push_users;  // members whose outbox this message entered
};

struct ReceiptResult {
  Receipt receipt;
  std::vector<Delivery> fanout;  // feed entries written for it
};

struct ReceiptsResult {
  std::vector<ReceiptResult> receipts;
  FeedPos resume_from = 0;  // ConfirmFeed: nonzero when the scan stopped early
};

// One slice of a retention sweep (MessageStore::FindExpired).
struct ExpiredSlice {
  op::Expire expire;  // empty when the slice found nothing
  uint64_t feed_entries = 0;
  uint64_t messages = 0;
  std::string resume;  // where the next slice starts
  bool done = false;   // the sweep is over
};

struct OpResult {
  Status status;
  std::variant<std::monostate, Conversation, AppendResult, DeviceSession, ReceiptsResult> value;
};

class MessageStore {
 public:
  virtual ~MessageStore() = default;

  // See the file comment. `now_ms` is the commit time stamped on messages.
  // On success `results` has one entry per op, in order. The store may move
  // what a result carries (a message's body and ids) out of its op: the
  // caller drops the ops after the commit.
  virtual Status Commit(std::span<WriteOp> ops, int64_t now_ms, std::vector<OpResult>* results) = 0;

  virtual Result<UserRecord> GetUser(std::string_view user_id) = 0;
  // unauthorized when the token is unknown or revoked.
  virtual Result<DeviceSession> LookupToken(std::string_view token_hash) = 0;
  // not_found when there is no such conversation.
  virtual Result<Conversation> GetConversation(std::string_view conversation_id) = 0;
  virtual Result<std::vector<ConversationSummary>> ListConversations(std::string_view user_id) = 0;
  // Newest first, seq < before_seq, at most `limit`.
  virtual Result<std::vector<StoredMessage>> History(std::string_view conversation_id,
                                                     uint64_t before_seq, size_t limit) = 0;
  // Entries with position > after, at most `limit`.
  virtual Result<FeedPage> ReadFeed(std::string_view user_id, FeedPos after, size_t limit) = 0;
  // The position of the user's latest feed entry (0 when empty).
  virtual Result<FeedPos> FeedHead(std::string_view user_id) = 0;
  // The user's logged-in devices.
  virtual Result<std::vector<DeviceInfo>> Devices(std::string_view user_id) = 0;
  // not_found when the user's outbox is empty.
  virtual Result<OutboxEntry> GetOutbox(std::string_view user_id) = 0;
  // Every pending outbox entry, at most `limit` (recovery at start-up).
  virtual Result<std::vector<OutboxEntry>> ListOutbox(size_t limit) = 0;
  // Retention: what is older than `before_ms` (commit time), from `resume`
  // ("" for a new sweep), at most about `max_keys` keys' worth. Commit the
  // slice's op::Expire, then ask for the next slice from its `resume`, until
  // `done`. Reads only: a slice is a snapshot, and what it names is never
  // written again (positions and seqs only grow), so it stays right to
  // commit while new messages arrive.
  virtual Result<ExpiredSlice> FindExpired(int64_t before_ms, std::string_view resume,
                                           size_t max_keys) = 0;
  // ok when the store answers (readiness).
  virtual Status Check() = 0;
  // Whether the engine's background work keeps up with the writes (/metrics).
  virtual StoreHealth Health() = 0;
};

}  // namespace pigeon
