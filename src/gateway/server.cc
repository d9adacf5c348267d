#include "gateway/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <future>

#include "chat/metrics.h"
#include "core/thread_name.h"
#include "gateway/connection.h"
#include "gateway/tls_handshaker.h"

namespace pigeon {

struct Server::Impl : EventLoop::Handler {
  GatewayContext* ctx = nullptr;
  std::vector<std::unique_ptr<ThreadState>> states;
  std::vector<std::thread> threads;
  int listen_fd = -1;  // thread 0's
  std::atomic<size_t> next{0};
  bool stopping = false;  // thread 0's
  // With TLS: accepted sockets do their handshake there first.
  std::unique_ptr<TlsHandshaker> handshaker;

  ~Impl() {
    if (listen_fd >= 0) close(listen_fd);
  }
  void OnEvents(uint32_t) override { AcceptSome(); }

  // Thread 0: accepts what is pending, dealing sockets round-robin.
  void AcceptSome() {
    for (int k = 0; k < 256; ++k) {
      if (stopping || listen_fd < 0) return;
      int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        // Out of descriptors (or a transient error): wait a little, then go on.
        spdlog::warn("accept failed: {}", std::strerror(errno));
        states[0]->loop.After(std::chrono::milliseconds(100), [this] { AcceptSome(); });
        return;
      }
      ctx->metrics.connections_accepted.Increment();
      if (handshaker) {
        handshaker->Submit(fd);
      } else {
        Deal(fd, nullptr, /*on_thread_0=*/true);
      }
    }
    // More are waiting: take them after this turn's other work (the edge is spent).
    states[0]->loop.Defer([this] { AcceptSome(); });
  }

  // A connection on the next network thread, round-robin; `ssl`: its TLS
  // session, the handshake done.
  void Deal(int fd, SSL* ssl, bool on_thread_0) {
    size_t i = next.fetch_add(1, std::memory_order_relaxed) % states.size();
    auto c = std::make_shared<Connection>(fd, *ctx, *states[i], ssl);
    if (i == 0 && on_thread_0) {
      c->Start();
    } else {
      states[i]->Post([c] { c->Start(); });
    }
  }

  // Thread i: every `period`, one timer walks that thread's connections and
  // calls `tick` on each (the heartbeat, the HTTP idle timeout); no
  // per-socket timer.
  void ScheduleTicks(size_t i, std::chrono::milliseconds period, void (Connection::*tick)()) {
    states[i]->loop.After(period, [this, i, period, tick] {
      for (Connection* c = states[i]->head; c;) {
        Connection* next = c->next_;  // the tick may close and unlink c
        (c->*tick)();
        c = next;
      }
      ScheduleTicks(i, period, tick);
    });
  }

  // Runs `fn` on thread i and waits for it.
  void RunOn(size_t i, const std::function<void()>& fn) {
    std::promise<void> done;
    states[i]->Post([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
};

namespace {

// A listening socket on host:port (IPv4 or IPv6 literal), or -1 and `error`.
int Listen(const std::string& host, uint16_t port, std::string* error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    *error = "bad listen address: " + host;
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    *error = std::strerror(errno);
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

unsigned Server::DefaultThreads() {
  // Half the cores: the committer, RocksDB's flushes, the workers and the
  // kernel's share of every socket write need the rest. Each network thread
  // is woken separately by every commit it has acks or deliveries in, so
  // more of them than that only add wake-ups (benchmarks.md, "Ninth round").
  return std::max(1u, std::thread::hardware_concurrency() / 2);
}

Server::Server(Options options, GatewayContext& ctx)
    : impl_(std::make_unique<Impl>()), options_(std::move(options)), ctx_(ctx) {}

Server::~Server() { Drain(std::chrono::milliseconds(0)); }

Status Server::Start() {
  unsigned n = options_.threads ? options_.threads : DefaultThreads();
  impl_->ctx = &ctx_;
  for (unsigned i = 0; i < n; ++i) {
    impl_->states.push_back(std::make_unique<ThreadState>());
    if (!impl_->states.back()->loop.ok())
      return Status(ErrorCode::kUnavailable, std::string("epoll: ") + std::strerror(errno));
  }
  std::string error;
  int fd = Listen(options_.host, options_.port, &error);
  if (fd < 0) {
    if (error.rfind("bad listen address", 0) == 0) return Status(ErrorCode::kBadRequest, error);
    return Status(ErrorCode::kUnavailable, "cannot listen on " + options_.host + ":" +
                                               std::to_string(options_.port) + ": " + error);
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  impl_->listen_fd = fd;
  if (ctx_.tls) {
    auto impl = impl_.get();
    impl->handshaker = std::make_unique<TlsHandshaker>(
        TlsHandshaker::Options{.threads = options_.tls_handshake_threads,
                               .timeout = options_.tls_handshake_timeout},
        *ctx_.tls, ctx_.metrics,
        [impl](int afd, SSL* ssl) { impl->Deal(afd, ssl, /*on_thread_0=*/false); });
    if (auto s = impl->handshaker->Start(); !s.ok()) return s;
  }
  if (auto s = impl_->states[0]->loop.Add(fd, impl_.get()); !s.ok()) return s;

  for (unsigned i = 0; i < n; ++i) {
    if (options_.heartbeat.count() > 0)
      impl_->ScheduleTicks(i, options_.heartbeat, &Connection::Heartbeat);
    if (options_.http_idle_timeout.count() > 0)
      impl_->ScheduleTicks(i, options_.http_idle_timeout / 2, &Connection::HttpTick);
  }
  for (unsigned i = 0; i < n; ++i) {
    impl_->threads.emplace_back([state = impl_->states[i].get(), i] {
      NameThisThread("pg-net-" + std::to_string(i));
      state->loop.Run();
    });
  }
  return Status::Ok();
}

void Server::Drain(std::chrono::milliseconds grace) {
  if (impl_->threads.empty()) return;
  auto impl = impl_.get();
  // Stop accepting, then close every connection on its own thread.
  impl->RunOn(0, [impl] {
    impl->stopping = true;
    close(impl->listen_fd);
    impl->listen_fd = -1;
  });
  // Handshakes in progress are dropped; those done are already posted to
  // their network threads, ahead of the shutdown below.
  if (impl->handshaker) impl->handshaker->Stop();
  for (size_t i = 0; i < impl->states.size(); ++i) {
    impl->RunOn(i, [state = impl->states[i].get()] {
      for (Connection* c = state->head; c;) {
        Connection* next = c->next_;
        c->Shutdown();
        c = next;
      }
    });
  }
  // Let close frames flush.
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    size_t remaining = 0;
    for (size_t i = 0; i < impl->states.size(); ++i) {
      impl->RunOn(i, [state = impl->states[i].get(), &remaining] {
        for (Connection* c = state->head; c; c = c->next_) ++remaining;
      });
    }
    if (remaining == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& state : impl->states) state->loop.Stop();
  for (auto& t : impl->threads) t.join();
  impl->threads.clear();
  // The threads are gone: whatever did not close in time is dropped here.
  for (auto& state : impl->states)
    while (state->head) state->head->Abort();
}

}  // namespace pigeon
