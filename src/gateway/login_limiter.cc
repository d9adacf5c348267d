#include "gateway/login_limiter.h"

#include <algorithm>

namespace pigeon {

int64_t LoginLimiter::Begin(std::string_view user, int64_t now_ms, bool* tracked) {
  *tracked = false;
  if (options_.max_failures == 0) return 0;
  std::lock_guard lock(mu_);
  auto it = users_.find(user);
  if (it == users_.end()) {
    if (users_.size() >= options_.max_tracked)
      boost::unordered::erase_if(users_, [&](auto& kv) {
        return kv.second.checking == 0 && now_ms >= kv.second.window_end_ms;
      });
    if (users_.size() >= options_.max_tracked) return 0;  // untracked
    it = users_.emplace(std::string(user), Entry{}).first;
  }
  Entry& e = it->second;
  if (e.window_end_ms != 0 && now_ms >= e.window_end_ms) {  // the window is over
    e.failures = 0;
    e.window_end_ms = 0;
  }
  if (e.failures + e.checking >= options_.max_failures) {
    // Locked by failures: until the window ends. By attempts still being
    // checked: until they end, so try again shortly.
    return e.failures >= options_.max_failures ? std::max<int64_t>(1, e.window_end_ms - now_ms)
                                               : 1000;
  }
  ++e.checking;
  *tracked = true;
  return 0;
}

void LoginLimiter::End(std::string_view user, Outcome outcome, int64_t now_ms) {
  if (options_.max_failures == 0) return;
  std::lock_guard lock(mu_);
  auto it = users_.find(user);
  if (it == users_.end()) return;
  Entry& e = it->second;
  --e.checking;
  if (outcome == Outcome::kSucceeded) {
    e.failures = 0;
    e.window_end_ms = 0;
  } else if (outcome == Outcome::kFailed) {
    if (e.window_end_ms == 0 || now_ms >= e.window_end_ms) {
      e.failures = 0;
      e.window_end_ms = now_ms + options_.window_ms;
    }
    ++e.failures;
  }
  if (e.checking == 0 && e.failures == 0) users_.erase(it);
}

}  // namespace pigeon
