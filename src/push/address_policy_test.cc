#include "push/address_policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

#include "push/webhook/webhook_sender.h"

namespace pigeon::push {
namespace {

bool Public(const std::string& ip) {
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, ip.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    return IsPublicAddress(reinterpret_cast<const sockaddr*>(&v4));
  }
  sockaddr_in6 v6{};
  EXPECT_EQ(::inet_pton(AF_INET6, ip.c_str(), &v6.sin6_addr), 1) << ip;
  v6.sin6_family = AF_INET6;
  return IsPublicAddress(reinterpret_cast<const sockaddr*>(&v6));
}

TEST(AddressPolicy, LoopbackPrivateLinkLocalAndReservedAddressesAreNotPublic) {
  for (const char* ip : {"0.0.0.0",
                         "10.1.2.3",
                         "100.64.0.1",
                         "100.127.255.255",
                         "127.0.0.1",
                         "127.255.0.9",
                         "169.254.169.254",
                         "172.16.0.1",
                         "172.31.255.255",
                         "192.0.0.8",
                         "192.0.2.1",
                         "192.168.1.1",
                         "198.18.0.1",
                         "198.19.255.255",
                         "198.51.100.7",
                         "203.0.113.9",
                         "224.0.0.1",
                         "240.0.0.1",
                         "255.255.255.255",
                         "::",
                         "::1",
                         "::127.0.0.1",
                         "::ffff:127.0.0.1",
                         "::ffff:10.0.0.1",
                         "::ffff:169.254.169.254",
                         "64:ff9b::a9fe:a9fe",
                         "2002:7f00:1::",
                         "2002:c0a8:101::",
                         "fc00::1",
                         "fd12:3456::1",
                         "fe80::1",
                         "fec0::1",
                         "ff02::1",
                         "2001:db8::1",
                         "100::1"})
    EXPECT_FALSE(Public(ip)) << ip;
}

TEST(AddressPolicy, AddressesOnTheInternetArePublic) {
  for (const char* ip :
       {"1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1",
        "192.169.0.1", "198.17.255.255", "198.20.0.1", "223.255.255.254", "2606:4700::1111",
        "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"})
    EXPECT_TRUE(Public(ip)) << ip;
}

TEST(AddressPolicy, UrlHostIsTheAuthoritysHost) {
  EXPECT_EQ(UrlHost("https://push.example.com/up/abc"), "push.example.com");
  EXPECT_EQ(UrlHost("https://push.example.com:8443/up"), "push.example.com");
  EXPECT_EQ(UrlHost("https://user:pw@127.0.0.1:80/x"), "127.0.0.1");
  EXPECT_EQ(UrlHost("https://[::1]:8443/x"), "::1");
  EXPECT_EQ(UrlHost("https://example.com?q=1"), "example.com");
  EXPECT_EQ(UrlHost("https:///path"), "");
  EXPECT_EQ(UrlHost("no scheme"), "");
}

TEST(AddressPolicy, AWebhookEndpointOnANonPublicLiteralIsRefusedUnlessAllowed) {
  WebhookSender strict({.secret = "s", .allow_http = true});
  for (const char* url :
       {"https://127.0.0.1/hook", "http://10.0.0.5:8080/hook", "https://[::1]/hook",
        "https://[fe80::1%25eth0]/hook", "http://169.254.169.254/latest/meta-data",
        "https://localhost:9000/hook", "https://LOCALHOST./hook", "https://a.localhost/hook",
        "https://[::ffff:192.168.0.1]/hook", "https://user@192.168.0.1/hook"}) {
    Status s = strict.CheckEndpoint(url);
    EXPECT_EQ(s.code(), ErrorCode::kBadRequest) << url;
  }
  for (const char* url : {"https://push.example.com/up/abc", "https://8.8.8.8/hook",
                          "https://[2606:4700::1111]/hook", "http://ntfy.sh/topic"})
    EXPECT_TRUE(strict.CheckEndpoint(url).ok()) << url;

  WebhookSender lax({.secret = "s", .allow_http = true, .allow_private = true});
  EXPECT_TRUE(lax.CheckEndpoint("http://127.0.0.1:8080/hook").ok());
  EXPECT_TRUE(lax.CheckEndpoint("https://10.0.0.5/hook").ok());
}

TEST(AddressPolicy, AWebhookEndpointNeedsHttpsUnlessHttpIsAllowed) {
  WebhookSender https_only({.secret = "s"});
  EXPECT_EQ(https_only.CheckEndpoint("http://push.example.com/x").code(), ErrorCode::kBadRequest);
  EXPECT_EQ(https_only.CheckEndpoint("ftp://push.example.com/x").code(), ErrorCode::kBadRequest);
  EXPECT_EQ(https_only.CheckEndpoint("https://").code(), ErrorCode::kBadRequest);
  EXPECT_EQ(https_only.CheckEndpoint("https://a b/").code(), ErrorCode::kBadRequest);
  EXPECT_TRUE(https_only.CheckEndpoint("https://push.example.com/x").ok());
}

}  // namespace
}  // namespace pigeon::push
