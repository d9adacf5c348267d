#include "push/webhook/webhook_sender.h"

#include <boost/json.hpp>

#include "core/ids.h"
#include "push/address_policy.h"
#include "push/jwt.h"

namespace pigeon::push {

Status WebhookSender::CheckEndpoint(std::string_view url) const {
  const bool scheme =
      url.starts_with("https://") || (options_.allow_http && url.starts_with("http://"));
  if (!scheme || url.size() > 2048 || url.find_first_of(" \r\n\t") != std::string_view::npos ||
      UrlHost(url).empty())
    return Status(ErrorCode::kBadRequest,
                  options_.allow_http ? "a webhook needs an http:// or https:// \"endpoint\""
                                      : "a webhook needs an https:// \"endpoint\"");
  if (!options_.allow_private && IsNonPublicHostLiteral(UrlHost(url)))
    return Status(ErrorCode::kBadRequest,
                  "a webhook's endpoint must be on a public address (not loopback, private or "
                  "link-local)");
  return Status::Ok();
}

Outcome WebhookSender::Send(const Notification& n, HttpClient& http) {
  if (!CheckEndpoint(n.registration.endpoint).ok())
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
      body, options_.allow_private ? HttpClient::Reach::kAny : HttpClient::Reach::kPublicOnly);
  // A name that resolved to a non-public address: as invalid as such a literal.
  if (reply.status == 0 && reply.address_refused)
    return Outcome{Outcome::Kind::kInvalidToken, 0, reply.error};
  // UnifiedPush: 404/410 mean the endpoint is gone.
  if (reply.status == 404 || reply.status == 410)
    return Outcome{Outcome::Kind::kInvalidToken, 0, "gone"};
  return ClassifyCommon(reply);
}

}  // namespace pigeon::push
