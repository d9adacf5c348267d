// In-process PresenceDirectory: socket counts per user, sharded by user so
// that network threads rarely contend.
#pragma once

#include <array>
#include <mutex>
#include <string>
#include <unordered_map>

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
    std::unordered_map<std::string, uint32_t> sockets;
  };
  Shard& ShardFor(const std::string& user);
  std::array<Shard, 64> shards_;
};

}  // namespace pigeon
