#include "presence/local/local_presence.h"

#include <functional>

namespace pigeon {

LocalPresence::Shard& LocalPresence::ShardFor(const std::string& user) {
  return shards_[std::hash<std::string>{}(user) % shards_.size()];
}

bool LocalPresence::SocketOpened(const std::string& user) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  return ++s.sockets[user] == 1;
}

bool LocalPresence::SocketClosed(const std::string& user) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  auto it = s.sockets.find(user);
  if (it == s.sockets.end()) return false;
  if (--it->second > 0) return false;
  s.sockets.erase(it);
  return true;
}

bool LocalPresence::IsOnline(const std::string& user) {
  auto& s = ShardFor(user);
  std::lock_guard lock(s.mu);
  return s.sockets.count(user) > 0;
}

}  // namespace pigeon
