#include "core/shared_frame.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace pigeon {
namespace {

TEST(SharedFrame, CopiesShareOneCopyOfTheText) {
  std::string text = R"({"type":"message","body":"hi"})";
  SharedFrame a(text);
  text[0] = 'x';  // the frame holds its own copy
  SharedFrame b = a;
  EXPECT_EQ(*a, R"({"type":"message","body":"hi"})");
  EXPECT_EQ(b.view().data(), a.view().data());
  SharedFrame c = std::move(b);
  EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move): a moved-from frame is empty
  EXPECT_EQ(c.view().data(), a.view().data());
  a = SharedFrame("other");
  EXPECT_EQ(*a, "other");
  EXPECT_EQ(*c, R"({"type":"message","body":"hi"})");
}

TEST(SharedFrame, AnEmptyTextAndNoFrameAreDifferent) {
  SharedFrame none;
  SharedFrame empty{std::string_view()};
  EXPECT_FALSE(none);
  EXPECT_TRUE(empty);
  EXPECT_EQ(*none, "");
  EXPECT_EQ(*empty, "");
}

// Frames are made on the committer and dropped on network threads: the last
// holder frees, once (LeakSanitizer and ASan check the rest).
TEST(SharedFrame, TheLastHolderOnAnyThreadFreesIt) {
  for (int round = 0; round < 200; ++round) {
    SharedFrame f(std::string(100, 'a' + round % 26));
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([copy = f] {
        std::vector<SharedFrame> more(50, copy);
        for (auto& m : more) ASSERT_EQ(m.view().size(), 100u);
      });
    f = SharedFrame();
    for (auto& t : ts) t.join();
  }
}

}  // namespace
}  // namespace pigeon
