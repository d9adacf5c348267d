#include "gateway/session_registry.h"

#include <gtest/gtest.h>

namespace pigeon {
namespace {

TEST(SessionRegistry, MakesNoFrameForAUserWithoutASocket) {
  SessionRegistry registry;
  int made = 0;
  registry.DeliverFeedEntry("offline-user", 7, [&] {
    ++made;
    return SharedFrame(std::string("{}"));
  });
  EXPECT_EQ(made, 0);
}

}  // namespace
}  // namespace pigeon
