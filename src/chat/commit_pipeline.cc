#include "chat/commit_pipeline.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>

#include "core/ids.h"
#include "core/thread_name.h"
#include "core/wake_batch.h"

namespace pigeon {
namespace {

using Clock = std::chrono::steady_clock;

// A time already past: an absolute timer set to it goes off at once.
constexpr Clock::time_point kNow{Clock::duration{1}};

int NewTimer() {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "commit pipeline timer");
  return fd;
}

}  // namespace

// steady_clock is CLOCK_MONOTONIC: its time points are the timer's absolute times.
static_assert(Clock::is_steady);

CommitPipeline::CommitPipeline(MessageStore& store, Metrics& metrics, Options options)
    : store_(store), metrics_(metrics), options_(options), timer_fd_(NewTimer()), thread_([this] {
        Run();
      }) {}

CommitPipeline::~CommitPipeline() {
  Stop();
  close(timer_fd_);
}

void CommitPipeline::ArmLocked(Clock::time_point at) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  arms_.store(arms_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  timer_idle_ = false;
}

void CommitPipeline::DisarmLocked() {
  if (timer_idle_) return;  // nothing to stop or to clear
  itimerspec off{};
  timerfd_settime(timer_fd_, 0, &off, nullptr);
  timer_idle_ = true;
}

bool CommitPipeline::Submit(WriteOp&& op, Done&& done) {
  std::lock_guard lock(mu_);
  if (stopping_ || ops_.size() >= options_.max_queue) return false;
  ops_.push_back(std::move(op));
  dones_.push_back(std::move(done));
  // Only the first op of a batch sets the committer's timer (and, with a
  // commit delay, the one that fills the batch); the rest ride along.
  if (ops_.size() == 1) {
    if (options_.delay_us) {
      first_at_ = Clock::now();
      ArmLocked(first_at_ + std::chrono::microseconds(options_.delay_us));
    } else {
      ArmLocked(kNow);
    }
  } else if (options_.delay_us && ops_.size() == options_.delay_ops) {
    ArmLocked(kNow);
  }
  return true;
}

void CommitPipeline::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;  // the first caller joins; later calls are no-ops
    stopping_ = true;
    ArmLocked(kNow);
  }
  thread_.join();
}

void CommitPipeline::Run() {
  NameThisThread("pg-commit");
  std::vector<WriteOp> ops;
  std::vector<Done> dones;
  std::vector<OpResult> results;
  // arms_ right after the committer's last read() of the timer returned.
  constexpr uint64_t kNotRead = ~uint64_t{0};
  uint64_t arms_at_read = kNotRead;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // No setting since the read: the timer is off, its expiry consumed. (A
      // setting in the instant between the read and the load of arms_ is
      // missed: it costs at most one wake-up for nothing, never a late one.)
      if (arms_at_read == arms_.load(std::memory_order_relaxed)) timer_idle_ = true;
      arms_at_read = kNotRead;
      if (!DueLocked()) {
        if (stopping_) return;  // and everything is committed
        lock.unlock();
        // Until a submitter's deadline, or a full batch, or Stop.
        uint64_t expirations;
        while (read(timer_fd_, &expirations, sizeof expirations) < 0 && errno == EINTR) {
        }
        arms_at_read = arms_.load(std::memory_order_relaxed);
        continue;
      }
      if (ops_.size() <= options_.max_batch) {
        ops.swap(ops_);
        dones.swap(dones_);
        // This batch's deadline, if it is still to come (or come and unread),
        // would only wake us for nothing; the next batch's first op sets the
        // timer again.
        DisarmLocked();
      } else {
        auto n = static_cast<std::ptrdiff_t>(options_.max_batch);
        ops.assign(std::make_move_iterator(ops_.begin()),
                   std::make_move_iterator(ops_.begin() + n));
        dones.assign(std::make_move_iterator(dones_.begin()),
                     std::make_move_iterator(dones_.begin() + n));
        ops_.erase(ops_.begin(), ops_.begin() + n);
        dones_.erase(dones_.begin(), dones_.begin() + n);
      }
      metrics_.commit_queue_depth.Set(static_cast<double>(ops_.size()));
    }
    auto start = Clock::now();
    Status s = store_.Commit(ops, NowMs(), &results);
    metrics_.commit_seconds.Observe(std::chrono::duration<double>(Clock::now() - start).count());
    metrics_.commit_batch_ops.Observe(static_cast<double>(ops.size()));
    // The callbacks' hand-offs to network threads go out once, after the loop.
    WakeBatch wakes;
    for (size_t i = 0; i < dones.size(); ++i) {
      if (s.ok()) {
        dones[i](results[i]);
      } else {
        OpResult failed{Status(ErrorCode::kUnavailable, s.message()), {}};
        dones[i](failed);
      }
    }
    // A small batch, and the next one still gathering: rather than wake the
    // network threads, write their sockets' output here, in borrowed turns
    // (event_loop.h), in time the committer would sleep. A larger batch's
    // writes would hold up the next commit: its threads are woken, as is every
    // thread when the next batch is already due.
    if (ops.size() <= options_.delay_ops / 2) {
      std::lock_guard lock(mu_);
      if (!DueLocked()) wakes.RunHere();
    }
    ops.clear();
    dones.clear();
  }
}

bool CommitPipeline::DueLocked() const {
  return !ops_.empty() &&
         (stopping_ || !options_.delay_us || ops_.size() >= options_.delay_ops ||
          Clock::now() >= first_at_ + std::chrono::microseconds(options_.delay_us));
}

}  // namespace pigeon
