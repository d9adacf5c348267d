#include "chat/commit_pipeline.h"

#include <chrono>

#include "core/ids.h"
#include "core/thread_name.h"
#include "core/wake_batch.h"

namespace pigeon {

CommitPipeline::CommitPipeline(MessageStore& store, Metrics& metrics, Options options)
    : store_(store), metrics_(metrics), options_(options), thread_([this] { Run(); }) {}

CommitPipeline::~CommitPipeline() { Stop(); }

bool CommitPipeline::Submit(WriteOp op, Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || ops_.size() >= options_.max_queue) return false;
    ops_.push_back(std::move(op));
    dones_.push_back(std::move(done));
    // Only the first op of a batch needs to wake the committer (and, with a
    // commit delay, the one that fills the batch); the rest ride along.
    if (ops_.size() == 1 && options_.delay_us) first_at_ = std::chrono::steady_clock::now();
    if (ops_.size() != 1 && !(options_.delay_us && ops_.size() == options_.delay_ops)) return true;
  }
  cv_.notify_one();
  return true;
}

void CommitPipeline::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;  // the first caller joins; later calls are no-ops
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void CommitPipeline::Run() {
  NameThisThread("pg-commit");
  std::vector<WriteOp> ops;
  std::vector<Done> dones;
  std::vector<OpResult> results;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !ops_.empty(); });
      if (ops_.empty()) return;  // stopping, and everything is committed
      if (options_.delay_us && ops_.size() < options_.delay_ops)
        cv_.wait_until(lock, first_at_ + std::chrono::microseconds(options_.delay_us),
                       [&] { return stopping_ || ops_.size() >= options_.delay_ops; });
      if (ops_.size() <= options_.max_batch) {
        ops.swap(ops_);
        dones.swap(dones_);
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
    auto start = std::chrono::steady_clock::now();
    Status s = store_.Commit(ops, NowMs(), &results);
    metrics_.commit_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    metrics_.commit_batch_ops.Observe(static_cast<double>(ops.size()));
    // The callbacks' hand-offs to network threads go out once, after the loop.
    WakeBatch wakes;
    for (size_t i = 0; i < dones.size(); ++i) {
      if (s.ok()) {
        dones[i](results[i]);
      } else {
        OpResult failed{Status(ErrorCode::kUnavailable, "store unavailable: " + s.message()), {}};
        dones[i](failed);
      }
    }
    ops.clear();
    dones.clear();
  }
}

}  // namespace pigeon
