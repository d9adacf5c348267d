#include "gateway/login_limiter.h"

#include <gtest/gtest.h>

namespace pigeon {
namespace {

using Outcome = LoginLimiter::Outcome;

// A login of `user` at `now` that the password check refuses; false if the
// limiter refused it first.
bool FailedLogin(LoginLimiter& l, const char* user, int64_t now) {
  bool tracked = false;
  if (l.Begin(user, now, &tracked) > 0) return false;
  if (tracked) l.End(user, Outcome::kFailed, now);
  return true;
}

int64_t Wait(LoginLimiter& l, const char* user, int64_t now) {
  bool tracked = false;
  int64_t wait = l.Begin(user, now, &tracked);
  if (tracked) l.End(user, Outcome::kNotChecked, now);
  return wait;
}

TEST(LoginLimiter, AUsernameIsLockedAfterMaxFailuresUntilItsWindowEnds) {
  LoginLimiter l({.max_failures = 3, .window_ms = 1000});
  for (int64_t t : {0, 100, 200}) EXPECT_TRUE(FailedLogin(l, "alice", t));
  EXPECT_EQ(Wait(l, "alice", 300), 700);  // the window began at the first failure
  EXPECT_EQ(Wait(l, "bob", 300), 0);
  EXPECT_EQ(Wait(l, "alice", 999), 1);
  EXPECT_EQ(Wait(l, "alice", 1000), 0);
  // A new window, with its own count.
  EXPECT_TRUE(FailedLogin(l, "alice", 1500));
  EXPECT_EQ(Wait(l, "alice", 1600), 0);
}

TEST(LoginLimiter, FailuresOfAnEndedWindowDoNotCount) {
  LoginLimiter l({.max_failures = 2, .window_ms = 1000});
  EXPECT_TRUE(FailedLogin(l, "alice", 0));
  EXPECT_TRUE(FailedLogin(l, "alice", 1000));  // the first window is over: a new one
  EXPECT_EQ(Wait(l, "alice", 1001), 0);
  EXPECT_TRUE(FailedLogin(l, "alice", 1002));
  EXPECT_EQ(Wait(l, "alice", 1003), 997);
}

TEST(LoginLimiter, ASuccessClearsTheCountAndAnUncheckedLoginCountsNeitherWay) {
  LoginLimiter l({.max_failures = 2, .window_ms = 1000});
  EXPECT_TRUE(FailedLogin(l, "alice", 0));
  bool tracked = false;
  ASSERT_EQ(l.Begin("alice", 10, &tracked), 0);
  l.End("alice", Outcome::kSucceeded, 10);
  EXPECT_TRUE(FailedLogin(l, "alice", 20));
  ASSERT_EQ(l.Begin("alice", 30, &tracked), 0);
  l.End("alice", Outcome::kNotChecked, 30);
  EXPECT_EQ(Wait(l, "alice", 40), 0);
}

// Guesses sent all at once: those still being checked count as failures, so
// no more than max_failures are let through.
TEST(LoginLimiter, AttemptsBeingCheckedCountUntilTheyEnd) {
  LoginLimiter l({.max_failures = 3, .window_ms = 1000});
  bool tracked[3];
  for (bool& t : tracked) ASSERT_EQ(l.Begin("alice", 0, &t), 0);
  bool fourth = false;
  EXPECT_GT(l.Begin("alice", 0, &fourth), 0);
  EXPECT_FALSE(fourth);
  l.End("alice", Outcome::kSucceeded, 5);  // one ends: a place frees
  EXPECT_EQ(Wait(l, "alice", 6), 0);
  l.End("alice", Outcome::kFailed, 7);
  l.End("alice", Outcome::kFailed, 8);
  EXPECT_TRUE(FailedLogin(l, "alice", 9));
  EXPECT_EQ(Wait(l, "alice", 10), 997);
}

TEST(LoginLimiter, AFullTableDropsEndedWindowsAndOtherwiseLeavesNewNamesUntracked) {
  LoginLimiter l({.max_failures = 1, .window_ms = 1000, .max_tracked = 2});
  EXPECT_TRUE(FailedLogin(l, "a", 0));
  EXPECT_TRUE(FailedLogin(l, "b", 500));
  bool tracked = true;
  EXPECT_EQ(l.Begin("c", 600, &tracked), 0);  // full, no window has ended: untracked
  EXPECT_FALSE(tracked);
  EXPECT_GT(Wait(l, "a", 700), 0);
  EXPECT_GT(Wait(l, "b", 700), 0);
  EXPECT_TRUE(FailedLogin(l, "c", 1200));  // a's window ended: its entry makes room
  EXPECT_GT(Wait(l, "c", 1300), 0);
  EXPECT_GT(Wait(l, "b", 1300), 0);
}

TEST(LoginLimiter, ZeroMaxFailuresIsNoLimit) {
  LoginLimiter l({.max_failures = 0});
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(FailedLogin(l, "alice", i));
  EXPECT_EQ(Wait(l, "alice", 100), 0);
}

}  // namespace
}  // namespace pigeon
