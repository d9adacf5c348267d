// TlsHandshaker: TLS handshakes on threads of their own, off the network
// threads.
//
// A full handshake costs pigeond about 0.66 ms of CPU, most of it in
// libcrypto (benchmarks.md, "Twenty-first round"). Run on a network thread,
// a reconnect storm or a flood of ClientHellos held up every live socket of
// that thread for as long, and used one core however many the box has. Here
// an accepted socket is watched by one of these threads (an EventLoop each)
// until its handshake is done, then handed with its session to a network
// thread; a handshake not done within `timeout` (for want of the client's
// bytes, not of this thread's time) is closed. The threads run at
// a lower priority (`nice`) than the network threads and the committer, so
// that under load the messages of connected devices go first.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "core/status.h"

using SSL = struct ssl_st;

namespace pigeon {

class Metrics;
class TlsServerContext;

class TlsHandshaker {
 public:
  struct Options {
    unsigned threads = 0;                      // 0: one per core
    std::chrono::milliseconds timeout{10000};  // 0: none
    int nice = 5;  // added to the threads' priority (0: the network threads')
  };
  // On a handshaker thread, for a socket whose handshake is done: takes the
  // descriptor and the session.
  using Done = std::function<void(int fd, SSL* ssl)>;

  TlsHandshaker(Options options, TlsServerContext& tls, Metrics& metrics, Done done);
  ~TlsHandshaker();
  TlsHandshaker(const TlsHandshaker&) = delete;
  TlsHandshaker& operator=(const TlsHandshaker&) = delete;

  Status Start();
  // Any thread: takes `fd`, an accepted non-blocking TCP socket.
  void Submit(int fd);
  // Closes the sockets still in their handshake (and any submitted
  // meanwhile), then stops the threads. Idempotent.
  void Stop();

 private:
  struct Worker;
  class Handshake;
  void Begin(Worker& w, int fd);
  // Advances `h` (done: handed over; failed: closed). False if it waits and
  // read nothing new from the client.
  bool Step(Worker& w, Handshake& h);
  // Forgets `h` (freed at the end of the turn: this turn's events may name it).
  void Retire(Worker& w, Handshake& h);
  void Close(Worker& w, Handshake& h);
  void ScheduleSweep(Worker& w);

  const Options options_;
  TlsServerContext& tls_;
  Metrics& metrics_;
  const Done done_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<size_t> next_{0};
};

}  // namespace pigeon
