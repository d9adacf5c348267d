// Online backups of the embedded store, on request (pigeond runs one on
// SIGUSR1): each a consistent copy of the store at that moment, in
// `dir`/<UTC time>, taken on a thread of its own while pigeond serves, one at
// a time. A backup directory is a data directory: to restore, stop pigeond
// and start it with --data-dir pointing at (a copy of) it.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "chat/metrics.h"
#include "store/rocksdb/rocks_store.h"

namespace pigeon {

class Backups {
 public:
  Backups(RocksStore& store, Metrics& metrics, std::string dir);
  ~Backups();  // waits for a backup in progress

  // Starts a backup: false (logged) when `dir` is empty or one is running.
  bool Start();

 private:
  void Run(std::string target);

  RocksStore& store_;
  Metrics& metrics_;
  const std::string dir_;
  std::mutex mu_;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace pigeon
