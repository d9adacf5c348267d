// APNs: HTTP/2 POST {base_url}/3/device/{token}, token-based authentication
// (a JWT signed ES256 with the team's .p8 key; `kid` header, `iss` and `iat`
// claims; renewed well before the hour APNs accepts it for).
#pragma once

#include <memory>
#include <mutex>

#include "push/jwt.h"
#include "push/push_sender.h"

namespace pigeon::push {

class ApnsSender final : public PushSender {
 public:
  struct Options {
    std::string base_url = "https://api.push.apple.com";
    std::string key_file;  // the .p8 key (PKCS#8 PEM)
    std::string key_id;
    std::string team_id;
    std::string topic;                  // the app's bundle id
    std::string push_type = "alert";    // or "background"
    int64_t expiration_s = 86400;       // apns-expiration: now + this
    int64_t token_refresh_s = 50 * 60;  // a new JWT after this long (APNs: at most 1 h)
  };
  static Result<std::unique_ptr<ApnsSender>> Create(Options options);

  std::string_view name() const override { return "apns"; }
  Outcome Send(const Notification& n, HttpClient& http) override;
  // The current provider token (for tests and diagnostics).
  Result<std::string> ProviderToken(bool force_new = false);

 private:
  ApnsSender(Options o, std::shared_ptr<SigningKey> key)
      : options_(std::move(o)), key_(std::move(key)) {}
  Options options_;
  std::shared_ptr<SigningKey> key_;
  std::mutex mu_;
  std::string jwt_;
  int64_t jwt_issued_s_ = 0;
};

}  // namespace pigeon::push
