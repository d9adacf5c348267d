// Online backups of the embedded store, on request (pigeond runs one on
// SIGUSR1) and every `interval_s` if set: each a consistent copy of the store
// at that moment, in `dir`/<UTC time>, taken on a thread of its own while
// pigeond serves, one at a time. After each one that succeeds, only the newest
// `keep` backups stay (0: all); nothing in `dir` but backups named as these
// are is ever removed. A backup directory is a data directory: to restore,
// stop pigeond and start it with --data-dir pointing at (a copy of) it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chat/metrics.h"
#include "store/rocksdb/rocks_store.h"

namespace pigeon {

class Backups {
 public:
  struct Options {
    std::string dir;
    uint32_t keep = 0;        // after a backup, the newest this many stay; 0: all
    uint64_t interval_s = 0;  // a backup every this many seconds; 0: on request only
  };
  Backups(RocksStore& store, Metrics& metrics, Options options);
  ~Backups();  // stops the schedule, waits for a backup in progress

  // Starts a backup: false (logged) when `dir` is empty or one is running.
  bool Start();

  // The names of `dir`'s backups, oldest first: directories named as Start()
  // names them (20261206T094512.345Z), nothing else.
  static std::vector<std::string> List(const std::string& dir);

 private:
  void Run(std::string target);
  void RemoveOld();
  void Schedule();

  RocksStore& store_;
  Metrics& metrics_;
  const Options options_;
  std::mutex mu_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  // The schedule (interval_s).
  std::mutex schedule_mu_;
  std::condition_variable schedule_cv_;
  bool stopping_ = false;
  std::thread scheduler_;
};

}  // namespace pigeon
