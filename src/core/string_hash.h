// StringHash: the hash of the server's hot in-memory tables keyed by strings
// (the store's keys and caches, the memtables' hints and chains, the sockets by
// user). It is XXH3 (Debian's libxxhash-dev, inlined): on the 10 to 40 byte ids
// and keys these tables hold it takes about 40 instructions where libstdc++'s
// std::hash took about 95 (bench/count-commit.sh), and its output is well
// mixed, so Boost's open addressing tables use it as it is instead of mixing
// it again (is_avalanching). It is not for anything stored or sent: XXH3's values may
// differ between its versions, and none of these tables outlives the process.
//
// HashedString carries a key with its hash, for a key that is looked up more
// than once (a shard, then the table in it) or stored with its hash.
#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pigeon {

inline uint64_t HashString(std::string_view s) noexcept { return XXH3_64bits(s.data(), s.size()); }

struct HashedString {
  explicit HashedString(std::string_view s) noexcept : text(s), hash(HashString(s)) {}
  HashedString(std::string_view s, uint64_t h) noexcept : text(s), hash(h) {}
  std::string_view text;
  uint64_t hash;
};

struct StringHash {
  using is_transparent = void;
  using is_avalanching = void;
  size_t operator()(std::string_view s) const noexcept { return HashString(s); }
  size_t operator()(const HashedString& k) const noexcept { return k.hash; }
};

// For a table keyed by HashString's values themselves: already mixed.
struct HashValueHash {
  using is_avalanching = void;
  size_t operator()(uint64_t h) const noexcept { return h; }
};

struct StringEqual {
  using is_transparent = void;
  static std::string_view Text(std::string_view s) noexcept { return s; }
  static std::string_view Text(const HashedString& k) noexcept { return k.text; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const noexcept {
    return Text(a) == Text(b);
  }
};

}  // namespace pigeon
