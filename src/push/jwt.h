// JSON Web Tokens as the push providers want them: ES256 (APNs, with a .p8
// key) and RS256 (Google service accounts). Signing only; OpenSSL does the
// cryptography.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace pigeon::push {

std::string Base64Url(std::string_view bytes);

class SigningKey {
 public:
  enum class Alg { kES256, kRS256 };
  // A PEM private key (PKCS#8, as in a .p8 file or a service account's
  // "private_key"); the algorithm must match the key type.
  static Result<std::shared_ptr<SigningKey>> FromPem(std::string_view pem, Alg alg);
  static Result<std::shared_ptr<SigningKey>> FromFile(const std::string& path, Alg alg);
  ~SigningKey();

  // header.claims.signature, each part base64url; `header_json` and
  // `claims_json` are serialized JSON objects.
  Result<std::string> Sign(std::string_view header_json, std::string_view claims_json) const;
  Alg alg() const { return alg_; }

 private:
  SigningKey(void* pkey, Alg alg) : pkey_(pkey), alg_(alg) {}
  void* pkey_;  // EVP_PKEY*
  Alg alg_;
};

// HMAC-SHA256 of `message` with `key`, lowercase hex.
std::string HmacSha256Hex(std::string_view key, std::string_view message);

}  // namespace pigeon::push
