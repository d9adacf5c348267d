#include "gateway/event_loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>

namespace pigeon {
namespace {

// Runs a loop on its own thread for the test's duration.
struct LoopThread {
  EventLoop loop;
  std::thread thread;
  std::thread::id id;
  LoopThread() {
    std::promise<std::thread::id> started;
    thread = std::thread([&] {
      started.set_value(std::this_thread::get_id());
      loop.Run();
    });
    id = started.get_future().get();
  }
  ~LoopThread() {
    loop.Stop();
    thread.join();
  }
  // Runs `fn` on the loop's thread and waits for it.
  template <class F>
  void On(F fn) {
    std::promise<void> done;
    loop.Post([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
};

TEST(EventLoop, PostedTasksRunOnTheLoopThreadInOrder) {
  LoopThread t;
  ASSERT_TRUE(t.loop.ok());
  std::vector<int> seen;
  std::atomic<bool> wrong_thread{false};
  for (int i = 0; i < 1000; ++i)
    t.loop.Post([&, i] {
      if (std::this_thread::get_id() != t.id) wrong_thread = true;
      seen.push_back(i);
    });
  t.On([] {});
  ASSERT_EQ(seen.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE(wrong_thread);
}

// Bulk work (PostBulk) runs after the mail of its turn and for about
// kBulkSliceUs of each turn: a live task posted meanwhile goes first.
TEST(EventLoop, BulkWorkWaitsBehindLiveMailAndTakesASliceOfEachTurn) {
  static_assert(EventLoop::kBulkSliceUs < 1200);  // two bulk tasks below fill a slice
  LoopThread t;
  std::vector<std::string> order;  // the loop thread's
  std::promise<void> done;
  t.loop.Post([&] {
    for (int i = 1; i <= 4; ++i)
      t.loop.PostBulk([&, i] {
        auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(600);
        while (std::chrono::steady_clock::now() < end) {
        }
        order.push_back("B" + std::to_string(i));
        if (i == 1) t.loop.Post([&] { order.push_back("L2"); });
        if (i == 4) done.set_value();
      });
    t.loop.Post([&] { order.push_back("L1"); });
  });
  done.get_future().wait();
  t.On([] {});
  auto at = [&](const std::string& name) {
    return std::find(order.begin(), order.end(), name) - order.begin();
  };
  ASSERT_EQ(order.size(), 6u);
  EXPECT_EQ(order[0], "L1");  // posted after the bulk work, run before it
  EXPECT_LT(at("B1"), at("B2"));
  EXPECT_LT(at("B2"), at("B3"));
  EXPECT_LT(at("B3"), at("B4"));
  // The first slice ends after B1 or B2 (600 µs each): L2, posted by B1, runs
  // in the next turn, before B3.
  EXPECT_GT(at("L2"), at("B1"));
  EXPECT_LT(at("L2"), at("B3"));
}

TEST(EventLoop, WakeBatchHoldsTheWakeUpUntilItCloses) {
  LoopThread t;
  std::atomic<int> ran{0};
  {
    WakeBatch batch;
    for (int i = 0; i < 10; ++i) t.loop.Post([&] { ++ran; });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(ran.load(), 0);  // queued, not yet woken
  }
  t.On([] {});
  EXPECT_EQ(ran.load(), 10);
}

// Closes a WakeBatch that may run the mail here, with `n` tasks for `t`'s
// loop; returns the threads they ran on, once all have run.
std::vector<std::thread::id> PostInBatchThatRunsHere(LoopThread& t, int n) {
  std::vector<std::thread::id> ran_on;
  {
    WakeBatch batch;
    batch.RunHere();
    for (int i = 0; i < n; ++i) t.loop.Post([&] { ran_on.push_back(std::this_thread::get_id()); });
  }
  t.On([] {});  // anything not run here has run by now
  return ran_on;
}

TEST(EventLoop, ABatchThatRunsHereRunsTheMailOfASleepingLoopOnItsOwnThread) {
  LoopThread t;
  // The loop's thread goes back to epoll_wait right after each turn; retry in
  // case a batch closes in the moment before it lets go of its turn.
  bool borrowed = false;
  for (int attempt = 0; attempt < 100 && !borrowed; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    auto ran_on = PostInBatchThatRunsHere(t, 3);
    ASSERT_EQ(ran_on.size(), 3u);  // each task once, wherever it ran
    borrowed = ran_on[0] == std::this_thread::get_id();
    // One turn runs all three: all here, or all on the loop's thread.
    EXPECT_EQ(ran_on[1], ran_on[0]);
    EXPECT_EQ(ran_on[2], ran_on[0]);
  }
  EXPECT_TRUE(borrowed) << "the mail never ran on the thread that closed the batch";
}

TEST(EventLoop, ABatchThatRunsHereWakesALoopInTheMiddleOfATurn) {
  LoopThread t;
  std::promise<void> release;
  std::promise<void> busy;
  t.loop.Post([&] {
    busy.set_value();
    release.get_future().wait();  // the loop's turn lasts until the batch has closed
  });
  busy.get_future().wait();
  std::vector<std::thread::id> ran_on;
  {
    WakeBatch batch;
    batch.RunHere();
    t.loop.Post([&] { ran_on.push_back(std::this_thread::get_id()); });
  }
  release.set_value();
  t.On([] {});
  ASSERT_EQ(ran_on.size(), 1u);
  EXPECT_EQ(ran_on[0], t.id);
}

TEST(EventLoop, ABorrowedTurnLeavesFreeingToTheLoopsOwnTurnAndWakesItForATimer) {
  LoopThread t;
  std::promise<std::thread::id> freed_on;
  std::promise<std::thread::id> timer_on;
  bool borrowed = false;
  for (int attempt = 0; attempt < 100 && !borrowed; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::atomic<int> ran{0};  // 1: on the loop's thread, 2: here
    {
      WakeBatch batch;
      batch.RunHere();
      t.loop.Post([&] {
        if (std::this_thread::get_id() == t.id) {
          ran = 1;  // not borrowed: try again
          return;
        }
        ran = 2;
        t.loop.DeferToOwnTurn([&] { freed_on.set_value(std::this_thread::get_id()); });
        // The loop's thread sleeps with no timer to wait for: this one must wake it.
        t.loop.After(std::chrono::milliseconds(10),
                     [&] { timer_on.set_value(std::this_thread::get_id()); });
      });
    }
    while (ran.load() == 0) std::this_thread::yield();
    borrowed = ran.load() == 2;
  }
  ASSERT_TRUE(borrowed);
  // Nothing else is posted: only the borrowed turn's own wake-up gets these run.
  auto freed = freed_on.get_future();
  auto timer = timer_on.get_future();
  ASSERT_EQ(freed.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(freed.get(), t.id);
  ASSERT_EQ(timer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(timer.get(), t.id);
}

TEST(EventLoop, TimersRunInDeadlineOrderAndNeverEarly) {
  LoopThread t;
  std::vector<int> order;
  std::promise<void> last;
  auto start = EventLoop::Clock::now();
  EventLoop::Clock::time_point fired_at;
  t.On([&] {
    t.loop.After(std::chrono::milliseconds(60), [&] {
      order.push_back(60);
      fired_at = EventLoop::Clock::now();
      last.set_value();
    });
    t.loop.After(std::chrono::milliseconds(20), [&] { order.push_back(20); });
    t.loop.After(std::chrono::milliseconds(40), [&] { order.push_back(40); });
  });
  last.get_future().wait();
  EXPECT_EQ(order, (std::vector<int>{20, 40, 60}));
  EXPECT_GE(fired_at - start, std::chrono::milliseconds(60));
}

TEST(EventLoop, DeferredTasksRunAtTheEndOfTheTurnAfterItsWork) {
  LoopThread t;
  std::vector<std::string> order;
  t.On([&] {
    t.loop.Defer([&] {
      order.push_back("deferred");
      t.loop.Defer([&] { order.push_back("deferred by deferred"); });
    });
    order.push_back("task");
  });
  t.On([] {});
  EXPECT_EQ(order, (std::vector<std::string>{"task", "deferred", "deferred by deferred"}));
}

struct Recorder : EventLoop::Handler {
  std::atomic<int> readable{0};
  std::atomic<int> hangups{0};
  void OnEvents(uint32_t events) override {
    if (events & EPOLLIN) ++readable;
    if (events & (EPOLLRDHUP | EPOLLHUP)) ++hangups;
  }
};

TEST(EventLoop, ASocketIsReportedOncePerArrivalWithoutReArming) {
  LoopThread t;
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  Recorder r;
  Status added;
  t.On([&] { added = t.loop.Add(fds[0], &r); });
  ASSERT_TRUE(added.ok()) << added.message();
  auto wait_for = [](std::atomic<int>& n, int want) {
    for (int i = 0; i < 200 && n.load() < want; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return n.load();
  };
  ASSERT_EQ(write(fds[1], "a", 1), 1);
  EXPECT_EQ(wait_for(r.readable, 1), 1);
  // Edge-triggered: unread bytes are not reported again...
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(r.readable.load(), 1);
  // ...but every new arrival is, with no call to re-arm.
  ASSERT_EQ(write(fds[1], "b", 1), 1);
  EXPECT_EQ(wait_for(r.readable, 2), 2);
  close(fds[1]);
  EXPECT_GE(wait_for(r.hangups, 1), 1);
  t.On([&] { close(fds[0]); });
}

}  // namespace
}  // namespace pigeon
