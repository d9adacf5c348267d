#include "push/webhook/webhook_sender.h"

#include <boost/json.hpp>

#include "core/ids.h"
#include "push/jwt.h"

namespace pigeon::push {

bool WebhookSender::EndpointAllowed(std::string_view url) const {
  if (url.size() > 2048 || url.find_first_of(" \r\n\t") != std::string_view::npos) return false;
  if (url.starts_with("https://") && url.size() > 8) return true;
  return options_.allow_http && url.starts_with("http://") && url.size() > 7;
}

Outcome WebhookSender::Send(const Notification& n, HttpClient& http) {
  if (!EndpointAllowed(n.registration.endpoint))
    return Outcome{Outcome::Kind::kInvalidToken, 0, "endpoint not allowed"};
  boost::json::object doc{
      {"type", "pigeon.wake"}, {"cursor", EncodeCursor(n.cursor)}, {"count", n.count}};
  if (!n.registration.token.empty()) doc["token"] = n.registration.token;
  if (!n.preview_title.empty()) {
    doc["title"] = n.preview_title;
    doc["body"] = n.preview_body;
  }
  const std::string body = boost::json::serialize(doc);
  const std::string ts = std::to_string(NowMs() / 1000);
  auto reply = http.Post(
      n.registration.endpoint,
      {"content-type: application/json", "ttl: 86400", "urgency: high", "x-pigeon-timestamp: " + ts,
       "x-pigeon-signature: sha256=" + HmacSha256Hex(options_.secret, ts + "." + body)},
      body);
  // UnifiedPush: 404/410 mean the endpoint is gone.
  if (reply.status == 404 || reply.status == 410)
    return Outcome{Outcome::Kind::kInvalidToken, 0, "gone"};
  return ClassifyCommon(reply);
}

}  // namespace pigeon::push
