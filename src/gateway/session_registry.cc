#include "gateway/session_registry.h"

#include <algorithm>

#include "gateway/connection.h"

namespace pigeon {

SessionRegistry::Shard& SessionRegistry::ShardFor(const std::string& user) {
  return shards_[std::hash<std::string>{}(user) % shards_.size()];
}

void SessionRegistry::Add(const std::shared_ptr<Connection>& c) {
  auto& s = ShardFor(c->session().user_id);
  std::lock_guard lock(s.mu);
  s.users[c->session().user_id].push_back(c);
}

namespace {

using ConnMap = SessionRegistry::ConnMap;

void EraseFrom(ConnMap& map, const std::string& key, const Connection* c) {
  auto it = map.find(key);
  if (it == map.end()) return;
  auto& v = it->second;
  v.erase(std::remove_if(v.begin(), v.end(), [c](auto& p) { return p.get() == c; }), v.end());
  if (v.empty()) map.erase(it);
}

}  // namespace

void SessionRegistry::Remove(const Connection* c) {
  auto& s = ShardFor(c->session().user_id);
  std::lock_guard lock(s.mu);
  EraseFrom(s.users, c->session().user_id, c);
}

bool SessionRegistry::HasDevice(const std::string& user, const std::string& device) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  if (it == s.users.end()) return false;
  for (auto& c : it->second)
    if (c->session().device_id == device) return true;
  return false;
}

void SessionRegistry::Watch(const std::string& user, const std::shared_ptr<Connection>& c) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  s.watchers[user].push_back(c);
}

void SessionRegistry::Unwatch(const std::string& user, const Connection* c) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  EraseFrom(s.watchers, user, c);
}

void SessionRegistry::PresenceChanged(const std::string& user, bool online, int64_t last_seen_ms) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.watchers.find(user);
  if (it == s.watchers.end()) return;
  for (auto& c : it->second) c->PostPresence(user, online, last_seen_ms);
}

void SessionRegistry::PrivacyChanged(const std::string& user, bool hides_last_seen) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  if (auto it = s.users.find(user); it != s.users.end())
    for (auto& c : it->second) c->PostPrivacy(user, hides_last_seen);
  if (auto it = s.watchers.find(user); it != s.watchers.end())
    for (auto& c : it->second) c->PostPrivacy(user, hides_last_seen);
}

void SessionRegistry::DeliverFeedEntry(const std::string& user, FeedPos pos,
                                       FunctionRef<SharedFrame()> frame) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  if (it == s.users.end()) return;
  const SharedFrame made = frame();
  for (auto& c : it->second) c->PostFeedEntry(pos, made);
}

void SessionRegistry::DeliverEphemeral(const std::string& user, SharedFrame frame) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  if (it == s.users.end()) return;
  for (auto& c : it->second) c->PostEphemeral(frame);
}

void SessionRegistry::CloseDevice(const std::string& user, const std::string& device,
                                  uint16_t code) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  if (it == s.users.end()) return;
  for (auto& c : it->second)
    if (c->session().device_id == device) c->PostClose(code, "logged out");
}

}  // namespace pigeon
