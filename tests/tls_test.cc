// TLS on the listener (tls_cert_file, tls_key_file): the same protocol over
// https:// and wss://, from a client that verifies pigeond's certificate.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "client/pigeon_client.h"
#include "test_util.h"

namespace pigeon::test {
namespace {

using namespace ::pigeon::client;

// A pigeond serving TLS with a fresh self-signed certificate, and this
// process's client set to trust it.
class Tls : public ::testing::Test {
 protected:
  Tls() {
    char tmpl[] = "/tmp/pigeon-tls.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    cert_ = dir_ + "/cert.pem";
    key_ = dir_ + "/key.pem";
    WriteSelfSignedCertificate(cert_, key_, 30);
    std::filesystem::copy_file(cert_, dir_ + "/ca.pem");
    UseTls(dir_ + "/ca.pem");
    server_ = std::make_unique<TestServer>(
        std::vector<std::string>{"--tls-cert-file", cert_, "--tls-key-file", key_});
    server_->Start();
  }
  ~Tls() override {
    server_.reset();
    UseTls("");
    std::filesystem::remove_all(dir_);
  }
  uint16_t port() const { return server_->port(); }
  // Restarts pigeond (same certificate) with `extra` arguments.
  void Restart(std::vector<std::string> extra) {
    server_.reset();
    std::vector<std::string> args{"--tls-cert-file", cert_, "--tls-key-file", key_};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<TestServer>(std::move(args));
    server_->Start();
  }
  // A metric's value as /metrics shows it (over TLS).
  double Metric(const std::string& name) { return MetricValue(port(), name); }

  std::string dir_, cert_, key_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(Tls, TheWholeProtocolWorksOverTlsAndPlainBytesAreRefused) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wa = WsClient::Connect(port(), alice.token), wb = WsClient::Connect(port(), bob.token);
  ASSERT_TRUE(wa && wb);
  wa->SendJson(SendFrameJson(conv, "m1", "over TLS"));
  auto ack = wa->NextOfType("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(I(ack->at("seq")), 1);
  auto msg = wb->NextOfType("message");
  ASSERT_TRUE(msg);
  EXPECT_EQ(S(msg->at("body")), "over TLS");
  auto feed = Http(port(), "GET", "/api/v1/messages", "", bob.token);
  ASSERT_EQ(feed.status, 200) << feed.body;
  EXPECT_EQ(feed.json.at("messages").as_array().size(), 1u);

  // Plain HTTP to the TLS port: the handshake fails, the connection closes,
  // and nothing else changes.
  int fd = ConnectLoopback(port());
  ASSERT_GE(fd, 0);
  const std::string plain = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, plain.data(), plain.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(plain.size()));
  char buf[512];
  ssize_t n;
  std::string got;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(got.find("HTTP/1.1"), std::string::npos) << got;  // at most a TLS alert
  EXPECT_EQ(Metric("pigeon_tls_handshake_failures_total"), 1);
  EXPECT_EQ(Metric("pigeon_tls_certificate_expiry_time_seconds"),
            static_cast<double>(CertificateNotAfter(cert_)));

  wb->SendJson(SendFrameJson(conv, "m2", "still here"));
  ASSERT_TRUE(wb->NextOfType("ack"));
  do msg = wa->NextOfType("message");  // after the echo of alice's own
  while (msg && I(msg->at("seq")) == 1);
  ASSERT_TRUE(msg);
  EXPECT_EQ(S(msg->at("body")), "still here");
  EXPECT_EQ(I(msg->at("seq")), 2);

  // SIGTERM drains over TLS too: each socket gets its close frame (1001).
  EXPECT_EQ(server_->Terminate(), 0);
  EXPECT_EQ(wa->WaitClose(), std::optional<uint16_t>(1001));
  EXPECT_EQ(wb->WaitClose(), std::optional<uint16_t>(1001));
}

// Frames of several TLS records each, and a replay much larger than the
// socket's buffer to a device that does not read at first: pigeond's writes
// wait for the socket and resume, and every byte arrives in order.
TEST_F(Tls, LargeFramesAndAReplayLargerThanTheSocketBufferArriveWhole) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto start = Http(port(), "GET", "/api/v1/messages", "", bob.token);
  ASSERT_EQ(start.status, 200);
  const std::string since = S(start.json.at("next_cursor"));
  auto wa = WsClient::Connect(port(), alice.token);
  ASSERT_TRUE(wa);
  constexpr int kMessages = 200;
  auto body = [](int i) { return std::string(60000, static_cast<char>('a' + i % 26)); };
  // In rounds of 20, acks read after each: alice's own copies of her messages
  // come back to her too, and 12 MB of them unread would close her socket as a
  // slow consumer (max_output_bytes).
  for (int i = 0; i < kMessages; i += 20) {
    for (int k = i; k < i + 20; ++k)
      wa->SendJson(SendFrameJson(conv, "m" + std::to_string(k), body(k)));
    for (int k = i; k < i + 20; ++k) ASSERT_TRUE(wa->NextOfType("ack", 20000)) << k;
  }

  auto wb = WsClient::Connect(port(), bob.token, since);  // 12 MB to replay
  ASSERT_TRUE(wb);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // its buffers fill
  for (int i = 0; i < kMessages; ++i) {
    auto m = wb->NextOfType("message", 20000);
    ASSERT_TRUE(m) << i;
    ASSERT_EQ(I(m->at("seq")), i + 1);
    ASSERT_EQ(S(m->at("body")), body(i)) << i;
  }
}

// SIGHUP reads the certificate and key again: new connections get the new
// certificate, open ones go on; a reload that fails keeps the one in use.
TEST_F(Tls, SighupServesARenewedCertificateToNewConnections) {
  auto alice = Login(port(), "alice"), bob = Login(port(), "bob");
  auto conv = OpenConversation(port(), alice, "bob");
  auto wa = WsClient::Connect(port(), alice.token), wb = WsClient::Connect(port(), bob.token);
  ASSERT_TRUE(wa && wb);

  WriteSelfSignedCertificate(dir_ + "/new-cert.pem", dir_ + "/new-key.pem", 90);
  std::filesystem::rename(dir_ + "/new-cert.pem", cert_);
  std::filesystem::rename(dir_ + "/new-key.pem", key_);
  ASSERT_EQ(::kill(server_->pid(), SIGHUP), 0);
  // Trusting only the old certificate, new connections now fail; trusting
  // the new one, they work.
  bool refused = false;
  for (int i = 0; i < 100 && !refused; ++i) {
    try {
      (void)Http(port(), "GET", "/healthz");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } catch (const std::exception& e) {
      refused = std::string(e.what()).find("TLS handshake failed") != std::string::npos;
    }
  }
  ASSERT_TRUE(refused) << server_->log();
  UseTls(cert_);
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(Metric("pigeon_tls_reloads_total"), 1);
  EXPECT_EQ(Metric("pigeon_tls_certificate_expiry_time_seconds"),
            static_cast<double>(CertificateNotAfter(cert_)));

  // The sockets opened before the reload go on.
  wa->SendJson(SendFrameJson(conv, "m1", "after the reload"));
  ASSERT_TRUE(wa->NextOfType("ack"));
  auto msg = wb->NextOfType("message");
  ASSERT_TRUE(msg);
  EXPECT_EQ(S(msg->at("body")), "after the reload");

  // A broken file: the reload fails, the renewed certificate stays.
  std::ofstream(cert_, std::ios::trunc) << "not a certificate\n";
  ASSERT_EQ(::kill(server_->pid(), SIGHUP), 0);
  bool failed = false;
  for (int i = 0; i < 100 && !failed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    failed = Metric("pigeon_tls_reload_failures_total") == 1;
  }
  EXPECT_TRUE(failed) << server_->log();
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
}

// `fd`'s reads give up after 10 s (a test never hangs).
void ReadTimeout(int fd) {
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// A TLS client on memory BIOs: its handshake's last flight (Finished) and an
// HTTP request leave in one send, so that pigeond reads the request with
// the handshake. Returns everything answered until pigeond closes. With
// `session`: offers *session to resume (if set), and leaves there the
// session of this connection (with the ticket pigeond sent).
std::string RequestWithTheLastFlight(uint16_t port, const std::string& request,
                                     SSL_SESSION** session = nullptr) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // the session owns both
  SSL_set_connect_state(ssl.get());
  if (session && *session) SSL_set_session(ssl.get(), *session);
  int fd = ConnectLoopback(port);
  ReadTimeout(fd);
  char buf[16384];
  auto send_out = [&] {
    std::string all;
    int n;
    while ((n = BIO_read(out, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
    if (!all.empty()) ::send(fd, all.data(), all.size(), MSG_NOSIGNAL);
  };
  auto receive = [&] {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) BIO_write(in, buf, static_cast<int>(n));
    return n > 0;
  };
  std::string got;
  int r;
  while ((r = SSL_do_handshake(ssl.get())) != 1) {
    send_out();  // the ClientHello
    if (SSL_get_error(ssl.get(), r) != SSL_ERROR_WANT_READ || !receive()) {
      ::close(fd);
      return got;
    }
  }
  // Finished waits in `out`; the request joins it there.
  SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
  send_out();
  for (;;) {
    r = SSL_read(ssl.get(), buf, sizeof buf);
    if (r > 0) {
      got.append(buf, static_cast<size_t>(r));
    } else if (SSL_get_error(ssl.get(), r) != SSL_ERROR_WANT_READ || !receive()) {
      break;  // pigeond's close_notify, or its close
    }
  }
  // A session freed without close_notify is marked not resumable.
  SSL_shutdown(ssl.get());
  ::close(fd);
  if (session) {
    SSL_SESSION_free(*session);
    *session = SSL_get1_session(ssl.get());
  }
  return got;
}

// Handshakes run on threads of their own (TlsHandshaker): one that stalls
// holds up nobody and is closed after tls_handshake_timeout_ms; a request
// that came with the handshake's last flight (read ahead by OpenSSL, so no
// epoll edge reports it) is answered.
TEST_F(Tls, StalledHandshakesAreClosedAndARequestSentWithTheLastFlightIsAnswered) {
  Restart({"--tls-handshake-timeout-ms", "300"});
  int silent = ConnectLoopback(port());
  int partial = ConnectLoopback(port());
  ASSERT_GE(silent, 0);
  ASSERT_GE(partial, 0);
  // A TLS record header announcing 512 bytes of ClientHello, and 4 of them.
  const std::string hello_start("\x16\x03\x01\x02\x00\x01\x00\x01", 8);
  ASSERT_EQ(::send(partial, hello_start.data(), hello_start.size(), MSG_NOSIGNAL), 8);

  auto resp = RequestWithTheLastFlight(
      port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(resp.rfind("HTTP/1.1 200", 0), 0u) << resp;

  // Both stalled sockets are closed by pigeond (recv: 0, or a reset).
  for (int fd : {silent, partial}) {
    ReadTimeout(fd);
    char b[64];
    ssize_t n = ::recv(fd, b, sizeof b, 0);
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << errno;
    ::close(fd);
  }
  EXPECT_EQ(Metric("pigeon_tls_handshake_timeouts_total"), 2);
  EXPECT_EQ(Metric("pigeon_tls_handshakes_in_progress"), 0);
  EXPECT_EQ(Metric("pigeon_tls_handshake_failures_total"), 0);
}

// A device's session resumes by its ticket (no certificate, no signature);
// with tls_ticket_key_file the ticket outlives the process, and without it a
// restarted pigeond cannot read it and makes a full handshake instead.
TEST_F(Tls, SessionsResumeByTicketAndAcrossARestartWithTheTicketKeyFile) {
  const std::string ticket_key = dir_ + "/ticket.key";
  std::ofstream(ticket_key, std::ios::binary) << std::string(40, 'k') << std::string(40, 'K');
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  Restart({"--tls-ticket-key-file", ticket_key});
  SSL_SESSION* session = nullptr;
  // GET /healthz offering `session`, which then holds this connection's.
  auto request = [&] { return RequestWithTheLastFlight(port(), healthz, &session); };
  ASSERT_EQ(request().rfind("HTTP/1.1 200", 0), 0u);
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(Metric("pigeon_tls_handshakes_resumed_total"), 0);
  ASSERT_EQ(request().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(Metric("pigeon_tls_handshakes_resumed_total"), 1);

  Restart({"--tls-ticket-key-file", ticket_key});  // the same key: the ticket still opens
  ASSERT_EQ(request().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(Metric("pigeon_tls_handshakes_resumed_total"), 1);

  Restart({});  // a random key per start: a full handshake, served all the same
  ASSERT_EQ(request().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(Metric("pigeon_tls_handshakes_resumed_total"), 0);
  EXPECT_GE(Metric("pigeon_tls_handshakes_total"), 1);
  SSL_SESSION_free(session);

  // A key file of the wrong size stops pigeond at start, with the reason.
  std::ofstream(ticket_key, std::ios::binary | std::ios::trunc) << "short";
  TestServer bad(
      {"--tls-cert-file", cert_, "--tls-key-file", key_, "--tls-ticket-key-file", ticket_key});
  EXPECT_THROW(bad.Start(), std::runtime_error);
  EXPECT_NE(bad.log().find("must hold 80 bytes"), std::string::npos) << bad.log();
}

}  // namespace
}  // namespace pigeon::test
