#include "reference_relay.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "flat_json.h"
#include "gateway/http_parse.h"
#include "protocol/ws_codec.h"

namespace pigeon::bench {
namespace {

constexpr size_t kMaxRequest = 16 << 10;   // an HTTP request's head, and its body
constexpr size_t kMaxMessage = 256 << 10;  // a WebSocket message

struct Conn {
  int fd = -1;
  bool websocket = false;
  bool dirty = false;  // has output queued in this turn
  bool close_when_sent = false;
  bool closed = false;         // to be freed at the end of the turn
  bool writable_wait = false;  // EPOLLOUT is on
  std::string user;
  std::string in, out;
  HttpRequestParser http{kMaxRequest, kMaxRequest};  // pigeond's own (gateway/http_parse.h)
  ws::FrameReader reader{kMaxMessage, /*server_role=*/true};
};

struct Conversation {
  std::string a, b;
  uint64_t seq = 0;
};

// Lets a conversation be found by a string_view into the frame (no copy per send).
struct Hash : std::hash<std::string_view> {
  using is_transparent = void;
};

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Relay {
 public:
  explicit Relay(int listen_fd) : listen_fd_(listen_fd), ep_(epoll_create1(EPOLL_CLOEXEC)) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd_;
    epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }

  [[noreturn]] void Run() {
    std::vector<epoll_event> events(512);
    for (;;) {
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0 && errno != EINTR) std::_Exit(1);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == listen_fd_) {
          Accept();
          continue;
        }
        Conn* c = conns_[static_cast<size_t>(fd)].get();
        if (!c || c->closed) continue;
        if (events[i].events & EPOLLOUT) MarkDirty(c);
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) Read(c);
      }
      // The turn's output: one send per socket, whatever it gathered.
      for (Conn* c : dirty_) Flush(c);
      dirty_.clear();
      closed_.clear();
    }
  }

 private:
  void Accept() {
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(static_cast<size_t>(fd) + 1024);
      auto& c = conns_[static_cast<size_t>(fd)];
      c = std::make_unique<Conn>();
      c->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  void Read(Conn* c) {
    char buf[65536];
    for (;;) {
      ssize_t got = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return Close(c);
      if (got < 0) break;
      c->in.append(buf, static_cast<size_t>(got));
      if (static_cast<size_t>(got) < sizeof buf) break;
    }
    if (!c->websocket) {
      HandleHttp(c);
      if (!c->websocket || c->closed) return;
    }
    size_t used =
        c->reader.Consume(c->in.data(), c->in.size(), [&](const ws::Event& ev) { OnEvent(c, ev); });
    c->in.erase(0, used);
  }

  void HandleHttp(Conn* c) {
    HttpRequestParser::State state;
    std::string error;
    c->in.erase(0, c->http.Put(c->in.data(), c->in.size(), &state, &error));
    if (state == HttpRequestParser::State::kNeedMore) return;
    if (state == HttpRequestParser::State::kError)
      return Respond(c, c->http.body_too_large() ? 413 : 400, R"({"error":"bad request"})");
    HttpRequest req = c->http.Take();
    std::string_view auth = req.authorization;
    std::string user = auth.starts_with("Bearer ") ? std::string(auth.substr(7)) : std::string();
    if (req.method == "GET" && req.path() == "/api/v1/ws") {
      if (user.empty() || !req.upgrade_websocket || req.ws_key.empty())
        return Respond(c, 401, R"({"error":"no token"})");
      c->out
          .append(
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Accept: ")
          .append(ws::AcceptKey(req.ws_key))
          .append("\r\n\r\n");
      MarkDirty(c);
      c->websocket = true;
      c->user = user;
      online_[user].push_back(c);
    } else if (req.method == "POST" && req.path() == "/api/v1/conversations") {
      std::string peer(Field(req.body, "peer"));
      if (user.empty() || peer.empty() || peer == user)
        return Respond(c, 400, R"({"error":"peer and token needed"})");
      auto id = user < peer ? user + "~" + peer : peer + "~" + user;
      conversations_.try_emplace(id, Conversation{user, peer});
      Respond(c, 200, R"({"conversation_id":")" + id + "\"}");
    } else {
      Respond(c, 404, R"({"error":"the reference relay serves only what pigeon-bench uses"})");
    }
  }

  // One answer, then the connection closes (pigeon-bench sends Connection: close).
  void Respond(Conn* c, int status, const std::string& body) {
    c->out.append("HTTP/1.1 " + std::to_string(status) +
                  " X\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body);
    c->close_when_sent = true;
    c->in.clear();
    MarkDirty(c);
  }

  void OnEvent(Conn* c, const ws::Event& ev) {
    switch (ev.kind) {
      case ws::Event::Kind::kText:
        return OnText(c, ev.payload);
      case ws::Event::Kind::kPing:
        ws::AppendFrame(c->out, ws::kPong, ev.payload);
        return MarkDirty(c);
      case ws::Event::Kind::kClose:
      case ws::Event::Kind::kError:
        ws::AppendFrame(c->out, ws::kClose, ws::ClosePayload(ev.code ? ev.code : 1000, ""));
        c->close_when_sent = true;
        return MarkDirty(c);
      default:
        return;
    }
  }

  void OnText(Conn* c, std::string_view f) {
    auto type = Field(f, "type");
    if (type == "ping") {
      frame_.assign(R"({"type":"pong"})");
      ws::AppendFrame(c->out, ws::kText, frame_);
      return MarkDirty(c);
    }
    if (type != "send") return;
    auto conv_id = Field(f, "conversation_id");
    auto client_msg_id = Field(f, "client_msg_id");
    auto it = conversations_.find(conv_id);
    if (it == conversations_.end() || (it->second.a != c->user && it->second.b != c->user)) {
      frame_.assign(R"({"type":"error","code":"not_found","client_msg_id":")")
          .append(client_msg_id)
          .append(R"(","message":"no such conversation"})");
      ws::AppendFrame(c->out, ws::kText, frame_);
      return MarkDirty(c);
    }
    Conversation& conv = it->second;
    uint64_t seq = ++conv.seq;
    std::string ts = std::to_string(WallMs());
    frame_.assign(R"({"type":"ack","client_msg_id":")")
        .append(client_msg_id)
        .append(R"(","conversation_id":")")
        .append(conv_id)
        .append(R"(","seq":)")
        .append(std::to_string(seq))
        .append(R"(,"ts":)")
        .append(ts)
        .append("}");
    ws::AppendFrame(c->out, ws::kText, frame_);
    MarkDirty(c);
    frame_.assign(R"({"type":"message","conversation_id":")")
        .append(conv_id)
        .append(R"(","seq":)")
        .append(std::to_string(seq))
        .append(R"(,"sender":")")
        .append(c->user)
        .append(R"(","body":")")
        .append(Field(f, "body"))
        .append(R"(","ts":)")
        .append(ts)
        .append("}");
    // Every socket of both members, the sender's own included (as pigeond).
    for (const std::string* member : {&conv.a, &conv.b}) {
      auto on = online_.find(*member);
      if (on == online_.end()) continue;
      for (Conn* to : on->second) {
        ws::AppendFrame(to->out, ws::kText, frame_);
        MarkDirty(to);
      }
    }
  }

  void MarkDirty(Conn* c) {
    if (c->dirty) return;
    c->dirty = true;
    dirty_.push_back(c);
  }

  void Flush(Conn* c) {
    c->dirty = false;
    if (c->closed) return;
    while (!c->out.empty()) {
      ssize_t n = send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c->out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return WantWritable(c, true);
      return Close(c);
    }
    if (c->writable_wait) WantWritable(c, false);
    if (c->close_when_sent) Close(c);
  }

  void WantWritable(Conn* c, bool on) {
    if (c->writable_wait == on) return;
    c->writable_wait = on;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.fd = c->fd;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  // Closes now; the Conn itself lives to the end of the turn, where pointers
  // to it may still wait in dirty_ (and its fd number may already be reused).
  void Close(Conn* c) {
    if (c->closed) return;
    c->closed = true;
    if (c->websocket) {
      auto& list = online_[c->user];
      std::erase(list, c);
      if (list.empty()) online_.erase(c->user);
    }
    close(c->fd);
    closed_.push_back(std::move(conns_[static_cast<size_t>(c->fd)]));
  }

  int listen_fd_;
  int ep_;
  std::vector<std::unique_ptr<Conn>> conns_ = std::vector<std::unique_ptr<Conn>>(1024);
  std::unordered_map<std::string, std::vector<Conn*>> online_;
  std::unordered_map<std::string, Conversation, Hash, std::equal_to<>> conversations_;
  std::vector<Conn*> dirty_;
  std::vector<std::unique_ptr<Conn>> closed_;
  std::string frame_;
};

}  // namespace

void RunReferenceRelay(int listen_fd) {
  prctl(PR_SET_NAME, "pg-relay");
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::signal(SIGPIPE, SIG_IGN);
  Relay(listen_fd).Run();
}

}  // namespace pigeon::bench
