// LoginLimiter: bounds online password guessing. After `max_failures` failed
// logins of one username within a window (from the first failure, `window_ms`
// long), that username's logins are refused (rate_limited, with the time
// left) until the window ends, without checking the password: a guesser gets
// max_failures tries per window, and a flood of them costs no Argon2id.
// Attempts still being checked count as failures until they end, so tries
// sent all at once get no more than that.
//
// Usernames that do not exist count the same (the answer says nothing of
// which exist). A lock stops new logins only: the user's signed-in devices
// keep working. The count is per pigeond process. Thread-safe.
//
// The key need not be a username: HttpApi keeps one limiter per username, one
// of failed logins per client address, and one of sign-ups per client
// address (each sign-up ending as a "failure": counted).
#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "core/string_hash.h"

namespace pigeon {

class LoginLimiter {
 public:
  struct Options {
    uint32_t max_failures = 10;  // 0: no limit
    int64_t window_ms = 300000;
    // Usernames tracked at once. Every entry took a password check, so
    // filling it within one window would take far more Argon2id time than a
    // server has; if it is full, a new name goes untracked.
    size_t max_tracked = 100000;
  };
  explicit LoginLimiter(Options options) : options_(options) {}

  // A login of `user` starts: 0, and if `*tracked` it must End(); or the ms
  // until one may (at least 1).
  int64_t Begin(std::string_view user, int64_t now_ms, bool* tracked);
  enum class Outcome { kSucceeded, kFailed, kNotChecked };
  // How a login Begin() let through, and tracked, ended. kNotChecked (the store or the
  // server could not check it) counts neither way.
  void End(std::string_view user, Outcome outcome, int64_t now_ms);

 private:
  struct Entry {
    uint32_t failures = 0;
    uint32_t checking = 0;      // begun, not ended
    int64_t window_end_ms = 0;  // 0: no failure yet
  };
  Options options_;
  std::mutex mu_;
  boost::unordered_flat_map<std::string, Entry, StringHash, StringEqual> users_;
};

}  // namespace pigeon
