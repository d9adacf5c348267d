// What every connection shares: the services and the limits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "protocol/frames.h"

namespace boost::asio {
class thread_pool;
}

namespace pigeon {

class ChatService;
class HttpApi;
class SessionRegistry;
class PresenceService;
class Metrics;
class TlsServerContext;

struct GatewayLimits {
  size_t max_frame_bytes = 1 << 20;         // a larger frame closes the socket with 1009
  size_t max_output_bytes = 8 << 20;        // queued output past this: slow consumer, closed
  size_t max_inflight_sends = 4096;         // un-acked sends per socket before rate_limited
  size_t max_http_body_bytes = 1 << 20;     // larger: 413
  size_t max_http_header_bytes = 16 << 10;  // larger: 400
  size_t catchup_buffer_entries = 10000;    // live entries held while a socket replays its feed
  size_t catchup_page = 500;                // feed entries per replay read
  uint32_t typing_per_10s = 20;             // typing frames relayed per socket; excess dropped
  FrameLimits frame;
};

struct GatewayContext {
  ChatService& chat;
  HttpApi& api;
  SessionRegistry& registry;
  PresenceService& presence;
  Metrics& metrics;
  boost::asio::thread_pool& workers;  // blocking work: store reads, password hashing
  GatewayLimits limits;
  TlsServerContext* tls = nullptr;  // set: the listener speaks TLS only
};

}  // namespace pigeon
