// pigeond: wires the embedded deployment together (RocksDB store, in-process
// presence and bus) and runs until SIGTERM/SIGINT, then drains.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "bus/local/local_bus.h"
#include "chat/chat_service.h"
#include "chat/commit_pipeline.h"
#include "chat/metrics.h"
#include "chat/presence_service.h"
#include "gateway/http_api.h"
#include "gateway/server.h"
#include "gateway/session_registry.h"
#include "presence/local/local_presence.h"
#include "server/config.h"
#include "store/rocksdb/rocks_store.h"

int main(int argc, char** argv) {
  using namespace pigeon;
  int exit_code = 0;
  auto cfg = ParseCommandLine(argc, argv, &exit_code);
  if (!cfg.ok()) return exit_code;
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
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

  std::error_code fec;
  std::filesystem::create_directories(cfg->data_dir, fec);
  auto store = RocksStore::Open({.path = cfg->data_dir});
  if (!store.ok()) {
    spdlog::critical("{}", store.status().message());
    return 1;
  }
  Metrics metrics;
  CommitPipeline pipeline(**store, metrics,
                          {.max_queue = cfg->commit_queue_max, .max_batch = cfg->commit_batch_max});
  LocalPresence presence;
  LocalBus bus;
  SessionRegistry registry;
  bus.Attach(&registry);
  ChatService chat(**store, pipeline, bus, presence, metrics,
                   {.pwhash_opslimit = cfg->pwhash_opslimit,
                    .pwhash_memlimit = cfg->pwhash_memlimit_kib * 1024});
  PresenceService presence_service(
      presence, bus, pipeline, **store,
      {.offline_debounce_ms = static_cast<int64_t>(cfg->presence_debounce_ms)});
  HttpApi api(chat, presence_service, metrics);
  boost::asio::thread_pool workers(cfg->worker_threads ? cfg->worker_threads : 1);
  GatewayLimits limits;
  limits.max_frame_bytes = cfg->max_frame_bytes;
  limits.max_output_bytes = cfg->max_output_bytes;
  limits.max_inflight_sends = cfg->max_inflight_sends;
  limits.max_http_body_bytes = cfg->max_frame_bytes;
  limits.frame.max_body_bytes = cfg->max_body_bytes;
  GatewayContext ctx{chat, api, registry, presence_service, metrics, workers, limits};
  Server server({.host = host,
                 .port = port,
                 .threads = cfg->network_threads,
                 .heartbeat = std::chrono::milliseconds(cfg->heartbeat_interval_ms)},
                ctx);
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  spdlog::info("pigeond listening on {}:{} (data in {})", host, server.port(), cfg->data_dir);

  boost::asio::io_context signals_ctx;
  boost::asio::signal_set signals(signals_ctx, SIGTERM, SIGINT);
  signals.async_wait([](const boost::system::error_code&, int sig) {
    spdlog::info("signal {}: draining", sig);
  });
  signals_ctx.run();

  // Drain: no new connections, sockets closed with 1001, in-flight requests
  // finish, everything queued is committed, the store is closed.
  server.Drain(std::chrono::milliseconds(cfg->drain_grace_ms));
  workers.join();
  presence_service.Stop();  // last_seen of users whose sockets just closed
  pipeline.Stop();
  spdlog::info("pigeond stopped");
  return 0;
}
