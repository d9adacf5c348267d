// In-process PresenceDirectory: socket counts per user, sharded by user so
// that network threads rarely contend.
#pragma once

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <mutex>
#include <string>

#include "presence/presence_directory.h"

namespace pigeon {

class LocalPresence final : public PresenceDirectory {
 public:
  bool SocketOpened(const std::string& user) override;
  bool SocketClosed(const std::string& user) override;
  bool IsOnline(const std::string& user) override;

 private:
  struct Shard {
    std::mutex mu;
    boost::unordered_flat_map<std::string, uint32_t, std::hash<std::string>> sockets;
  };
  Shard& ShardFor(const std::string& user);
  std::array<Shard, 64> shards_;
};

}  // namespace pigeon
