// Small binary encoding helpers for store records and keys (LevelDB style):
// big-endian fixed64 (so keys sort numerically) and length-prefixed strings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pigeon {

void PutFixed64BE(std::string& out, uint64_t v);
uint64_t GetFixed64BE(const char* p);
void PutVarint(std::string& out, uint64_t v);
void PutLengthPrefixed(std::string& out, std::string_view s);
// Decimal digits of `v` (text: frames, ids), with no temporary string.
void AppendDecimal(std::string& out, int64_t v);
void AppendDecimal(std::string& out, uint64_t v);

// Reads what the Put* functions wrote; every Get returns false on a short or
// corrupt input and leaves the reader failed.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  bool GetVarint(uint64_t* v);
  bool GetLengthPrefixed(std::string_view* s);
  bool GetString(std::string* s);
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace pigeon
