#include "chat/metrics.h"

#include <prometheus/text_serializer.h>

namespace pigeon {
namespace {

prometheus::Counter& NewCounter(prometheus::Registry& r, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

// Registered once; the second call finds the family already there.
prometheus::Family<prometheus::Counter>& WalSyncs(prometheus::Registry& r) {
  return prometheus::BuildCounter()
      .Name("pigeon_store_wal_syncs_total")
      .Help(
          "Commits made durable: fdatasync of the log, or its pages written and the disk's "
          "cache flushed (store_wal_sync)")
      .Register(r);
}

// Raises `counter` to `total`, a count kept elsewhere since the process began.
void CatchUp(prometheus::Counter& counter, double total) {
  if (total > counter.Value()) counter.Increment(total - counter.Value());
}

prometheus::Gauge& NewGauge(prometheus::Registry& r, const std::string& name,
                            const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      open_sockets(NewGauge(*registry_, "pigeon_open_sockets", "Authenticated WebSockets open")),
      connections_accepted(
          NewCounter(*registry_, "pigeon_connections_accepted_total", "TCP connections accepted")),
      messages_committed(
          NewCounter(*registry_, "pigeon_messages_committed_total", "Messages durably committed")),
      duplicate_sends(NewCounter(*registry_, "pigeon_duplicate_sends_total",
                                 "Sends answered with the original ack (client_msg_id reuse)")),
      http_requests(NewCounter(*registry_, "pigeon_http_requests_total", "HTTP requests served")),
      http_idle_closes(NewCounter(*registry_, "pigeon_http_idle_closes_total",
                                  "Connections closed before becoming a WebSocket for being idle "
                                  "past http_idle_timeout_ms (no request, no TLS handshake)")),
      slow_consumer_closes(NewCounter(*registry_, "pigeon_slow_consumer_closes_total",
                                      "Sockets closed because their output queue was full")),
      commit_batch_ops(
          prometheus::BuildHistogram()
              .Name("pigeon_commit_batch_ops")
              .Help("Operations per group commit")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                               512, 1024, 4096})),
      commit_seconds(
          prometheus::BuildHistogram()
              .Name("pigeon_commit_seconds")
              .Help("Latency of one group commit (write + fsync)")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001,
                                                               0.0025, 0.005, 0.01, 0.025, 0.05,
                                                               0.1, 0.25, 1})),
      commit_queue_depth(NewGauge(*registry_, "pigeon_commit_queue_depth",
                                  "Operations waiting for the committer")),
      password_checks_pending(NewGauge(*registry_, "pigeon_password_checks_pending",
                                       "Sign-ups and logins waiting for or being hashed")),
      push_retried(NewCounter(*registry_, "pigeon_push_retried_total",
                              "Push delivery rounds scheduled again after a failure")),
      push_pruned(NewCounter(*registry_, "pigeon_push_tokens_pruned_total",
                             "Push registrations removed because the provider said they are dead")),
      push_latency_seconds(
          prometheus::BuildHistogram()
              .Name("pigeon_push_latency_seconds")
              .Help("From the first waiting message's commit to the provider accepting the push")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60,
                                                               300})),
      store_level0_files(NewGauge(*registry_, "pigeon_store_level0_files",
                                  "Flushed store tables not yet compacted into the levels")),
      store_pending_compaction_bytes(
          NewGauge(*registry_, "pigeon_store_pending_compaction_bytes",
                   "Bytes the store's compactions estimate they still have to rewrite")),
      store_delayed_write_rate(
          NewGauge(*registry_, "pigeon_store_delayed_write_rate_bytes",
                   "Bytes/s the store slows writes to while compactions catch up; 0: not slowed")),
      store_writes_stopped(NewGauge(*registry_, "pigeon_store_writes_stopped",
                                    "1 while the store stops writes until compactions catch up")),
      store_write_stall_seconds(
          NewCounter(*registry_, "pigeon_store_write_stall_seconds_total",
                     "Time commits were slowed or stopped by the store's compaction debt")),
      store_table_bytes(
          NewGauge(*registry_, "pigeon_store_table_bytes",
                   "Bytes of the store's table files (what a full compaction rewrites)")),
      store_disk_free_bytes(NewGauge(*registry_, "pigeon_store_disk_free_bytes",
                                     "Bytes free for pigeond on the data directory's file system")),
      store_wal_fdatasyncs(WalSyncs(*registry_).Add({{"method", "fdatasync"}})),
      store_wal_flushes(WalSyncs(*registry_).Add({{"method", "flush"}})),
      retention_sweeps(NewCounter(*registry_, "pigeon_retention_sweeps_total",
                                  "Retention sweeps completed (retention_s)")),
      retention_feed_entries_removed(
          NewCounter(*registry_, "pigeon_retention_feed_entries_removed_total",
                     "Feed entries removed for being older than retention_s")),
      retention_messages_removed(
          NewCounter(*registry_, "pigeon_retention_messages_removed_total",
                     "Messages (with their client_msg_id keys) removed for being older than "
                     "retention_s")),
      backups(NewCounter(*registry_, "pigeon_backups_total",
                         "Online backups of the store completed (SIGUSR1, backup_dir)")),
      backup_failures(
          NewCounter(*registry_, "pigeon_backup_failures_total", "Online backups that failed")),
      backups_removed(NewCounter(*registry_, "pigeon_backups_removed_total",
                                 "Old backups deleted to keep the newest backup_keep")),
      backup_last_success_time(
          NewGauge(*registry_, "pigeon_backup_last_success_time_seconds",
                   "When the last backup that succeeded was taken (unix time); 0: none yet")),
      backup_last_seconds(NewGauge(*registry_, "pigeon_backup_last_duration_seconds",
                                   "How long the last backup took")),
      tls_handshake_failures(NewCounter(*registry_, "pigeon_tls_handshake_failures_total",
                                        "Connections closed for a failed TLS handshake (plain "
                                        "HTTP to the TLS port, no common version or cipher)")),
      tls_handshakes(NewCounter(*registry_, "pigeon_tls_handshakes_total",
                                "TLS handshakes completed (connections that went on)")),
      tls_handshakes_resumed(
          NewCounter(*registry_, "pigeon_tls_handshakes_resumed_total",
                     "TLS handshakes that resumed a session by its ticket (no certificate, no "
                     "signature)")),
      tls_handshake_timeouts(
          NewCounter(*registry_, "pigeon_tls_handshake_timeouts_total",
                     "Connections closed for not finishing their TLS handshake within "
                     "tls_handshake_timeout_ms")),
      tls_handshakes_in_progress(NewGauge(*registry_, "pigeon_tls_handshakes_in_progress",
                                          "Accepted connections in their TLS handshake")),
      tls_reloads(NewCounter(*registry_, "pigeon_tls_reloads_total",
                             "Certificate and key files read again on SIGHUP")),
      tls_reload_failures(NewCounter(*registry_, "pigeon_tls_reload_failures_total",
                                     "SIGHUP reloads that failed (the certificate in use stays)")),
      tls_certificate_expiry(
          NewGauge(*registry_, "pigeon_tls_certificate_expiry_time_seconds",
                   "When the certificate served to new connections expires (unix time); 0: no "
                   "TLS")),
      push_sent_family_(prometheus::BuildCounter()
                            .Name("pigeon_push_sent_total")
                            .Help("Pushes accepted by the provider")
                            .Register(*registry_)),
      push_failed_family_(prometheus::BuildCounter()
                              .Name("pigeon_push_failed_total")
                              .Help("Pushes that failed (retried or refused)")
                              .Register(*registry_)) {
  auto& family = prometheus::BuildCounter()
                     .Name("pigeon_errors_total")
                     .Help("Errors answered to clients, by code")
                     .Register(*registry_);
  for (int i = 1; i < kErrorCodeCount; ++i) {
    auto code = static_cast<ErrorCode>(i);
    if (code == ErrorCode::kInternal) {
      errors_[i] = errors_[static_cast<int>(ErrorCode::kUnavailable)];
      continue;
    }
    errors_[i] = &family.Add({{"code", std::string(ErrorCodeName(code))}});
  }
  errors_[0] = errors_[static_cast<int>(ErrorCode::kInternal)];
}

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void Metrics::Record(const StoreHealth& health) {
  std::lock_guard lock(record_mutex_);
  store_level0_files.Set(static_cast<double>(health.level0_files));
  store_pending_compaction_bytes.Set(static_cast<double>(health.pending_compaction_bytes));
  store_delayed_write_rate.Set(static_cast<double>(health.delayed_write_rate));
  store_writes_stopped.Set(health.writes_stopped ? 1 : 0);
  store_table_bytes.Set(static_cast<double>(health.table_bytes));
  store_disk_free_bytes.Set(static_cast<double>(health.disk_free_bytes));
  // The store counts from its opening, as the counter does.
  CatchUp(store_write_stall_seconds, static_cast<double>(health.write_stall_us) / 1e6);
  CatchUp(store_wal_fdatasyncs, static_cast<double>(health.wal_fdatasyncs));
  CatchUp(store_wal_flushes, static_cast<double>(health.wal_flushes));
}

}  // namespace pigeon
