#include "core/task.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>

namespace pigeon {
namespace {

// Counts live copies of itself, to see every functor destroyed exactly once.
struct Tracked {
  explicit Tracked(int& live) : live(&live) { ++live; }
  Tracked(Tracked&& o) noexcept : live(o.live) { ++*live; }
  ~Tracked() { --*live; }
  int* live;
};

TEST(InlineFunction, KeepsSmallFunctorsInPlaceAndLargeOnesOnTheHeap) {
  auto small = [p = std::make_shared<int>(1), n = 7] { return *p + n; };
  std::array<char, 300> big{};
  auto large = [big] { return static_cast<int>(big.size()); };
  static_assert(InlineFunction<int(), 64>::FitsInPlace<decltype(small)>());
  static_assert(!InlineFunction<int(), 64>::FitsInPlace<decltype(large)>());
  InlineFunction<int(), 64> a = small, b = large;
  EXPECT_EQ(a(), 8);
  EXPECT_EQ(b(), 300);
}

TEST(InlineFunction, MovesDestroyEachFunctorOnceAndPassArguments) {
  int live = 0;
  {
    std::string seen;
    InlineFunction<void(std::string), 64> in_place = [t = Tracked(live), &seen](std::string s) {
      seen += s;
    };
    InlineFunction<void(std::string), 8> on_heap = [t = Tracked(live), &seen](std::string s) {
      seen += "[" + s + "]";
    };
    EXPECT_EQ(live, 2);
    auto moved = std::move(in_place);
    EXPECT_FALSE(in_place);
    moved("a");
    auto moved_heap = std::move(on_heap);
    moved_heap("b");
    EXPECT_EQ(seen, "a[b]");
    EXPECT_EQ(live, 2);
    moved = std::move(moved_heap);  // the in-place functor is destroyed, the heap one moves
    EXPECT_EQ(live, 1);
    moved("c");
    EXPECT_EQ(seen, "a[b][c]");
    std::vector<Task> tasks;  // a mailbox grows by moving its tasks
    for (int i = 0; i < 100; ++i) tasks.emplace_back([t = Tracked(live)] {});
    EXPECT_EQ(live, 101);
  }
  EXPECT_EQ(live, 0);
}

}  // namespace
}  // namespace pigeon
