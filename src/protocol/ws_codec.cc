#include "protocol/ws_codec.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <simdjson.h>

#include <cstring>

namespace pigeon::ws {
namespace {

void Unmask(char* p, size_t n, const uint8_t mask[4]) {
  // Word at a time for the bulk; the mask repeats every 4 bytes.
  uint32_t m;
  std::memcpy(&m, mask, 4);
  uint64_t m64 = (static_cast<uint64_t>(m) << 32) | m;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    w ^= m64;
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] ^= static_cast<char>(mask[i & 3]);
}

bool IsValidCloseCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return code == 1000 || code == 1001 || code == 1002 || code == 1003 ||
         (code >= 1007 && code <= 1011);
}

// Parses a frame header. Returns header length, 0 if incomplete.
size_t ParseHeader(const unsigned char* d, size_t len, uint64_t* payload_len, bool* masked,
                   uint8_t mask[4]) {
  if (len < 2) return 0;
  size_t pos = 2;
  uint64_t n = d[1] & 0x7f;
  if (n == 126) {
    if (len < 4) return 0;
    n = (static_cast<uint64_t>(d[2]) << 8) | d[3];
    pos = 4;
  } else if (n == 127) {
    if (len < 10) return 0;
    n = 0;
    for (int i = 0; i < 8; ++i) n = (n << 8) | d[2 + i];
    pos = 10;
  }
  *masked = (d[1] & 0x80) != 0;
  if (*masked) {
    if (len < pos + 4) return 0;
    std::memcpy(mask, d + pos, 4);
    pos += 4;
  }
  *payload_len = n;
  return pos;
}

}  // namespace

bool IsValidUtf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

size_t FrameReader::FrameSizeHint(const char* data, size_t len) {
  uint64_t n;
  bool masked;
  uint8_t mask[4];
  size_t h = ParseHeader(reinterpret_cast<const unsigned char*>(data), len, &n, &masked, mask);
  if (h == 0) return 14;
  return h + n;
}

void FrameReader::ReleaseFragments() {
  fragments_.reset();
  frag_opcode_ = 0;
}

size_t FrameReader::Step(char* data, size_t len, Event* ev) {
  const auto* d = reinterpret_cast<const unsigned char*>(data);
  uint64_t n;
  bool masked;
  uint8_t mask[4];
  size_t h = ParseHeader(d, len, &n, &masked, mask);
  if (h == 0) return 0;
  auto fail = [&](uint16_t code) {
    ev->kind = Event::Kind::kError;
    ev->code = code;
    ev->payload = {};
    return len;  // consume everything: the stream is dead
  };
  const bool fin = (d[0] & 0x80) != 0;
  const uint8_t opcode = d[0] & 0x0f;
  if (d[0] & 0x70) return fail(kCloseProtocolError);             // no extensions negotiated
  if (masked != server_role_) return fail(kCloseProtocolError);  // RFC 6455 5.1
  const bool control = opcode >= 0x8;
  if (control) {
    if (opcode != kClose && opcode != kPing && opcode != kPong) return fail(kCloseProtocolError);
    if (!fin || n > 125) return fail(kCloseProtocolError);
  } else if (opcode != kContinuation && opcode != kText && opcode != kBinary) {
    return fail(kCloseProtocolError);
  } else if (opcode == kContinuation && frag_opcode_ == 0) {
    return fail(kCloseProtocolError);
  } else if (opcode != kContinuation && frag_opcode_ != 0) {
    return fail(kCloseProtocolError);
  }
  const uint64_t so_far = fragments_ ? fragments_->size() : 0;
  if (n > max_message_ || so_far + n > max_message_) return fail(kCloseTooBig);
  if (len - h < n) return 0;

  char* payload = data + h;
  if (masked) Unmask(payload, n, mask);
  std::string_view p(payload, n);
  const size_t used = h + n;

  if (control) {
    if (opcode == kPing) {
      *ev = {Event::Kind::kPing, p, 0};
    } else if (opcode == kPong) {
      *ev = {Event::Kind::kPong, p, 0};
    } else {
      if (n == 1) return fail(kCloseProtocolError);
      uint16_t code = kCloseNoStatus;
      std::string_view reason;
      if (n >= 2) {
        code = static_cast<uint16_t>((static_cast<unsigned char>(p[0]) << 8) |
                                     static_cast<unsigned char>(p[1]));
        if (!IsValidCloseCode(code)) return fail(kCloseProtocolError);
        reason = p.substr(2);
        if (!IsValidUtf8(reason)) return fail(kCloseInvalidPayload);
      }
      *ev = {Event::Kind::kClose, reason, code};
    }
    return used;
  }

  uint8_t message_opcode = opcode == kContinuation ? frag_opcode_ : opcode;
  if (!fin) {
    // A fragment: collect it until the final one.
    if (!fragments_) fragments_ = std::make_unique<std::string>();
    fragments_->append(p);
    frag_opcode_ = message_opcode;
    ev->kind = Event::Kind::kContinuation_;
    return used;
  }
  std::string_view message = p;
  if (fragments_) {
    fragments_->append(p);
    message = *fragments_;
  }
  if (message_opcode == kText) {
    if (!IsValidUtf8(message)) return fail(kCloseInvalidPayload);
    *ev = {Event::Kind::kText, message, 0};
  } else {
    *ev = {Event::Kind::kBinary, message, 0};
  }
  return used;
}

void AppendFrameHeader(std::string& out, uint8_t opcode, size_t n, bool fin) {
  char h[10];
  size_t hl;
  h[0] = static_cast<char>((fin ? 0x80 : 0) | opcode);
  if (n < 126) {
    h[1] = static_cast<char>(n);
    hl = 2;
  } else if (n <= 0xffff) {
    h[1] = 126;
    h[2] = static_cast<char>(n >> 8);
    h[3] = static_cast<char>(n & 0xff);
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; ++i)
      h[2 + i] = static_cast<char>((static_cast<uint64_t>(n) >> (56 - 8 * i)) & 0xff);
    hl = 10;
  }
  out.append(h, hl);
}

void AppendFrame(std::string& out, uint8_t opcode, std::string_view payload, const uint8_t* mask) {
  size_t start = out.size();
  AppendFrameHeader(out, opcode, payload.size());
  if (!mask) {
    out.append(payload);
    return;
  }
  out[start + 1] = static_cast<char>(out[start + 1] | 0x80);
  out.append(reinterpret_cast<const char*>(mask), 4);
  size_t p = out.size();
  out.append(payload);
  Unmask(out.data() + p, payload.size(), mask);  // XOR masks and unmasks alike
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xff));
  p.append(reason.substr(0, 123));
  return p;
}

std::string AcceptKey(std::string_view client_key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in(client_key);
  in.append(kGuid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out), digest, SHA_DIGEST_LENGTH);
  return std::string(out, static_cast<size_t>(n));
}

}  // namespace pigeon::ws
