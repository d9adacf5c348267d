// pigeond: wires the embedded deployment together (RocksDB store, in-process
// presence and bus) and runs until SIGTERM/SIGINT, then drains.
#include <fcntl.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>
#include <functional>

#include "bus/local/local_bus.h"
#include "chat/chat_service.h"
#include "chat/commit_pipeline.h"
#include "chat/metrics.h"
#include "chat/presence_service.h"
#include "chat/retention.h"
#include "core/thread_name.h"
#include "gateway/client_address.h"
#include "gateway/http_api.h"
#include "gateway/server.h"
#include "gateway/session_registry.h"
#include "gateway/tls.h"
#include "presence/local/local_presence.h"
#include "push/apns/apns_sender.h"
#include "push/fcm/fcm_sender.h"
#include "push/push_service.h"
#include "push/webhook/webhook_sender.h"
#include "server/admin.h"
#include "server/backups.h"
#include "server/config.h"
#include "store/rocksdb/rocks_store.h"

namespace pigeon {

// Turns on each push provider whose credentials are configured.
Status AddPushProviders(const Config& cfg, push::PushService& service) {
  using Provider = PushRegistration::Provider;
  if (!cfg.apns_key_file.empty()) {
    auto apns =
        push::ApnsSender::Create({.base_url = cfg.apns_base_url,
                                  .key_file = cfg.apns_key_file,
                                  .key_id = cfg.apns_key_id,
                                  .team_id = cfg.apns_team_id,
                                  .topic = cfg.apns_topic,
                                  .push_type = cfg.apns_push_type,
                                  .expiration_s = static_cast<int64_t>(cfg.apns_expiration_s)});
    if (!apns.ok()) return apns.status();
    service.AddSender(Provider::kApns, std::move(*apns));
  }
  if (!cfg.fcm_credentials_file.empty()) {
    auto fcm = push::FcmSender::Create({.base_url = cfg.fcm_base_url,
                                        .credentials_file = cfg.fcm_credentials_file,
                                        .token_url = cfg.fcm_token_url,
                                        .project_id = cfg.fcm_project_id});
    if (!fcm.ok()) return fcm.status();
    service.AddSender(Provider::kFcm, std::move(*fcm));
  }
  if (!cfg.webhook_secret.empty()) {
    service.AddSender(Provider::kWebhook,
                      std::make_unique<push::WebhookSender>(push::WebhookSender::Options{
                          .secret = cfg.webhook_secret,
                          .allow_http = cfg.webhook_allow_http,
                          .allow_private = cfg.webhook_allow_private}));
  }
  return Status::Ok();
}

// Raises the open-file limit to its hard limit (each connection is a file),
// then sizes the kernel's descriptor table for it while the process has one
// thread. The table grows by doubling as descriptors are opened, and in a
// multi-threaded process each doubling waits for an RCU grace period (several
// milliseconds) in whichever thread opened the descriptor: a network thread's
// accept, or the committer creating a WAL file (a 5-7 ms commit at the first
// memtable flush with about 1,000 sockets open).
void PrepareDescriptorTable() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised{lim.rlim_max, lim.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  // Past a million slots (8 MiB of table) the table still grows on demand.
  const rlim_t slots = std::min<rlim_t>(lim.rlim_cur, rlim_t{1} << 20);
  if (slots <= 64) return;
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(slots - 1));
  if (high >= 0) close(high);
  close(fd);
  spdlog::info("open files: up to {} (descriptor table sized for {})", lim.rlim_cur, slots);
}

}  // namespace pigeon

int main(int argc, char** argv) {
  using namespace pigeon;
  if (argc > 1 && std::string_view(argv[1]) == "admin") return RunAdmin(argc, argv);
  int exit_code = 0;
  auto cfg = ParseCommandLine(argc, argv, &exit_code);
  if (!cfg.ok()) return exit_code;
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  PrepareDescriptorTable();
  if (sodium_init() < 0) {
    spdlog::critical("libsodium failed to initialise");
    return 1;
  }
  std::string host;
  uint16_t port;
  if (auto s = cfg->ParseListen(&host, &port); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 2;
  }

  auto compaction = RocksStore::CompactionNamed(cfg->store_compaction);
  if (!compaction) {
    spdlog::critical("store_compaction must be universal or level, not {}", cfg->store_compaction);
    return 2;
  }

  auto wal_sync = RocksStore::WalSyncNamed(cfg->store_wal_sync);
  if (!wal_sync) {
    spdlog::critical("store_wal_sync must be auto or fdatasync, not {}", cfg->store_wal_sync);
    return 2;
  }

  auto wal_write = RocksStore::WalWriteNamed(cfg->store_wal_write);
  if (!wal_write) {
    spdlog::critical("store_wal_write must be page-cache or direct, not {}", cfg->store_wal_write);
    return 2;
  }

  auto clients = ClientAddresses::Parse(cfg->trusted_proxies);
  if (!clients.ok()) {
    spdlog::critical("trusted_proxies: {}", clients.status().message());
    return 2;
  }

  if (cfg->tls_cert_file.empty() != cfg->tls_key_file.empty()) {
    spdlog::critical("tls_cert_file and tls_key_file go together");
    return 2;
  }
  if (!cfg->tls_ticket_key_file.empty() && cfg->tls_cert_file.empty()) {
    spdlog::critical("tls_ticket_key_file needs tls_cert_file and tls_key_file");
    return 2;
  }
  std::unique_ptr<TlsServerContext> tls;
  if (!cfg->tls_cert_file.empty()) {
    auto loaded =
        TlsServerContext::Load(cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_ticket_key_file);
    if (!loaded.ok()) {
      spdlog::critical("{}", loaded.status().message());
      return 2;
    }
    tls = std::move(*loaded);
  }

  if (cfg->retention_s > 0 && cfg->retention_sweep_interval_s == 0) {
    spdlog::critical("retention_sweep_interval_s must be at least 1");
    return 2;
  }

  std::error_code fec;
  std::filesystem::create_directories(cfg->data_dir, fec);
  auto store = RocksStore::Open({.path = cfg->data_dir,
                                 .background_write_bytes_per_s = cfg->store_write_mb_per_s << 20,
                                 .compaction = *compaction,
                                 .wal_sync = *wal_sync,
                                 .wal_write = *wal_write});
  if (!store.ok()) {
    spdlog::critical("{}", store.status().message());
    return 1;
  }
  Metrics metrics;
  CommitPipeline pipeline(**store, metrics,
                          {.max_queue = cfg->commit_queue_max,
                           .max_batch = cfg->commit_batch_max,
                           .delay_us = static_cast<uint32_t>(cfg->commit_delay_us),
                           .delay_ops = cfg->commit_delay_ops});
  Retention retention(
      **store, pipeline, metrics,
      {.keep_ms = static_cast<int64_t>(cfg->retention_s) * 1000,
       .interval_ms = static_cast<int64_t>(cfg->retention_sweep_interval_s) * 1000});
  LocalPresence presence;
  LocalBus bus;
  SessionRegistry registry;
  bus.Attach(&registry);
  push::PushService push_service(
      **store, pipeline, metrics,
      {.delay_ms = static_cast<int64_t>(cfg->push_delay_ms),
       .min_interval_ms = static_cast<int64_t>(cfg->push_min_interval_ms),
       .max_attempts = static_cast<uint32_t>(cfg->push_max_attempts),
       .preview = cfg->push_preview,
       .threads = cfg->push_threads,
       .http = {.timeout_ms = static_cast<long>(cfg->push_timeout_ms),
                .ca_file = cfg->push_ca_file}},
      [&registry](const std::string& user, const std::string& device) {
        return registry.HasDevice(user, device);
      });
  if (auto s = AddPushProviders(*cfg, push_service); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 2;
  }
  ChatService chat(**store, pipeline, bus, metrics,
                   {.pwhash_opslimit = cfg->pwhash_opslimit,
                    .pwhash_memlimit = cfg->pwhash_memlimit_kib * 1024,
                    .on_push_outbox = [&push_service](const std::string& user, int64_t ts) {
                      push_service.Pending(user, ts);
                    }});
  PresenceService presence_service(
      presence, bus, pipeline, **store,
      {.offline_debounce_ms = static_cast<int64_t>(cfg->presence_debounce_ms)});
  NameThisThread("pg-password");  // the pool's threads inherit the name
  boost::asio::thread_pool password_threads(cfg->password_threads ? cfg->password_threads : 1);
  HttpApi api(
      chat, presence_service, push_service, metrics,
      {.login_limits = {.max_failures = cfg->login_max_failures,
                        .window_ms = static_cast<int64_t>(cfg->login_failure_window_s) * 1000},
       .client_login_limits = {.max_failures = cfg->login_max_failures_per_client,
                               .window_ms =
                                   static_cast<int64_t>(cfg->login_failure_window_s) * 1000},
       .signup_limits = {.max_failures = cfg->signup_max_per_client,
                         .window_ms = static_cast<int64_t>(cfg->signup_window_s) * 1000},
       .password_threads = &password_threads,
       .max_pending_password_checks = cfg->max_pending_password_checks,
       .max_password_checks_per_client = cfg->max_password_checks_per_client,
       .clients = *clients});
  NameThisThread("pg-worker");
  boost::asio::thread_pool workers(cfg->worker_threads ? cfg->worker_threads : 1);
  NameThisThread("pigeond");
  GatewayLimits limits;
  limits.max_frame_bytes = cfg->max_frame_bytes;
  limits.max_output_bytes = cfg->max_output_bytes;
  limits.max_inflight_sends = cfg->max_inflight_sends;
  limits.max_http_body_bytes = cfg->max_frame_bytes;
  limits.frame.max_body_bytes = cfg->max_body_bytes;
  // Signals are handled (on this thread, in signals_ctx.run() below) from
  // before the server answers: a SIGUSR1 that came first would end the
  // process (its default action), a SIGTERM would skip the drain.
  // SIGUSR1: an online backup (operations.md, "Backups"), as often as asked.
  Backups backups(**store, metrics,
                  {.dir = cfg->backup_dir,
                   .keep = static_cast<uint32_t>(cfg->backup_keep),
                   .interval_s = cfg->backup_interval_s});
  boost::asio::io_context signals_ctx;
  boost::asio::signal_set backup_signal(signals_ctx, SIGUSR1);
  std::function<void()> await_backup_signal = [&] {
    backup_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;  // cancelled: draining
      (void)backups.Start();
      await_backup_signal();
    });
  };
  await_backup_signal();
  // SIGHUP: the TLS certificate and key are read again (a renewed
  // certificate, without a restart); open connections keep theirs.
  boost::asio::signal_set reload_signal(signals_ctx, SIGHUP);
  if (tls) metrics.tls_certificate_expiry.Set(static_cast<double>(tls->not_after()));
  std::function<void()> await_reload_signal = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;  // cancelled: draining
      if (!tls) {
        spdlog::info("SIGHUP: no TLS configured, nothing to reload");
      } else if (auto s = tls->Reload(); s.ok()) {
        metrics.tls_reloads.Increment();
        metrics.tls_certificate_expiry.Set(static_cast<double>(tls->not_after()));
        spdlog::info("SIGHUP: TLS certificate reloaded from {}", cfg->tls_cert_file);
      } else {
        metrics.tls_reload_failures.Increment();
        spdlog::error("SIGHUP: {} (the certificate in use stays)", s.message());
      }
      await_reload_signal();
    });
  };
  await_reload_signal();
  boost::asio::signal_set signals(signals_ctx, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    spdlog::info("signal {}: draining", sig);
    backup_signal.cancel();
    reload_signal.cancel();
  });
  GatewayContext ctx{chat, api, registry, presence_service, metrics, workers, limits, tls.get()};
  Server server({.host = host,
                 .port = port,
                 .threads = cfg->network_threads,
                 .heartbeat = std::chrono::milliseconds(cfg->heartbeat_interval_ms),
                 .http_idle_timeout = std::chrono::milliseconds(cfg->http_idle_timeout_ms),
                 .tls_handshake_threads = cfg->tls_handshake_threads,
                 .tls_handshake_timeout = std::chrono::milliseconds(cfg->tls_handshake_timeout_ms)},
                ctx);
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  if (auto s = push_service.Start(); !s.ok()) {
    spdlog::critical("push: {}", s.message());
    return 1;
  }
  retention.Start();
  spdlog::info("pigeond listening on {}:{} ({}; data in {})", host, server.port(),
               tls ? "TLS" : "plain HTTP", cfg->data_dir);

  signals_ctx.run();

  // Drain: no new connections, sockets closed with 1001, in-flight requests
  // finish, everything queued is committed, the store is closed.
  server.Drain(std::chrono::milliseconds(cfg->drain_grace_ms));
  workers.join();
  password_threads.join();  // sign-ups and logins in progress submit their commits
  presence_service.Stop();  // last_seen of users whose sockets just closed
  push_service.Stop();      // what is not pushed stays in the outbox for the next start
  retention.Stop();         // a sweep ends after its slice; the next start sweeps again
  pipeline.Stop();
  spdlog::info("pigeond stopped");
  return 0;
}
