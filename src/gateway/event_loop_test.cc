#include "gateway/event_loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
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
