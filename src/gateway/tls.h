// TLS on the listener (https:// and wss://), with OpenSSL on the socket itself:
// no extra copy, no extra buffer beyond OpenSSL's own, which it releases while
// the socket is idle (SSL_MODE_RELEASE_BUFFERS).
//
// TlsServerContext holds the certificate chain and key; Reload() swaps them
// for new sockets while the open ones keep theirs (SIGHUP, operations.md).
// The Tls* functions drive one non-blocking session with recv/send's
// conventions, so Connection's read and write loops stay as they are.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/status.h"

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace pigeon {

class TlsServerContext {
 public:
  // Reads a PEM certificate chain (leaf first) and its PEM private key, and
  // if `ticket_key_file` is given, the key that seals session tickets (80
  // bytes): tickets then outlive the process, and every pigeond given the
  // same file resumes the others' sessions. Without it, OpenSSL makes a
  // random one per start.
  static Result<std::unique_ptr<TlsServerContext>> Load(std::string cert_file, std::string key_file,
                                                        std::string ticket_key_file = "");
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // Reads the files again. On success, sockets accepted from now on present
  // the new certificate; on failure nothing changes.
  Status Reload();
  // When the certificate in use expires (unix seconds).
  int64_t not_after() const;

  // A server session for the accepted socket `fd`; nullptr if OpenSSL fails.
  SSL* NewSession(int fd);

 private:
  TlsServerContext(std::string cert_file, std::string key_file, std::string ticket_key_file)
      : cert_file_(std::move(cert_file)),
        key_file_(std::move(key_file)),
        ticket_key_file_(std::move(ticket_key_file)) {}

  const std::string cert_file_, key_file_, ticket_key_file_;
  mutable std::mutex mu_;
  SSL_CTX* ctx_ = nullptr;  // guarded by mu_
  int64_t not_after_ = 0;   // guarded by mu_
};

// A session's I/O. Like recv and send on a non-blocking socket: the bytes
// moved; 0 from TlsRead at the end of the stream (the peer's close_notify or
// its FIN); -1 with errno EAGAIN when it must wait for the socket, any other
// errno when the connection failed (a bad handshake, a reset).
//
// TlsRead first completes the handshake. *wants_write is set when the session
// waits for the socket to become writable rather than readable (a handshake
// flight that did not fit the socket's buffer); likewise *wants_read for
// TlsWrite. A TlsWrite that returned EAGAIN is retried with the same bytes,
// or more of them: its buffer may move.
ssize_t TlsRead(SSL* ssl, char* buf, size_t len, bool* wants_write);
// Advances the handshake alone: 1 when it is done; else TlsRead's conventions
// (0: the peer closed; -1 with EAGAIN: wait, for the socket to become writable
// if *wants_write; -1 with EPROTO: a TLS error, any other errno: the socket's).
int TlsHandshake(SSL* ssl, bool* wants_write);
// Bytes OpenSSL already took from the socket and has not returned yet (read
// ahead with the handshake's last flight): no epoll edge will report them.
bool TlsHasPending(SSL* ssl);
// The handshake resumed a session (a ticket the client held).
bool TlsResumed(SSL* ssl);
// Bytes read from the socket so far.
uint64_t TlsBytesRead(SSL* ssl);
ssize_t TlsWrite(SSL* ssl, const char* buf, size_t len, bool* wants_read);
// Sends close_notify if the socket takes it now; never waits.
void TlsCloseNotify(SSL* ssl);
void TlsFree(SSL* ssl);

}  // namespace pigeon
