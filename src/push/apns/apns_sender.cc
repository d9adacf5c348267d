#include "push/apns/apns_sender.h"

#include <boost/json.hpp>

#include "core/ids.h"
#include "protocol/frames.h"

namespace pigeon::push {

Result<std::unique_ptr<ApnsSender>> ApnsSender::Create(Options options) {
  if (options.key_id.empty() || options.team_id.empty() || options.topic.empty())
    return Status(ErrorCode::kBadRequest, "apns needs key_id, team_id and topic");
  if (options.push_type != "alert" && options.push_type != "background")
    return Status(ErrorCode::kBadRequest, "apns push type must be alert or background");
  auto key = SigningKey::FromFile(options.key_file, SigningKey::Alg::kES256);
  if (!key.ok()) return Status(key.status().code(), "apns key: " + key.status().message());
  return std::unique_ptr<ApnsSender>(new ApnsSender(std::move(options), *key));
}

Result<std::string> ApnsSender::ProviderToken(bool force_new) {
  std::lock_guard lock(mu_);
  const int64_t now = NowMs() / 1000;
  if (!force_new && !jwt_.empty() && now - jwt_issued_s_ < options_.token_refresh_s) return jwt_;
  boost::json::object header{{"alg", "ES256"}, {"kid", options_.key_id}};
  boost::json::object claims{{"iss", options_.team_id}, {"iat", now}};
  auto jwt = key_->Sign(boost::json::serialize(header), boost::json::serialize(claims));
  if (!jwt.ok()) return jwt.status();
  jwt_ = *jwt;
  jwt_issued_s_ = now;
  return jwt_;
}

Outcome ApnsSender::Send(const Notification& n, HttpClient& http) {
  namespace json = boost::json;
  json::object aps;
  const bool background = options_.push_type == "background";
  if (background) {
    aps["content-available"] = 1;
  } else {
    json::object alert;
    if (!n.preview_title.empty()) {
      alert["title"] = n.preview_title;
      alert["body"] = n.preview_body;
    } else {
      alert["title"] = "New message";  // no sender, no body: the app pulls them
    }
    aps["alert"] = std::move(alert);
    aps["badge"] = n.count;
    aps["sound"] = "default";
    aps["mutable-content"] = 1;
  }
  json::object payload{
      {"aps", std::move(aps)}, {"cursor", EncodeCursor(n.cursor)}, {"count", n.count}};
  const std::string body = json::serialize(payload);

  Outcome out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto jwt = ProviderToken(attempt > 0);
    if (!jwt.ok()) return Outcome{Outcome::Kind::kRejected, 0, jwt.status().message()};
    std::vector<std::string> headers = {
        "authorization: bearer " + *jwt,
        "apns-topic: " + options_.topic,
        "apns-push-type: " + options_.push_type,
        std::string("apns-priority: ") + (background ? "5" : "10"),
        "apns-expiration: " + std::to_string(NowMs() / 1000 + options_.expiration_s),
        "apns-collapse-id: pigeon",
        "content-type: application/json",
    };
    auto reply = http.Post(options_.base_url + "/3/device/" + n.registration.token, headers, body);
    std::string reason;
    boost::system::error_code ec;
    auto parsed = json::parse(reply.body, ec);
    if (!ec && parsed.is_object())
      if (auto* r = parsed.as_object().if_contains("reason"); r && r->is_string())
        reason = std::string(r->as_string());
    if (reply.status == 410 || (reply.status == 400 && (reason == "BadDeviceToken" ||
                                                        reason == "DeviceTokenNotForTopic"))) {
      return Outcome{Outcome::Kind::kInvalidToken, 0, reason.empty() ? "410" : reason};
    }
    if (reply.status == 403 &&
        (reason == "ExpiredProviderToken" || reason == "InvalidProviderToken") && attempt == 0)
      continue;  // a fresh JWT, once
    out = ClassifyCommon(reply);
    if (out.detail.empty()) out.detail = reason;
    return out;
  }
  return out;
}

}  // namespace pigeon::push
