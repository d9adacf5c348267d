// The client a request counts against (per-client limits): the peer that
// connected, or, when that peer is a trusted proxy, the address the proxy
// says it forwarded for (X-Forwarded-For, read from its right end and past
// any further trusted proxies). IPv6 clients count by /64, the block one
// subscriber usually gets; IPv4-mapped IPv6 addresses as IPv4.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace pigeon {

class ClientAddresses {
 public:
  ClientAddresses() = default;  // trusts no proxy
  // `trusted`: comma-separated addresses and networks ("10.0.0.0/8",
  // "fd00::/8", "127.0.0.1"); bad_request naming a malformed entry.
  static Result<ClientAddresses> Parse(std::string_view trusted);

  // The client's key for `peer` (the connected address, as text) and the
  // request's X-Forwarded-For value: "203.0.113.7" or "2001:db8:1:2::/64".
  // `peer` itself when it is not an address (the key then is that text).
  std::string ClientOf(std::string_view peer, std::string_view forwarded_for) const;
  bool Trusted(const boost::asio::ip::address& a) const;

 private:
  struct Network {
    boost::asio::ip::address_v6::bytes_type bytes;  // IPv4 as IPv4-mapped IPv6
    unsigned prefix;                                // of 128 bits
  };
  std::vector<Network> trusted_;
};

// The address of the socket's peer as text ("127.0.0.1", "::1"); empty when
// the socket has none (closed, or not connected).
std::string PeerAddress(int fd);

// `text` as an address (IPv4, or IPv6 with no brackets or zone), IPv4-mapped
// IPv6 as IPv4; nullopt when it is not one.
std::optional<boost::asio::ip::address> ParseAddress(std::string_view text);

}  // namespace pigeon
