#include "core/ids.h"

#include <sodium.h>

#include <algorithm>
#include <chrono>

#include "core/bytes.h"

namespace pigeon {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  std::string out(n * 2, '\0');
  sodium_bin2hex(out.data(), out.size() + 1, p, n);
  return out;
}

}  // namespace

bool IsValidUserId(std::string_view id) {
  if (id.size() < 3 || id.size() > 32) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  });
}

std::string DirectConversationId(std::string_view a, std::string_view b) {
  if (b < a) std::swap(a, b);
  std::string input = "pigeon-direct\0";
  input.append(a).push_back('\0');
  input.append(b);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  return Hex(digest, 12);
}

std::string ServerMsgId(std::string_view conversation_id, uint64_t seq) {
  std::string out;
  AppendServerMsgId(out, conversation_id, seq);
  return out;
}

void AppendServerMsgId(std::string& out, std::string_view conversation_id, uint64_t seq) {
  out.append(conversation_id);
  out.push_back('-');
  AppendDecimal(out, seq);
}

std::string NewToken() {
  unsigned char raw[32];
  randombytes_buf(raw, sizeof(raw));
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(sizeof(raw), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), raw, sizeof(raw), variant);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::string NewDeviceId() {
  // 80 random bits as 14 base64url characters: unique among a user's devices
  // (where ids are scoped) and short enough for std::string's inline buffer,
  // so a socket's session holds no heap string for it.
  unsigned char raw[10];
  randombytes_buf(raw, sizeof(raw));
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  char out[sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(out, sizeof(out), raw, sizeof(raw), variant);
  return std::string(out);
}

std::string TokenHash(std::string_view token) {
  std::string out(crypto_hash_sha256_BYTES, '\0');
  crypto_hash_sha256(reinterpret_cast<unsigned char*>(out.data()),
                     reinterpret_cast<const unsigned char*>(token.data()), token.size());
  return out;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace pigeon
