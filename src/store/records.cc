#include "store/records.h"

#include "core/bytes.h"

namespace pigeon::records {

// Every record starts with a version byte so that the format can evolve.
static constexpr char kV1 = 1;

std::string EncodeUser(const UserRecord& u) {
  std::string out(1, kV1);
  PutLengthPrefixed(out, u.user_id);
  PutLengthPrefixed(out, u.password_hash);
  PutVarint(out, static_cast<uint64_t>(u.created_ms));
  PutVarint(out, static_cast<uint64_t>(u.last_seen_ms));
  PutVarint(out, u.hides_last_seen ? 1 : 0);  // flags
  return out;
}

bool DecodeUser(std::string_view in, UserRecord* u) {
  if (in.empty() || in[0] != kV1) return false;
  ByteReader r(in.substr(1));
  uint64_t created, seen;
  if (!r.GetString(&u->user_id) || !r.GetString(&u->password_hash) || !r.GetVarint(&created) ||
      !r.GetVarint(&seen))
    return false;
  u->created_ms = static_cast<int64_t>(created);
  u->last_seen_ms = static_cast<int64_t>(seen);
  uint64_t flags = 0;
  if (!r.done() && !r.GetVarint(&flags)) return false;
  u->hides_last_seen = flags & 1;
  return true;
}

std::string EncodeConversation(const Conversation& c) {
  std::string out(1, kV1);
  PutLengthPrefixed(out, c.id);
  PutVarint(out, c.members.size());
  for (auto& m : c.members) PutLengthPrefixed(out, m);
  PutVarint(out, c.last_seq);
  return out;
}

bool DecodeConversation(std::string_view in, Conversation* c) {
  if (in.empty() || in[0] != kV1) return false;
  ByteReader r(in.substr(1));
  uint64_t n;
  if (!r.GetString(&c->id) || !r.GetVarint(&n) || n > 1024) return false;
  c->members.resize(n);
  for (auto& m : c->members)
    if (!r.GetString(&m)) return false;
  return r.GetVarint(&c->last_seq);
}

std::string EncodeMessage(const StoredMessage& m) {
  std::string out;
  EncodeMessage(m, &out);
  return out;
}

void EncodeMessage(const StoredMessage& m, std::string* out) {
  out->assign(1, kV1);
  out->reserve(m.body.size() + m.conversation_id.size() + m.sender.size() + m.client_msg_id.size() +
               48);
  PutLengthPrefixed(*out, m.conversation_id);
  PutVarint(*out, m.seq);
  PutLengthPrefixed(*out, m.sender);
  PutVarint(*out, static_cast<uint64_t>(m.ts));
  PutLengthPrefixed(*out, m.client_msg_id);
  PutLengthPrefixed(*out, m.body);
}

bool DecodeMessage(std::string_view in, StoredMessage* m) {
  if (in.empty() || in[0] != kV1) return false;
  ByteReader r(in.substr(1));
  uint64_t ts;
  if (!r.GetString(&m->conversation_id) || !r.GetVarint(&m->seq) || !r.GetString(&m->sender) ||
      !r.GetVarint(&ts) || !r.GetString(&m->client_msg_id) || !r.GetString(&m->body))
    return false;
  m->ts = static_cast<int64_t>(ts);
  return true;
}

}  // namespace pigeon::records
