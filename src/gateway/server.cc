#include "gateway/server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <future>

#include "chat/metrics.h"
#include "gateway/connection.h"

namespace pigeon {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Server::Impl {
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<std::unique_ptr<ThreadState>> states;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<asio::steady_timer> retry_timer;
  std::vector<std::unique_ptr<asio::steady_timer>> heartbeat_timers;  // one per thread
  std::shared_ptr<std::function<void()>> accept_loop_holder;
  std::vector<std::shared_ptr<std::function<void()>>> heartbeat_loops;
  size_t next = 0;
  bool stopping = false;
};

Server::Server(Options options, GatewayContext& ctx)
    : impl_(std::make_unique<Impl>()), options_(std::move(options)), ctx_(ctx) {}

Server::~Server() { Drain(std::chrono::milliseconds(0)); }

Status Server::Start() {
  unsigned n =
      options_.threads ? options_.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    impl_->contexts.push_back(std::make_unique<asio::io_context>(1));
    impl_->states.push_back(std::make_unique<ThreadState>());
    impl_->states.back()->io = impl_->contexts.back().get();
    impl_->guards.push_back(asio::make_work_guard(*impl_->contexts.back()));
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(options_.host, ec);
  if (ec) return Status(ErrorCode::kBadRequest, "bad listen address: " + options_.host);
  auto acceptor = std::make_unique<tcp::acceptor>(*impl_->contexts[0]);
  tcp::endpoint ep(addr, options_.port);
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status(ErrorCode::kUnavailable, "cannot listen on " + options_.host + ":" +
                                               std::to_string(options_.port) + ": " + ec.message());
  port_ = acceptor->local_endpoint().port();
  impl_->acceptor = std::move(acceptor);
  impl_->retry_timer = std::make_unique<asio::steady_timer>(*impl_->contexts[0]);

  // The accept loop, on thread 0.
  auto impl = impl_.get();
  auto& ctx = ctx_;
  std::shared_ptr<std::function<void()>> loop = std::make_shared<std::function<void()>>();
  *loop = [impl, &ctx, loop_weak = std::weak_ptr<std::function<void()>>(loop)] {
    if (impl->stopping) return;
    size_t i = impl->next++ % impl->contexts.size();
    impl->acceptor->async_accept(
        *impl->contexts[i],
        [impl, &ctx, i, loop_weak](const boost::system::error_code& ec, tcp::socket s) {
          auto loop = loop_weak.lock();
          if (!loop || impl->stopping) return;
          if (ec) {
            // Out of descriptors (or a transient error): wait a little, then go on.
            spdlog::warn("accept failed: {}", ec.message());
            impl->retry_timer->expires_after(std::chrono::milliseconds(100));
            impl->retry_timer->async_wait([loop](const boost::system::error_code&) { (*loop)(); });
            return;
          }
          ctx.metrics.connections_accepted.Increment();
          auto c = std::make_shared<Connection>(std::move(s), ctx, *impl->states[i]);
          asio::post(*impl->contexts[i], [c] { c->Start(); });
          (*loop)();
        });
  };
  // The loop object lives as long as the accept chain holds it.
  asio::post(*impl_->contexts[0], [loop] { (*loop)(); });
  impl_->accept_loop_holder = loop;

  // Heartbeats: one timer per thread walks that thread's connections; no
  // per-socket timer.
  if (options_.heartbeat.count() > 0) {
    for (unsigned i = 0; i < n; ++i) {
      impl_->heartbeat_timers.push_back(std::make_unique<asio::steady_timer>(*impl_->contexts[i]));
      auto tick = std::make_shared<std::function<void()>>();
      *tick = [timer = impl_->heartbeat_timers.back().get(), state = impl_->states[i].get(),
               every = options_.heartbeat, weak = std::weak_ptr<std::function<void()>>(tick)] {
        timer->expires_after(every);
        timer->async_wait([state, weak](const boost::system::error_code& ec) {
          auto self = weak.lock();
          if (ec || !self) return;
          for (Connection* c = state->head; c;) {
            Connection* next = c->next_;  // Heartbeat may close and unlink c
            c->Heartbeat();
            c = next;
          }
          (*self)();
        });
      };
      impl_->heartbeat_loops.push_back(tick);
      asio::post(*impl_->contexts[i], [tick] { (*tick)(); });
    }
  }
  for (unsigned i = 0; i < n; ++i) {
    impl_->threads.emplace_back([ctx = impl_->contexts[i].get()] { ctx->run(); });
  }
  return Status::Ok();
}

void Server::Drain(std::chrono::milliseconds grace) {
  if (impl_->threads.empty()) return;
  auto impl = impl_.get();
  // Stop accepting, then close every connection on its own thread.
  std::promise<void> accepted_stopped;
  asio::post(*impl->contexts[0], [impl, &accepted_stopped] {
    impl->stopping = true;
    boost::system::error_code ec;
    impl->acceptor->close(ec);
    impl->retry_timer->cancel();
    accepted_stopped.set_value();
  });
  accepted_stopped.get_future().wait();
  impl->accept_loop_holder.reset();
  for (size_t i = 0; i < impl->heartbeat_timers.size(); ++i) {
    std::promise<void> cancelled;
    asio::post(*impl->contexts[i], [&, i] {
      impl->heartbeat_timers[i]->cancel();
      cancelled.set_value();
    });
    cancelled.get_future().wait();
  }
  impl->heartbeat_loops.clear();
  for (size_t i = 0; i < impl->contexts.size(); ++i) {
    std::promise<void> done;
    asio::post(*impl->contexts[i], [state = impl->states[i].get(), &done] {
      for (Connection* c = state->head; c;) {
        Connection* next = c->next_;
        c->Shutdown();
        c = next;
      }
      done.set_value();
    });
    done.get_future().wait();
  }
  // Let close frames flush.
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    size_t remaining = 0;
    for (size_t i = 0; i < impl->contexts.size(); ++i) {
      std::promise<size_t> count;
      asio::post(*impl->contexts[i], [state = impl->states[i].get(), &count] {
        size_t n = 0;
        for (Connection* c = state->head; c; c = c->next_) ++n;
        count.set_value(n);
      });
      remaining += count.get_future().get();
    }
    if (remaining == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& g : impl->guards) g.reset();
  for (auto& c : impl->contexts) c->stop();
  for (auto& t : impl->threads) t.join();
  impl->threads.clear();
  // The threads are gone: whatever did not close in time is dropped here.
  for (auto& state : impl->states)
    while (state->head) state->head->Abort();
  impl->acceptor.reset();
  impl->retry_timer.reset();
  impl->heartbeat_timers.clear();
}

}  // namespace pigeon
