#include "gateway/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>

namespace pigeon {
namespace {

// OpenSSL's queued errors as one line, and the queue emptied.
std::string TakeErrors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown error" : out;
}

int64_t NotAfter(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  std::tm tm{};
  if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

Result<SSL_CTX*> NewContext(const std::string& cert_file, const std::string& key_file,
                            const std::string& ticket_key_file) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return Status(ErrorCode::kInternal, "TLS: " + TakeErrors());
  auto fail = [&](const std::string& what) {
    Status s(ErrorCode::kBadRequest, "TLS: " + what + ": " + TakeErrors());
    SSL_CTX_free(ctx);
    return s;
  };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return fail("minimum version");
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1)
    return fail("certificate chain " + cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return fail("private key " + key_file);
  if (SSL_CTX_check_private_key(ctx) != 1) return fail("the key does not match the certificate");
  // Idle sockets hold no record buffers; output is written record by record
  // from a buffer that may move (Connection's queue grows while it waits).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // A peer that closes without close_notify ends the stream like a FIN: the
  // protocol frames its own messages, so a truncation is seen anyway.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Resumption by tickets only (no per-session state kept here), one per
  // handshake: devices reconnect often, and a resumed handshake skips the
  // certificate and its signature.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  if (!ticket_key_file.empty()) {
    // 16 bytes of key name, 32 of HMAC key, 32 of AES key (`openssl rand 80`).
    std::ifstream f(ticket_key_file, std::ios::binary);
    if (!f) {
      Status s(ErrorCode::kBadRequest,
               "TLS: cannot open the ticket key " + ticket_key_file + ": " + std::strerror(errno));
      SSL_CTX_free(ctx);
      return s;
    }
    std::string keys((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const bool set =
        keys.size() == 80 &&
        SSL_CTX_set_tlsext_ticket_keys(ctx, keys.data(), static_cast<long>(keys.size())) == 1;
    const size_t size = keys.size();
    OPENSSL_cleanse(keys.data(), keys.size());
    if (!set)
      return fail("the ticket key " + ticket_key_file + " must hold 80 bytes, not " +
                  std::to_string(size) + " (openssl rand 80 > FILE)");
  }
  // One recv takes all that is there rather than a record header, then its body.
  SSL_CTX_set_read_ahead(ctx, 1);
  return ctx;
}

// recv/send's conventions for a failed SSL_read_ex / SSL_write_ex.
ssize_t Failed(SSL* ssl, int r, bool* wants_other, int wants_other_code) {
  int saved = errno;
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (e == wants_other_code) *wants_other = true;
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  ERR_clear_error();
  errno = (e == SSL_ERROR_SYSCALL && saved != 0 && saved != EAGAIN) ? saved : EPROTO;
  return -1;
}

}  // namespace

Result<std::unique_ptr<TlsServerContext>> TlsServerContext::Load(std::string cert_file,
                                                                 std::string key_file,
                                                                 std::string ticket_key_file) {
  std::unique_ptr<TlsServerContext> t(
      new TlsServerContext(std::move(cert_file), std::move(key_file), std::move(ticket_key_file)));
  if (auto s = t->Reload(); !s.ok()) return s;
  return t;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

Status TlsServerContext::Reload() {
  auto ctx = NewContext(cert_file_, key_file_, ticket_key_file_);
  if (!ctx.ok()) return ctx.status();
  int64_t not_after = NotAfter(*ctx);
  SSL_CTX* old;
  {
    std::lock_guard lock(mu_);
    old = ctx_;
    ctx_ = *ctx;
    not_after_ = not_after;
  }
  SSL_CTX_free(old);  // open sessions hold their own reference
  return Status::Ok();
}

int64_t TlsServerContext::not_after() const {
  std::lock_guard lock(mu_);
  return not_after_;
}

SSL* TlsServerContext::NewSession(int fd) {
  SSL* ssl;
  {
    std::lock_guard lock(mu_);
    ssl = SSL_new(ctx_);
  }
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  if (SSL_set_fd(ssl, fd) != 1) {
    ERR_clear_error();
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

ssize_t TlsRead(SSL* ssl, char* buf, size_t len, bool* wants_write) {
  ERR_clear_error();  // SSL_get_error reads this thread's queue
  errno = 0;
  size_t got = 0;
  int r = SSL_read_ex(ssl, buf, len, &got);  // completes the handshake first
  if (r == 1) return static_cast<ssize_t>(got);
  return Failed(ssl, r, wants_write, SSL_ERROR_WANT_WRITE);
}

int TlsHandshake(SSL* ssl, bool* wants_write) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(ssl);
  if (r == 1) return 1;
  return static_cast<int>(Failed(ssl, r, wants_write, SSL_ERROR_WANT_WRITE));
}

bool TlsHasPending(SSL* ssl) { return SSL_has_pending(ssl) == 1; }

bool TlsResumed(SSL* ssl) { return SSL_session_reused(ssl) == 1; }

uint64_t TlsBytesRead(SSL* ssl) { return BIO_number_read(SSL_get_rbio(ssl)); }

ssize_t TlsWrite(SSL* ssl, const char* buf, size_t len, bool* wants_read) {
  ERR_clear_error();
  errno = 0;
  size_t put = 0;
  int r = SSL_write_ex(ssl, buf, len, &put);
  if (r == 1) return static_cast<ssize_t>(put);
  ssize_t n = Failed(ssl, r, wants_read, SSL_ERROR_WANT_READ);
  if (n == 0) errno = EPIPE;  // the peer's close_notify: nothing more goes out
  return n == 0 ? -1 : n;
}

void TlsCloseNotify(SSL* ssl) {
  if (!SSL_is_init_finished(ssl)) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl);  // one alert, or nothing if the socket is full
  ERR_clear_error();
}

void TlsFree(SSL* ssl) { SSL_free(ssl); }

}  // namespace pigeon
