// FCM HTTP v1: POST {base_url}/v1/projects/{project}/messages:send with an
// OAuth2 access token, obtained from a service account's key: a JWT signed
// RS256 (iss, scope, aud = token_uri, iat, exp) exchanged at the token
// endpoint (grant type jwt-bearer), cached until a minute before it expires.
#pragma once

#include <memory>
#include <mutex>

#include "push/jwt.h"
#include "push/push_sender.h"

namespace pigeon::push {

class FcmSender final : public PushSender {
 public:
  struct Options {
    std::string base_url = "https://fcm.googleapis.com";
    std::string credentials_file;  // the service account JSON key
    std::string token_url;         // overrides the key's token_uri (tests)
    std::string project_id;        // overrides the key's project_id
  };
  static Result<std::unique_ptr<FcmSender>> Create(Options options);

  std::string_view name() const override { return "fcm"; }
  Outcome Send(const Notification& n, HttpClient& http) override;

 private:
  FcmSender(Options o, std::shared_ptr<SigningKey> key, std::string email, std::string key_id)
      : options_(std::move(o)),
        key_(std::move(key)),
        client_email_(std::move(email)),
        key_id_(std::move(key_id)) {}
  // A valid access token, exchanging a new JWT when needed.
  Result<std::string> AccessToken(HttpClient& http, bool force_new, Outcome* failure);

  Options options_;
  std::shared_ptr<SigningKey> key_;
  std::string client_email_;
  std::string key_id_;
  std::mutex mu_;
  std::string access_token_;
  int64_t expires_at_ms_ = 0;
};

}  // namespace pigeon::push
