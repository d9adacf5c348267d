#include "push/fcm/fcm_sender.h"

#include <curl/curl.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "core/ids.h"

namespace pigeon::push {
namespace json = boost::json;

namespace {

std::string UrlEncode(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  std::string out(e);
  curl_free(e);
  return out;
}

std::string Str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : "";
}

}  // namespace

Result<std::unique_ptr<FcmSender>> FcmSender::Create(Options options) {
  std::ifstream f(options.credentials_file);
  if (!f)
    return Status(ErrorCode::kBadRequest,
                  "cannot read fcm credentials " + options.credentials_file);
  std::stringstream ss;
  ss << f.rdbuf();
  boost::system::error_code ec;
  auto v = json::parse(ss.str(), ec);
  if (ec || !v.is_object())
    return Status(ErrorCode::kBadRequest, "fcm credentials are not a JSON object");
  auto& o = v.as_object();
  std::string email = Str(o, "client_email"), pem = Str(o, "private_key");
  if (options.token_url.empty()) options.token_url = Str(o, "token_uri");
  if (options.project_id.empty()) options.project_id = Str(o, "project_id");
  if (email.empty() || pem.empty() || options.token_url.empty() || options.project_id.empty())
    return Status(ErrorCode::kBadRequest,
                  "fcm credentials need client_email, private_key, token_uri and project_id");
  auto key = SigningKey::FromPem(pem, SigningKey::Alg::kRS256);
  if (!key.ok()) return Status(key.status().code(), "fcm key: " + key.status().message());
  return std::unique_ptr<FcmSender>(
      new FcmSender(std::move(options), *key, std::move(email), Str(o, "private_key_id")));
}

Result<std::string> FcmSender::AccessToken(HttpClient& http, bool force_new, Outcome* failure) {
  std::lock_guard lock(mu_);
  const int64_t now_ms = NowMs();
  if (!force_new && !access_token_.empty() && now_ms < expires_at_ms_ - 60000) return access_token_;
  const int64_t now = now_ms / 1000;
  json::object header{{"alg", "RS256"}, {"typ", "JWT"}};
  if (!key_id_.empty()) header["kid"] = key_id_;
  json::object claims{{"iss", client_email_},
                      {"scope", "https://www.googleapis.com/auth/firebase.messaging"},
                      {"aud", options_.token_url},
                      {"iat", now},
                      {"exp", now + 3600}};
  auto jwt = key_->Sign(json::serialize(header), json::serialize(claims));
  if (!jwt.ok()) return jwt.status();
  auto reply = http.Post(options_.token_url, {"content-type: application/x-www-form-urlencoded"},
                         "grant_type=" + UrlEncode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
                             "&assertion=" + *jwt);
  boost::system::error_code ec;
  auto v = json::parse(reply.body, ec);
  if (reply.status != 200 || ec || !v.is_object() || Str(v.as_object(), "access_token").empty()) {
    *failure = ClassifyCommon(reply);
    if (failure->kind == Outcome::Kind::kAccepted) failure->kind = Outcome::Kind::kRetry;
    failure->detail = "token exchange: " + std::to_string(reply.status) + " " + reply.error;
    return Status(ErrorCode::kUnavailable, failure->detail);
  }
  access_token_ = Str(v.as_object(), "access_token");
  int64_t expires_in = 3600;
  if (auto* e = v.as_object().if_contains("expires_in"); e && e->is_number())
    expires_in = e->to_number<int64_t>();
  expires_at_ms_ = now_ms + expires_in * 1000;
  return access_token_;
}

Outcome FcmSender::Send(const Notification& n, HttpClient& http) {
  json::object data{{"type", "pigeon.wake"},
                    {"cursor", EncodeCursor(n.cursor)},
                    {"count", std::to_string(n.count)}};
  json::object message{{"token", n.registration.token},
                       {"data", std::move(data)},
                       {"android", json::object{{"priority", "HIGH"}, {"collapse_key", "pigeon"}}}};
  if (!n.preview_title.empty())
    message["notification"] = json::object{{"title", n.preview_title}, {"body", n.preview_body}};
  const std::string body = json::serialize(json::object{{"message", std::move(message)}});
  const std::string url =
      options_.base_url + "/v1/projects/" + options_.project_id + "/messages:send";
  for (int attempt = 0; attempt < 2; ++attempt) {
    Outcome failure;
    auto token = AccessToken(http, attempt > 0, &failure);
    if (!token.ok()) return failure;
    auto reply =
        http.Post(url, {"authorization: Bearer " + *token, "content-type: application/json"}, body);
    if (reply.status == 401 && attempt == 0)
      continue;  // the access token was refused: a new one, once
    if (reply.status == 404 ||
        (reply.status == 400 && reply.body.find("UNREGISTERED") != std::string::npos))
      return Outcome{Outcome::Kind::kInvalidToken, 0, "UNREGISTERED"};
    return ClassifyCommon(reply);
  }
  return Outcome{Outcome::Kind::kRetry, 0, "unauthorized twice"};
}

}  // namespace pigeon::push
