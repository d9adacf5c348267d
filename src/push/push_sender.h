// PushSender: one push provider (APNs, FCM, webhook). Send() is blocking and
// runs on a push thread, with that thread's HttpClient; it must be safe to
// call from several push threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/cursor.h"
#include "push/http_client.h"
#include "store/message_store.h"

namespace pigeon::push {

// What a device is told. By default only what it needs to wake and pull.
struct Notification {
  std::string user_id;
  std::string device_id;
  PushRegistration registration;
  FeedPos cursor = 0;  // the newest feed entry waiting
  uint32_t count = 0;  // messages waiting since the last push (the badge)
  // Only when previews are configured: who wrote and what.
  std::string preview_title;
  std::string preview_body;
};

struct Outcome {
  enum class Kind {
    kAccepted,      // the provider took it
    kRetry,         // 429, 5xx, timeout: try again later
    kInvalidToken,  // the provider says the token is dead: remove it
    kRejected,      // refused for another reason: give up on this push
  };
  Kind kind = Kind::kRejected;
  int64_t retry_after_ms = 0;  // from Retry-After, when the provider sent one
  std::string detail;          // for the log
};

class PushSender {
 public:
  virtual ~PushSender() = default;
  virtual std::string_view name() const = 0;
  virtual Outcome Send(const Notification& n, HttpClient& http) = 0;
};

// Maps an HTTP answer's Retry-After (seconds) to milliseconds; 0 if absent.
int64_t RetryAfterMs(const HttpReply& reply);
// The common mapping of HTTP answers: 2xx accepted, 429/5xx/no answer retry.
Outcome ClassifyCommon(const HttpReply& reply);

}  // namespace pigeon::push
