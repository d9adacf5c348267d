#include "core/cursor.h"

#include <gtest/gtest.h>

#include "core/ids.h"

namespace pigeon {

TEST(Cursor, RoundTripsPositions) {
  for (FeedPos p : {0ull, 1ull, 255ull, 1ull << 40, ~0ull}) {
    auto c = EncodeCursor(p);
    EXPECT_EQ(c.size(), 17u);
    ASSERT_EQ(DecodeCursor(c), p);
  }
}

TEST(Cursor, RejectsMalformed) {
  for (const char* bad : {"", "f", "x0000000000000000", "f000000000000000", "f00000000000000000",
                          "F0000000000000000", "f000000000000000G", "f00000000000000A0"}) {
    EXPECT_FALSE(DecodeCursor(bad).has_value()) << bad;
  }
}

TEST(Ids, UserIdRules) {
  EXPECT_TRUE(IsValidUserId("abc"));
  EXPECT_TRUE(IsValidUserId("a.b-c_9"));
  EXPECT_FALSE(IsValidUserId("ab"));
  EXPECT_FALSE(IsValidUserId("Alice"));
  EXPECT_FALSE(IsValidUserId(std::string(33, 'a')));
  EXPECT_FALSE(IsValidUserId("al ice"));
}

TEST(Ids, DirectConversationIdIsSymmetric) {
  EXPECT_EQ(DirectConversationId("alice", "bob"), DirectConversationId("bob", "alice"));
  EXPECT_NE(DirectConversationId("alice", "bob"), DirectConversationId("alice", "carol"));
  EXPECT_EQ(DirectConversationId("alice", "bob").size(), 24u);
}

TEST(Ids, DeviceIdsAreShortRandomAndUrlSafe) {
  auto a = NewDeviceId(), b = NewDeviceId();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 14u);
  EXPECT_EQ(a.find_first_of("+/=\0"), std::string::npos);
}

TEST(Ids, TokensAreRandomAndUrlSafe) {
  auto a = NewToken(), b = NewToken();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 43u);
  EXPECT_EQ(a.find_first_of("+/="), std::string::npos);
}

}  // namespace pigeon
