#include "push/jwt.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <sodium.h>

#include <fstream>
#include <sstream>

namespace pigeon::push {

std::string Base64Url(std::string_view bytes) {
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), variant);
  out.resize(out.size() - 1);
  return out;
}

Result<std::shared_ptr<SigningKey>> SigningKey::FromPem(std::string_view pem, Alg alg) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!pkey) return Status(ErrorCode::kBadRequest, "not a PEM private key");
  int type = EVP_PKEY_get_base_id(pkey);
  if ((alg == Alg::kES256 && type != EVP_PKEY_EC) || (alg == Alg::kRS256 && type != EVP_PKEY_RSA)) {
    EVP_PKEY_free(pkey);
    return Status(ErrorCode::kBadRequest, "the key type does not match the algorithm");
  }
  return std::shared_ptr<SigningKey>(new SigningKey(pkey, alg));
}

Result<std::shared_ptr<SigningKey>> SigningKey::FromFile(const std::string& path, Alg alg) {
  std::ifstream f(path);
  if (!f) return Status(ErrorCode::kBadRequest, "cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return FromPem(ss.str(), alg);
}

SigningKey::~SigningKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

Result<std::string> SigningKey::Sign(std::string_view header_json,
                                     std::string_view claims_json) const {
  std::string input = Base64Url(header_json) + "." + Base64Url(claims_json);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::string sig;
  bool ok =
      EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, static_cast<EVP_PKEY*>(pkey_)) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                        reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return Status(ErrorCode::kInternal, "signing failed");
  if (alg_ == Alg::kES256) {
    // JWS wants r || s, 32 bytes each, not OpenSSL's DER.
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    if (!es) return Status(ErrorCode::kInternal, "bad ECDSA signature");
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    std::string raw(64, '\0');
    BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(es);
    sig = std::move(raw);
  }
  return input + "." + Base64Url(sig);
}

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  std::string hex(len * 2, '\0');
  sodium_bin2hex(hex.data(), hex.size() + 1, mac, len);
  return hex;
}

}  // namespace pigeon::push
