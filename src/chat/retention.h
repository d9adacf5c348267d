// Retention: feed entries, messages and their dedup keys older than
// `keep_ms` are removed, by a sweep every `interval_ms` on a thread of its
// own. The sweep reads the store a slice at a time (MessageStore::FindExpired)
// and commits each slice's removals through the commit pipeline like any
// other write, so the committer stays the store's one writer and a slice
// waits its turn behind the messages of the moment; the next slice is read
// once the last one is committed, which paces the sweep by the commits.
//
// A feed or conversation that loses everything keeps its newest position or
// seq: a device's cursor stays valid and new entries continue after it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "chat/commit_pipeline.h"
#include "chat/metrics.h"
#include "core/status.h"
#include "store/message_store.h"

namespace pigeon {

class Retention {
 public:
  struct Options {
    int64_t keep_ms = 30LL * 24 * 3600 * 1000;  // 0: keep everything (no sweeps)
    int64_t interval_ms = 3600 * 1000;          // between the end of one sweep and the next
    // The first sweep, after the start: soon, so that a server restarted
    // more often than interval_ms still sweeps, but not while the devices
    // that a restart disconnected all reconnect and replay.
    int64_t first_delay_ms = 60 * 1000;  // (or interval_ms, if that is shorter)
    size_t keys_per_commit = 512;        // keys one slice removes, about
  };
  Retention(MessageStore& store, CommitPipeline& pipeline, Metrics& metrics, Options options);
  ~Retention();  // Stop()

  // Starts the sweeps; nothing with keep_ms 0.
  void Start();
  // Ends the sweep in progress after its current slice; idempotent.
  void Stop();

  // One whole sweep of what was committed before `before_ms`, on the calling
  // thread. Stops early (ok) when Stop() is called.
  Status Sweep(int64_t before_ms);

 private:
  void Run();
  // Commits one slice's removals; false when stopping.
  Result<bool> CommitSlice(op::Expire&& expire);

  MessageStore& store_;
  CommitPipeline& pipeline_;
  Metrics& metrics_;
  const Options options_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pigeon
