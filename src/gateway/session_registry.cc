#include "gateway/session_registry.h"

#include <algorithm>

#include "gateway/connection.h"

namespace pigeon {

SessionRegistry::Shard& SessionRegistry::ShardOf(const HashedString& user) {
  // Bits the shard's tables do not use: they place a key by its hash's top
  // bits and tell keys in a group apart by its lowest byte.
  return shards_[(user.hash >> 32) % shards_.size()];
}

void SessionRegistry::Add(const std::shared_ptr<Connection>& c) {
  const HashedString k(c->session().user_id);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  s.users[c->session().user_id].push_back(c);
}

namespace {

using ConnMap = SessionRegistry::ConnMap;

void EraseFrom(ConnMap& map, const HashedString& key, const Connection* c) {
  auto it = map.find(key);
  if (it == map.end()) return;
  auto& v = it->second;
  v.erase(std::remove_if(v.begin(), v.end(), [c](auto& p) { return p.get() == c; }), v.end());
  if (v.empty()) map.erase(it);
}

}  // namespace

void SessionRegistry::Remove(const Connection* c) {
  const HashedString k(c->session().user_id);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  EraseFrom(s.users, k, c);
}

bool SessionRegistry::HasDevice(const std::string& user, const std::string& device) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(k);
  if (it == s.users.end()) return false;
  for (auto& c : it->second)
    if (c->session().device_id == device) return true;
  return false;
}

void SessionRegistry::Watch(const std::string& user, const std::shared_ptr<Connection>& c) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  s.watchers[user].push_back(c);
}

void SessionRegistry::Unwatch(const std::string& user, const Connection* c) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  EraseFrom(s.watchers, k, c);
}

void SessionRegistry::PresenceChanged(const std::string& user, bool online, int64_t last_seen_ms) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  auto it = s.watchers.find(k);
  if (it == s.watchers.end()) return;
  for (auto& c : it->second) c->PostPresence(user, online, last_seen_ms);
}

void SessionRegistry::PrivacyChanged(const std::string& user, bool hides_last_seen) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  if (auto it = s.users.find(k); it != s.users.end())
    for (auto& c : it->second) c->PostPrivacy(user, hides_last_seen);
  if (auto it = s.watchers.find(k); it != s.watchers.end())
    for (auto& c : it->second) c->PostPrivacy(user, hides_last_seen);
}

void SessionRegistry::DeliverFeedEntry(const std::string& user, FeedPos pos,
                                       FunctionRef<SharedFrame()> frame) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(k);
  if (it == s.users.end()) return;
  const SharedFrame made = frame();
  for (auto& c : it->second) c->PostFeedEntry(pos, made);
}

void SessionRegistry::DeliverEphemeral(const std::string& user, SharedFrame frame) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(k);
  if (it == s.users.end()) return;
  for (auto& c : it->second) c->PostEphemeral(frame);
}

void SessionRegistry::CloseDevice(const std::string& user, const std::string& device,
                                  uint16_t code) {
  const HashedString k(user);
  auto& s = ShardOf(k);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(k);
  if (it == s.users.end()) return;
  for (auto& c : it->second)
    if (c->session().device_id == device) c->PostClose(code, "logged out");
}

}  // namespace pigeon
