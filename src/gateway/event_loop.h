// EventLoop: one per network thread, on Linux epoll, edge-triggered.
//
// A socket is registered once, for reading and writing, and never re-armed:
// readiness is reported on every change, and the owner reads until a short
// read and writes until EAGAIN. (Asio's async_wait re-arms its descriptor with
// an epoll_ctl on every wait: one extra syscall per message received.)
//
// Other threads hand work over with Post(): a mailbox that runs in one turn of
// the loop, woken by one eventfd write however many tasks arrived meanwhile.
// Timers are for rare things (heartbeat sweeps, lingering closes, accept
// retries): a min-heap, at millisecond resolution.
//
// A turn: wait for events (or the next timer), run them, then the mail, then
// due timers, then deferred tasks (the owner's batched writes, releases) until
// none is left.
//
// Borrowed turns. The loop's thread holds a turn lock for each turn and lets
// go of it only to sleep in epoll_wait. When a WakeBatch closes (the
// committer, after a commit), a loop whose thread is asleep is not woken: the
// closing thread takes the turn lock and runs the mail, and the deferred tasks
// it leaves (the sockets' writes), itself. Every turn, the loop's own or a
// borrowed one, runs under the lock, so the connections' state still has one
// writer at a time; a borrowed turn saves the sleeping thread a wake-up (about
// 12 µs of CPU on the machine we measure on) and the deliveries a hop.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

#include "core/status.h"
#include "core/task.h"
#include "core/wake_batch.h"

namespace pigeon {

class EventLoop : public Wakeable {
 public:
  class Handler {
   public:
    // On the loop's thread: `events` is an epoll mask (EPOLLIN, EPOLLOUT,
    // EPOLLRDHUP, EPOLLHUP, EPOLLERR).
    virtual void OnEvents(uint32_t events) = 0;

   protected:
    ~Handler() = default;
  };
  using Clock = std::chrono::steady_clock;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // False if the kernel refused the epoll or eventfd descriptor.
  bool ok() const { return epoll_fd_ >= 0 && wake_fd_ >= 0; }

  // ---- the loop's thread ----
  // Runs turns until Stop().
  void Run();
  // Watches `fd` (non-blocking) for input and output, edge-triggered, until
  // it is closed. `h` must stay valid while events for it can be delivered:
  // until the end of the turn in which the descriptor is closed.
  Status Add(int fd, Handler* h);
  // Stops watching `fd` (still open: it goes to another loop). Events this
  // turn already took may still name its handler until the turn ends.
  void Remove(int fd);
  // Runs `fn` once, `after` from now (not earlier; late by up to one turn).
  void After(std::chrono::milliseconds after, std::function<void()> fn);
  // Runs `fn` at the end of this turn, after its events, mail and timers.
  void Defer(std::function<void()> fn);
  // Runs `fn` at the end of a turn of the loop's own thread, never of a
  // borrowed one: for freeing what events the thread has already taken from
  // epoll_wait, but not yet handled, may still name.
  void DeferToOwnTurn(std::function<void()> fn);

  // ---- any thread ----
  // Runs `task` on the loop's thread, FIFO. Inside a WakeBatch the wake-up
  // waits for the batch's end. (A Task: the hand-offs of every message, an
  // ack and each delivery, pass here without an allocation.)
  void Post(Task task);
  // Like Post, for bulk work that may wait behind live traffic (a reconnect
  // storm's upgrades and feed replays, HTTP answers): FIFO among themselves,
  // run only in the loop's own turns, after that turn's mail, for at most
  // about kBulkSliceUs of each turn. So a storm's thousands of replay pages
  // queued at once do not hold up the acks and deliveries posted after them.
  void PostBulk(Task task);
  static constexpr int kBulkSliceUs = 1000;
  void Wake() override;
  // When a WakeBatch closes: if the loop's thread is between turns, runs the
  // mail here, in a borrowed turn; otherwise (it is busy, or the loop is not
  // running) wakes it.
  void WakeFromBatch() override;
  // Makes Run() return after the current turn. Idempotent.
  void Stop();

 private:
  struct Timer {
    Clock::time_point at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Timer& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  int NextTimeoutMs() const;
  // Runs the mail; in the thread's own turn it also takes the bulk work
  // posted so far, for RunBulk. True if bulk work is left in bulk_.
  bool RunMail(bool own_turn);
  void RunBulk();
  void RunTimers();
  void RunDeferred();

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  // Held by every turn, the loop's own and borrowed ones; all below but the
  // mail is guarded by it.
  std::mutex turn_mu_;
  bool running_ = false;  // inside Run(): turns may be borrowed
  std::vector<std::function<void()>> deferred_;
  // The deferred calls being run; swapped with deferred_, so both keep their
  // buffers from turn to turn (a turn defers its socket flush: no allocation).
  std::vector<std::function<void()>> deferred_running_;
  std::vector<std::function<void()>> own_deferred_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  uint64_t timer_seq_ = 0;

  std::mutex mail_mu_;
  std::vector<Task> mail_;          // guarded by mail_mu_
  bool mail_woken_ = false;         // guarded: a wake-up is on its way
  std::vector<Task> running_mail_;  // in a turn
  std::vector<Task> bulk_;          // guarded by mail_mu_
  std::deque<Task> bulk_running_;   // the loop thread's: taken from bulk_, not yet run
};

}  // namespace pigeon
