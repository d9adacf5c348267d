// Which addresses a push to a user-supplied endpoint (a webhook) may reach.
// The endpoint is the device's choice, and the server fetches it from inside
// the operator's network: left open, any user could make pigeond POST to its
// loopback, its private network or a cloud metadata service (SSRF).
#pragma once

#include <sys/socket.h>

#include <string_view>

namespace pigeon::push {

// Whether `addr` (AF_INET or AF_INET6) is an address on the public internet:
// not unspecified, loopback, private (RFC 1918, RFC 4193), shared (RFC 6598),
// link-local, multicast, reserved, documentation or benchmarking space, nor
// an IPv4-mapped, NAT64 or 6to4 form of one of those.
bool IsPublicAddress(const sockaddr* addr);

// The host of an http:// or https:// URL (brackets removed from an IPv6
// literal); empty when there is none.
std::string_view UrlHost(std::string_view url);

// Whether `host` is an IP literal (or "localhost") that IsPublicAddress
// refuses. A name is only known once resolved: the connection checks it.
bool IsNonPublicHostLiteral(std::string_view host);

}  // namespace pigeon::push
