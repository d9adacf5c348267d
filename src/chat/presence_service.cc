#include "chat/presence_service.h"

#include <vector>

#include "core/ids.h"
#include "core/thread_name.h"

namespace pigeon {

PresenceService::PresenceService(PresenceDirectory& directory, MessageBus& bus,
                                 CommitPipeline& pipeline, MessageStore& store, Options options)
    : directory_(directory),
      bus_(bus),
      pipeline_(pipeline),
      store_(store),
      options_(options),
      thread_([this] { Run(); }) {}

PresenceService::~PresenceService() { Stop(); }

void PresenceService::SocketOpened(const std::string& user) {
  if (!directory_.SocketOpened(user)) return;  // already online
  {
    std::lock_guard lock(mu_);
    if (pending_.erase(user)) return;  // back within the debounce window: nothing changed
  }
  bus_.PublishPresence(user, true, NowMs());
}

void PresenceService::SocketClosed(const std::string& user) {
  if (!directory_.SocketClosed(user)) return;  // other sockets remain
  std::lock_guard lock(mu_);
  pending_[user] = NowMs();
}

void PresenceService::GoOffline(const std::string& user, int64_t closed_at, bool announce) {
  auto done = [this, user, closed_at, announce](OpResult& r) {
    // Announce only if the user did not come back meanwhile.
    if (announce && r.status.ok() && !directory_.IsOnline(user))
      bus_.PublishPresence(user, false, closed_at);
  };
  // If the queue is full, last_seen stays at its previous value: presence is soft state.
  (void)pipeline_.Submit(op::SetLastSeen{user, closed_at}, std::move(done));
}

void PresenceService::Run() {
  NameThisThread("pg-presence");
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(
        lock, std::chrono::milliseconds(std::max<int64_t>(10, options_.offline_debounce_ms / 4)));
    const int64_t now = NowMs();
    std::vector<std::pair<std::string, int64_t>> due;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (now - it->second >= options_.offline_debounce_ms) {
        due.emplace_back(it->first, it->second);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    for (auto& [user, closed_at] : due)
      if (!directory_.IsOnline(user)) GoOffline(user, closed_at, true);
    lock.lock();
  }
}

void PresenceService::Stop() {
  std::map<std::string, int64_t> rest;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    rest.swap(pending_);
  }
  cv_.notify_one();
  thread_.join();
  for (auto& [user, closed_at] : rest) GoOffline(user, closed_at, false);
}

Result<PresenceService::View> PresenceService::Get(const std::string& viewer,
                                                   const std::string& user) {
  auto target = store_.GetUser(user);
  if (!target.ok()) return target.status();
  bool viewer_hides = false;
  if (viewer != user) {
    auto v = store_.GetUser(viewer);
    if (!v.ok()) return v.status();
    viewer_hides = v->hides_last_seen;
  }
  View view;
  {
    std::lock_guard lock(mu_);
    view.online = directory_.IsOnline(user) || pending_.count(user) > 0;
  }
  int64_t last_seen = view.online ? NowMs() : (target->last_seen_ms ? target->last_seen_ms : -1);
  view.last_seen_ms = Visible(viewer == user, viewer_hides, target->hides_last_seen, last_seen);
  return view;
}

}  // namespace pigeon
