// Webhook: an HTTP POST of a small JSON document to the endpoint the device
// registered (UnifiedPush-style push servers accept any body), with RFC 8030
// TTL and Urgency headers and an HMAC-SHA256 signature:
//   X-Pigeon-Timestamp: <unix seconds>
//   X-Pigeon-Signature: sha256=<hex HMAC(secret, timestamp + "." + body)>
// The endpoint is the device's choice: unless allow_private is set, it may
// only reach public addresses (address_policy.h), checked at registration for
// an IP literal and at each connection for what a name resolved to.
#pragma once

#include "core/status.h"
#include "push/push_sender.h"

namespace pigeon::push {

class WebhookSender final : public PushSender {
 public:
  struct Options {
    std::string secret;       // the HMAC key; required
    bool allow_http = false;  // plain http:// endpoints (tests, private networks)
    // Endpoints on loopback, private, link-local and other non-public
    // addresses (a push server on the operator's own network; tests).
    bool allow_private = false;
  };
  explicit WebhookSender(Options options) : options_(std::move(options)) {}

  std::string_view name() const override { return "webhook"; }
  Outcome Send(const Notification& n, HttpClient& http) override;
  // Whether an endpoint may be registered: bad_request, saying why, if not.
  Status CheckEndpoint(std::string_view url) const;

 private:
  Options options_;
};

}  // namespace pigeon::push
