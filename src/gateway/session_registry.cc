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

void SessionRegistry::Remove(const Connection* c) {
  auto& s = ShardFor(c->session().user_id);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(c->session().user_id);
  if (it == s.users.end()) return;
  auto& v = it->second;
  v.erase(std::remove_if(v.begin(), v.end(), [c](auto& p) { return p.get() == c; }), v.end());
  if (v.empty()) s.users.erase(it);
}

void SessionRegistry::DeliverFeedEntry(const std::string& user, FeedPos pos, SharedFrame frame) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  if (it == s.users.end()) return;
  for (auto& c : it->second) c->PostFeedEntry(pos, frame);
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
