#include "store/rocksdb/rocks_store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>

#include "core/bytes.h"
#include "core/ids.h"
#include "store/records.h"
#include "store/rocksdb/hash_rep.h"
#include "store/rocksdb/skiplist_rep.h"
#include "store/rocksdb/wal_file_system.h"

namespace pigeon {
namespace {

// RocksDB's own text of an error (it names the store's files) goes to the
// log, at most one line a second: a failing disk fails every op.
void LogStoreError(const rocksdb::Status& s) {
  static std::atomic<int64_t> next_ms{0};
  static std::atomic<uint64_t> unlogged{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t next = next_ms.load(std::memory_order_relaxed);
  if (now < next || !next_ms.compare_exchange_strong(next, now + 1000)) {
    unlogged.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  spdlog::error("store: {} ({} more errors since the last one logged)", s.ToString(),
                unlogged.exchange(0, std::memory_order_relaxed));
}

// A RocksDB error as the store's status. What reaches a client says only what
// kind of error it was; the details are in the log.
Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::Ok();
  LogStoreError(s);
  const char* what = s.IsIOError()      ? "an I/O error"
                     : s.IsCorruption() ? "corrupt data"
                     : s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsIncomplete()
                         ? "busy"
                         : "an error";
  return Status(ErrorCode::kUnavailable, std::string("store: ") + what + ", retry later");
}

// Into `k`, reusing its buffer.
void AssignKey2(std::string& k, char tag, std::string_view a, std::string_view b) {
  k.clear();
  k.reserve(2 + a.size() + b.size());
  k.push_back(tag);
  k.append(a).push_back('\0');
  k.append(b);
}

std::string Key2(char tag, std::string_view a, std::string_view b) {
  std::string k;
  AssignKey2(k, tag, a, b);
  return k;
}

// Into `k`, reusing its buffer: the committer builds each feed key in one.
void AssignKeyNum(std::string& k, char tag, std::string_view a, uint64_t n) {
  k.clear();
  k.reserve(10 + a.size());
  k.push_back(tag);
  k.append(a).push_back('\0');
  PutFixed64BE(k, n);
}

std::string KeyNum(char tag, std::string_view a, uint64_t n) {
  std::string k;
  AssignKeyNum(k, tag, a, n);
  return k;
}

std::string UserKey(std::string_view user) { return std::string(1, 'U').append(user); }
std::string ConvKey(std::string_view id) { return std::string(1, 'C').append(id); }
std::string TokenKey(std::string_view hash) { return std::string(1, 'T').append(hash); }

// Feed entry values: a kind byte, then
//   message: lp conversation, varint seq, lp sender
//   receipt: lp conversation, varint seq, lp user, varint status, varint ts
void AssignMessageRef(std::string& v, std::string_view conv, uint64_t seq,
                      std::string_view sender) {
  v.assign(1, static_cast<char>(FeedEntry::Kind::kMessage));
  PutLengthPrefixed(v, conv);
  PutVarint(v, seq);
  PutLengthPrefixed(v, sender);
}

std::string EncodeReceiptRef(const Receipt& r) {
  std::string v(1, static_cast<char>(FeedEntry::Kind::kReceipt));
  PutLengthPrefixed(v, r.conversation_id);
  PutVarint(v, r.seq);
  PutLengthPrefixed(v, r.user);
  PutVarint(v, static_cast<uint64_t>(r.status));
  PutVarint(v, static_cast<uint64_t>(r.ts));
  return v;
}

// Decodes a feed value into `e` (message fields other than conversation, seq
// and sender are loaded separately).
bool DecodeFeedValue(std::string_view v, FeedEntry* e) {
  if (v.empty()) return false;
  ByteReader r(v.substr(1));
  if (v[0] == static_cast<char>(FeedEntry::Kind::kMessage)) {
    e->kind = FeedEntry::Kind::kMessage;
    return r.GetString(&e->message.conversation_id) && r.GetVarint(&e->message.seq) &&
           r.GetString(&e->message.sender);
  }
  if (v[0] == static_cast<char>(FeedEntry::Kind::kReceipt)) {
    e->kind = FeedEntry::Kind::kReceipt;
    uint64_t ts;
    if (!r.GetString(&e->receipt.conversation_id) || !r.GetVarint(&e->receipt.seq) ||
        !r.GetString(&e->receipt.user))
      return false;
    uint64_t st;
    if (!r.GetVarint(&st) || (st != 1 && st != 2) || !r.GetVarint(&ts)) return false;
    e->receipt.status = static_cast<ReceiptStatus>(st);
    e->receipt.ts = static_cast<int64_t>(ts);
    return true;
  }
  return false;
}

bool DecodeRef(std::string_view in, std::string* conv, uint64_t* seq) {
  ByteReader r(in);
  return r.GetString(conv) && r.GetVarint(seq);
}

std::string EncodeMarks(const ReadMarks& m) {
  std::string v;
  PutVarint(v, m.delivered);
  PutVarint(v, m.read);
  return v;
}

bool DecodeMarks(std::string_view in, ReadMarks* m) {
  ByteReader r(in);
  return r.GetVarint(&m->delivered) && r.GetVarint(&m->read);
}

struct DeviceRecord {
  FeedPos confirmed = 0;
  std::string name;
  std::string token_hash;
  PushRegistration push;
};

std::string EncodeDevice(const DeviceRecord& d) {
  std::string v;
  PutVarint(v, d.confirmed);
  PutLengthPrefixed(v, d.name);
  PutLengthPrefixed(v, d.token_hash);
  PutVarint(v, static_cast<uint64_t>(d.push.provider));
  PutLengthPrefixed(v, d.push.token);
  PutLengthPrefixed(v, d.push.endpoint);
  return v;
}

bool DecodeDevice(std::string_view in, DeviceRecord* d) {
  ByteReader r(in);
  if (!r.GetVarint(&d->confirmed) || !r.GetString(&d->name) || !r.GetString(&d->token_hash))
    return false;
  uint64_t provider = 0;
  if (r.done()) return true;
  if (!r.GetVarint(&provider) || provider > 3 || !r.GetString(&d->push.token) ||
      !r.GetString(&d->push.endpoint))
    return false;
  d->push.provider = static_cast<PushRegistration::Provider>(provider);
  return true;
}

std::string EncodeOutbox(const OutboxEntry& o) {
  std::string v;
  PutVarint(v, static_cast<uint64_t>(o.first_ms));
  PutVarint(v, o.latest_pos);
  PutVarint(v, o.count);
  PutVarint(v, o.attempts);
  PutVarint(v, static_cast<uint64_t>(o.next_try_ms));
  return v;
}

bool DecodeOutbox(std::string_view in, OutboxEntry* o) {
  ByteReader r(in);
  uint64_t first, count, attempts, next;
  if (!r.GetVarint(&first) || !r.GetVarint(&o->latest_pos) || !r.GetVarint(&count) ||
      !r.GetVarint(&attempts) || !r.GetVarint(&next))
    return false;
  o->first_ms = static_cast<int64_t>(first);
  o->count = static_cast<uint32_t>(count);
  o->attempts = static_cast<uint32_t>(attempts);
  o->next_try_ms = static_cast<int64_t>(next);
  return true;
}

std::string OutboxKey(std::string_view user) { return std::string(1, 'O').append(user); }
std::string FeedFloorKey(std::string_view user) { return std::string(1, 'H').append(user); }

// The first key after every key that starts with `prefix` (tag, id, NUL): ids
// are printable, so no other id's keys fall between.
std::string PastPrefix(std::string_view prefix) {
  std::string k(prefix);
  k.back() = '\x01';
  return k;
}

// The part of a key before its suffix: tag + id + NUL (feeds, messages, dedup
// keys, marks, devices). Appends under one prefix are sequential (a feed's
// positions, a conversation's seqs), so the memtable keeps an insert hint per
// prefix and inserts next to the previous key instead of searching the whole
// skiplist: that search was most of the store's CPU per message. A record
// with no suffix (a conversation, user, outbox, token: tag + id) is its own
// prefix: its next version goes right next to the previous one (a device's
// record, rewritten as it confirms its feed; an outbox, by every message to
// a user with push).
class KeyPrefix : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "pigeon.KeyPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    auto* nul = static_cast<const char*>(std::memchr(key.data() + 1, '\0', key.size() - 1));
    if (!nul) return key;
    return rocksdb::Slice(key.data(), static_cast<size_t>(nul - key.data()) + 1);
  }
  bool InDomain(const rocksdb::Slice& key) const override { return key.size() > 1; }
};

rocksdb::Env* MakeStoreEnv(std::shared_ptr<rocksdb::FileSystem> base, WalSync sync, WalWrite write,
                           std::shared_ptr<WalSyncCounters> counters) {
  rocksdb::Env* env =
      rocksdb::NewCompositeEnv(NewWalFileSystem(std::move(base), sync, std::move(counters), write))
          .release();
  // Flushes and compactions run under SCHED_IDLE. A memtable flush is about
  // 0.3 s of CPU; at normal priority it took a core from the network threads
  // and the committer, and near saturation it held latency up (the third
  // round in docs/benchmarks.md). Under SCHED_IDLE it uses the idle time and a
  // waking pigeond thread preempts it. It cannot fall behind for long: with
  // both memtables full, RocksDB holds the committer until the flush is done.
  (void)env->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::HIGH, rocksdb::CpuPriority::kIdle);
  (void)env->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::LOW, rocksdb::CpuPriority::kIdle);
  return env;
}

// What the stores opened with one WAL sync and write share in this process:
// the Env (its file system) and the count of its WAL syncs.
struct StoreEnvOf {
  StoreEnvOf(WalSync sync, WalWrite write)
      : env(MakeStoreEnv(rocksdb::FileSystem::Default(), sync, write, counters)) {}
  const std::shared_ptr<WalSyncCounters> counters = std::make_shared<WalSyncCounters>();
  rocksdb::Env* const env;
};

const StoreEnvOf& StoreEnv(WalSync sync, WalWrite write) {
  // One for each WAL sync and write, never destroyed: stores may close during exit.
  static const StoreEnvOf* const envs[2][2] = {
      {new StoreEnvOf(WalSync::kAuto, WalWrite::kDirect),
       new StoreEnvOf(WalSync::kAuto, WalWrite::kPageCache)},
      {new StoreEnvOf(WalSync::kFdatasync, WalWrite::kDirect),
       new StoreEnvOf(WalSync::kFdatasync, WalWrite::kPageCache)}};
  return *envs[sync == WalSync::kAuto ? 0 : 1][write == WalWrite::kDirect ? 0 : 1];
}

}  // namespace

struct RocksStore::OwnEnv {
  explicit OwnEnv(const Options& o)
      : env(MakeStoreEnv(o.file_system, o.wal_sync, o.wal_write, counters)) {}
  const std::shared_ptr<WalSyncCounters> counters = std::make_shared<WalSyncCounters>();
  const std::unique_ptr<rocksdb::Env> env;
};

namespace {

Status Corrupt(std::string_view what) {
  return Status(ErrorCode::kInternal, "store: corrupt " + std::string(what));
}

// The number n of the newest key `tag id '\0' n8` (a feed position, a
// message seq), found with `it`; 0 when there is none.
Result<uint64_t> NewestNum(rocksdb::Iterator& it, char tag, std::string_view id) {
  std::string prefix = Key2(tag, id, "");
  it.SeekForPrev(KeyNum(tag, id, UINT64_MAX));
  if (!it.Valid()) {
    if (!it.status().ok()) return FromRocks(it.status());
    return uint64_t{0};
  }
  auto k = it.key();
  if (!k.starts_with(prefix)) return uint64_t{0};
  if (k.size() != prefix.size() + 8) return Corrupt("key");
  return GetFixed64BE(k.data() + prefix.size());
}

}  // namespace

std::optional<RocksStore::Options::Compaction> RocksStore::CompactionNamed(std::string_view name) {
  if (name == "universal") return Options::Compaction::kUniversal;
  if (name == "level") return Options::Compaction::kLevel;
  return std::nullopt;
}

std::optional<WalSync> RocksStore::WalSyncNamed(std::string_view name) {
  if (name == "auto") return WalSync::kAuto;
  if (name == "fdatasync") return WalSync::kFdatasync;
  return std::nullopt;
}

std::optional<WalWrite> RocksStore::WalWriteNamed(std::string_view name) {
  if (name == "page-cache") return WalWrite::kPageCache;
  if (name == "direct") return WalWrite::kDirect;
  return std::nullopt;
}

std::shared_ptr<const rocksdb::SliceTransform> StoreKeyPrefix() {
  return std::make_shared<KeyPrefix>();
}

Result<std::unique_ptr<RocksStore>> RocksStore::Open(const Options& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_background_jobs = 2;
  o.write_buffer_size = 64 << 20;
  o.max_total_wal_size = 256 << 20;
  std::unique_ptr<OwnEnv> own_env;
  if (options.file_system) own_env = std::make_unique<OwnEnv>(options);
  o.env = own_env ? own_env->env.get() : StoreEnv(options.wal_sync, options.wal_write).env;
  // Obsolete WAL and table files are deleted in 1 MiB slices, at most 128 MB/s
  // (RocksDB's DeleteScheduler: rename to *.trash, truncate, unlink). One
  // unlink of a flushed 74 MB WAL file made the disk discard all of it at once
  // (ext4 `discard`), and the committer's fdatasync waited behind it for about
  // 15 ms: the worst latency window of every memtable flush. The trash may
  // outgrow the table files (a young store's first WAL files are larger), so
  // its ratio is not a reason to delete at once.
  o.sst_file_manager.reset(rocksdb::NewSstFileManager(o.env, nullptr, "", 128 << 20, true, nullptr,
                                                      /*max_trash_db_ratio=*/1e6,
                                                      /*bytes_max_delete_chunk=*/1 << 20));
  // A table file being written (a flush's 30-40 MB, a compaction's more) is
  // handed to the disk 1 MiB at a time as it is written (sync_file_range),
  // not all at once by the file's final fsync: that burst queued ahead of the
  // commits' WAL writes, and their fdatasync took 15-20 ms.
  o.bytes_per_sync = 1 << 20;
  if (options.background_write_bytes_per_s > 0) {
    o.rate_limiter.reset(
        rocksdb::NewGenericRateLimiter(static_cast<int64_t>(options.background_write_bytes_per_s)));
  }
  // Universal compaction, the default: at a sustained 50,000 msg/s on two
  // cores, levelled compactions fell behind (1.1 GB pending after 180 s, level
  // 0 growing, commits stalled 3.5 s); universal ones kept up (0 pending, 3
  // level-0 tables). Set before the dedup family copies these options.
  if (options.compaction == Options::Compaction::kUniversal) {
    o.compaction_style = rocksdb::kCompactionStyleUniversal;
  }
  // A skiplist memtable without Debian's assertions (skiplist_rep.h), with an
  // insert hint per key prefix.
  o.memtable_factory = NewPigeonSkipListFactory(StoreKeyPrefix());
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  // The dedup keys (X) have a column family of their own. They are only ever
  // looked up whole, never scanned, and a client_msg_id is often random, so in
  // the skiplist each insert searched the whole memtable (every message's
  // costliest insert). Here the memtable is a hash table of short sorted
  // chains, sorted whole once when it is flushed (hash_rep.h). It is sized to
  // flush about when the default family does (a message's dedup entry is about
  // a fifth of its bytes), and max_total_wal_size flushes it sooner if it
  // would keep old WAL files alive.
  rocksdb::ColumnFamilyOptions d(o);
  d.memtable_factory = NewPigeonHashFactory(1 << 18);
  // A key's prefix is all of it: an iterator of this family seeks one key's
  // chain and never sorts the memtable (and table files keep whole-key blooms).
  d.prefix_extractor.reset(rocksdb::NewNoopTransform());
  d.write_buffer_size = 16 << 20;
  o.allow_concurrent_memtable_write = false;  // not with a hash memtable; one committer writes
  o.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(o)}, {kDedupFamily, d}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(rocksdb::DBOptions(o), options.path, families, &handles, &raw);
  if (!s.ok()) return Status(ErrorCode::kUnavailable, "cannot open store: " + s.ToString());
  (void)raw->DestroyColumnFamilyHandle(handles[0]);  // the DB keeps its own for the default family
  std::unique_ptr<RocksStore> store(
      new RocksStore(std::move(own_env), std::unique_ptr<rocksdb::DB>(raw), handles[1], options));
  if (Status m = store->MoveDedupKeysToTheirFamily(); !m.ok()) return m;
  return store;
}

// A store written before the dedup family existed keeps its X keys in the
// default family. They move over at open, a slice at a time; each slice's
// copy and removal is one atomic write, so a crash mid-way leaves every key in
// one place or the other, and the next open carries on.
Status RocksStore::MoveDedupKeysToTheirFamily() {
  size_t moved = 0;
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    rocksdb::WriteBatch batch;
    std::string first, last;
    size_t n = 0;
    for (it->Seek("X"); it->Valid() && it->key().starts_with("X") && n < 10000; it->Next(), ++n) {
      if (n == 0) first = it->key().ToString();
      last = it->key().ToString();
      (void)batch.Put(dedup_, it->key(), it->value());
    }
    if (!it->status().ok()) return FromRocks(it->status());
    if (n == 0) break;
    if (moved == 0)
      spdlog::info(
          "store: moving the dedup keys of an older store to their column family (once; "
          "about 3 s per million messages)");
    last.push_back('\0');  // the first key after `last`: the range's end is exclusive
    (void)batch.DeleteRange(db_->DefaultColumnFamily(), first, last);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (auto s = db_->Write(wo, &batch); !s.ok()) return FromRocks(s);
    moved += n;
  }
  if (moved)
    spdlog::info("store: moved {} dedup keys in {:.1f} s", moved,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return Status::Ok();
}

RocksStore::RocksStore(std::unique_ptr<OwnEnv> own_env, std::unique_ptr<rocksdb::DB> db,
                       rocksdb::ColumnFamilyHandle* dedup, Options options)
    : own_env_(std::move(own_env)),
      db_(std::move(db)),
      dedup_(dedup),
      options_(std::move(options)) {}

RocksStore::~RocksStore() {
  if (!db_) return;
  (void)db_->DestroyColumnFamilyHandle(dedup_);
  (void)db_->Close();
}

// ---- committer side ---------------------------------------------------------

const RocksStore::OverlayEntry* RocksStore::FindInOverlay(std::string_view key) const {
  return FindInOverlay(HashedString(key));
}

const RocksStore::OverlayEntry* RocksStore::FindInOverlay(const HashedString& key) const {
  auto it = overlay_.find(key);
  return it == overlay_.end() ? nullptr : &overlay_entries_[it->second];
}

Result<bool> RocksStore::GetKey(std::string_view key, std::string* value) {
  if (const OverlayEntry* e = FindInOverlay(key)) {
    if (!e->present) return false;
    value->assign(e->value);
    return true;
  }
  auto s = db_->Get(rocksdb::ReadOptions(), Family(key), key, value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s);
  return true;
}

void RocksStore::LookUpDedupKeys(std::span<WriteOp> ops) {
  size_t n = 0;
  for (auto& op : ops) {
    if (const auto* a = std::get_if<op::AppendMessage>(&op)) {
      if (n == dedup_keys_.size()) dedup_keys_.emplace_back();
      AssignKey2(dedup_keys_[n++], 'X', a->sender, a->client_msg_id);
    }
  }
  dedup_next_ = 0;
  dedup_slices_.assign(dedup_keys_.begin(), dedup_keys_.begin() + static_cast<std::ptrdiff_t>(n));
  dedup_values_.resize(n);
  dedup_statuses_.resize(n);
  if (n > 0)
    db_->MultiGet(rocksdb::ReadOptions(), dedup_, n, dedup_slices_.data(), dedup_values_.data(),
                  dedup_statuses_.data());
}

RocksStore::OverlayEntry& RocksStore::OverlayEntryFor(const HashedString& k) {
  // Hashed once: the index keeps the hash with its view of the entry's key.
  if (auto it = overlay_.find(k); it != overlay_.end()) return overlay_entries_[it->second];
  if (overlay_used_ == overlay_entries_.size()) overlay_entries_.emplace_back();
  OverlayEntry& e = overlay_entries_[overlay_used_];
  e.key.assign(k.text);
  overlay_.emplace(HashedString(e.key, k.hash), static_cast<uint32_t>(overlay_used_++));
  return e;
}

void RocksStore::PutKey(rocksdb::WriteBatch& batch, std::string_view key, std::string_view value) {
  PutKey(batch, HashedString(key), value);
}

void RocksStore::PutKey(rocksdb::WriteBatch& batch, const HashedString& key,
                        std::string_view value) {
  (void)batch.Put(Family(key.text), key.text, value);
  OverlayEntry& e = OverlayEntryFor(key);
  e.value.assign(value);
  e.present = true;
}

void RocksStore::DeleteKey(rocksdb::WriteBatch& batch, std::string_view key) {
  (void)batch.Delete(Family(key), key);
  OverlayEntry& e = OverlayEntryFor(HashedString(key));
  e.value.clear();
  e.present = false;
}

void RocksStore::ClearOverlay() {
  // A batch's usual entries are kept for the next; after an unusually large
  // batch, what it grew is let go rather than held for good.
  constexpr size_t kMaxKept = 1024, kMaxKeptValue = 4096;
  for (size_t i = 0; i < overlay_used_; ++i)
    if (overlay_entries_[i].value.capacity() > kMaxKeptValue)
      std::string().swap(overlay_entries_[i].value);
  if (overlay_entries_.size() > kMaxKept) {
    overlay_entries_.resize(kMaxKept);
    overlay_ = {};
  } else {
    overlay_.clear();
  }
  overlay_used_ = 0;
}

rocksdb::ColumnFamilyHandle* RocksStore::Family(std::string_view key) const {
  return key.starts_with('X') ? dedup_ : db_->DefaultColumnFamily();
}

Result<Conversation*> RocksStore::LoadConversation(const std::string& id) {
  if (auto it = conversations_.find(id); it != conversations_.end()) return it->second.get();
  auto c = GetConversation(id);
  if (!c.ok()) {
    if (c.status().code() == ErrorCode::kNotFound) return static_cast<Conversation*>(nullptr);
    return c.status();
  }
  return conversations_.emplace(id, std::make_unique<Conversation>(std::move(*c)))
      .first->second.get();
}

Result<FeedPos> RocksStore::ReadHead(std::string_view user) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  auto newest = NewestNum(*it, 'F', user);
  if (!newest.ok() || *newest != 0) return newest;
  // No entry: a new feed, or one retention emptied, which kept its head.
  return ReadFeedFloor(user);
}

Result<FeedPos> RocksStore::ReadFeedFloor(std::string_view user) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), FeedFloorKey(user), &v);
  if (s.IsNotFound()) return FeedPos{0};
  if (!s.ok()) return FromRocks(s);
  ByteReader r(v);
  FeedPos floor = 0;
  if (!r.GetVarint(&floor)) return Corrupt("feed floor");
  return floor;
}

Status RocksStore::LoadHead(std::string_view user, CachedUser& u) {
  if (u.head_read) return Status::Ok();
  auto head = ReadHead(user);
  if (!head.ok()) return head.status();
  u.head = *head;
  u.head_read = true;
  return Status::Ok();
}

Status RocksStore::LoadHeads(const std::vector<std::string>& users) {
  for (auto& user : users)
    if (Status s = LoadHead(user, CachedUserOf(user)); !s.ok()) return s;
  return Status::Ok();
}

Delivery RocksStore::AppendToFeed(rocksdb::WriteBatch& batch, const std::string& user,
                                  std::string_view value) {
  return AppendToFeed(batch, user, CachedUserOf(user), value);
}

Delivery RocksStore::AppendToFeed(rocksdb::WriteBatch& batch, const std::string& user,
                                  CachedUser& u, std::string_view value) {
  assert(u.head_read);  // LoadHead: a head that could not be read fails the op before its writes
  const FeedPos pos = ++u.head;
  AssignKeyNum(feed_key_, 'F', user, pos);
  (void)batch.Put(feed_key_, value);
  return Delivery{user, pos};
}

RocksStore::CachedUser& RocksStore::CachedUserOf(const std::string& user) {
  return users_.try_emplace(user).first->second;
}

OpResult RocksStore::Apply(rocksdb::WriteBatch& batch, WriteOp& wop, int64_t now_ms) {
  return std::visit([&](auto& o) { return ApplyOp(batch, o, now_ms); }, wop);
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::CreateUser& o, int64_t now_ms) {
  std::string v;
  auto taken = GetKey(UserKey(o.user_id), &v);
  if (!taken.ok()) return {taken.status(), {}};
  if (*taken) return {Status(ErrorCode::kConflict, "username is taken"), {}};
  UserRecord u{o.user_id, o.password_hash, now_ms, 0, false};
  PutKey(batch, UserKey(o.user_id), records::EncodeUser(u));
  return {};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::CreateSession& o, int64_t) {
  std::string v;
  auto user = GetKey(UserKey(o.user_id), &v);
  if (!user.ok()) return {user.status(), {}};
  if (!*user) return {Status(ErrorCode::kNotFound, "no such user"), {}};
  std::string session = o.user_id;
  session.push_back('\0');
  session.append(o.device_id);
  PutKey(batch, TokenKey(o.token_hash), std::move(session));
  PutKey(batch, Key2('D', o.user_id, o.device_id),
         EncodeDevice({0, o.device_name, o.token_hash, {}}));
  return {};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::DeleteSession& o, int64_t) {
  std::string v;
  std::string token_hash = o.token_hash;
  if (token_hash.empty()) {  // by device: its record names its token
    auto device = GetKey(Key2('D', o.user_id, o.device_id), &v);
    if (!device.ok()) return {device.status(), {}};
    DeviceRecord d;
    if (!*device || !DecodeDevice(v, &d) || d.token_hash.empty())
      return {Status(ErrorCode::kNotFound, "no such device"), {}};
    token_hash = std::move(d.token_hash);
  }
  auto token = GetKey(TokenKey(token_hash), &v);
  if (!token.ok()) return {token.status(), {}};
  if (!*token) return {Status(ErrorCode::kUnauthorized, "token is not valid"), {}};
  auto sep = v.find('\0');
  DeviceSession s{v.substr(0, sep), v.substr(sep + 1)};
  DeleteKey(batch, TokenKey(token_hash));
  DeleteKey(batch, Key2('D', s.user_id, s.device_id));
  if (auto it = users_.find(s.user_id); it != users_.end()) it->second.push = -1;
  return {Status::Ok(), std::move(s)};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::OpenDirectConversation& o,
                             int64_t) {
  if (o.user_id == o.peer_id) return {Status(ErrorCode::kBadRequest, "the peer is the caller"), {}};
  std::string v;
  auto peer = GetKey(UserKey(o.peer_id), &v);
  if (!peer.ok()) return {peer.status(), {}};
  if (!*peer) return {Status(ErrorCode::kNotFound, "no such user"), {}};
  std::string id = DirectConversationId(o.user_id, o.peer_id);
  auto loaded = LoadConversation(id);
  if (!loaded.ok()) return {loaded.status(), {}};
  Conversation* c = *loaded;
  if (!c) {
    Conversation fresh{id, {o.user_id, o.peer_id}, 0};
    std::sort(fresh.members.begin(), fresh.members.end());
    c = conversations_.emplace(id, std::make_unique<Conversation>(std::move(fresh)))
            .first->second.get();
    (void)batch.Put(ConvKey(id), records::EncodeConversation(*c));
    for (auto& m : c->members) (void)batch.Put(Key2('L', m, id), "");
  }
  return {Status::Ok(), *c};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, op::AppendMessage& o, int64_t now_ms) {
  // The message's keys and values are built in the committer's buffers. Its
  // dedup key was built and looked up with the batch's (LookUpDedupKeys); a
  // message earlier in this batch may have written it since.
  const size_t d = dedup_next_++;
  const HashedString dedup_key(dedup_keys_[d]);  // hashed once, for the check and the put
  bool sent_before;
  if (const OverlayEntry* e = FindInOverlay(dedup_key)) {
    sent_before = e->present;
    if (sent_before) value_.assign(e->value);
  } else {
    const rocksdb::Status& st = dedup_statuses_[d];
    // A read error is not "never sent": storing the message again would
    // deliver it twice. The send fails, and the client's retry finds it.
    if (!st.ok() && !st.IsNotFound()) return {FromRocks(st), {}};
    sent_before = st.ok();
    if (sent_before) value_.assign(dedup_values_[d].data(), dedup_values_[d].size());
  }
  if (sent_before) {
    AppendResult a;
    a.duplicate = true;
    std::string mv;
    if (!DecodeRef(value_, &a.message.conversation_id, &a.message.seq))
      return {Corrupt("dedup record"), {}};
    auto found = GetKey(KeyNum('M', a.message.conversation_id, a.message.seq), &mv);
    if (!found.ok()) return {found.status(), {}};
    if (!*found || !records::DecodeMessage(mv, &a.message)) return {Corrupt("dedup record"), {}};
    return {Status::Ok(), std::move(a)};
  }
  auto loaded = LoadConversation(o.conversation_id);
  if (!loaded.ok()) return {loaded.status(), {}};
  Conversation* c = *loaded;
  if (!c || !c->HasMember(o.sender))
    return {Status(ErrorCode::kForbidden, "not a member of this conversation"), {}};
  // Everything the message's writes depend on is read before the first of
  // them, so a read error fails the message with nothing of it in the batch.
  // The members' cache entries are held by pointer: with room for them all
  // below the table's max load, inserting them does not rehash it.
  if (users_.size() + c->members.size() > users_.max_load())
    for (auto& m : c->members) (void)CachedUserOf(m);
  members_.resize(c->members.size());
  for (size_t i = 0; i < c->members.size(); ++i) {
    const std::string& m = c->members[i];
    MemberWrite& w = members_[i];
    w.user = &CachedUserOf(m);
    w.push = false;
    if (!w.user->head_read)
      if (Status s = LoadHead(m, *w.user); !s.ok()) return {s, {}};
    // Into the outbox, in this same commit, for members with a push device.
    if (m == o.sender || w.user->push == 0) continue;
    if (w.user->push < 0) {
      auto push = UserHasPush(m, *w.user);
      if (!push.ok()) return {push.status(), {}};
      if (!*push) continue;
    }
    auto found = GetKey(OutboxKey(m), &w.outbox);
    if (!found.ok()) return {found.status(), {}};
    if (!*found) w.outbox.clear();
    w.push = true;
  }
  AppendResult a;
  // The op is dropped after the commit: its strings move into the result.
  a.message = StoredMessage{
      std::move(o.conversation_id), ++c->last_seq, o.sender, std::move(o.body), now_ms,
      std::move(o.client_msg_id)};
  const std::string& conv = a.message.conversation_id;
  AssignKeyNum(key_, 'M', conv, a.message.seq);
  records::EncodeMessage(a.message, &value_);
  PutKey(batch, key_, value_);
  ref_.clear();
  PutLengthPrefixed(ref_, conv);
  PutVarint(ref_, a.message.seq);
  PutKey(batch, dedup_key, ref_);
  AssignMessageRef(value_, conv, a.message.seq, o.sender);
  const std::string& feed_value = value_;
  a.fanout.reserve(c->members.size());
  for (size_t i = 0; i < c->members.size(); ++i) {
    const std::string& m = c->members[i];
    MemberWrite& w = members_[i];
    const FeedPos pos = a.fanout.emplace_back(AppendToFeed(batch, m, *w.user, feed_value)).pos;
    if (!w.push) continue;
    OutboxEntry box;
    if (w.outbox.empty() || !DecodeOutbox(w.outbox, &box)) box = OutboxEntry{m, now_ms, 0, 0, 0, 0};
    box.latest_pos = pos;
    ++box.count;
    PutKey(batch, OutboxKey(m), EncodeOutbox(box));
    a.push_users.push_back(m);
  }
  return {Status::Ok(), std::move(a)};
}

Result<ReadMarks> RocksStore::GetMarks(const std::string& conv, const std::string& user) {
  std::string v;
  ReadMarks m;
  auto found = GetKey(Key2('R', conv, user), &v);
  if (!found.ok()) return found.status();
  if (*found && !DecodeMarks(v, &m)) m = ReadMarks{};
  return m;
}

ReceiptResult RocksStore::AppendReceipt(rocksdb::WriteBatch& batch, Receipt r,
                                        const std::vector<std::string>& to) {
  ReceiptResult out;
  std::string value = EncodeReceiptRef(r);
  out.fanout.reserve(to.size());
  for (auto& u : to) out.fanout.push_back(AppendToFeed(batch, u, value));
  out.receipt = std::move(r);
  return out;
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::ConfirmFeed& o, int64_t now_ms) {
  // Every read comes before the first write: a read error fails the op with
  // nothing of it in the batch.
  std::string v;
  // Only committed entries can have reached a device: clamp to the durable head.
  auto head = ReadHead(o.user_id);
  if (!head.ok()) return {head.status(), {}};
  const FeedPos pos = std::min(o.pos, *head);
  std::string dkey = Key2('D', o.user_id, o.device_id);
  DeviceRecord d;
  auto device = GetKey(dkey, &v);
  if (!device.ok()) return {device.status(), {}};
  const bool confirm = *device && DecodeDevice(v, &d) && pos > d.confirmed;
  // The user's furthest confirmed position: receipts for what lies beyond it.
  std::string wkey = Key2('W', o.user_id, "");
  uint64_t scanned = 0;
  auto watermark = GetKey(wkey, &v);
  if (!watermark.ok()) return {watermark.status(), {}};
  if (*watermark) {
    ByteReader r(v);
    if (!r.GetVarint(&scanned)) scanned = 0;
  }
  if (confirm) d.confirmed = pos;
  ReceiptsResult result;
  if (pos <= scanned) {
    if (confirm) PutKey(batch, dkey, EncodeDevice(d));
    return {Status::Ok(), std::move(result)};
  }
  std::map<std::string, uint64_t> newest;  // conversation -> highest seq of the other's messages
  std::string prefix = Key2('F', o.user_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  size_t examined = 0;
  FeedPos reached = scanned;
  for (it->Seek(KeyNum('F', o.user_id, scanned + 1)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    FeedPos p = GetFixed64BE(it->key().data() + prefix.size());
    if (p > pos) break;
    if (examined++ == o.max_scan) {
      result.resume_from = p;
      break;
    }
    reached = p;
    FeedEntry e;
    if (!DecodeFeedValue(it->value().ToStringView(), &e)) return {Corrupt("feed entry"), {}};
    if (e.kind == FeedEntry::Kind::kMessage && e.message.sender != o.user_id) {
      auto& n = newest[e.message.conversation_id];
      n = std::max(n, e.message.seq);
    }
  }
  if (!it->status().ok()) return {FromRocks(it->status()), {}};
  // The receipts to write: each conversation's marks, members and their feeds' heads.
  struct Delivered {
    const std::string* conversation;
    ReadMarks marks;  // with the new delivered mark
    bool known;       // the conversation was found: receipts go to `others`
    std::vector<std::string> others;
  };
  std::vector<Delivered> delivered;
  for (auto& [conv_id, seq] : newest) {
    auto marks = GetMarks(conv_id, o.user_id);
    if (!marks.ok()) return {marks.status(), {}};
    if (seq <= marks->delivered) continue;
    Delivered& r = delivered.emplace_back(Delivered{&conv_id, *marks, false, {}});
    r.marks.delivered = seq;
    auto loaded = LoadConversation(conv_id);
    if (!loaded.ok()) return {loaded.status(), {}};
    if (const Conversation* c = *loaded) {
      r.known = true;
      for (auto& member : c->members)
        if (member != o.user_id) r.others.push_back(member);
    }
    if (Status s = LoadHeads(r.others); !s.ok()) return {s, {}};
  }
  if (confirm) PutKey(batch, dkey, EncodeDevice(d));
  PutKey(batch, wkey, [&] {
    std::string w;
    PutVarint(w, reached);
    return w;
  }());
  for (auto& r : delivered) {
    PutKey(batch, Key2('R', *r.conversation, o.user_id), EncodeMarks(r.marks));
    if (!r.known) continue;
    result.receipts.push_back(AppendReceipt(
        batch,
        Receipt{*r.conversation, o.user_id, ReceiptStatus::kDelivered, r.marks.delivered, now_ms},
        r.others));
  }
  return {Status::Ok(), std::move(result)};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::MarkRead& o, int64_t now_ms) {
  auto loaded = LoadConversation(o.conversation_id);
  if (!loaded.ok()) return {loaded.status(), {}};
  Conversation* c = *loaded;
  if (!c || !c->HasMember(o.user_id))
    return {Status(ErrorCode::kForbidden, "not a member of this conversation"), {}};
  if (o.seq > c->last_seq)
    return {Status(ErrorCode::kBadRequest, "seq is beyond the conversation's last message"), {}};
  auto marks = GetMarks(o.conversation_id, o.user_id);
  if (!marks.ok()) return {marks.status(), {}};
  ReadMarks m = *marks;
  ReceiptsResult result;
  if (o.seq <= m.read) return {Status::Ok(), std::move(result)};
  // The newest message of the other member at or before `seq`: a user's own
  // messages never move their marks.
  uint64_t found = 0;
  std::string prefix = Key2('M', o.conversation_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekForPrev(KeyNum('M', o.conversation_id, o.seq));
       it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    StoredMessage msg;
    if (!records::DecodeMessage(it->value().ToStringView(), &msg)) return {Corrupt("message"), {}};
    if (msg.seq <= m.read) break;
    if (msg.sender != o.user_id) {
      found = msg.seq;
      break;
    }
  }
  if (!it->status().ok()) return {FromRocks(it->status()), {}};
  if (found == 0) return {Status::Ok(), std::move(result)};
  if (Status s = LoadHeads(c->members); !s.ok()) return {s, {}};
  m.read = found;
  m.delivered = std::max(m.delivered, found);
  PutKey(batch, Key2('R', o.conversation_id, o.user_id), EncodeMarks(m));
  // Into both feeds: the other member learns it was read, the reader's other
  // devices learn to clear their unread count.
  result.receipts.push_back(AppendReceipt(
      batch, Receipt{o.conversation_id, o.user_id, ReceiptStatus::kRead, found, now_ms},
      c->members));
  return {Status::Ok(), std::move(result)};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::SetLastSeen& o, int64_t) {
  std::string v;
  UserRecord u;
  auto found = GetKey(UserKey(o.user_id), &v);
  if (!found.ok()) return {found.status(), {}};
  if (!*found || !records::DecodeUser(v, &u))
    return {Status(ErrorCode::kNotFound, "no such user"), {}};
  u.last_seen_ms = o.last_seen_ms;
  PutKey(batch, UserKey(o.user_id), records::EncodeUser(u));
  return {};
}

Result<bool> RocksStore::UserHasPush(const std::string& user, CachedUser& u) {
  if (u.push >= 0) return u.push != 0;
  bool has = false;
  std::string prefix = Key2('D', user, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    // A device written earlier in this batch is in the overlay, newer than the DB.
    std::string v;
    DeviceRecord d;
    auto found = GetKey(it->key().ToStringView(), &v);
    if (!found.ok()) return found.status();
    if (*found && DecodeDevice(v, &d) && d.push.provider != PushRegistration::Provider::kNone)
      has = true;
  }
  if (!it->status().ok()) return FromRocks(it->status());
  u.push = has ? 1 : 0;
  return has;
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::SetPush& o, int64_t) {
  std::string key = Key2('D', o.user_id, o.device_id), v;
  DeviceRecord d;
  auto found = GetKey(key, &v);
  if (!found.ok()) return {found.status(), {}};
  if (!*found || !DecodeDevice(v, &d)) return {Status(ErrorCode::kNotFound, "no such device"), {}};
  d.push = o.push;
  PutKey(batch, std::move(key), EncodeDevice(d));
  // Another device may still have one: read again at the next message, unless this one has.
  if (o.push.provider != PushRegistration::Provider::kNone)
    CachedUserOf(o.user_id).push = 1;
  else if (auto it = users_.find(o.user_id); it != users_.end())
    it->second.push = -1;
  return {};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::CompleteOutbox& o,
                             int64_t now_ms) {
  std::string v;
  OutboxEntry box;
  auto found = GetKey(OutboxKey(o.user_id), &v);
  if (!found.ok()) return {found.status(), {}};
  if (!*found || !DecodeOutbox(v, &box)) return {};
  if (box.latest_pos <= o.latest_pos) {
    DeleteKey(batch, OutboxKey(o.user_id));
    return {};
  }
  // Messages arrived while the push was on its way: they stay.
  box.count = box.count > o.count ? box.count - o.count : 1;
  box.first_ms = now_ms;
  box.attempts = 0;
  box.next_try_ms = 0;
  PutKey(batch, OutboxKey(o.user_id), EncodeOutbox(box));
  return {};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::RetryOutbox& o, int64_t) {
  std::string v;
  OutboxEntry box;
  auto found = GetKey(OutboxKey(o.user_id), &v);
  if (!found.ok()) return {found.status(), {}};
  if (!*found || !DecodeOutbox(v, &box)) return {};
  box.attempts = o.attempts;
  box.next_try_ms = o.next_try_ms;
  PutKey(batch, OutboxKey(o.user_id), EncodeOutbox(box));
  return {};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::Expire& o, int64_t) {
  // The floors first, each only ever raised; every read before the first write.
  std::string v;
  std::vector<std::pair<std::string, std::string>> puts;
  for (auto& [user, pos] : o.feed_floors) {
    std::string key = FeedFloorKey(user);
    auto found = GetKey(key, &v);
    if (!found.ok()) return {found.status(), {}};
    uint64_t floor = 0;
    if (*found) {
      ByteReader r(v);
      if (!r.GetVarint(&floor)) floor = 0;
    }
    if (pos <= floor) continue;
    std::string value;
    PutVarint(value, pos);
    puts.emplace_back(std::move(key), std::move(value));
  }
  for (auto& [id, seq] : o.conversation_floors) {
    std::string key = ConvKey(id);
    auto found = GetKey(key, &v);
    if (!found.ok()) return {found.status(), {}};
    Conversation c;
    if (!*found) continue;  // no record to keep a floor in (and no conversation to read)
    if (!records::DecodeConversation(v, &c)) return {Corrupt("conversation"), {}};
    if (seq <= c.last_seq) continue;
    c.last_seq = seq;
    puts.emplace_back(std::move(key), records::EncodeConversation(c));
  }
  for (auto& [key, value] : puts) PutKey(batch, key, value);
  for (auto& key : o.keys) DeleteKey(batch, key);
  return {};
}

OpResult RocksStore::ApplyOp(rocksdb::WriteBatch& batch, const op::SetPrivacy& o, int64_t) {
  std::string v;
  UserRecord u;
  auto found = GetKey(UserKey(o.user_id), &v);
  if (!found.ok()) return {found.status(), {}};
  if (!*found || !records::DecodeUser(v, &u))
    return {Status(ErrorCode::kNotFound, "no such user"), {}};
  u.hides_last_seen = o.hides_last_seen;
  PutKey(batch, UserKey(o.user_id), records::EncodeUser(u));
  return {};
}

Status RocksStore::Commit(std::span<WriteOp> ops, int64_t now_ms, std::vector<OpResult>* results) {
  // RocksDB counts into a thread's perf context by default (kEnableCount): a
  // thread-local access through __tls_get_addr at each of a message's ~20 key
  // comparisons, and nothing here reads the counts. The level is the calling
  // thread's; setting it is one thread-local write.
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  if (!batch_ || batch_->GetDataSize() > (1 << 20))
    batch_ = std::make_unique<rocksdb::WriteBatch>();
  rocksdb::WriteBatch& batch = *batch_;
  batch.Clear();  // the overlay was cleared at the end of the last commit
  results->clear();
  results->reserve(ops.size());
  LookUpDedupKeys(ops);
  for (auto& op : ops) results->push_back(Apply(batch, op, now_ms));
  for (auto& v : dedup_values_) v.Reset();  // what the lookups pinned (a memtable, a block)
  rocksdb::WriteOptions wo;
  wo.sync = true;
  auto s = db_->Write(wo, &batch);
  ClearOverlay();
  if (!s.ok()) {
    // The cached counters ran ahead of what is durable: forget them.
    conversations_.clear();
    users_.clear();
    results->clear();
    return FromRocks(s);
  }
  if (conversations_.size() > options_.max_cached) conversations_.clear();
  if (users_.size() > options_.max_cached) users_.clear();
  return Status::Ok();
}

// ---- readers (any thread) ------------------------------------------------------

Result<UserRecord> RocksStore::GetUser(std::string_view user_id) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), UserKey(user_id), &v);
  if (s.IsNotFound()) return Status(ErrorCode::kNotFound, "no such user");
  if (!s.ok()) return FromRocks(s);
  UserRecord u;
  if (!records::DecodeUser(v, &u)) return Corrupt("user");
  return u;
}

Result<DeviceSession> RocksStore::LookupToken(std::string_view token_hash) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), TokenKey(token_hash), &v);
  if (s.IsNotFound()) return Status(ErrorCode::kUnauthorized, "token is not valid");
  if (!s.ok()) return FromRocks(s);
  auto sep = v.find('\0');
  if (sep == std::string::npos) return Corrupt("token");
  return DeviceSession{v.substr(0, sep), v.substr(sep + 1)};
}

Result<Conversation> RocksStore::GetConversation(std::string_view id) {
  std::unique_ptr<rocksdb::Iterator> messages(db_->NewIterator(rocksdb::ReadOptions()));
  return ReadConversation(id, *messages);
}

Result<Conversation> RocksStore::ReadConversation(std::string_view id,
                                                  rocksdb::Iterator& messages) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), ConvKey(id), &v);
  if (s.IsNotFound()) return Status(ErrorCode::kNotFound, "no such conversation");
  if (!s.ok()) return FromRocks(s);
  Conversation c;
  if (!records::DecodeConversation(v, &c)) return Corrupt("conversation");
  // The last seq is the newest message's (the record keeps the one it was
  // written with: 0 since creation, or a store's older value).
  auto newest = NewestNum(messages, 'M', id);
  if (!newest.ok()) return newest.status();
  c.last_seq = std::max(c.last_seq, *newest);
  return c;
}

Result<std::vector<ConversationSummary>> RocksStore::ListConversations(std::string_view user_id) {
  std::vector<ConversationSummary> out;
  std::string prefix = Key2('L', user_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  std::unique_ptr<rocksdb::Iterator> messages(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto id = it->key().ToStringView().substr(prefix.size());
    auto c = ReadConversation(id, *messages);
    if (!c.ok()) return c.status();
    ConversationSummary summary{c->id, c->members, c->last_seq, 0, 0};
    std::string mv;
    ReadMarks m;
    if (db_->Get(rocksdb::ReadOptions(), Key2('R', c->id, user_id), &mv).ok() &&
        DecodeMarks(mv, &m)) {
      summary.read_seq = m.read;
      summary.delivered_seq = m.delivered;
    }
    out.push_back(std::move(summary));
  }
  if (!it->status().ok()) return FromRocks(it->status());
  return out;
}

Result<std::vector<StoredMessage>> RocksStore::History(std::string_view conversation_id,
                                                       uint64_t before_seq, size_t limit) {
  std::vector<StoredMessage> out;
  if (before_seq <= 1 || limit == 0) return out;
  std::string prefix = Key2('M', conversation_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekForPrev(KeyNum('M', conversation_id, before_seq - 1));
       it->Valid() && it->key().starts_with(prefix) && out.size() < limit; it->Prev()) {
    StoredMessage m;
    if (!records::DecodeMessage(it->value().ToStringView(), &m)) return Corrupt("message");
    out.push_back(std::move(m));
  }
  if (!it->status().ok()) return FromRocks(it->status());
  return out;
}

Result<FeedPage> RocksStore::ReadFeed(std::string_view user_id, FeedPos after, size_t limit) {
  FeedPage page;
  FeedPos first_read = 0;
  std::string prefix = Key2('F', user_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  std::string mv;
  for (it->Seek(KeyNum('F', user_id, after + 1)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    if (page.entries.size() == limit) {
      page.has_more = true;
      break;
    }
    auto k = it->key();
    if (k.size() != prefix.size() + 8) return Corrupt("feed key");
    FeedEntry e;
    e.pos = GetFixed64BE(k.data() + prefix.size());
    if (page.last_pos == 0) first_read = e.pos;
    page.last_pos = e.pos;
    if (!DecodeFeedValue(it->value().ToStringView(), &e)) return Corrupt("feed entry");
    if (e.kind == FeedEntry::Kind::kMessage) {
      auto s = db_->Get(rocksdb::ReadOptions(),
                        KeyNum('M', e.message.conversation_id, e.message.seq), &mv);
      // A message that retention removed before this reference (a sweep
      // runs feeds first, but the times of a feed and of a conversation can
      // disagree after the clock was set back): nothing to show.
      if (s.IsNotFound()) continue;
      if (!s.ok()) return FromRocks(s);
      if (!records::DecodeMessage(mv, &e.message)) return Corrupt("message");
    }
    page.entries.push_back(std::move(e));
  }
  if (!it->status().ok()) return FromRocks(it->status());
  // Entries after `after` that retention removed: when the first entry read
  // is not `after + 1` (positions are consecutive), or none was, the floor says.
  if (first_read != after + 1) {
    auto floor = ReadFeedFloor(user_id);
    if (!floor.ok()) return floor.status();
    // A sweep that committed since the entries were read: they are still returned.
    if (*floor > after) page.removed_to = first_read ? std::min(*floor, first_read - 1) : *floor;
  }
  return page;
}

Result<FeedPos> RocksStore::FeedHead(std::string_view user_id) { return ReadHead(user_id); }

Result<std::vector<DeviceInfo>> RocksStore::Devices(std::string_view user_id) {
  std::vector<DeviceInfo> out;
  std::string prefix = Key2('D', user_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    DeviceRecord d;
    if (!DecodeDevice(it->value().ToStringView(), &d)) return Corrupt("device");
    out.push_back(DeviceInfo{it->key().ToString().substr(prefix.size()), std::move(d.name),
                             d.confirmed, d.push});
  }
  if (!it->status().ok()) return FromRocks(it->status());
  return out;
}

Result<OutboxEntry> RocksStore::GetOutbox(std::string_view user_id) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), OutboxKey(user_id), &v);
  if (s.IsNotFound()) return Status(ErrorCode::kNotFound, "empty outbox");
  if (!s.ok()) return FromRocks(s);
  OutboxEntry o;
  if (!DecodeOutbox(v, &o)) return Corrupt("outbox");
  o.user_id = std::string(user_id);
  return o;
}

Result<std::vector<OutboxEntry>> RocksStore::ListOutbox(size_t limit) {
  std::vector<OutboxEntry> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("O"); it->Valid() && it->key().starts_with("O") && out.size() < limit; it->Next()) {
    OutboxEntry o;
    if (!DecodeOutbox(it->value().ToStringView(), &o)) return Corrupt("outbox");
    o.user_id = it->key().ToString().substr(1);
    out.push_back(std::move(o));
  }
  if (!it->status().ok()) return FromRocks(it->status());
  return out;
}

// Feeds first, user by user: a feed loses its entries up to the first one
// committed at or after `before_ms` (a receipt's time, or its message's).
// Then messages, conversation by conversation, with their dedup keys. A
// resume key is the next key to look at; "F" or "M" starts a phase.
Result<ExpiredSlice> RocksStore::FindExpired(int64_t before_ms, std::string_view resume,
                                             size_t max_keys) {
  ExpiredSlice out;
  std::string at = resume.empty() ? std::string("F") : std::string(resume);
  auto full = [&] { return out.expire.keys.size() >= max_keys; };
  // The block cache is filled as usual: without it (fill_cache false) a feed's
  // references re-read their messages' blocks, and a slice cost 1.8 times the
  // CPU (micro_bench BM_ExpireSlices). A sweep reads about an hour's worth of
  // old messages, once.
  const rocksdb::ReadOptions ro;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  std::string mv;
  if (at[0] == 'F') {
    FeedEntry e;
    StoredMessage m;
    // Each feed this slice takes entries from gets its newest one removed as its floor.
    std::string floor_user;
    FeedPos floor_pos = 0;
    auto add_floor = [&] {
      if (!floor_user.empty())
        out.expire.feed_floors.emplace_back(std::move(floor_user), floor_pos);
      floor_user.clear();
    };
    for (it->Seek(at); it->Valid() && it->key().starts_with("F") && !full();) {
      const std::string_view k = it->key().ToStringView();
      if (k.size() < 11 || k[k.size() - 9] != '\0') return Corrupt("feed key");
      if (!DecodeFeedValue(it->value().ToStringView(), &e)) return Corrupt("feed entry");
      int64_t ts = e.receipt.ts;
      if (e.kind == FeedEntry::Kind::kMessage) {
        auto s = db_->Get(ro, KeyNum('M', e.message.conversation_id, e.message.seq), &mv);
        if (s.IsNotFound()) {
          ts = std::numeric_limits<int64_t>::min();  // its message is gone already
        } else if (!s.ok()) {
          return FromRocks(s);
        } else {
          if (!records::DecodeMessage(mv, &m)) return Corrupt("message");
          ts = m.ts;
        }
      }
      std::string prefix(k.substr(0, k.size() - 8));
      if (ts >= before_ms) {  // this feed is kept from here on: the next user's
        it->Seek(PastPrefix(prefix));
        continue;
      }
      const FeedPos pos = GetFixed64BE(k.data() + prefix.size());
      std::string_view user = std::string_view(prefix).substr(1, prefix.size() - 2);
      if (user != floor_user) {
        add_floor();
        floor_user = user;
      }
      floor_pos = pos;
      out.expire.keys.emplace_back(k);
      ++out.feed_entries;
      it->Next();
    }
    add_floor();
    if (!it->status().ok()) return FromRocks(it->status());
    if (it->Valid() && it->key().starts_with("F")) {
      out.resume = it->key().ToString();
      return out;
    }
    at = "M";
  }
  if (at[0] == 'M') {
    StoredMessage m;
    for (it->Seek(at); it->Valid() && it->key().starts_with("M") && !full();) {
      const std::string_view k = it->key().ToStringView();
      if (k.size() < 11 || k[k.size() - 9] != '\0') return Corrupt("message key");
      if (!records::DecodeMessage(it->value().ToStringView(), &m)) return Corrupt("message");
      std::string prefix(k.substr(0, k.size() - 8));
      if (m.ts >= before_ms) {  // this conversation is kept from here on
        it->Seek(PastPrefix(prefix));
        continue;
      }
      out.expire.keys.emplace_back(k);
      if (!m.client_msg_id.empty()) out.expire.keys.push_back(Key2('X', m.sender, m.client_msg_id));
      ++out.messages;
      it->Next();
      if (!it->Valid() || !it->key().starts_with(prefix))
        out.expire.conversation_floors.emplace_back(prefix.substr(1, prefix.size() - 2), m.seq);
    }
    if (!it->status().ok()) return FromRocks(it->status());
    if (it->Valid() && it->key().starts_with("M")) {
      out.resume = it->key().ToString();
      return out;
    }
  }
  out.done = true;
  return out;
}

Status RocksStore::Checkpoint(const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path path = std::filesystem::absolute(dir, ec);
  if (ec) return Status(ErrorCode::kBadRequest, "backup: " + dir + ": " + ec.message());
  if (std::filesystem::exists(path, ec))
    return Status(ErrorCode::kConflict, "backup: " + path.string() + " exists already");
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return Status(ErrorCode::kUnavailable, "backup: " + ec.message());
  // The operator reads these: RocksDB's own text, not only its kind.
  auto failed = [](const rocksdb::Status& s) {
    return Status(ErrorCode::kUnavailable, "backup: " + s.ToString());
  };
  rocksdb::Checkpoint* raw = nullptr;
  if (auto s = rocksdb::Checkpoint::Create(db_.get(), &raw); !s.ok()) return failed(s);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  auto s = checkpoint->CreateCheckpoint(path.string(), /*log_size_for_flush=*/0);
  if (!s.ok()) return failed(s);
  return Status::Ok();
}

Status RocksStore::Check() {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), "readyz", &v);
  if (s.ok() || s.IsNotFound()) return Status::Ok();
  return FromRocks(s);
}

StoreHealth RocksStore::Health() {
  StoreHealth h;
  for (rocksdb::ColumnFamilyHandle* family : {db_->DefaultColumnFamily(), dedup_}) {
    std::string files;
    uint64_t pending = 0;
    if (db_->GetProperty(family, "rocksdb.num-files-at-level0", &files))
      h.level0_files += std::strtoull(files.c_str(), nullptr, 10);
    if (db_->GetIntProperty(family, rocksdb::DB::Properties::kEstimatePendingCompactionBytes,
                            &pending))
      h.pending_compaction_bytes += pending;
    uint64_t tables = 0;
    if (db_->GetIntProperty(family, rocksdb::DB::Properties::kLiveSstFilesSize, &tables))
      h.table_bytes += tables;
  }
  uint64_t v = 0;
  if (db_->GetIntProperty(rocksdb::DB::Properties::kActualDelayedWriteRate, &v))
    h.delayed_write_rate = v;
  if (db_->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &v)) h.writes_stopped = v != 0;
  std::map<std::string, std::string> stats;
  if (db_->GetMapProperty(rocksdb::DB::Properties::kDBStats, &stats)) {
    if (auto it = stats.find("db.user_write_stall_micros"); it != stats.end())
      h.write_stall_us = static_cast<uint64_t>(std::strtod(it->second.c_str(), nullptr));
  }
  struct statvfs disk {};
  if (::statvfs(options_.path.c_str(), &disk) == 0)
    h.disk_free_bytes = static_cast<uint64_t>(disk.f_bavail) * disk.f_frsize;
  const WalSyncCounters& syncs =
      own_env_ ? *own_env_->counters : *StoreEnv(options_.wal_sync, options_.wal_write).counters;
  h.wal_fdatasyncs = syncs.fdatasyncs.load(std::memory_order_relaxed);
  h.wal_flushes = syncs.flushes.load(std::memory_order_relaxed);
  return h;
}

}  // namespace pigeon
