// PresenceDirectory: who is online. Soft state: losing it never loses a
// message (delivery falls back to the feed). The embedded backend is an
// in-process map; the cluster backend keeps Redis keys with a TTL.
//
// Thread-safe: called from every network thread.
#pragma once

#include <string>

namespace pigeon {

class PresenceDirectory {
 public:
  virtual ~PresenceDirectory() = default;
  // An authenticated socket of `user` opened. True when the user was offline.
  virtual bool SocketOpened(const std::string& user) = 0;
  // One closed. True when it was the user's last socket (now offline).
  virtual bool SocketClosed(const std::string& user) = 0;
  virtual bool IsOnline(const std::string& user) = 0;
};

}  // namespace pigeon
