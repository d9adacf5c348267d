#include "core/cursor.h"

namespace pigeon {

void AppendCursor(std::string& out, FeedPos pos) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[17];
  buf[0] = 'f';
  for (int i = 16; i >= 1; --i) {
    buf[i] = kHex[pos & 0xf];
    pos >>= 4;
  }
  out.append(buf, sizeof(buf));
}

std::string EncodeCursor(FeedPos pos) {
  std::string s;
  AppendCursor(s, pos);
  return s;
}

std::optional<FeedPos> DecodeCursor(std::string_view cursor) {
  if (cursor.size() != 17 || cursor[0] != 'f') return std::nullopt;
  FeedPos pos = 0;
  for (size_t i = 1; i < cursor.size(); ++i) {
    char c = cursor[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    pos = (pos << 4) | static_cast<FeedPos>(v);
  }
  return pos;
}

}  // namespace pigeon
