#include "chat/retention.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "core/ids.h"
#include "core/thread_name.h"

namespace pigeon {

Retention::Retention(MessageStore& store, CommitPipeline& pipeline, Metrics& metrics,
                     Options options)
    : store_(store), pipeline_(pipeline), metrics_(metrics), options_(options) {}

Retention::~Retention() { Stop(); }

void Retention::Start() {
  if (options_.keep_ms <= 0 || thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void Retention::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Retention::Run() {
  NameThisThread("pg-retention");
  for (bool first = true;; first = false) {
    {
      std::unique_lock lock(mu_);
      const int64_t wait_ms =
          first ? std::min(options_.first_delay_ms, options_.interval_ms) : options_.interval_ms;
      wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping_; });
      if (stopping_) return;
    }
    auto start = std::chrono::steady_clock::now();
    if (Status s = Sweep(NowMs() - options_.keep_ms); !s.ok()) {
      // The next sweep starts over; what this one removed stays removed.
      spdlog::warn("retention: sweep stopped: {}", s.message());
      continue;
    }
    spdlog::debug("retention: sweep done in {:.2f} s",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
}

Result<bool> Retention::CommitSlice(op::Expire&& expire) {
  for (;;) {
    std::promise<Status> committed;
    auto result = committed.get_future();
    WriteOp op(std::move(expire));
    if (pipeline_.Submit(std::move(op),
                         [&committed](OpResult& r) { committed.set_value(r.status); })) {
      Status s = result.get();
      if (!s.ok()) return s;
      return true;
    }
    // The queue is full (the pipeline keeps the op unmoved) or stopping.
    expire = std::move(std::get<op::Expire>(op));
    std::unique_lock lock(mu_);
    if (wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; }))
      return false;
  }
}

Status Retention::Sweep(int64_t before_ms) {
  std::string resume;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return Status::Ok();
    }
    auto slice = store_.FindExpired(before_ms, resume, options_.keys_per_commit);
    if (!slice.ok()) return slice.status();
    if (!slice->expire.keys.empty()) {
      auto committed = CommitSlice(std::move(slice->expire));
      if (!committed.ok()) return committed.status();
      if (!*committed) return Status::Ok();
      metrics_.retention_feed_entries_removed.Increment(static_cast<double>(slice->feed_entries));
      metrics_.retention_messages_removed.Increment(static_cast<double>(slice->messages));
    }
    if (slice->done) break;
    resume = std::move(slice->resume);
  }
  metrics_.retention_sweeps.Increment();
  return Status::Ok();
}

}  // namespace pigeon
