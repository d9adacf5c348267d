// A blocking pigeon client and a pigeond launcher, for tests and tools: speak HTTP and WebSocket
// over real loopback sockets, with timeouts. Not for production clients.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/ws_codec.h"

using SSL = struct ssl_st;

namespace pigeon::client {

namespace json = boost::json;

// A pigeond process on a free loopback port with its own data directory.
class TestServer {
 public:
  // `extra_args` are appended to pigeond's command line. `network_threads`:
  // two by default whatever the machine, so that tests keep sockets on
  // different threads and the hand-offs between them covered (and under
  // ThreadSanitizer); 0 leaves pigeond's own default (the benchmarks).
  explicit TestServer(std::vector<std::string> extra_args = {}, unsigned network_threads = 2);
  ~TestServer();  // SIGKILL if still running; removes the data directory

  // Starts pigeond on port() with data_dir(); waits until /healthz answers.
  void Start();
  void Kill();      // SIGKILL, reaped
  int Terminate();  // SIGTERM; returns the exit status (or -1 on signal/timeout)
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& data_dir() const { return dir_; }
  std::string log() const;

 private:
  std::vector<std::string> args_;
  unsigned network_threads_;
  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  json::value json;                            // null unless the body is JSON
};

HttpResult Http(uint16_t port, const std::string& method, const std::string& target,
                const std::string& body = "", const std::string& token = "");
// Sends `raw` as the whole request and reads one response; from
// 127.0.0.(1 + source_index) as ConnectLoopback.
HttpResult RawHttp(uint16_t port, const std::string& raw, int source_index = 0);

// A TCP connection to 127.0.0.1:port (TCP_NODELAY), from 127.0.0.(1 + source_index)
// when source_index > 0. -1 when it cannot connect. Plain TCP, whatever UseTls says.
int ConnectLoopback(uint16_t port, int source_index = 0);

// From now on, every connection Http, RawHttp and WsClient open speaks TLS and
// verifies the server's certificate (for 127.0.0.1) against `ca_file`: for a
// pigeond started with tls_cert_file. "" goes back to plain TCP. For tests
// and tools: one setting for the process.
void UseTls(const std::string& ca_file);
// A self-signed certificate for 127.0.0.1 and localhost (an EC P-256 key),
// valid from now for `days`, written as PEM to `cert_file` and `key_file`; the
// certificate is also the CA file UseTls takes.
void WriteSelfSignedCertificate(const std::string& cert_file, const std::string& key_file,
                                int days = 30);
// The certificate's notAfter, as unix seconds.
int64_t CertificateNotAfter(const std::string& cert_file);

// A blocking connection as Http and WsClient open them: TLS (handshake done)
// when UseTls says so. Throws when the handshake fails; -1 when it cannot
// connect. Close it with CloseConnection.
int OpenConnection(uint16_t port, int source_index = 0);
void CloseConnection(int fd);
// Writes all of `bytes`; throws on failure.
void ConnectionWrite(int fd, const std::string& bytes);
// Waits up to `timeout_ms` for bytes: how many were read, 0 at the end of the
// stream, -1 on an error, -2 on timeout.
ssize_t ConnectionRead(int fd, char* buf, size_t len, int timeout_ms);
// A TLS client session on the connected socket `fd`, its handshake not begun
// (SSL_do_handshake drives it, on a non-blocking socket too); nullptr when
// UseTls is off. The caller frees it (SSL_free).
SSL* NewTlsSession(int fd);
// The TLS session of a connection OpenConnection opened; nullptr when plain.
// Its modes allow non-blocking use: partial writes from a buffer that moves.
SSL* TlsSessionOf(int fd);

struct Account {
  std::string user_id;
  std::string token;
  std::string device_id;
};
// Signs the user up (if needed) and logs a new device in.
Account Login(uint16_t port, const std::string& user, const std::string& password = "password1");
std::string OpenConversation(uint16_t port, const Account& a, const std::string& peer);
// An unlabelled series' value in a GET /metrics body; nullopt when it is not there.
std::optional<double> MetricIn(const std::string& body, std::string_view name);
// Runs `pigeond admin seed-users` on a stopped server's data directory:
// `count` users PREFIX0.. with one device each, all with `password`. Throws
// with the command's error output when it fails.
std::vector<Account> SeedUsers(const std::string& data_dir, const std::string& prefix, int count,
                               const std::string& password = "password1", int start = 0);

class WsClient {
 public:
  // Opens GET /api/v1/ws. On a refused upgrade returns nullptr and sets *status.
  static std::unique_ptr<WsClient> Connect(uint16_t port, const std::string& token,
                                           const std::string& since = "", int* status = nullptr,
                                           bool token_in_query = false);
  ~WsClient();

  void SendText(const std::string& text);
  void SendJson(const json::object& o) { SendText(json::serialize(o)); }
  void SendFrame(uint8_t opcode, const std::string& payload);  // masked, FIN
  void SendBytes(const std::string& bytes);                    // raw, as is

  // The next text message as a JSON object; nullopt on timeout or close.
  std::optional<json::object> Next(int timeout_ms = 5000);
  // The next message of `type`, skipping others; nullopt on timeout.
  std::optional<json::object> NextOfType(const std::string& type, int timeout_ms = 5000);
  // Waits for the server's close frame (or the end of the stream); its code,
  // or 0 if the connection ended without one, nullopt on timeout.
  std::optional<uint16_t> WaitClose(int timeout_ms = 5000);
  bool closed() const { return closed_; }
  int fd() const { return fd_; }

 private:
  explicit WsClient(int fd) : fd_(fd) {}
  bool Pump(int timeout_ms);  // reads once; false on timeout or EOF

  int fd_;
  std::string in_;
  ws::FrameReader reader_{64 << 20, /*server_role=*/false};
  std::deque<json::object> messages_;
  std::optional<uint16_t> close_code_;
  bool closed_ = false;
};

}  // namespace pigeon::client
