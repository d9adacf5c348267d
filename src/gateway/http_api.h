// HttpApi: the HTTP endpoints of the spec, and the authorization of the
// WebSocket upgrade. Knows requests and responses, not sockets.
//
// Blocking (store reads, password hashing): call from a worker thread.
// `done` may run on another thread (the committer's): it must not block.
#pragma once

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/cursor.h"
#include "core/string_hash.h"
#include "gateway/client_address.h"
#include "gateway/http_parse.h"
#include "gateway/login_limiter.h"
#include "store/message_store.h"

namespace boost::asio {
class thread_pool;
}

namespace pigeon {

class ChatService;
class Metrics;
class PresenceService;
namespace push {
class PushService;
}

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct UpgradeGrant {
  DeviceSession session;
  std::optional<FeedPos> since;
};

class HttpApi {
 public:
  struct Options {
    LoginLimiter::Options login_limits;         // failed logins per username
    LoginLimiter::Options client_login_limits;  // ... per client (ClientAddresses)
    // Sign-ups per client, each counted as a failed login is (a limiter's
    // failure): at most max_failures per window.
    LoginLimiter::Options signup_limits{.max_failures = 25, .window_ms = 300000};
    // Sign-up and login hash the password (Argon2id, tens of ms of CPU and
    // tens of MB each) on these threads, not on the caller's: a flood of them
    // cannot hold up the workers' store reads, typing, presence and upgrades.
    // Null: on the caller's thread.
    boost::asio::thread_pool* password_threads = nullptr;
    // Checks queued for those threads at most; past it: 503 unavailable.
    size_t max_pending_password_checks = 64;
    // Of those, from one client at most (ClientAddresses); past it: 429
    // rate_limited. So one client cannot fill the queue and turn everyone
    // else's sign-ups and logins away. 0: no per-client bound.
    size_t max_password_checks_per_client = 8;
    ClientAddresses clients;  // which proxies' X-Forwarded-For is believed
  };
  HttpApi(ChatService& chat, PresenceService& presence, push::PushService& push, Metrics& metrics,
          Options options)
      : chat_(chat),
        presence_(presence),
        push_(push),
        metrics_(metrics),
        options_(options),
        logins_(options.login_limits),
        client_logins_(options.client_login_limits),
        signups_(options.signup_limits) {}

  void Handle(const HttpRequest& req, std::function<void(HttpResponse)> done);
  // Whether Handle reads req.peer (sign-up and login, limited per client): the
  // connection looks its peer's address up only for those.
  static bool UsesClientAddress(const HttpRequest& req);
  // GET /api/v1/ws: a grant, or the response that refuses the upgrade.
  std::variant<UpgradeGrant, HttpResponse> AuthorizeUpgrade(const HttpRequest& req);
  // The error response for `status` (counted in the errors metric);
  // rate_limited carries Retry-After: `retry_after_s`.
  HttpResponse Error(const Status& status, int64_t retry_after_s = 1);

 private:
  Result<DeviceSession> Authenticate(const HttpRequest& req);
  // Runs `check` (a sign-up or login) on the password threads: true. Or
  // answers `done` with 503, when too many are queued already: false.
  // Or with 429, when `client` has too many queued already.
  bool RunPasswordCheck(std::string client, std::function<void()> check,
                        std::function<void(HttpResponse)>& done);
  void Route(const HttpRequest& req, std::function<void(HttpResponse)>& done);

  ChatService& chat_;
  PresenceService& presence_;
  push::PushService& push_;
  Metrics& metrics_;
  Options options_;
  std::atomic<size_t> pending_password_checks_{0};
  std::mutex pending_by_client_mu_;
  // Clients with checks queued or hashing, and how many: at most
  // max_pending_password_checks entries.
  boost::unordered_flat_map<std::string, uint32_t, StringHash, StringEqual> pending_by_client_;
  LoginLimiter logins_;         // failed logins per username (POST /sessions)
  LoginLimiter client_logins_;  // failed logins per client, whatever the username
  LoginLimiter signups_;        // sign-ups per client (POST /users)
};

// Writes `r` as an HTTP/1.1 response (status line, headers, body).
std::string SerializeResponse(const HttpResponse& r, bool keep_alive);

}  // namespace pigeon
