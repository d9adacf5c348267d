#include "server/config.h"

#include <toml++/toml.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <variant>
#include <vector>

namespace pigeon {
namespace {

struct Option {
  const char* name;  // TOML key; the flag is --name with '_' as '-'
  const char* help;
  std::variant<std::string*, uint32_t*, uint64_t*, bool*> field;
};

std::vector<Option> Options(Config& c) {
  return {
      {"listen", "HOST:PORT to serve HTTP and WebSocket on", &c.listen},
      {"data_dir", "directory of the embedded store", &c.data_dir},
      {"tls_cert_file",
       "PEM certificate chain (leaf first); with tls_key_file, the listener speaks TLS only "
       "(https://, wss://); SIGHUP reads both again; empty: plain HTTP",
       &c.tls_cert_file},
      {"tls_key_file", "PEM private key of tls_cert_file", &c.tls_key_file},
      {"tls_ticket_key_file",
       "80 random bytes (openssl rand 80) that seal TLS session tickets, so that devices resume "
       "their sessions across restarts and across nodes given the same file (SIGHUP re-reads)",
       &c.tls_ticket_key_file},
      {"tls_handshake_threads",
       "threads for TLS handshakes, at a lower priority than the network threads (0: one per core)",
       &c.tls_handshake_threads},
      {"tls_handshake_timeout_ms",
       "a connection whose TLS handshake takes longer is closed (0: never)",
       &c.tls_handshake_timeout_ms},
      {"backup_dir",
       "on SIGUSR1, an online backup of the store goes into a new directory in here, named for "
       "its UTC time; empty: none",
       &c.backup_dir},
      {"backup_interval_s",
       "with backup_dir: a backup every this many seconds, as on SIGUSR1; 0: on SIGUSR1 only",
       &c.backup_interval_s},
      {"backup_keep",
       "with backup_dir: after each backup that succeeds, only the newest this many are kept "
       "(older ones are deleted); 0: all are kept",
       &c.backup_keep},
      {"log_level", "trace, debug, info, warn or error", &c.log_level},
      {"network_threads", "network threads, 0 for half the cores (at least one)",
       &c.network_threads},
      {"worker_threads", "threads for store reads, HTTP requests and WebSocket upgrades",
       &c.worker_threads},
      {"password_threads", "threads for password hashing (sign-up and login)", &c.password_threads},
      {"max_pending_password_checks",
       "sign-ups and logins waiting for a password thread; past it they get 503 unavailable",
       &c.max_pending_password_checks},
      {"max_password_checks_per_client",
       "of those, from one client address (IPv6: one /64); past it they get 429 rate_limited; 0: "
       "no per-client bound",
       &c.max_password_checks_per_client},
      {"trusted_proxies",
       "comma-separated addresses and networks (10.0.0.0/8, fd00::/8) of reverse proxies whose "
       "X-Forwarded-For names the client; empty: the connecting address is the client",
       &c.trusted_proxies},
      {"max_body_bytes", "largest message body (bytes of UTF-8); larger is too_large",
       &c.max_body_bytes},
      {"max_frame_bytes", "largest WebSocket frame; larger closes the socket with 1009",
       &c.max_frame_bytes},
      {"max_output_bytes", "output queued per socket before it is closed as a slow consumer",
       &c.max_output_bytes},
      {"max_inflight_sends", "sends per socket awaiting their ack before rate_limited",
       &c.max_inflight_sends},
      {"retention_s",
       "feed entries, messages and their client_msg_id keys older than this many seconds are "
       "removed (default 30 days); 0: kept forever",
       &c.retention_s},
      {"retention_sweep_interval_s", "seconds between retention sweeps",
       &c.retention_sweep_interval_s},
      {"commit_queue_max", "operations waiting to commit before unavailable", &c.commit_queue_max},
      {"commit_batch_max", "operations per group commit", &c.commit_batch_max},
      {"commit_delay_us",
       "a batch smaller than commit_delay_ops waits up to this long for more (fewer fsyncs, less "
       "CPU; adds latency); 0: off",
       &c.commit_delay_us},
      {"commit_delay_ops", "batch size that ends the commit delay early", &c.commit_delay_ops},
      {"store_write_mb_per_s",
       "MB/s the store's flushes and compactions may write, so commits' fsyncs do not wait behind "
       "them; 0: no limit",
       &c.store_write_mb_per_s},
      {"store_compaction",
       "universal (fewer rewrites: keeps up with more msg/s; needs free disk up to the store's "
       "size) or level",
       &c.store_compaction},
      {"store_wal_sync",
       "auto (a commit inside the log's written blocks: write its pages, flush the disk's cache; "
       "on ext4 and XFS) or fdatasync (of the log file, every commit)",
       &c.store_wal_sync},
      {"store_wal_write",
       "page-cache, or direct (O_DIRECT where the file system takes it: a commit's pages go "
       "straight to the disk; less CPU per commit, a little more commit latency)",
       &c.store_wal_write},
      {"pwhash_opslimit", "Argon2id passes", &c.pwhash_opslimit},
      {"pwhash_memlimit_kib", "Argon2id memory in KiB", &c.pwhash_memlimit_kib},
      {"login_max_failures",
       "failed logins of one username within the window after which its logins are refused "
       "(rate_limited) until the window ends (0: no limit)",
       &c.login_max_failures},
      {"login_failure_window_s",
       "seconds from a username's first failed login that its failures "
       "count",
       &c.login_failure_window_s},
      {"login_max_failures_per_client",
       "failed logins from one client (address, IPv6 /64; see trusted_proxies), whatever the "
       "usernames, within the window after which its logins are refused until the window ends "
       "(0: no limit)",
       &c.login_max_failures_per_client},
      {"signup_max_per_client",
       "sign-ups from one client (address, IPv6 /64; see trusted_proxies) within signup_window_s "
       "after which its sign-ups are refused (rate_limited) until the window ends (0: no limit)",
       &c.signup_max_per_client},
      {"signup_window_s", "seconds from a client's first sign-up that its sign-ups count",
       &c.signup_window_s},
      {"drain_grace_ms", "on SIGTERM, time for close frames to flush", &c.drain_grace_ms},
      {"http_idle_timeout_ms",
       "a connection that is not a WebSocket is closed after this long (to 1.5 times it) without "
       "a complete request or progress writing a response; 0: never",
       &c.http_idle_timeout_ms},
      {"heartbeat_interval_ms",
       "WebSocket ping interval in ms; a socket silent for a whole interval after a ping is closed "
       "(0: off)",
       &c.heartbeat_interval_ms},
      {"presence_debounce_ms",
       "ms after a user's last socket closes before it is announced offline (reconnects within it "
       "announce nothing)",
       &c.presence_debounce_ms},
      {"push_delay_ms", "ms to gather a burst of messages into one push", &c.push_delay_ms},
      {"push_min_interval_ms", "at most one push per device this often (ms)",
       &c.push_min_interval_ms},
      {"push_max_attempts", "delivery rounds before a push is given up", &c.push_max_attempts},
      {"push_timeout_ms", "timeout of one request to a push provider (ms)", &c.push_timeout_ms},
      {"push_threads", "threads sending pushes", &c.push_threads},
      {"push_preview", "put sender and body in push payloads (true/false)", &c.push_preview},
      {"push_ca_file", "extra trusted CA bundle for push providers", &c.push_ca_file},
      {"apns_base_url", "APNs server", &c.apns_base_url},
      {"apns_key_file", "APNs .p8 signing key (empty: APNs off)", &c.apns_key_file},
      {"apns_key_id", "APNs key id (kid)", &c.apns_key_id},
      {"apns_team_id", "Apple team id (iss)", &c.apns_team_id},
      {"apns_topic", "apns-topic: the app's bundle id", &c.apns_topic},
      {"apns_push_type", "alert or background", &c.apns_push_type},
      {"apns_expiration_s", "apns-expiration: seconds from now", &c.apns_expiration_s},
      {"fcm_base_url", "FCM server", &c.fcm_base_url},
      {"fcm_credentials_file", "FCM service account JSON key (empty: FCM off)",
       &c.fcm_credentials_file},
      {"fcm_token_url", "OAuth2 token endpoint (default: the key's token_uri)", &c.fcm_token_url},
      {"fcm_project_id", "FCM project (default: the key's project_id)", &c.fcm_project_id},
      {"webhook_secret", "HMAC key signing webhook pushes (empty: webhooks off)",
       &c.webhook_secret},
      {"webhook_allow_http", "allow plain http:// webhook endpoints (true/false)",
       &c.webhook_allow_http},
      {"webhook_allow_private",
       "allow webhook endpoints on loopback, private and link-local addresses (true/false)",
       &c.webhook_allow_private},
  };
}

std::string FlagName(const char* key) {
  std::string f = "--";
  for (const char* p = key; *p; ++p) f.push_back(*p == '_' ? '-' : *p);
  return f;
}

Status ApplyToml(const std::string& path, Config& cfg) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status(ErrorCode::kBadRequest, "config " + path + ": " + std::string(e.description()));
  }
  auto options = Options(cfg);
  for (auto&& [key, node] : t) {
    auto it = std::find_if(options.begin(), options.end(),
                           [&](const Option& o) { return key.str() == o.name; });
    if (it == options.end())
      return Status(ErrorCode::kBadRequest,
                    "config " + path + ": unknown key " + std::string(key.str()));
    bool ok = std::visit(
        [&](auto* field) {
          using T = std::remove_pointer_t<decltype(field)>;
          if constexpr (std::is_same_v<T, std::string>) {
            auto v = node.value<std::string>();
            if (v) *field = *v;
            return v.has_value();
          } else if constexpr (std::is_same_v<T, bool>) {
            auto v = node.value<bool>();
            if (v) *field = *v;
            return v.has_value();
          } else {
            auto v = node.value<int64_t>();
            if (!v || *v < 0) return false;
            *field = static_cast<T>(*v);
            return true;
          }
        },
        it->field);
    if (!ok)
      return Status(ErrorCode::kBadRequest,
                    "config " + path + ": bad value for " + std::string(key.str()));
  }
  return Status::Ok();
}

}  // namespace

Status Config::ParseListen(std::string* host, uint16_t* port) const {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Status(ErrorCode::kBadRequest, "--listen needs HOST:PORT");
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  try {
    int p = std::stoi(listen.substr(colon + 1));
    if (p < 0 || p > 65535) throw std::out_of_range("port");
    *port = static_cast<uint16_t>(p);
  } catch (...) {
    return Status(ErrorCode::kBadRequest, "--listen needs a port number 0-65535");
  }
  return Status::Ok();
}

Result<Config> ParseCommandLine(int argc, char** argv, int* exit_code) {
  Config defaults;
  Config flags;  // what the command line says, bound to CLI11
  CLI::App app{"pigeond: the pigeon messaging server (embedded RocksDB store)"};
  std::string config_path;
  app.add_option("--config", config_path, "TOML file with any of the options below (keys use '_')");
  auto options = Options(flags);
  std::vector<CLI::Option*> bound;
  for (auto& o : options) {
    std::visit(
        [&](auto* field) {
          bound.push_back(app.add_option(FlagName(o.name), *field, o.help)->capture_default_str());
        },
        o.field);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return Status(ErrorCode::kBadRequest, "command line");
  }
  Config cfg = defaults;
  if (!config_path.empty()) {
    auto s = ApplyToml(config_path, cfg);
    if (!s.ok()) {
      std::cerr << s.message() << "\n";
      *exit_code = 2;
      return s;
    }
  }
  // Flags given on the command line win over the file.
  auto target = Options(cfg);
  for (size_t i = 0; i < options.size(); ++i) {
    if (bound[i]->count() == 0) continue;
    std::visit(
        [&](auto* from) {
          using P = decltype(from);
          *std::get<P>(target[i].field) = *from;
        },
        options[i].field);
  }
  return cfg;
}

}  // namespace pigeon
