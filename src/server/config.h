// pigeond's configuration: defaults here, then the TOML file (--config), then
// command-line flags, each overriding the one before.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace pigeon {

struct Config {
  std::string listen = "127.0.0.1:8080";   // HOST:PORT for HTTP and WebSocket
  std::string data_dir = "./pigeon-data";  // the RocksDB store
  uint64_t backup_interval_s = 0;          // a backup every this many seconds (0: on SIGUSR1 only)
  uint64_t backup_keep = 0;                // after a backup, the newest this many stay (0: all)
  std::string backup_dir;                  // SIGUSR1: a backup of the store in here
  std::string
      tls_cert_file;  // PEM certificate chain: the listener speaks TLS only (SIGHUP re-reads)
  std::string tls_key_file;            // its PEM private key
  std::string tls_ticket_key_file;     // 80 bytes sealing session tickets (across restarts, nodes)
  uint32_t tls_handshake_threads = 0;  // TLS handshakes' threads; 0: one per core
  uint64_t tls_handshake_timeout_ms = 10000;    // a handshake not done this long: closed
  std::string log_level = "info";               // trace, debug, info, warn, error
  uint32_t network_threads = 0;                 // 0: half the cores, at least one
  uint32_t worker_threads = 2;                  // store reads, HTTP handling, upgrades
  uint32_t password_threads = 2;                // password hashing (sign-up, login)
  uint64_t max_pending_password_checks = 64;    // queued for password_threads; past it 503
  uint64_t max_password_checks_per_client = 8;  // of those, from one client; past it 429
  std::string trusted_proxies;          // addresses and networks whose X-Forwarded-For is believed
  uint64_t max_body_bytes = 65536;      // message body, bytes of UTF-8; larger: too_large
  uint64_t max_frame_bytes = 1 << 20;   // WebSocket frame hard limit; larger: close 1009
  uint64_t max_output_bytes = 8 << 20;  // per-socket output queue; past it the socket closes
  uint64_t max_inflight_sends = 4096;   // un-acked sends per socket; past it rate_limited
  uint64_t commit_queue_max = 100000;   // ops waiting to commit; past it unavailable
  uint64_t commit_batch_max = 8192;     // ops per group commit
  uint64_t commit_delay_us = 2000;      // a small batch waits this long for more (0: off)
  uint64_t commit_delay_ops = 16;       // ... unless it already has this many ops
  uint64_t store_write_mb_per_s = 0;    // flushes and compactions write at most this (0: off)
  std::string store_compaction = "universal";  // or "level" (RocksDB's levelled compaction)
  std::string store_wal_sync = "auto";         // or "fdatasync": how a commit is made durable
  std::string store_wal_write = "page-cache";  // or "direct": how the WAL is written
  uint64_t pwhash_opslimit = 2;                // Argon2id passes (libsodium interactive: 2)
  uint64_t pwhash_memlimit_kib = 65536;        // Argon2id memory, KiB (interactive: 64 MiB)
  uint32_t login_max_failures = 10;  // failed logins of a username per window; then 429 (0: off)
  uint64_t login_failure_window_s = 300;  // the window, from its first failure
  uint32_t login_max_failures_per_client =
      100;                                // failed logins from one client per window (0: off)
  uint32_t signup_max_per_client = 25;    // sign-ups from one client per window (0: off)
  uint64_t signup_window_s = 300;         // that window, from the client's first sign-up
  uint64_t retention_s = 30 * 24 * 3600;  // feed entries and messages kept this long (0: forever)
  uint64_t retention_sweep_interval_s = 3600;  // between retention sweeps
  uint64_t drain_grace_ms = 2000;              // SIGTERM: time given to close frames to flush
  uint64_t http_idle_timeout_ms = 60000;       // an HTTP connection idle this long: closed
  uint64_t heartbeat_interval_ms =
      25000;  // WebSocket ping interval; silent a whole interval: closed
  uint64_t presence_debounce_ms =
      2000;  // a user offline this long after its last socket closed is announced offline

  // Push notifications. A provider is on when its credentials are set.
  uint64_t push_delay_ms = 500;          // gather a burst of messages into one push
  uint64_t push_min_interval_ms = 3000;  // at most one push per device this often
  uint64_t push_max_attempts = 8;        // delivery rounds before a push is given up
  uint64_t push_timeout_ms = 5000;       // per request to a provider
  uint32_t push_threads = 2;             // threads sending pushes
  bool push_preview = false;             // sender and body in the payload (default: neither)
  std::string push_ca_file;  // extra trusted CA bundle for providers (private CAs, tests)
  std::string apns_base_url = "https://api.push.apple.com";
  std::string apns_key_file;  // the .p8 signing key; empty: APNs off
  std::string apns_key_id;
  std::string apns_team_id;
  std::string apns_topic;                // the app's bundle id
  std::string apns_push_type = "alert";  // or "background"
  uint64_t apns_expiration_s = 86400;    // apns-expiration: now + this
  std::string fcm_base_url = "https://fcm.googleapis.com";
  std::string fcm_credentials_file;    // service account JSON key; empty: FCM off
  std::string fcm_token_url;           // default: the key's token_uri
  std::string fcm_project_id;          // default: the key's project_id
  std::string webhook_secret;          // HMAC key for webhook signatures; empty: webhooks off
  bool webhook_allow_http = false;     // allow plain http:// endpoints
  bool webhook_allow_private = false;  // allow endpoints on non-public addresses

  // Splits `listen` into host and port.
  Status ParseListen(std::string* host, uint16_t* port) const;
};

// Parses argv; `exit_code` is set when the process should exit at once
// (--help, or an error, already printed).
Result<Config> ParseCommandLine(int argc, char** argv, int* exit_code);

}  // namespace pigeon
