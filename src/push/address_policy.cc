#include "push/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <string>

namespace pigeon::push {
namespace {

bool IsPublicV4(const uint8_t* a) {
  const uint8_t b0 = a[0], b1 = a[1], b2 = a[2];
  if (b0 == 0 || b0 == 10 || b0 == 127) return false;  // this network, private, loopback
  if (b0 == 100 && (b1 & 0xc0) == 64) return false;    // 100.64/10 shared (CGNAT)
  if (b0 == 169 && b1 == 254) return false;            // link-local (cloud metadata)
  if (b0 == 172 && (b1 & 0xf0) == 16) return false;    // 172.16/12 private
  if (b0 == 192 && b1 == 168) return false;            // 192.168/16 private
  if (b0 == 192 && b1 == 0 && (b2 == 0 || b2 == 2)) return false;  // IETF, documentation
  if (b0 == 198 && (b1 & 0xfe) == 18) return false;                // 198.18/15 benchmarking
  if (b0 == 198 && b1 == 51 && b2 == 100) return false;            // documentation
  if (b0 == 203 && b1 == 0 && b2 == 113) return false;             // documentation
  if (b0 >= 224) return false;                                     // multicast, reserved, broadcast
  return true;
}

bool IsPublicV6(const uint8_t* a) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(a, kMapped, 12) == 0 || std::memcmp(a, kNat64, 12) == 0)
    return IsPublicV4(a + 12);
  if (a[0] == 0x20 && a[1] == 0x02) return IsPublicV4(a + 2);  // 6to4
  if (a[0] == 0) return false;              // ::/8: unspecified, loopback, IPv4-compatible
  if ((a[0] & 0xfe) == 0xfc) return false;  // fc00::/7 unique local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return false;  // fe80::/10 link-local
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return false;  // fec0::/10 site-local
  if (a[0] == 0xff) return false;                           // multicast
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return false;  // documentation
  if (a[0] == 0x01 && a[1] == 0 && a[2] == 0 && a[3] == 0) return false;  // 100::/64 discard
  return true;
}

}  // namespace

bool IsPublicAddress(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return IsPublicV4(reinterpret_cast<const uint8_t*>(&in->sin_addr));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return IsPublicV6(in6->sin6_addr.s6_addr);
  }
  return false;
}

std::string_view UrlHost(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  std::string_view authority = url.substr(scheme + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (size_t at = authority.rfind('@'); at != std::string_view::npos)
    authority = authority.substr(at + 1);
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    return close == std::string_view::npos ? std::string_view() : authority.substr(1, close - 1);
  }
  return authority.substr(0, authority.find(':'));
}

bool IsNonPublicHostLiteral(std::string_view host) {
  std::string h(host);
  for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!h.empty() && h.back() == '.') h.pop_back();
  if (h == "localhost" || h.ends_with(".localhost")) return true;
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    return !IsPublicAddress(reinterpret_cast<const sockaddr*>(&v4));
  }
  sockaddr_in6 v6{};
  // A zone (fe80::1%eth0) is link-local whatever it names.
  if (h.find('%') != std::string::npos) return true;
  if (::inet_pton(AF_INET6, h.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    return !IsPublicAddress(reinterpret_cast<const sockaddr*>(&v6));
  }
  return false;
}

}  // namespace pigeon::push
