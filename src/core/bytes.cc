#include "core/bytes.h"

#include <charconv>

namespace pigeon {

void PutFixed64BE(std::string& out, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out.append(buf, 8);
}

uint64_t GetFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void PutLengthPrefixed(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

bool ByteReader::GetVarint(uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in_.empty(); shift += 7) {
    auto byte = static_cast<unsigned char>(in_.front());
    in_.remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *v = result;
      return true;
    }
  }
  in_ = {};
  return false;
}

bool ByteReader::GetLengthPrefixed(std::string_view* s) {
  uint64_t n;
  if (!GetVarint(&n) || n > in_.size()) {
    in_ = {};
    return false;
  }
  *s = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}

bool ByteReader::GetString(std::string* s) {
  std::string_view v;
  if (!GetLengthPrefixed(&v)) return false;
  s->assign(v);
  return true;
}

namespace {

template <typename Int>
void AppendDecimalOf(std::string& out, Int v) {
  char buf[24];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out.append(buf, static_cast<size_t>(end - buf));
}

}  // namespace

void AppendDecimal(std::string& out, int64_t v) { AppendDecimalOf(out, v); }
void AppendDecimal(std::string& out, uint64_t v) { AppendDecimalOf(out, v); }

}  // namespace pigeon
