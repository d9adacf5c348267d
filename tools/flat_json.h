// Field: one value of a flat JSON object as written, for the frames pigeon's
// own tools make and read (the load generator, the reference relay) on their
// hot paths. Not a JSON parser: no nesting, no unescaping.
#pragma once

#include <cstring>
#include <string_view>

namespace pigeon::bench {

// The value of "key": a string's bytes without its quotes (escapes left as
// they are), or a number's text. Empty when the key is absent.
inline std::string_view Field(std::string_view frame, std::string_view key) {
  char pat[48];
  if (key.size() + 4 > sizeof(pat)) return {};
  pat[0] = '"';
  std::memcpy(pat + 1, key.data(), key.size());
  pat[key.size() + 1] = '"';
  pat[key.size() + 2] = ':';
  auto p = frame.find(std::string_view(pat, key.size() + 3));
  if (p == std::string_view::npos) return {};
  p += key.size() + 3;
  if (p < frame.size() && frame[p] == '"') {
    auto e = frame.find('"', p + 1);
    // An escaped quote is part of the string (an escaped backslash before the
    // closing quote is not told apart: the tools' own frames have neither).
    while (e != std::string_view::npos && frame[e - 1] == '\\') e = frame.find('"', e + 1);
    return e == std::string_view::npos ? std::string_view{} : frame.substr(p + 1, e - p - 1);
  }
  auto e = frame.find_first_of(",}", p);
  return frame.substr(p, e == std::string_view::npos ? std::string_view::npos : e - p);
}

}  // namespace pigeon::bench
