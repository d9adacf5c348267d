#include "gateway/login_limiter.h"

#include <gtest/gtest.h>

namespace pigeon {
namespace {

TEST(LoginLimiter, AUsernameIsLockedAfterMaxFailuresUntilItsWindowEnds) {
  LoginLimiter l({.max_failures = 3, .window_ms = 1000});
  for (int64_t t : {0, 100, 200}) {
    EXPECT_EQ(l.WaitMs("alice", t), 0);
    l.Failed("alice", t);
  }
  EXPECT_EQ(l.WaitMs("alice", 300), 700);  // the window began at the first failure
  EXPECT_EQ(l.WaitMs("bob", 300), 0);
  EXPECT_EQ(l.WaitMs("alice", 999), 1);
  EXPECT_EQ(l.WaitMs("alice", 1000), 0);
  // A new window: its own count.
  l.Failed("alice", 1500);
  EXPECT_EQ(l.WaitMs("alice", 1600), 0);
}

TEST(LoginLimiter, FailuresInAnOldWindowDoNotCount) {
  LoginLimiter l({.max_failures = 2, .window_ms = 1000});
  l.Failed("alice", 0);
  l.Failed("alice", 1000);  // the first window is over: this one starts a new one
  EXPECT_EQ(l.WaitMs("alice", 1001), 0);
  l.Failed("alice", 1002);
  EXPECT_EQ(l.WaitMs("alice", 1003), 997);
}

TEST(LoginLimiter, ASuccessClearsTheCount) {
  LoginLimiter l({.max_failures = 2, .window_ms = 1000});
  l.Failed("alice", 0);
  l.Succeeded("alice");
  l.Failed("alice", 10);
  EXPECT_EQ(l.WaitMs("alice", 20), 0);
}

TEST(LoginLimiter, AFullTableDropsEndedWindowsAndOtherwiseLeavesNewNamesUntracked) {
  LoginLimiter l({.max_failures = 1, .window_ms = 1000, .max_tracked = 2});
  l.Failed("a", 0);
  l.Failed("b", 500);
  l.Failed("c", 600);  // full, and no window has ended: c is not tracked
  EXPECT_GT(l.WaitMs("a", 700), 0);
  EXPECT_GT(l.WaitMs("b", 700), 0);
  EXPECT_EQ(l.WaitMs("c", 700), 0);
  l.Failed("c", 1200);  // a's window ended: its entry makes room
  EXPECT_GT(l.WaitMs("c", 1300), 0);
  EXPECT_GT(l.WaitMs("b", 1300), 0);
}

TEST(LoginLimiter, ZeroMaxFailuresIsNoLimit) {
  LoginLimiter l({.max_failures = 0});
  for (int i = 0; i < 100; ++i) l.Failed("alice", i);
  EXPECT_EQ(l.WaitMs("alice", 100), 0);
}

}  // namespace
}  // namespace pigeon
