#include "gateway/client_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>

namespace pigeon {
namespace {

using boost::asio::ip::address;
using boost::asio::ip::address_v6;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

address_v6::bytes_type As128(const address& a) {
  return a.is_v4()
             ? boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a.to_v4()).to_bytes()
             : a.to_v6().to_bytes();
}

bool PrefixMatches(const address_v6::bytes_type& a, const address_v6::bytes_type& net,
                   unsigned prefix) {
  for (unsigned i = 0; i < 16 && prefix > 0; ++i, prefix = prefix >= 8 ? prefix - 8 : 0) {
    const unsigned bits = prefix >= 8 ? 8 : prefix;
    const auto mask = static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (net[i] & mask)) return false;
  }
  return true;
}

std::string KeyOf(const address& a) {
  if (a.is_v4()) return a.to_v4().to_string();
  auto bytes = a.to_v6().to_bytes();
  for (size_t i = 8; i < 16; ++i) bytes[i] = 0;
  return address_v6(bytes).to_string() + "/64";
}

}  // namespace

std::string PeerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char text[INET6_ADDRSTRLEN] = {};
  const void* where =
      ss.ss_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&ss)->sin_addr)
      : ss.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr)
          : nullptr;
  if (!where || !::inet_ntop(ss.ss_family, where, text, sizeof text)) return {};
  return text;
}

std::optional<address> ParseAddress(std::string_view text) {
  boost::system::error_code ec;
  address a = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  if (a.is_v6()) {
    if (a.to_v6().scope_id() != 0) return std::nullopt;
    if (a.to_v6().is_v4_mapped())
      return address(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()));
  }
  return a;
}

Result<ClientAddresses> ClientAddresses::Parse(std::string_view trusted) {
  ClientAddresses out;
  while (!trusted.empty()) {
    const size_t comma = trusted.find(',');
    std::string_view entry = Trim(trusted.substr(0, comma));
    trusted = comma == std::string_view::npos ? std::string_view() : trusted.substr(comma + 1);
    if (entry.empty()) continue;
    const size_t slash = entry.find('/');
    auto a = ParseAddress(entry.substr(0, slash));
    if (!a) return Status(ErrorCode::kBadRequest, "not an address: " + std::string(entry));
    unsigned prefix = a->is_v4() ? 32 : 128;
    if (slash != std::string_view::npos) {
      std::string_view p = entry.substr(slash + 1);
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
      if (ec != std::errc() || end != p.data() + p.size() || p.empty() ||
          prefix > (a->is_v4() ? 32u : 128u))
        return Status(ErrorCode::kBadRequest, "not a network prefix: " + std::string(entry));
    }
    out.trusted_.push_back({As128(*a), a->is_v4() ? prefix + 96 : prefix});
  }
  return out;
}

bool ClientAddresses::Trusted(const address& a) const {
  const auto bytes = As128(a);
  for (const Network& n : trusted_)
    if (PrefixMatches(bytes, n.bytes, n.prefix)) return true;
  return false;
}

std::string ClientAddresses::ClientOf(std::string_view peer, std::string_view forwarded_for) const {
  auto current = ParseAddress(peer);
  if (!current) return std::string(peer);
  // From the right: each hop was added by the one before it in the chain,
  // which is believed only while it is a trusted proxy.
  while (Trusted(*current) && !forwarded_for.empty()) {
    const size_t comma = forwarded_for.rfind(',');
    std::string_view hop =
        Trim(comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    forwarded_for =
        comma == std::string_view::npos ? std::string_view() : forwarded_for.substr(0, comma);
    auto next = ParseAddress(hop);
    if (!next) break;  // not an address: the last trusted hop is the client
    current = next;
  }
  return KeyOf(*current);
}

}  // namespace pigeon
