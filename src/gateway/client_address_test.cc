#include "gateway/client_address.h"

#include <gtest/gtest.h>

namespace pigeon {
namespace {

ClientAddresses Trusting(std::string_view list) {
  auto c = ClientAddresses::Parse(list);
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? *c : ClientAddresses();
}

TEST(ClientAddresses, TrustedProxiesAreAddressesAndNetworks) {
  auto c = Trusting(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1");
  for (const char* a : {"10.1.2.3", "192.168.1.7", "fd12::1", "::1", "::ffff:10.9.9.9"})
    EXPECT_TRUE(c.Trusted(*ParseAddress(a))) << a;
  for (const char* a : {"11.0.0.1", "192.168.1.8", "fe80::1", "::2", "2001:db8::1"})
    EXPECT_FALSE(c.Trusted(*ParseAddress(a))) << a;
  EXPECT_TRUE(ClientAddresses::Parse("").ok());
  for (const char* bad : {"10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/8x", "example.com",
                          "10.0.0", "1.2.3.4, nope", "fe80::1%eth0"})
    EXPECT_EQ(ClientAddresses::Parse(bad).status().code(), ErrorCode::kBadRequest) << bad;
}

TEST(ClientAddresses, XForwardedForIsBelievedOnlyFromTrustedProxies) {
  auto c = Trusting("10.0.0.0/8");
  // Not from a proxy: what the client says about itself is ignored.
  EXPECT_EQ(c.ClientOf("203.0.113.9", "198.51.100.1"), "203.0.113.9");
  // From a proxy: the address it forwarded for.
  EXPECT_EQ(c.ClientOf("10.0.0.1", "198.51.100.1"), "198.51.100.1");
  // Through two proxies; a client's own X-Forwarded-For, to the left, is not believed.
  EXPECT_EQ(c.ClientOf("10.0.0.1", "192.0.2.66, 198.51.100.1, 10.0.0.2"), "198.51.100.1");
  // A proxy with nothing to say, or saying something that is not an address: the proxy.
  EXPECT_EQ(c.ClientOf("10.0.0.1", ""), "10.0.0.1");
  EXPECT_EQ(c.ClientOf("10.0.0.1", "198.51.100.1, unknown"), "10.0.0.1");
  // No proxies trusted: the peer, always.
  EXPECT_EQ(ClientAddresses().ClientOf("10.0.0.1", "198.51.100.1"), "10.0.0.1");
}

TEST(ClientAddresses, AnIpv6ClientCountsByItsSlash64) {
  ClientAddresses c;
  EXPECT_EQ(c.ClientOf("2001:db8:1:2:aaaa::1", ""), "2001:db8:1:2::/64");
  EXPECT_EQ(c.ClientOf("2001:db8:1:2:bbbb:cccc:dddd:eeee", ""), "2001:db8:1:2::/64");
  EXPECT_NE(c.ClientOf("2001:db8:1:3::1", ""), "2001:db8:1:2::/64");
  EXPECT_EQ(c.ClientOf("::ffff:198.51.100.7", ""), "198.51.100.7");
  EXPECT_EQ(c.ClientOf("", ""), "");  // a socket with no peer: one key for all such
}

}  // namespace
}  // namespace pigeon
