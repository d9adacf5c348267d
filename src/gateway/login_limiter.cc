#include "gateway/login_limiter.h"

#include <boost/unordered/unordered_flat_map.hpp>

namespace pigeon {

int64_t LoginLimiter::WaitMs(std::string_view user, int64_t now_ms) {
  if (options_.max_failures == 0) return 0;
  std::lock_guard lock(mu_);
  auto it = users_.find(user);
  if (it == users_.end()) return 0;
  const Entry& e = it->second;
  if (now_ms >= e.window_end_ms) {
    users_.erase(it);
    return 0;
  }
  return e.failures >= options_.max_failures ? e.window_end_ms - now_ms : 0;
}

void LoginLimiter::Failed(std::string_view user, int64_t now_ms) {
  if (options_.max_failures == 0) return;
  std::lock_guard lock(mu_);
  auto it = users_.find(user);
  if (it == users_.end()) {
    if (users_.size() >= options_.max_tracked)
      boost::unordered::erase_if(users_,
                                 [&](auto& kv) { return now_ms >= kv.second.window_end_ms; });
    if (users_.size() >= options_.max_tracked) return;
    it = users_.emplace(std::string(user), Entry{}).first;
  }
  Entry& e = it->second;
  if (now_ms >= e.window_end_ms) e = Entry{0, now_ms + options_.window_ms};
  ++e.failures;
}

void LoginLimiter::Succeeded(std::string_view user) {
  if (options_.max_failures == 0) return;
  std::lock_guard lock(mu_);
  if (auto it = users_.find(user); it != users_.end()) users_.erase(it);
}

}  // namespace pigeon
