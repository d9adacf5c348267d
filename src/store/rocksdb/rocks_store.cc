#include "store/rocksdb/rocks_store.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>

#include "core/bytes.h"
#include "core/ids.h"
#include "store/records.h"

namespace pigeon {
namespace {

Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::Ok();
  return Status(ErrorCode::kUnavailable, "store: " + s.ToString());
}

std::string Key2(char tag, std::string_view a, std::string_view b) {
  std::string k;
  k.reserve(2 + a.size() + b.size());
  k.push_back(tag);
  k.append(a).push_back('\0');
  k.append(b);
  return k;
}

std::string KeyNum(char tag, std::string_view a, uint64_t n) {
  std::string k;
  k.reserve(10 + a.size());
  k.push_back(tag);
  k.append(a).push_back('\0');
  PutFixed64BE(k, n);
  return k;
}

std::string UserKey(std::string_view user) { return std::string(1, 'U').append(user); }
std::string ConvKey(std::string_view id) { return std::string(1, 'C').append(id); }
std::string TokenKey(std::string_view hash) { return std::string(1, 'T').append(hash); }

std::string EncodeFeedRef(std::string_view conv, uint64_t seq) {
  std::string v(1, static_cast<char>(FeedEntry::Kind::kMessage));
  PutLengthPrefixed(v, conv);
  PutVarint(v, seq);
  return v;
}

bool DecodeRef(std::string_view in, std::string* conv, uint64_t* seq) {
  ByteReader r(in);
  return r.GetString(conv) && r.GetVarint(seq);
}

struct DeviceRecord {
  FeedPos confirmed = 0;
  std::string name;
  std::string token_hash;
};

std::string EncodeDevice(const DeviceRecord& d) {
  std::string v;
  PutVarint(v, d.confirmed);
  PutLengthPrefixed(v, d.name);
  PutLengthPrefixed(v, d.token_hash);
  return v;
}

bool DecodeDevice(std::string_view in, DeviceRecord* d) {
  ByteReader r(in);
  return r.GetVarint(&d->confirmed) && r.GetString(&d->name) && r.GetString(&d->token_hash);
}

Status Corrupt(std::string_view what) {
  return Status(ErrorCode::kInternal, "store: corrupt " + std::string(what));
}

}  // namespace

Result<std::unique_ptr<RocksStore>> RocksStore::Open(const Options& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_background_jobs = 2;
  o.write_buffer_size = 64 << 20;
  o.max_total_wal_size = 256 << 20;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, options.path, &raw);
  if (!s.ok()) return Status(ErrorCode::kUnavailable, "cannot open store: " + s.ToString());
  return std::unique_ptr<RocksStore>(new RocksStore(std::unique_ptr<rocksdb::DB>(raw), options));
}

RocksStore::RocksStore(std::unique_ptr<rocksdb::DB> db, Options options)
    : db_(std::move(db)), options_(std::move(options)) {}

RocksStore::~RocksStore() {
  if (db_) (void)db_->Close();
}

// ---- committer side ---------------------------------------------------------

bool RocksStore::GetKey(const std::string& key, std::string* value) {
  if (auto it = overlay_.find(key); it != overlay_.end()) {
    if (!it->second) return false;
    *value = *it->second;
    return true;
  }
  return db_->Get(rocksdb::ReadOptions(), key, value).ok();
}

void RocksStore::PutKey(rocksdb::WriteBatch& batch, std::string key, std::string value) {
  (void)batch.Put(key, value);
  overlay_[std::move(key)] = std::move(value);
}

void RocksStore::DeleteKey(rocksdb::WriteBatch& batch, std::string key) {
  (void)batch.Delete(key);
  overlay_[std::move(key)] = std::nullopt;
}

Conversation* RocksStore::LoadConversation(const std::string& id) {
  if (auto it = conversations_.find(id); it != conversations_.end()) return &it->second;
  std::string v;
  Conversation c;
  if (!db_->Get(rocksdb::ReadOptions(), ConvKey(id), &v).ok() ||
      !records::DecodeConversation(v, &c))
    return nullptr;
  return &conversations_.emplace(id, std::move(c)).first->second;
}

FeedPos RocksStore::ReadHead(std::string_view user) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  std::string prefix = Key2('F', user, "");
  it->SeekForPrev(KeyNum('F', user, ~0ull));
  if (!it->Valid()) return 0;
  auto k = it->key();
  if (k.size() != prefix.size() + 8 || !k.starts_with(prefix)) return 0;
  return GetFixed64BE(k.data() + prefix.size());
}

FeedPos& RocksStore::Head(const std::string& user) {
  if (auto it = heads_.find(user); it != heads_.end()) return it->second;
  return heads_.emplace(user, ReadHead(user)).first->second;
}

OpResult RocksStore::Apply(rocksdb::WriteBatch& batch, const WriteOp& wop, int64_t now_ms) {
  OpResult r;
  std::string v;
  if (auto* o = std::get_if<op::CreateUser>(&wop)) {
    if (GetKey(UserKey(o->user_id), &v)) {
      r.status = Status(ErrorCode::kConflict, "username is taken");
      return r;
    }
    UserRecord u{o->user_id, o->password_hash, now_ms, 0};
    PutKey(batch, UserKey(o->user_id), records::EncodeUser(u));
  } else if (auto* o = std::get_if<op::CreateSession>(&wop)) {
    if (!GetKey(UserKey(o->user_id), &v)) {
      r.status = Status(ErrorCode::kNotFound, "no such user");
      return r;
    }
    PutKey(batch, TokenKey(o->token_hash), Key2('\0', o->user_id, o->device_id).substr(1));
    PutKey(batch, Key2('D', o->user_id, o->device_id),
           EncodeDevice({0, o->device_name, o->token_hash}));
  } else if (auto* o = std::get_if<op::DeleteSession>(&wop)) {
    if (!GetKey(TokenKey(o->token_hash), &v)) {
      r.status = Status(ErrorCode::kUnauthorized, "token is not valid");
      return r;
    }
    auto sep = v.find('\0');
    DeviceSession s{v.substr(0, sep), v.substr(sep + 1)};
    DeleteKey(batch, TokenKey(o->token_hash));
    DeleteKey(batch, Key2('D', s.user_id, s.device_id));
    r.value = std::move(s);
  } else if (auto* o = std::get_if<op::OpenDirectConversation>(&wop)) {
    if (o->user_id == o->peer_id) {
      r.status = Status(ErrorCode::kBadRequest, "the peer is the caller");
      return r;
    }
    if (!GetKey(UserKey(o->peer_id), &v)) {
      r.status = Status(ErrorCode::kNotFound, "no such user");
      return r;
    }
    std::string id = DirectConversationId(o->user_id, o->peer_id);
    Conversation* c = LoadConversation(id);
    if (!c) {
      Conversation fresh{id, {o->user_id, o->peer_id}, 0};
      std::sort(fresh.members.begin(), fresh.members.end());
      c = &conversations_.emplace(id, std::move(fresh)).first->second;
      dirty_conversations_.insert(id);
      for (auto& m : c->members) (void)batch.Put(Key2('L', m, id), "");
    }
    r.value = *c;
  } else if (auto* o = std::get_if<op::AppendMessage>(&wop)) {
    std::string dedup_key = Key2('X', o->sender, o->client_msg_id);
    if (GetKey(dedup_key, &v)) {
      AppendResult a;
      a.duplicate = true;
      std::string mv;
      if (!DecodeRef(v, &a.message.conversation_id, &a.message.seq) ||
          !GetKey(KeyNum('M', a.message.conversation_id, a.message.seq), &mv) ||
          !records::DecodeMessage(mv, &a.message)) {
        r.status = Corrupt("dedup record");
        return r;
      }
      r.value = std::move(a);
      return r;
    }
    Conversation* c = LoadConversation(o->conversation_id);
    if (!c || !c->HasMember(o->sender)) {
      r.status = Status(ErrorCode::kForbidden, "not a member of this conversation");
      return r;
    }
    AppendResult a;
    a.message = StoredMessage{o->conversation_id, ++c->last_seq, o->sender, o->body, now_ms,
                              o->client_msg_id};
    dirty_conversations_.insert(o->conversation_id);
    PutKey(batch, KeyNum('M', o->conversation_id, a.message.seq),
           records::EncodeMessage(a.message));
    std::string ref;
    PutLengthPrefixed(ref, o->conversation_id);
    PutVarint(ref, a.message.seq);
    PutKey(batch, std::move(dedup_key), std::move(ref));
    std::string feed_value = EncodeFeedRef(o->conversation_id, a.message.seq);
    for (auto& m : c->members) {
      FeedPos pos = ++Head(m);
      (void)batch.Put(KeyNum('F', m, pos), feed_value);
      a.fanout.push_back(Delivery{m, pos});
    }
    r.value = std::move(a);
  } else if (auto* o = std::get_if<op::ConfirmFeed>(&wop)) {
    std::string key = Key2('D', o->user_id, o->device_id);
    DeviceRecord d;
    if (GetKey(key, &v) && DecodeDevice(v, &d)) {
      FeedPos pos = std::min(o->pos, Head(o->user_id));
      if (pos > d.confirmed) {
        d.confirmed = pos;
        PutKey(batch, std::move(key), EncodeDevice(d));
      }
    }
  }
  return r;
}

Status RocksStore::Commit(std::span<const WriteOp> ops, int64_t now_ms,
                          std::vector<OpResult>* results) {
  rocksdb::WriteBatch batch;
  overlay_.clear();
  dirty_conversations_.clear();
  results->clear();
  results->reserve(ops.size());
  for (auto& op : ops) results->push_back(Apply(batch, op, now_ms));
  for (auto& id : dirty_conversations_)
    (void)batch.Put(ConvKey(id), records::EncodeConversation(conversations_.at(id)));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  auto s = db_->Write(wo, &batch);
  overlay_.clear();
  if (!s.ok()) {
    // The cached counters ran ahead of what is durable: forget them.
    conversations_.clear();
    heads_.clear();
    results->clear();
    return FromRocks(s);
  }
  if (conversations_.size() > options_.max_cached) conversations_.clear();
  if (heads_.size() > options_.max_cached) heads_.clear();
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
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), ConvKey(id), &v);
  if (s.IsNotFound()) return Status(ErrorCode::kNotFound, "no such conversation");
  if (!s.ok()) return FromRocks(s);
  Conversation c;
  if (!records::DecodeConversation(v, &c)) return Corrupt("conversation");
  return c;
}

Result<std::vector<ConversationSummary>> RocksStore::ListConversations(std::string_view user_id) {
  std::vector<ConversationSummary> out;
  std::string prefix = Key2('L', user_id, "");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto id = it->key().ToStringView().substr(prefix.size());
    auto c = GetConversation(id);
    if (!c.ok()) return c.status();
    out.push_back(ConversationSummary{c->id, c->members, c->last_seq, 0});
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
    auto v = it->value().ToStringView();
    if (v.empty()) return Corrupt("feed entry");
    FeedEntry e;
    e.pos = GetFixed64BE(k.data() + prefix.size());
    e.kind = FeedEntry::Kind::kMessage;
    if (!DecodeRef(v.substr(1), &e.message.conversation_id, &e.message.seq)) {
      return Corrupt("feed entry");
    }
    auto s = db_->Get(rocksdb::ReadOptions(), KeyNum('M', e.message.conversation_id, e.message.seq),
                      &mv);
    if (!s.ok()) return s.IsNotFound() ? Corrupt("feed reference") : FromRocks(s);
    if (!records::DecodeMessage(mv, &e.message)) return Corrupt("message");
    page.entries.push_back(std::move(e));
  }
  if (!it->status().ok()) return FromRocks(it->status());
  return page;
}

Result<FeedPos> RocksStore::FeedHead(std::string_view user_id) { return ReadHead(user_id); }

Status RocksStore::Check() {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), "readyz", &v);
  if (s.ok() || s.IsNotFound()) return Status::Ok();
  return FromRocks(s);
}

}  // namespace pigeon
