// MessageBus: carries what must reach a user's sockets, wherever they are.
// The embedded backend hands everything to this process's sink; the cluster
// backend publishes to the Redis channel of each node the user is on.
//
// Ordering: entries published for one user from one thread reach that user's
// sockets in publish order (the committer publishes in commit order).
// Delivery is best effort: a lost entry is still in the user's feed.
//
// A feed entry's frame is made only for a user the entry can reach (a socket
// on this node, or with the cluster backend a node the user is on): most
// recipients of a busy server are offline, and for one online the lookup that
// finds its sockets is the only one made.
#pragma once

#include <cstdint>
#include <string>

#include "core/cursor.h"
#include "core/function_ref.h"
#include "core/shared_frame.h"

namespace pigeon {

// What a node does with what the bus brings it (the gateway's registry).
class DeliverySink {
 public:
  virtual ~DeliverySink() = default;
  // A committed feed entry at `pos` of `user`'s feed: its frame, made by
  // `frame` if `user` has a socket here (called at most once, before return).
  virtual void DeliverFeedEntry(const std::string& user, FeedPos pos,
                                FunctionRef<SharedFrame()> frame) = 0;
  // A frame that is not in the feed (typing).
  virtual void DeliverEphemeral(const std::string& user, SharedFrame frame) = 0;
  // Close the sockets of one device (logout), with a WebSocket close code.
  virtual void CloseDevice(const std::string& user, const std::string& device, uint16_t code) = 0;
  // `user` went online or offline (last_seen_ms: when it was last online).
  virtual void PresenceChanged(const std::string& user, bool online, int64_t last_seen_ms) = 0;
  // `user` changed its privacy setting.
  virtual void PrivacyChanged(const std::string& user, bool hides_last_seen) = 0;
};

class MessageBus {
 public:
  virtual ~MessageBus() = default;
  // The sink for this node; set once, before any publish.
  virtual void Attach(DeliverySink* sink) = 0;
  // `frame` is called at most once, before return, if the entry reaches `user`.
  virtual void PublishFeedEntry(const std::string& user, FeedPos pos,
                                FunctionRef<SharedFrame()> frame) = 0;
  virtual void PublishEphemeral(const std::string& user, SharedFrame frame) = 0;
  virtual void PublishCloseDevice(const std::string& user, const std::string& device,
                                  uint16_t code) = 0;
  // To every node (whoever watches `user`).
  virtual void PublishPresence(const std::string& user, bool online, int64_t last_seen_ms) = 0;
  virtual void PublishPrivacy(const std::string& user, bool hides_last_seen) = 0;
};

}  // namespace pigeon
