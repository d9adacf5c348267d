// The embedded MessageStore: one RocksDB database in --data-dir, every Commit
// one WriteBatch written with sync=true (WAL fdatasync'd) before it returns.
//
// Keys (one column family, a one-byte tag first; user ids never hold '\0'):
//   U user                       -> UserRecord
//   T token_hash(32)             -> user '\0' device
//   D user '\0' device           -> confirmed_pos, name, token_hash, push registration
//   C conversation_id            -> Conversation (members; last_seq 0 when written at
//                                   creation, never rewritten: a conversation's last
//                                   seq is its newest M key's, so a message is 4 keys)
//   L user '\0' conversation_id  -> ''  (the user's conversations)
//   M conversation_id '\0' seq8  -> StoredMessage          (seq8: big-endian)
//   X sender '\0' client_msg_id  -> lp conversation_id, varint seq (dedup)
//   F user '\0' pos8             -> a message or receipt reference (the feed)
//   R conversation_id '\0' user  -> varint delivered mark, varint read mark
//   W user                       -> varint furthest confirmed feed position
//   O user                       -> OutboxEntry (messages that may need a push)
//   H user                       -> varint head: the feed's newest position when retention
//                                   removed all of it (a feed's head is its newest F key's
//                                   position, or this when it has none)
#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/string_hash.h"
#include "store/message_store.h"
#include "store/rocksdb/wal_file_system.h"

namespace rocksdb {
class ColumnFamilyHandle;
class SliceTransform;
class DB;
class FileSystem;
class Iterator;
class PinnableSlice;
class Slice;
class Status;
class WriteBatch;
}  // namespace rocksdb

namespace pigeon {

// The key prefix under which the store's message memtable keeps an insert
// hint (tag, id, NUL; see rocks_store.cc), for the memtable's benchmarks.
std::shared_ptr<const rocksdb::SliceTransform> StoreKeyPrefix();

class RocksStore final : public MessageStore {
 public:
  // The column family of the dedup keys (X sender client_msg_id), a hash memtable's.
  static constexpr const char* kDedupFamily = "dedup";
  struct Options {
    std::string path;
    size_t block_cache_bytes = 128 << 20;
    // Hot conversations and feed heads the committer keeps in memory; past
    // this many entries the cache is dropped and refilled from the store.
    size_t max_cached = 200000;
    // Flushes and compactions write at most this many bytes per second
    // (RocksDB's rate limiter), so the WAL's fdatasyncs do not queue behind
    // a table file's writes. 0: no limit.
    uint64_t background_write_bytes_per_s = 0;
    // How table files are merged. Universal (size-tiered): fewer rewrites of
    // each byte, so compactions keep up with a sustained 50,000 msg/s on two
    // cores where levelled ones fell behind; it needs free disk space up to
    // the store's size while it merges everything into one run. Levelled:
    // RocksDB's default, less space, more rewriting. Either opens a store
    // written with the other.
    enum class Compaction { kUniversal, kLevel };
    Compaction compaction = Compaction::kUniversal;
    // How a commit's WAL write is made durable (wal_file_system.h): where
    // the file system allows it, a commit inside the WAL's already written
    // blocks writes its pages and flushes the disk's cache, without an
    // fdatasync that also writes the WAL's inode back for its mtime.
    WalSync wal_sync = WalSync::kAuto;
    // How the WAL is written: through the page cache, or with O_DIRECT where
    // the file system takes it (wal_file_system.h, 4.: less CPU per commit,
    // a little more commit latency).
    WalWrite wal_write = WalWrite::kPageCache;
    // The file system the store's files live on, beneath the WAL's changes
    // above; null: the machine's. Tests pass one that injects faults.
    std::shared_ptr<rocksdb::FileSystem> file_system = nullptr;
  };
  // "universal" or "level"; nullopt for anything else.
  static std::optional<Options::Compaction> CompactionNamed(std::string_view name);
  // "auto" or "fdatasync"; nullopt for anything else.
  static std::optional<WalSync> WalSyncNamed(std::string_view name);
  // "page-cache" or "direct"; nullopt for anything else.
  static std::optional<WalWrite> WalWriteNamed(std::string_view name);
  static Result<std::unique_ptr<RocksStore>> Open(const Options& options);
  ~RocksStore() override;

  Status Commit(std::span<WriteOp> ops, int64_t now_ms, std::vector<OpResult>* results) override;
  Result<UserRecord> GetUser(std::string_view user_id) override;
  Result<DeviceSession> LookupToken(std::string_view token_hash) override;
  Result<Conversation> GetConversation(std::string_view conversation_id) override;
  Result<std::vector<ConversationSummary>> ListConversations(std::string_view user_id) override;
  Result<std::vector<StoredMessage>> History(std::string_view conversation_id, uint64_t before_seq,
                                             size_t limit) override;
  Result<FeedPage> ReadFeed(std::string_view user_id, FeedPos after, size_t limit) override;
  Result<FeedPos> FeedHead(std::string_view user_id) override;
  Result<std::vector<DeviceInfo>> Devices(std::string_view user_id) override;
  Result<OutboxEntry> GetOutbox(std::string_view user_id) override;
  Result<std::vector<OutboxEntry>> ListOutbox(size_t limit) override;
  Result<ExpiredSlice> FindExpired(int64_t before_ms, std::string_view resume,
                                   size_t max_keys) override;
  Status Check() override;
  StoreHealth Health() override;

  // An online backup: a consistent copy of the store at this moment in `dir`
  // (which must not exist; its parent is created), openable as a store, and
  // taken while commits go on. The memtables are flushed first; table files
  // are hard links when `dir` is on the store's file system (no copy, and
  // they stay as the store compacts its own away), copied otherwise.
  Status Checkpoint(const std::string& dir);

 private:
  // The Env and sync counters of a store opened on its own file system
  // (Options::file_system); the others share one per WAL sync and write.
  struct OwnEnv;
  RocksStore(std::unique_ptr<OwnEnv> own_env, std::unique_ptr<rocksdb::DB> db,
             rocksdb::ColumnFamilyHandle* dedup, Options options);
  Status MoveDedupKeysToTheirFamily();
  // Where a key lives: dedup keys (X) in their own family, the rest in the default one.
  rocksdb::ColumnFamilyHandle* Family(std::string_view key) const;

  // Any thread: the conversation's record, with its last seq from its newest
  // message key (found with `messages`, an iterator the caller may reuse).
  Result<Conversation> ReadConversation(std::string_view id, rocksdb::Iterator& messages);

  // Committer-only state and helpers (see Commit).
  // Every read below returns a read error as such, never as "not there": a
  // write decided on a failed read (a username free, a message never sent, a
  // feed empty) would overwrite what is there. An op whose read fails fails
  // before its first write, with nothing of it in the batch.
  //
  // The key's value into `value`: true; false when it is not there (or this
  // batch deleted it).
  Result<bool> GetKey(std::string_view key, std::string* value);
  void PutKey(rocksdb::WriteBatch& batch, std::string_view key, std::string_view value);
  void PutKey(rocksdb::WriteBatch& batch, const HashedString& key, std::string_view value);
  void DeleteKey(rocksdb::WriteBatch& batch, std::string_view key);
  // Empties the overlay, keeping its entries' buffers for the next batch.
  void ClearOverlay();
  struct OverlayEntry;
  // The overlay's entry for `key`, a fresh one if the batch has none.
  OverlayEntry& OverlayEntryFor(const HashedString& key);
  // The conversation, cached; null when there is none.
  Result<Conversation*> LoadConversation(const std::string& id);
  // What the committer caches of a user: its feed's head and whether any of
  // its devices has a push registration, each read from the store on first
  // use. One entry, so a message's member costs one lookup for both.
  struct CachedUser {
    FeedPos head = 0;
    bool head_read = false;
    int8_t push = -1;  // -1: not read yet
  };
  // The user's entry: a reference valid until the next CachedUserOf() call.
  CachedUser& CachedUserOf(const std::string& user);
  // Reads `user`'s feed head into `u` unless it is there already.
  Status LoadHead(std::string_view user, CachedUser& u);
  Status LoadHeads(const std::vector<std::string>& users);
  // The next entry of `user`'s feed, holding `value`: its position and key.
  // The user's head is loaded (LoadHead).
  Delivery AppendToFeed(rocksdb::WriteBatch& batch, const std::string& user,
                        std::string_view value);
  Delivery AppendToFeed(rocksdb::WriteBatch& batch, const std::string& user, CachedUser& u,
                        std::string_view value);
  Result<FeedPos> ReadHead(std::string_view user);
  // The newest feed position retention removed (the H record); 0: none.
  Result<FeedPos> ReadFeedFloor(std::string_view user);
  // Looks up the dedup keys of the batch's messages in the store, all in one
  // MultiGet: RocksDB's per-call work (its sync points, perf timers, the
  // column family's SuperVersion) once per batch instead of once per message.
  void LookUpDedupKeys(std::span<WriteOp> ops);
  OpResult Apply(rocksdb::WriteBatch& batch, WriteOp& op, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::CreateUser& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::CreateSession& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::DeleteSession& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::OpenDirectConversation& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, op::AppendMessage& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::ConfirmFeed& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::MarkRead& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::SetLastSeen& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::SetPrivacy& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::SetPush& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::CompleteOutbox& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::RetryOutbox& o, int64_t now_ms);
  OpResult ApplyOp(rocksdb::WriteBatch& batch, const op::Expire& o, int64_t now_ms);
  // Whether any device of `user` (cached as `u`) has a push registration.
  Result<bool> UserHasPush(const std::string& user, CachedUser& u);
  Result<ReadMarks> GetMarks(const std::string& conv, const std::string& user);
  // Appends `r` to the feeds of `to`.
  ReceiptResult AppendReceipt(rocksdb::WriteBatch& batch, Receipt r,
                              const std::vector<std::string>& to);

  std::unique_ptr<OwnEnv> own_env_;  // declared before db_: it outlives the DB
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* dedup_;  // the X keys' family (kDedupFamily)
  Options options_;
  // Keys written by the batch being built: read-your-writes inside a batch.
  // Entries are reused from batch to batch with their buffers (a deque: their
  // addresses, which the index's keys point into, stay put); the index is a
  // flat table, so neither a put nor the clearing allocates.
  struct OverlayEntry {
    std::string key;
    std::string value;
    bool present = false;  // false: deleted by this batch
  };
  // The batch's own write of `key`, or null.
  const OverlayEntry* FindInOverlay(std::string_view key) const;
  const OverlayEntry* FindInOverlay(const HashedString& key) const;
  std::deque<OverlayEntry> overlay_entries_;
  size_t overlay_used_ = 0;
  // key (a view of its entry's, with its hash) -> entry
  boost::unordered_flat_map<HashedString, uint32_t, StringHash, StringEqual> overlay_;
  std::unique_ptr<rocksdb::WriteBatch> batch_;  // reused: its buffer stays grown
  // The committer's buffers for a message's keys and values (batch.Put copies them).
  std::string feed_key_, key_, value_, ref_;
  // The batch's dedup keys in op order, and what the store held for each
  // before the batch (LookUpDedupKeys); the buffers are kept between batches.
  std::vector<std::string> dedup_keys_;
  std::vector<rocksdb::Slice> dedup_slices_;
  std::vector<rocksdb::PinnableSlice> dedup_values_;
  std::vector<rocksdb::Status> dedup_statuses_;
  size_t dedup_next_ = 0;  // the next message's index in them
  // What a message's writes need of each member of its conversation, read
  // before the first of them (reused from message to message).
  struct MemberWrite {
    CachedUser* user;
    bool push;           // whether the message goes into the member's outbox
    std::string outbox;  // the outbox's value before the message (empty: none)
  };
  std::vector<MemberWrite> members_;
  // Open-addressing tables: a lookup touches a group of slots, not a bucket
  // and then a node (a cache miss each, per member of every message).
  // Conversations are held by pointer: a Conversation* stays valid while the
  // table grows.
  boost::unordered_flat_map<std::string, std::unique_ptr<Conversation>, StringHash, StringEqual>
      conversations_;
  boost::unordered_flat_map<std::string, CachedUser, StringHash, StringEqual> users_;
};

}  // namespace pigeon
