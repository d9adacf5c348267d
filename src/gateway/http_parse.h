// HTTP/1.1 request parsing behind a small header, so that Beast's templates
// compile in one translation unit. I/O-free: bytes in, requests out.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace pigeon {

struct HttpRequest {
  std::string method;
  std::string target;  // origin-form: path and query
  std::string authorization;
  std::string body;
  bool keep_alive = true;
  // WebSocket handshake headers (RFC 6455 4.2.1).
  bool upgrade_websocket = false;  // Upgrade: websocket and Connection: upgrade
  std::string ws_key;
  std::string ws_version;
  // Where the request came from: the peer's address (set by the connection,
  // not parsed), and the X-Forwarded-For headers' addresses, comma-separated
  // (what a proxy says it forwarded for; trusted only from a trusted proxy).
  std::string peer;
  std::string forwarded_for;

  std::string_view path() const { return std::string_view(target).substr(0, target.find('?')); }
};

class HttpRequestParser {
 public:
  enum class State { kNeedMore, kDone, kError };
  HttpRequestParser(size_t header_limit, size_t body_limit);
  ~HttpRequestParser();

  // Consumes a prefix of [data, data + len); returns how much. State kDone: a
  // request is ready (Take it); kError: `error` says why (answer 400/413, close).
  size_t Put(const char* data, size_t len, State* state, std::string* error);
  // Whether the error was the body limit (413) rather than malformed input (400).
  bool body_too_large() const { return too_large_; }
  // True once, when the request's header is complete, it carries
  // `Expect: 100-continue` and its body is still to come: the caller answers
  // "100 Continue" so that the client sends it (RFC 9110 10.1.1; curl waits a
  // second for it before sending a body of over 1 KiB).
  bool TakeExpectContinue();
  HttpRequest Take();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool too_large_ = false;
  bool continue_answered_ = false;
};

}  // namespace pigeon
