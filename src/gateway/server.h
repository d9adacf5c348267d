// Server: the listener and the network threads. One EventLoop per thread;
// accepted sockets are dealt round-robin and stay on their thread for life.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "gateway/gateway_context.h"

namespace pigeon {

class Server {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 8080;
    unsigned threads = 0;  // 0: DefaultThreads()
    // WebSocket ping interval; a socket silent for a whole interval after a
    // ping is closed. 0 disables heartbeats.
    std::chrono::milliseconds heartbeat{25000};
    // A connection that is not a WebSocket is closed once it has been idle
    // for between this and 1.5 times this: no request completed and no
    // progress writing a response to a slow reader. 0 disables it. (A TLS
    // handshake has its own timeout, below.)
    std::chrono::milliseconds http_idle_timeout{60000};
    // With TLS: the threads that run the handshakes (0: one per core), and
    // how long one may take before its socket is closed.
    unsigned tls_handshake_threads = 0;
    std::chrono::milliseconds tls_handshake_timeout{10000};
  };
  Server(Options options, GatewayContext& ctx);
  ~Server();
  // Network threads when the options say 0: half the cores, at least one.
  static unsigned DefaultThreads();

  // Binds and starts the network threads.
  Status Start();
  uint16_t port() const { return port_; }
  // Stops accepting, closes every WebSocket with 1001 and drops idle HTTP
  // connections, waits up to `grace` for output to flush, then stops the threads.
  void Drain(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Options options_;
  GatewayContext& ctx_;
  uint16_t port_ = 0;
};

}  // namespace pigeon
