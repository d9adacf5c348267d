// The process's Prometheus metrics, created once and passed by reference.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>

#include "core/status.h"
#include "store/message_store.h"

namespace pigeon {

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Prometheus text exposition format, for GET /metrics.
  std::string Serialize() const;
  prometheus::Counter& errors(ErrorCode code) { return *errors_[static_cast<int>(code)]; }
  // By provider name ("apns", "fcm", "webhook").
  prometheus::Counter& push_sent(const std::string& provider) {
    return push_sent_family_.Add({{"provider", provider}});
  }
  prometheus::Counter& push_failed(const std::string& provider) {
    return push_failed_family_.Add({{"provider", provider}});
  }
  // The store's background work as read now (at each scrape of /metrics).
  void Record(const StoreHealth& health);

 private:
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  prometheus::Gauge& open_sockets;            // authenticated WebSockets
  prometheus::Counter& connections_accepted;  // TCP connections
  prometheus::Counter& messages_committed;    // new messages (not dedup repeats)
  prometheus::Counter& duplicate_sends;       // sends answered from the dedup record
  prometheus::Counter& http_requests;
  prometheus::Counter& http_idle_closes;      // HTTP connections closed by http_idle_timeout_ms
  prometheus::Counter& slow_consumer_closes;  // sockets closed for a full output queue
  prometheus::Histogram& commit_batch_ops;    // ops per store commit
  prometheus::Histogram& commit_seconds;      // store commit (write + fsync) latency
  prometheus::Gauge& commit_queue_depth;
  prometheus::Gauge& password_checks_pending;   // sign-ups and logins queued or hashing
  prometheus::Counter& push_retried;            // delivery rounds scheduled again
  prometheus::Counter& push_pruned;             // dead tokens removed
  prometheus::Histogram& push_latency_seconds;  // first message committed -> provider accepted
  prometheus::Gauge& store_level0_files;
  prometheus::Gauge& store_pending_compaction_bytes;
  prometheus::Gauge& store_delayed_write_rate;
  prometheus::Gauge& store_writes_stopped;
  prometheus::Counter& store_write_stall_seconds;
  prometheus::Gauge& store_table_bytes;
  prometheus::Gauge& store_disk_free_bytes;
  prometheus::Counter& store_wal_fdatasyncs;  // commits made durable by an fdatasync of the log
  prometheus::Counter& store_wal_flushes;     // ... by its pages' write and a cache flush
  prometheus::Counter& retention_sweeps;      // retention sweeps completed
  prometheus::Counter& retention_feed_entries_removed;
  prometheus::Counter& retention_messages_removed;  // with their dedup keys
  prometheus::Counter& backups;                     // online backups completed (SIGUSR1)
  prometheus::Counter& backup_failures;
  prometheus::Counter& backups_removed;         // old backups deleted by backup_keep
  prometheus::Gauge& backup_last_success_time;  // unix seconds; 0: none yet
  prometheus::Gauge& backup_last_seconds;       // how long the last one took
  prometheus::Counter& tls_handshake_failures;  // connections dropped by a failed TLS handshake
  prometheus::Counter& tls_handshakes;          // completed
  prometheus::Counter& tls_handshakes_resumed;  // ... that resumed a session (a ticket)
  prometheus::Counter& tls_handshake_timeouts;  // ... not finished within tls_handshake_timeout_ms
  prometheus::Gauge& tls_handshakes_in_progress;
  prometheus::Counter& tls_reloads;           // certificates re-read (SIGHUP)
  prometheus::Counter& tls_reload_failures;   // ... that failed: the old ones stay
  prometheus::Gauge& tls_certificate_expiry;  // the served certificate's notAfter (unix s)

 private:
  prometheus::Family<prometheus::Counter>& push_sent_family_;
  prometheus::Family<prometheus::Counter>& push_failed_family_;

 private:
  std::array<prometheus::Counter*, kErrorCodeCount> errors_{};
  std::mutex record_mutex_;  // two scrapes at once add the stall time once
};

}  // namespace pigeon
