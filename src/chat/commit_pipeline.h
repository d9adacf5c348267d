// CommitPipeline: group commit. Every durable change from every socket and
// request goes through one bounded queue to one committer thread, which takes
// everything queued (up to max_batch) and hands it to MessageStore::Commit as
// one unit: one fsync (or one replicated transaction) for many operations.
// While one commit runs, the next batch gathers, so the batch grows with load
// and the fsync latency is the floor of ack latency, not a cap on throughput.
//
// Callbacks run on the committer thread, after the commit is durable, in
// commit order. They must not block: post work elsewhere.
//
// The committer sleeps on one timer (a timerfd), which the submitters arm: the
// first op of a batch sets it to the end of the commit delay (or to now, with
// no delay), and the op that fills the batch to `delay_ops` sets it to now.
// So a batch costs the committer one wake-up; a condition variable needed two
// (one when the first op came, one when its delay ran out), and a wake-up of
// a sleeping thread is about 12 µs of CPU on the machine we measure on.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "chat/metrics.h"
#include "core/task.h"
#include "store/message_store.h"

namespace pigeon {

class CommitPipeline {
 public:
  struct Options {
    size_t max_queue = 100000;  // ops waiting; past it Submit refuses (unavailable)
    size_t max_batch = 8192;    // ops per store commit
    // Commit delay (as PostgreSQL's commit_delay): a batch smaller than
    // `delay_ops` waits up to `delay_us` after its first op for more to join.
    // Fewer, larger fsyncs cost less CPU per op at moderate load, for at most
    // `delay_us` of latency; 0 turns it off.
    uint32_t delay_us = 0;
    size_t delay_ops = 64;
  };
  // Room in place for a send's completion and what it carries (ChatService::Send).
  using Done = InlineFunction<void(OpResult&), 192>;

  CommitPipeline(MessageStore& store, Metrics& metrics, Options options);
  ~CommitPipeline();  // Stop()

  // Queues `op`; `done` gets its result once committed (or the error that kept
  // it from being committed). False when the queue is full or the pipeline is
  // stopping: then `done` is not called, and neither argument is moved from.
  [[nodiscard]] bool Submit(WriteOp&& op, Done&& done);
  // Commits what is queued, then stops the thread. Idempotent.
  void Stop();

 private:
  void Run();
  // Sets the committer's timer to go off at `at` (or now, if that is past).
  // Under mu_, so arming and disarming keep the order of the queue's changes.
  void ArmLocked(std::chrono::steady_clock::time_point at);
  void DisarmLocked();
  // A batch is ready: its delay is over, or it is full, or the pipeline stops.
  bool DueLocked() const;

  MessageStore& store_;
  Metrics& metrics_;
  Options options_;
  int timer_fd_;  // the committer sleeps in read() on it
  std::mutex mu_;
  std::vector<WriteOp> ops_;
  std::vector<Done> dones_;
  std::chrono::steady_clock::time_point first_at_;  // when ops_ became non-empty
  // Times the timer was set (ArmLocked; written under mu_), and whether it is
  // neither set nor holding an unread expiry: then taking a batch need not
  // disarm it (a timerfd_settime per commit). A read() of the one-shot timer
  // returns once its current setting has expired, and consumes that expiry:
  // the timer is idle after it until the next setting.
  std::atomic<uint64_t> arms_ = 0;
  bool timer_idle_ = true;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pigeon
