#include "server/backups.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include "core/ids.h"
#include "core/thread_name.h"

namespace pigeon {

Backups::Backups(RocksStore& store, Metrics& metrics, std::string dir)
    : store_(store), metrics_(metrics), dir_(std::move(dir)) {}

Backups::~Backups() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) thread_.join();
}

bool Backups::Start() {
  if (dir_.empty()) {
    spdlog::warn("backup: requested, but backup_dir is not set");
    return false;
  }
  std::lock_guard lock(mu_);
  if (running_) {
    spdlog::warn("backup: requested while one is running; ignored");
    return false;
  }
  if (thread_.joinable()) thread_.join();  // the last one, finished
  // A name per millisecond, in UTC, sorting by time: 20261206T094512.345Z.
  const int64_t now = NowMs();
  const std::time_t secs = static_cast<std::time_t>(now / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char name[40];
  const size_t n = std::strftime(name, sizeof name, "%Y%m%dT%H%M%S", &utc);
  std::snprintf(name + n, sizeof name - n, ".%03dZ", static_cast<int>(now % 1000));
  running_ = true;
  thread_ = std::thread([this, target = dir_ + "/" + name] { Run(target); });
  return true;
}

void Backups::Run(std::string target) {
  NameThisThread("pg-backup");
  spdlog::info("backup: to {}", target);
  const auto start = std::chrono::steady_clock::now();
  Status s = store_.Checkpoint(target);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.backup_last_seconds.Set(took);
  if (s.ok()) {
    metrics_.backups.Increment();
    metrics_.backup_last_success_time.Set(static_cast<double>(NowMs()) / 1000);
    spdlog::info("backup: {} done in {:.2f} s", target, took);
  } else {
    metrics_.backup_failures.Increment();
    spdlog::error("{}", s.message());
  }
  running_ = false;
}

}  // namespace pigeon
