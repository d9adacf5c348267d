#include "gateway/event_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pigeon {

EventLoop::EventLoop() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) return;
  // Edge-triggered, never read: every write is an edge, so the counter need
  // not be drained (it would take centuries of wake-ups to overflow 2^64).
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.ptr = nullptr;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    close(wake_fd_);
    wake_fd_ = -1;
  }
}

EventLoop::~EventLoop() {
  if (wake_fd_ >= 0) close(wake_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

Status EventLoop::Add(int fd, Handler* h) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = h;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    return Status(ErrorCode::kUnavailable, std::string("epoll_ctl: ") + std::strerror(errno));
  return Status::Ok();
}

void EventLoop::Remove(int fd) { epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::After(std::chrono::milliseconds after, std::function<void()> fn) {
  timers_.push(Timer{Clock::now() + after, ++timer_seq_, std::move(fn)});
}

void EventLoop::Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

void EventLoop::DeferToOwnTurn(std::function<void()> fn) { own_deferred_.push_back(std::move(fn)); }

void EventLoop::Post(Task task) {
  {
    std::lock_guard lock(mail_mu_);
    mail_.push_back(std::move(task));
    if (mail_woken_) return;  // the coming RunMail takes this one too
    mail_woken_ = true;
  }
  if (!WakeBatch::Defer(this)) Wake();
}

void EventLoop::PostBulk(Task task) {
  {
    std::lock_guard lock(mail_mu_);
    bulk_.push_back(std::move(task));
    if (mail_woken_) return;  // the coming RunMail takes this one too
    mail_woken_ = true;
  }
  Wake();  // not a borrowed turn's: those run no bulk work
}

void EventLoop::Wake() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;  // EAGAIN only at a counter of 2^64-2: the loop is awake anyway
}

void EventLoop::WakeFromBatch() {
  std::unique_lock turn(turn_mu_, std::try_to_lock);
  if (!turn.owns_lock() || !running_) {
    if (turn.owns_lock()) turn.unlock();
    return Wake();
  }
  // The thread sleeps in epoll_wait (or is about to, or has just returned and
  // waits for this lock): run its mail here. Events it has already taken stay
  // its own to handle, after this.
  const uint64_t timers_before = timer_seq_;
  const bool bulk_waits = RunMail(/*own_turn=*/false);
  RunDeferred();
  // It sleeps with a timeout computed before this turn, frees what this turn
  // closed only in a turn of its own, and runs bulk work only there: wake it
  // for any of these.
  const bool wake = timer_seq_ != timers_before || !own_deferred_.empty() || bulk_waits;
  turn.unlock();
  if (wake) Wake();
}

void EventLoop::Stop() {
  stopping_.store(true, std::memory_order_release);
  Wake();
}

int EventLoop::NextTimeoutMs() const {
  if (!deferred_.empty() || !own_deferred_.empty() || !bulk_running_.empty()) return 0;
  if (timers_.empty()) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(timers_.top().at - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 60000));
}

bool EventLoop::RunMail(bool own_turn) {
  bool bulk_waits;
  {
    std::lock_guard lock(mail_mu_);
    running_mail_.swap(mail_);
    if (own_turn) {
      for (auto& task : bulk_) bulk_running_.push_back(std::move(task));
      bulk_.clear();
    }
    bulk_waits = !bulk_.empty();
    mail_woken_ = false;
  }
  for (auto& task : running_mail_) task();
  running_mail_.clear();
  return bulk_waits;
}

void EventLoop::RunBulk() {
  if (bulk_running_.empty()) return;
  const auto end = Clock::now() + std::chrono::microseconds(kBulkSliceUs);
  do {
    Task task = std::move(bulk_running_.front());
    bulk_running_.pop_front();
    task();
  } while (!bulk_running_.empty() && Clock::now() < end);
}

void EventLoop::RunDeferred() {
  while (!deferred_.empty()) {
    deferred_running_.swap(deferred_);  // what these calls defer goes into the other buffer
    for (auto& fn : deferred_running_) fn();
    deferred_running_.clear();
  }
}

void EventLoop::RunTimers() {
  if (timers_.empty()) return;
  auto now = Clock::now();
  while (!timers_.empty() && timers_.top().at <= now) {
    auto fn = std::move(const_cast<Timer&>(timers_.top()).fn);
    timers_.pop();
    fn();
  }
}

void EventLoop::Run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  std::unique_lock turn(turn_mu_);
  running_ = true;
  while (!stopping_.load(std::memory_order_acquire)) {
    const int timeout = NextTimeoutMs();
    turn.unlock();  // asleep: a WakeBatch may borrow a turn meanwhile
    int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout);
    turn.lock();
    if (n < 0 && errno != EINTR) {
      spdlog::critical("event loop: epoll_wait failed ({}); this network thread stops",
                       std::strerror(errno));
      break;
    }
    bool mail = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        mail = true;  // after this turn's socket events: they may be answered together
        continue;
      }
      static_cast<Handler*>(events[i].data.ptr)->OnEvents(events[i].events);
    }
    if (mail) RunMail(/*own_turn=*/true);
    RunBulk();
    RunTimers();
    RunDeferred();
    for (auto& fn : own_deferred_) fn();
    own_deferred_.clear();
  }
  running_ = false;
}

}  // namespace pigeon
