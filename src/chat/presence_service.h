// PresenceService: online / last seen, on top of a PresenceDirectory.
//
// Online = at least one live authenticated socket. When a user's last socket
// closes, the user stays "online" for `offline_debounce_ms`; if a socket
// reconnects within it, nothing is announced (a flap sprays no offline/online
// pair at subscribers). Otherwise last_seen (the moment the last socket
// closed) is committed, then "offline" is announced on the bus. "Online" is
// announced when the first socket opens, unless it ends a debounce window.
//
// Privacy: a user may hide last_seen ("nobody"); as in WhatsApp, one who
// hides theirs sees nobody else's. One always sees one's own.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "bus/message_bus.h"
#include "chat/commit_pipeline.h"
#include "presence/presence_directory.h"
#include "store/message_store.h"

namespace pigeon {

class PresenceService {
 public:
  struct Options {
    int64_t offline_debounce_ms = 2000;  // spec: offline within 5 s of the last close
  };
  PresenceService(PresenceDirectory& directory, MessageBus& bus, CommitPipeline& pipeline,
                  MessageStore& store, Options options);
  ~PresenceService();  // Stop()

  // A socket of `user` opened or closed on this node. Non-blocking.
  void SocketOpened(const std::string& user);
  void SocketClosed(const std::string& user);

  struct View {
    bool online = false;
    int64_t last_seen_ms = -1;  // -1: null (never connected, or hidden)
  };
  // What `viewer` may see of `user` now. Blocking (reads the store).
  Result<View> Get(const std::string& viewer, const std::string& user);
  // The last_seen a viewer may see: -1 when hidden.
  static int64_t Visible(bool self, bool viewer_hides, bool user_hides, int64_t last_seen_ms) {
    if (!self && (viewer_hides || user_hides)) return -1;
    return last_seen_ms;
  }

  // Commits last_seen for every user still in a debounce window, then stops.
  void Stop();

 private:
  void Run();
  void GoOffline(const std::string& user, int64_t closed_at, bool announce);

  PresenceDirectory& directory_;
  MessageBus& bus_;
  CommitPipeline& pipeline_;
  MessageStore& store_;
  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int64_t> pending_;  // user -> when its last socket closed
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pigeon
