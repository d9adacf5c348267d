#include "gateway/tls_handshaker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "chat/metrics.h"
#include "core/thread_name.h"
#include "gateway/event_loop.h"
#include "gateway/tls.h"

namespace pigeon {

class TlsHandshaker::Handshake final : public EventLoop::Handler {
 public:
  Handshake(TlsHandshaker& owner, Worker& w, int fd, SSL* ssl,
            EventLoop::Clock::time_point deadline)
      : owner_(owner), worker_(w), fd(fd), ssl(ssl), deadline(deadline) {}
  void OnEvents(uint32_t) override {
    if (fd >= 0) owner_.Step(worker_, *this);  // else retired earlier in this turn
  }

  TlsHandshaker& owner_;
  Worker& worker_;
  int fd;
  SSL* ssl;
  EventLoop::Clock::time_point deadline;
  uint64_t bytes_read = 0;  // from the client, as of the last step
};

struct TlsHandshaker::Worker {
  EventLoop loop;
  std::thread thread;
  std::unordered_map<int, std::unique_ptr<Handshake>> pending;  // by descriptor
  std::vector<std::unique_ptr<Handshake>> retired;              // freed at the turn's end
};

TlsHandshaker::TlsHandshaker(Options options, TlsServerContext& tls, Metrics& metrics, Done done)
    : options_(options), tls_(tls), metrics_(metrics), done_(std::move(done)) {}

TlsHandshaker::~TlsHandshaker() { Stop(); }

Status TlsHandshaker::Start() {
  unsigned n =
      options_.threads ? options_.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>());
    if (!workers_.back()->loop.ok())
      return Status(ErrorCode::kUnavailable, std::string("epoll: ") + std::strerror(errno));
  }
  for (unsigned i = 0; i < n; ++i) {
    Worker* w = workers_[i].get();
    if (options_.timeout.count() > 0) ScheduleSweep(*w);
    w->thread = std::thread([w, i, nice = options_.nice] {
      NameThisThread("pg-tls-" + std::to_string(i));
      // Linux's nice value is per thread.
      if (nice != 0 && setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) != 0)
        spdlog::warn("TLS handshake thread: setpriority: {}", std::strerror(errno));
      w->loop.Run();
    });
  }
  return Status::Ok();
}

void TlsHandshaker::Submit(int fd) {
  Worker& w = *workers_[next_.fetch_add(1, std::memory_order_relaxed) % workers_.size()];
  w.loop.Post([this, &w, fd] { Begin(w, fd); });
}

void TlsHandshaker::Begin(Worker& w, int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL* ssl = tls_.NewSession(fd);
  if (!ssl) {
    close(fd);
    return;
  }
  auto h =
      std::make_unique<Handshake>(*this, w, fd, ssl, EventLoop::Clock::now() + options_.timeout);
  if (!w.loop.Add(fd, h.get()).ok()) {  // reports what is already there (the ClientHello)
    TlsFree(ssl);
    close(fd);
    return;
  }
  metrics_.tls_handshakes_in_progress.Increment();
  w.pending.emplace(fd, std::move(h));
}

bool TlsHandshaker::Step(Worker& w, Handshake& h) {
  bool wants_write = false;
  int r = TlsHandshake(h.ssl, &wants_write);
  const uint64_t before = h.bytes_read;
  h.bytes_read = TlsBytesRead(h.ssl);
  if (r == 1) {
    metrics_.tls_handshakes.Increment();
    if (TlsResumed(h.ssl)) metrics_.tls_handshakes_resumed.Increment();
    w.loop.Remove(h.fd);
    int fd = h.fd;
    SSL* ssl = h.ssl;
    h.ssl = nullptr;
    Retire(w, h);
    done_(fd, ssl);
    return true;
  }
  // Both directions are watched, edge-triggered: any change steps it again.
  if (r < 0 && errno == EAGAIN) return h.bytes_read != before;
  if (r < 0 && errno == EPROTO) metrics_.tls_handshake_failures.Increment();
  Close(w, h);  // a TLS error, the peer's close or reset
  return true;
}

void TlsHandshaker::Retire(Worker& w, Handshake& h) {
  auto it = w.pending.find(h.fd);
  h.fd = -1;
  metrics_.tls_handshakes_in_progress.Decrement();
  if (w.retired.empty()) w.loop.DeferToOwnTurn([&w] { w.retired.clear(); });
  w.retired.push_back(std::move(it->second));
  w.pending.erase(it);
}

void TlsHandshaker::Close(Worker& w, Handshake& h) {
  int fd = h.fd;
  TlsFree(h.ssl);
  h.ssl = nullptr;
  Retire(w, h);
  close(fd);  // leaves the loop's epoll set
}

void TlsHandshaker::ScheduleSweep(Worker& w) {
  auto period = std::clamp(options_.timeout / 4, std::chrono::milliseconds(10),
                           std::chrono::milliseconds(1000));
  w.loop.After(period, [this, &w] {
    auto now = EventLoop::Clock::now();
    std::vector<Handshake*> late;
    for (auto& [fd, h] : w.pending)
      if (h->deadline <= now) late.push_back(h.get());
    // A late handshake whose client sent something this thread has not read
    // yet (it was busy: a storm) waits on pigeond, not on the client: it is
    // stepped and given another timeout. Otherwise bytes are read as they
    // come, so a client that trickles its handshake out gains nothing.
    for (Handshake* h : late) {
      if (!Step(w, *h)) {
        metrics_.tls_handshake_timeouts.Increment();
        Close(w, *h);
      } else if (h->fd >= 0) {
        h->deadline = now + options_.timeout;
      }
    }
    ScheduleSweep(w);
  });
}

void TlsHandshaker::Stop() {
  for (auto& w : workers_) {
    if (!w->thread.joinable()) continue;
    // After the submissions already posted (the mail is FIFO).
    w->loop.Post([this, wp = w.get()] {
      std::vector<Handshake*> all;
      for (auto& [fd, h] : wp->pending) all.push_back(h.get());
      for (Handshake* h : all) Close(*wp, *h);
      wp->loop.Stop();
    });
    w->thread.join();
  }
}

}  // namespace pigeon
