// SessionRegistry: this node's authenticated WebSockets by user. It is the
// DeliverySink the MessageBus hands entries to. Sharded by user; a shard's
// lock is held only to find sockets and post to them (no I/O under a lock).
#pragma once

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus/message_bus.h"
#include "core/string_hash.h"

namespace pigeon {

class Connection;

class SessionRegistry final : public DeliverySink {
 public:
  // Open addressing: a delivery's lookup touches a group of slots, not a
  // bucket and then a node.
  // A lookup hashes the user's key once: the same hash picks the shard
  // (ShardOf) and the slot in its tables (a registration hashes it again to
  // insert).
  using ConnMap = boost::unordered_flat_map<std::string, std::vector<std::shared_ptr<Connection>>,
                                            StringHash, StringEqual>;
  void Add(const std::shared_ptr<Connection>& c);
  // Whether the device has a live authenticated socket on this node.
  bool HasDevice(const std::string& user, const std::string& device);
  void Remove(const Connection* c);
  // Presence subscriptions: `c` hears of `user`'s changes until Unwatch.
  void Watch(const std::string& user, const std::shared_ptr<Connection>& c);
  void Unwatch(const std::string& user, const Connection* c);

  void DeliverFeedEntry(const std::string& user, FeedPos pos,
                        FunctionRef<SharedFrame()> frame) override;
  void DeliverEphemeral(const std::string& user, SharedFrame frame) override;
  void CloseDevice(const std::string& user, const std::string& device, uint16_t code) override;
  void PresenceChanged(const std::string& user, bool online, int64_t last_seen_ms) override;
  void PrivacyChanged(const std::string& user, bool hides_last_seen) override;

 private:
  struct Shard {
    std::mutex mu;
    ConnMap users;
    ConnMap watchers;
  };
  Shard& ShardOf(const HashedString& user);
  std::array<Shard, 64> shards_;
};

}  // namespace pigeon
