#include "server/backups.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>

#include "core/ids.h"
#include "core/thread_name.h"

namespace pigeon {

Backups::Backups(RocksStore& store, Metrics& metrics, Options options)
    : store_(store), metrics_(metrics), options_(std::move(options)) {
  if (!options_.dir.empty() && options_.interval_s > 0)
    scheduler_ = std::thread([this] { Schedule(); });
}

Backups::~Backups() {
  {
    std::lock_guard lock(schedule_mu_);
    stopping_ = true;
  }
  schedule_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  std::lock_guard lock(mu_);
  if (thread_.joinable()) thread_.join();
}

void Backups::Schedule() {
  NameThisThread("pg-backup-timer");
  std::unique_lock lock(schedule_mu_);
  const auto interval = std::chrono::seconds(options_.interval_s);
  for (;;) {
    if (schedule_cv_.wait_for(lock, interval, [this] { return stopping_; })) return;
    (void)Start();  // one still running (a slow disk): this one is skipped, logged
  }
}

std::vector<std::string> Backups::List(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // 20261206T094512.345Z
    bool ours = name.size() == 20 && name[8] == 'T' && name[15] == '.' && name[19] == 'Z';
    for (size_t i = 0; ours && i < 19; ++i)
      if (i != 8 && i != 15) ours = name[i] >= '0' && name[i] <= '9';
    if (ours && e.is_directory(ec)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Backups::RemoveOld() {
  if (options_.keep == 0) return;
  auto names = List(options_.dir);
  if (names.size() <= options_.keep) return;
  for (size_t i = 0; i + options_.keep < names.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove_all(options_.dir + "/" + names[i], ec);
    if (ec) {
      spdlog::error("backup: cannot remove the old backup {}/{}: {}", options_.dir, names[i],
                    ec.message());
    } else {
      metrics_.backups_removed.Increment();
      spdlog::info("backup: removed {}/{} (backup_keep {})", options_.dir, names[i], options_.keep);
    }
  }
}

bool Backups::Start() {
  if (options_.dir.empty()) {
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
  thread_ = std::thread([this, target = options_.dir + "/" + name] { Run(target); });
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
    RemoveOld();  // only after a success: a failing disk keeps what it has
  } else {
    metrics_.backup_failures.Increment();
    spdlog::error("{}", s.message());
  }
  running_ = false;
}

}  // namespace pigeon
