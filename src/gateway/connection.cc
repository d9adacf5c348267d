#include "gateway/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cerrno>
#include <chrono>

#include "chat/chat_service.h"
#include "chat/metrics.h"
#include "chat/presence_service.h"
#include "core/ids.h"
#include "gateway/client_address.h"
#include "gateway/http_parse.h"
#include "gateway/session_registry.h"
#include "gateway/tls.h"

namespace pigeon {
namespace asio = boost::asio;

// State of a `since` replay: the feed is read in pages on a worker thread while
// live entries for this socket are held here; when the store has nothing more
// after what was sent, the held entries past it follow. Entries are deduplicated
// by feed position, so an entry both read and held goes out once, in order.
struct Connection::CatchUp {
  std::vector<std::pair<FeedPos, SharedFrame>> held;
  bool reread = false;       // held entries were dropped (overflow): read the store again
  bool after_flush = false;  // the next page waits until the output queue drains
};

Connection::Connection(int fd, GatewayContext& ctx, ThreadState& thread, SSL* ssl)
    : fd_(fd),
      ssl_(ssl),
      ctx_(ctx),
      thread_(thread),
      reader_(ctx.limits.max_frame_bytes, /*server_role=*/true) {}

Connection::~Connection() {
  if (ssl_) TlsFree(ssl_);
  if (fd_ >= 0) close(fd_);  // never started
}

void Connection::Start() {
  int one = 1;
  if (!ssl_)
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // else set for the handshake
  http_ = std::make_unique<HttpRequestParser>(ctx_.limits.max_http_header_bytes,
                                              ctx_.limits.max_http_body_bytes);
  if (!thread_.loop.Add(fd_, this).ok()) {
    close(fd_);
    fd_ = -1;
    phase_ = Phase::kClosed;
    return;
  }
  self_ = shared_from_this();
  next_ = thread_.head;
  if (next_) next_->prev_ = this;
  thread_.head = this;
  // Bytes that came before the registration are reported by it, except those
  // OpenSSL read ahead with the handshake's last flight (a request sent at once).
  if (ssl_ && TlsHasPending(ssl_)) OnReadable();
}

// ---- the thread's turn ------------------------------------------------------------------

void ThreadState::QueueFlush(std::shared_ptr<Connection> c) {
  if (flushes_.empty()) loop.Defer([this] { FlushQueued(); });
  flushes_.push_back(std::move(c));
}

void ThreadState::FlushQueued() {
  flushing_.swap(flushes_);
  for (auto& c : flushing_) c->Flush();
  flushing_.clear();
}

void ThreadState::Release(std::shared_ptr<Connection> c) {
  // Not in a borrowed turn: the thread may hold an event for `c` from before it.
  if (released_.empty()) loop.DeferToOwnTurn([this] { released_.clear(); });
  released_.push_back(std::move(c));
}

// ---- reading --------------------------------------------------------------------

void Connection::OnEvents(uint32_t events) {
  if (phase_ == Phase::kClosed) return;
  // The peer closed or reset: its EOF is reported once, so read through to it.
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_closed_ = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    OnReadable();
  } else if (tls_read_on_write_ && (events & EPOLLOUT)) {
    tls_read_on_write_ = false;
    OnReadable();
  }
  if (write_waiting_ && phase_ != Phase::kClosed &&
      ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) || (tls_write_on_read_ && (events & EPOLLIN)))) {
    write_waiting_ = false;
    tls_write_on_read_ = false;
    http_ticks_ = 0;  // the peer reads: a slow reader is not idle
    Flush();
  }
}

// Edge-triggered: the loop reports new bytes once. A short read means the
// socket was drained (anything later is a new edge), unless the peer closed:
// then it reads on to the EOF. Otherwise, or when this phase does not read,
// the rest is remembered and read later. With TLS, a read returns one record
// at most, and OpenSSL may hold more already read: it reads on until EAGAIN.
void Connection::OnReadable() {
  if (phase_ == Phase::kClosed) return;
  read_pending_ = false;
  char* buf = thread_.read_buffer.get();
  // A few reads per turn, then yield to the other sockets of this thread.
  for (int i = 0; i < 4; ++i) {
    if (!Reading()) {
      read_pending_ = true;  // Resume() or LingerClose() reads it
      return;
    }
    bool wants_write = false;
    ssize_t n = ssl_ ? TlsRead(ssl_, buf, ThreadState::kReadBufferBytes, &wants_write)
                     : recv(fd_, buf, ThreadState::kReadBufferBytes, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        tls_read_on_write_ = wants_write;
        return;
      }
      if (errno == EINTR) continue;
      return Abort();  // reset, or a TLS error
    }
    if (n == 0) return Abort();  // EOF
    alive_ = true;
    if (phase_ != Phase::kLingering) OnBytes(buf, static_cast<size_t>(n));  // else discarded
    if (static_cast<size_t>(n) < ThreadState::kReadBufferBytes && !peer_closed_ && !ssl_) return;
  }
  if (phase_ == Phase::kClosed) return;
  read_pending_ = true;
  thread_.loop.Defer([self = shared_from_this()] {
    if (self->read_pending_) self->OnReadable();
  });
}

void Connection::OnBytes(char* data, size_t len) {
  if (in_) {
    in_->append(data, len);
    ProcessBuffered();
    return;
  }
  size_t used = Process(data, len);
  if (used < len && phase_ != Phase::kClosed) {
    in_ = thread_.TakeBuffer();
    in_->assign(data + used, len - used);
  }
}

void Connection::ProcessBuffered() {
  if (!in_) return;
  // The buffer must outlive the parse: closing meanwhile only marks it.
  processing_ = true;
  size_t used = Process(in_->data(), in_->size());
  processing_ = false;
  if (phase_ != Phase::kHttp && phase_ != Phase::kHttpBusy && phase_ != Phase::kWebSocket) {
    thread_.GiveBack(std::move(in_));
    return;
  }
  if (used == in_->size()) {
    thread_.GiveBack(std::move(in_));  // idle sockets keep no buffer
  } else {
    in_->erase(0, used);
  }
}

size_t Connection::Process(char* data, size_t len) {
  switch (phase_) {
    case Phase::kHttp:
      return ProcessHttp(data, len);
    case Phase::kWebSocket:
      return reader_.Consume(data, len, [this](const ws::Event& ev) {
        if (phase_ == Phase::kWebSocket) OnWsEvent(ev);  // nothing after a close
      });
    default:
      return phase_ == Phase::kClosing ? len : 0;  // kHttpBusy keeps bytes for later
  }
}

// Continues after an asynchronous step (HTTP response, upgrade): bytes that
// arrived meanwhile are processed, then the socket is watched again.
void Connection::Resume() {
  ProcessBuffered();
  if (read_pending_) OnReadable();
}

// ---- HTTP ---------------------------------------------------------------------------

size_t Connection::ProcessHttp(const char* data, size_t len) {
  size_t total = 0;
  while (phase_ == Phase::kHttp && total < len) {
    HttpRequestParser::State state;
    std::string error;
    size_t used = http_->Put(data + total, len - total, &state, &error);
    total += used;
    if (state == HttpRequestParser::State::kError) {
      auto code = http_->body_too_large() ? ErrorCode::kTooLarge : ErrorCode::kBadRequest;
      OnHttpResponse(ctx_.api.Error(Status(code, "malformed HTTP request: " + error)), false);
      return len;
    }
    if (state == HttpRequestParser::State::kNeedMore && http_->TakeExpectContinue())
      SendRaw("HTTP/1.1 100 Continue\r\n\r\n", /*limited=*/false);
    if (state == HttpRequestParser::State::kDone) {
      HttpRequest req = http_->Take();
      http_ = std::make_unique<HttpRequestParser>(ctx_.limits.max_http_header_bytes,
                                                  ctx_.limits.max_http_body_bytes);
      DispatchHttp(std::move(req));
      break;
    }
    if (used == 0) break;  // needs more bytes
  }
  return total;
}

void Connection::DispatchHttp(HttpRequest req) {
  phase_ = Phase::kHttpBusy;
  http_ticks_ = 0;
  if (HttpApi::UsesClientAddress(req)) req.peer = PeerAddress(fd_);
  auto self = shared_from_this();
  bool keep_alive = req.keep_alive;
  if (req.path() == "/api/v1/ws") {
    asio::post(ctx_.workers, [self, req = std::move(req), keep_alive]() mutable {
      auto decision = self->ctx_.api.AuthorizeUpgrade(req);
      self->thread_.PostBulk(
          [self, decision = std::move(decision), key = std::move(req.ws_key),
           keep_alive]() mutable { self->OnUpgrade(std::move(decision), key, keep_alive); });
    });
    return;
  }
  asio::post(ctx_.workers, [self, req = std::move(req), keep_alive]() mutable {
    self->ctx_.api.Handle(req, [self, keep_alive](HttpResponse resp) {
      self->thread_.PostBulk(
          [self, resp = std::move(resp), keep_alive] { self->OnHttpResponse(resp, keep_alive); });
    });
  });
}

void Connection::OnHttpResponse(const HttpResponse& resp, bool keep_alive) {
  if (phase_ == Phase::kClosed) return;
  SendRaw(SerializeResponse(resp, keep_alive), /*limited=*/false);
  if (!keep_alive) {
    phase_ = Phase::kClosing;
    close_after_flush_ = true;
    if (in_ && !processing_) thread_.GiveBack(std::move(in_));
    return;
  }
  phase_ = Phase::kHttp;
  Resume();
}

void Connection::OnUpgrade(std::variant<UpgradeGrant, HttpResponse> decision, std::string ws_key,
                           bool keep_alive) {
  if (phase_ == Phase::kClosed) return;
  if (auto* refusal = std::get_if<HttpResponse>(&decision))
    return OnHttpResponse(*refusal, keep_alive);
  auto& grant = std::get<UpgradeGrant>(decision);
  session_ = std::move(grant.session);
  http_.reset();
  // Registered before the 101 goes out: every entry committed after the 101
  // reaches this socket (live, or held during the replay).
  ctx_.presence.SocketOpened(session_.user_id);
  ctx_.registry.Add(shared_from_this());
  registered_ = true;
  ctx_.metrics.open_sockets.Increment();
  HttpResponse r{101, "", "", {}};
  r.headers = {{"Upgrade", "websocket"},
               {"Connection", "Upgrade"},
               {"Sec-WebSocket-Accept", ws::AcceptKey(ws_key)}};
  SendRaw(SerializeResponse(r, true));
  phase_ = Phase::kWebSocket;
  if (grant.since) {
    last_sent_pos_ = *grant.since;
    ctx_.chat.Confirm(session_, *grant.since);
    catchup_ = std::make_unique<CatchUp>();
    RequestCatchUpPage();
  }
  Resume();
}

// ---- WebSocket ------------------------------------------------------------------------

void Connection::OnWsEvent(const ws::Event& ev) {
  using K = ws::Event::Kind;
  switch (ev.kind) {
    case K::kText:
      return OnText(ev.payload);
    case K::kBinary:
      return SendError(ErrorCode::kBadRequest, "binary frames are not supported; send JSON text");
    case K::kPing: {
      std::string f;
      ws::AppendFrame(f, ws::kPong, ev.payload);
      return SendRaw(f);
    }
    case K::kPong:
      return;
    case K::kClose:
      return CloseWs(ev.code == ws::kCloseNoStatus ? ws::kCloseNormal : ev.code, "");
    case K::kError:
      return CloseWs(ev.code, ev.code == ws::kCloseTooBig ? "frame too large" : "protocol error");
    default:
      return;
  }
}

void Connection::SendError(ErrorCode code, std::string_view message,
                           const std::optional<std::string>& client_msg_id) {
  ctx_.metrics.errors(code).Increment();
  SendText(ErrorFrame(code, message, client_msg_id));
}

void Connection::OnText(std::string_view text) {
  auto parsed = ParseClientFrame(text, ctx_.limits.frame);
  if (auto* err = std::get_if<FrameError>(&parsed))
    return SendError(err->code, err->message, err->client_msg_id);
  auto& frame = std::get<ClientFrame>(parsed);

  if (auto* send = std::get_if<SendFrame>(&frame)) {
    if (inflight_sends_ >= ctx_.limits.max_inflight_sends)
      return SendError(ErrorCode::kRateLimited, "too many sends awaiting their ack",
                       send->client_msg_id);
    ++inflight_sends_;
    auto sent = [self = shared_from_this()](SendOutcome o) {
      auto ack = [self, o = std::move(o)] {
        --self->inflight_sends_;
        if (self->phase_ != Phase::kWebSocket) return;
        if (!o.status.ok())
          return self->SendError(o.status.code(), o.status.message(), o.client_msg_id);
        // In this thread's scratch text: an ack allocates nothing of its own.
        thread_local std::string ack_text;
        ack_text.clear();
        AppendAckFrame(ack_text, o.client_msg_id, o.conversation_id, o.seq, o.ts);
        self->SendText(ack_text);
      };
      static_assert(Task::FitsInPlace<decltype(ack)>(), "an ack's hand-off allocates");
      self->thread_.Post(std::move(ack));
    };
    static_assert(ChatService::SendDone::FitsInPlace<decltype(sent)>());
    ctx_.chat.Send(session_, std::move(*send), std::move(sent));
    return;
  }
  if (auto* rec = std::get_if<ReceivedFrame>(&frame)) return ctx_.chat.Confirm(session_, rec->pos);
  if (std::holds_alternative<PingFrame>(frame)) return SendText(R"({"type":"pong"})");
  if (auto* typing = std::get_if<TypingFrame>(&frame)) {
    auto window = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                            std::chrono::steady_clock::now().time_since_epoch())
                                            .count() /
                                        10);
    if (window != typing_window_) {
      typing_window_ = window;
      typing_count_ = 0;
    }
    if (++typing_count_ > ctx_.limits.typing_per_10s) return;  // dropped silently
    asio::post(ctx_.workers, [self = shared_from_this(), t = std::move(*typing)] {
      auto conv = self->ctx_.chat.MembersOf(t.conversation_id);
      if (conv.ok() && conv->HasMember(self->session_.user_id)) {
        self->ctx_.chat.RelayTyping(self->session_.user_id, *conv, t.composing);
        return;
      }
      self->thread_.Post([self] {
        if (self->phase_ == Phase::kWebSocket)
          self->SendError(ErrorCode::kForbidden, "not a member of this conversation");
      });
    });
    return;
  }
  if (auto* read = std::get_if<ReadFrame>(&frame)) {
    ctx_.chat.MarkRead(session_, std::move(read->conversation_id), read->seq,
                       [self = shared_from_this()](Status s) {
                         if (s.ok()) return;
                         self->thread_.Post([self, s = std::move(s)] {
                           if (self->phase_ == Phase::kWebSocket)
                             self->SendError(s.code(), s.message());
                         });
                       });
    return;
  }
  if (auto* sub = std::get_if<PresenceSubscribeFrame>(&frame))
    return OnPresenceSubscribe(std::move(sub->users));
}

// ---- presence ------------------------------------------------------------------------

Connection::Watch* Connection::FindWatch(const std::string& user) {
  if (!watches_) return nullptr;
  for (auto& w : *watches_)
    if (w.user == user) return &w;
  return nullptr;
}

void Connection::OnPresenceSubscribe(std::vector<std::string> users) {
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  if (!watches_) watches_ = std::make_unique<std::vector<Watch>>();
  for (auto& u : users) {
    if (FindWatch(u)) continue;
    // Watch first, then read the state: no change can fall between the two.
    ctx_.registry.Watch(u, shared_from_this());
    Watch w;
    w.user = u;
    watches_->push_back(std::move(w));
  }
  asio::post(ctx_.workers, [self = shared_from_this(), users = std::move(users)] {
    std::vector<PresenceAnswer> answers;
    const std::string& me = self->session_.user_id;
    for (auto& u : users) {
      PresenceAnswer a;
      a.user = u;
      auto allowed = self->ctx_.chat.MayWatch(me, u);
      if (!allowed.ok()) {
        a.status = allowed.status();
      } else if (!*allowed) {
        // The same answer whether or not the user exists: nothing leaks.
        a.status = Status(ErrorCode::kForbidden, "no conversation shared with " + u);
      } else {
        auto view = self->ctx_.presence.Get(me, u);
        auto target = self->ctx_.chat.GetUser(u);
        auto viewer = self->ctx_.chat.GetUser(me);
        if (!view.ok() || !target.ok() || !viewer.ok()) {
          a.status = !view.ok() ? view.status() : !target.ok() ? target.status() : viewer.status();
        } else {
          a.online = view->online;
          a.last_seen_ms = view->last_seen_ms;
          a.user_hides = target->hides_last_seen;
          a.viewer_hides = viewer->hides_last_seen;
        }
      }
      answers.push_back(std::move(a));
    }
    self->thread_.Post([self, answers = std::move(answers)]() mutable {
      self->OnPresenceAnswers(std::move(answers));
    });
  });
}

void Connection::OnPresenceAnswers(std::vector<PresenceAnswer> answers) {
  if (phase_ != Phase::kWebSocket || !watches_) return;
  for (auto& a : answers) {
    Watch* w = FindWatch(a.user);
    if (!w) continue;
    if (!a.status.ok()) {
      SendError(a.status.code(), a.status.message());
      if (w->pending) {
        ctx_.registry.Unwatch(a.user, this);
        std::erase_if(*watches_, [&](const Watch& x) { return x.user == a.user; });
      }
      continue;
    }
    viewer_hides_ = a.viewer_hides;
    w->user_hides = a.user_hides;
    if (w->pending && w->has_event) {
      SendPresence(*w, w->event_online, w->event_last_seen);  // newer than the answer
    } else {
      SendText(PresenceFrame(a.user, a.online, a.last_seen_ms));
    }
    w->pending = false;
  }
}

void Connection::SendPresence(const Watch& w, bool online, int64_t last_seen_ms) {
  int64_t seen = online ? NowMs() : last_seen_ms;  // "the current time while online"
  seen = PresenceService::Visible(w.user == session_.user_id, viewer_hides_, w.user_hides, seen);
  SendText(PresenceFrame(w.user, online, seen));
}

void Connection::PostPresence(const std::string& user, bool online, int64_t last_seen_ms) {
  thread_.Post([self = shared_from_this(), user, online, last_seen_ms] {
    if (self->phase_ != Phase::kWebSocket) return;
    Watch* w = self->FindWatch(user);
    if (!w) return;
    if (w->pending) {
      w->has_event = true;
      w->event_online = online;
      w->event_last_seen = last_seen_ms;
      return;
    }
    self->SendPresence(*w, online, last_seen_ms);
  });
}

void Connection::PostPrivacy(const std::string& user, bool hides_last_seen) {
  thread_.Post([self = shared_from_this(), user, hides_last_seen] {
    if (user == self->session_.user_id) self->viewer_hides_ = hides_last_seen;
    if (Watch* w = self->FindWatch(user)) w->user_hides = hides_last_seen;
  });
}

void Connection::HttpTick() {
  if (phase_ != Phase::kHttp) return;  // a WebSocket, a request being answered, a close
  if (++http_ticks_ < 3) return;
  ctx_.metrics.http_idle_closes.Increment();
  Abort();
}

void Connection::Heartbeat() {
  if (phase_ != Phase::kWebSocket) return;
  if (!alive_) return Abort();  // no pong, nothing at all, for a whole interval
  alive_ = false;
  std::string ping;
  ws::AppendFrame(ping, ws::kPing, "");
  SendRaw(ping);
}

void Connection::PostFeedEntry(FeedPos pos, SharedFrame frame) {
  auto deliver = [self = shared_from_this(), pos, frame = std::move(frame)] {
    self->OnFeedEntry(pos, frame);
  };
  static_assert(Task::FitsInPlace<decltype(deliver)>(), "a delivery's hand-off allocates");
  thread_.Post(std::move(deliver));
}

void Connection::PostEphemeral(SharedFrame frame) {
  thread_.Post([self = shared_from_this(), frame = std::move(frame)] {
    if (self->phase_ == Phase::kWebSocket) self->SendText(*frame);
  });
}

void Connection::PostClose(uint16_t code, std::string reason) {
  thread_.Post([self = shared_from_this(), code, reason = std::move(reason)] {
    if (self->phase_ == Phase::kWebSocket) {
      self->CloseWs(code, reason);
    } else {
      self->Abort();
    }
  });
}

void Connection::OnFeedEntry(FeedPos pos, const SharedFrame& frame) {
  if (phase_ != Phase::kWebSocket) return;
  if (catchup_) {
    if (catchup_->held.size() >= ctx_.limits.catchup_buffer_entries) {
      // Too much arrives while replaying: drop what is held, read it from the store.
      decltype(catchup_->held)().swap(catchup_->held);
      catchup_->reread = true;
    }
    catchup_->held.emplace_back(pos, frame);
    return;
  }
  if (pos <= last_sent_pos_) return;  // already sent
  last_sent_pos_ = pos;
  SendText(*frame);
}

void Connection::RequestCatchUpPage() {
  asio::post(ctx_.workers, [self = shared_from_this(), after = last_sent_pos_,
                            budget = ctx_.limits.max_output_bytes / 2] {
    Result<FeedPage> feed =
        self->ctx_.chat.ReadFeed(self->session_, after, self->ctx_.limits.catchup_page,
                                 /*confirm=*/false);
    Result<std::vector<std::pair<FeedPos, SharedFrame>>> frames = Status();
    bool has_more = false;
    FeedPos read_to = 0;
    if (!feed.ok()) {
      frames = feed.status();
    } else {
      std::vector<std::pair<FeedPos, SharedFrame>> v;
      v.reserve(feed->entries.size());
      size_t bytes = 0;
      has_more = feed->has_more;
      read_to = feed->last_pos;
      if (feed->removed_to) {  // retention removed entries after this socket's cursor: say so
        std::string gap = R"({"type":"feed_gap","cursor":")";
        AppendCursor(gap, feed->removed_to);
        gap.append("\"}");
        v.emplace_back(feed->removed_to, SharedFrame(std::move(gap)));
      }
      for (auto& e : feed->entries) {
        if (bytes >= budget) {  // the rest comes with the next page
          has_more = true;
          read_to = v.empty() ? 0 : v.back().first;
          break;
        }
        SharedFrame frame(ChatService::FeedEntryJson(e));
        bytes += frame.view().size();
        v.emplace_back(e.pos, std::move(frame));
      }
      frames = std::move(v);
    }
    self->thread_.PostBulk([self, frames = std::move(frames), read_to, has_more]() mutable {
      self->OnCatchUpPage(std::move(frames), read_to, has_more);
    });
  });
}

void Connection::OnCatchUpPage(Result<std::vector<std::pair<FeedPos, SharedFrame>>> page,
                               FeedPos read_to, bool has_more) {
  if (phase_ != Phase::kWebSocket || !catchup_) return;
  if (!page.ok()) return CloseWs(ws::kCloseTryAgainLater, "store unavailable");
  for (auto& [pos, frame] : *page) {
    if (pos <= last_sent_pos_) continue;
    last_sent_pos_ = pos;
    SendText(*frame);
  }
  // Entries with nothing to send are behind this socket too: the next page
  // starts after them.
  last_sent_pos_ = std::max(last_sent_pos_, read_to);
  if (phase_ != Phase::kWebSocket) return;
  if (has_more || catchup_->reread) {
    catchup_->reread = false;
    // Flow control: the next page is read once this one is on its way.
    if (out_) {
      catchup_->after_flush = true;
      return;
    }
    return RequestCatchUpPage();
  }
  auto held = std::move(catchup_->held);
  catchup_.reset();
  for (auto& [pos, frame] : held) OnFeedEntry(pos, frame);
}

// ---- output -----------------------------------------------------------------------------

void Connection::SendText(std::string_view json) {
  if (phase_ == Phase::kClosed || phase_ == Phase::kLingering) return;
  if (!out_) out_ = thread_.TakeBuffer();
  ws::AppendFrameHeader(*out_, ws::kText, json.size());
  SendRaw(json);
}

void Connection::SendRaw(std::string_view bytes, bool limited) {
  if (phase_ == Phase::kClosed || phase_ == Phase::kLingering) return;
  if (!out_) out_ = thread_.TakeBuffer();
  out_->append(bytes);
  if (limited && !catchup_ && out_->size() - out_off_ > ctx_.limits.max_output_bytes) {
    // A slow consumer: its queue is full. Close it; the device catches up from
    // the feed when it reconnects.
    ctx_.metrics.slow_consumer_closes.Increment();
    return Abort();
  }
  ScheduleFlush();
}

// Output is written at the end of the current turn of the event loop, so that
// everything queued for this socket meanwhile (several acks, messages) goes out
// in one write.
void Connection::ScheduleFlush() {
  if (flush_scheduled_ || write_waiting_) return;
  flush_scheduled_ = true;
  thread_.QueueFlush(shared_from_this());
}

void Connection::Flush() {
  flush_scheduled_ = false;
  if (phase_ == Phase::kClosed || write_waiting_) return;
  while (out_ && out_off_ < out_->size()) {
    bool wants_read = false;
    const char* data = out_->data() + out_off_;
    size_t len = out_->size() - out_off_;
    ssize_t n = ssl_ ? TlsWrite(ssl_, data, len, &wants_read)
                     : send(fd_, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        write_waiting_ = true;  // the loop's EPOLLOUT edge resumes
        tls_write_on_read_ = wants_read;
        return;
      }
      if (errno == EINTR) continue;
      return Abort();
    }
    out_off_ += static_cast<size_t>(n);
  }
  if (out_) thread_.GiveBack(std::move(out_));
  out_off_ = 0;
  if (close_after_flush_) return LingerClose();
  if (catchup_ && catchup_->after_flush) {
    catchup_->after_flush = false;
    RequestCatchUpPage();
  }
}

void Connection::LingerClose() {
  if (phase_ == Phase::kClosed || phase_ == Phase::kLingering) return;
  if (ssl_) TlsCloseNotify(ssl_);
  if (shutdown(fd_, SHUT_WR) != 0) return Abort();
  phase_ = Phase::kLingering;
  thread_.loop.After(std::chrono::seconds(2), [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->Abort();
  });
  OnReadable();  // what came meanwhile, or EOF
}

void Connection::CloseWs(uint16_t code, std::string_view reason) {
  if (phase_ != Phase::kWebSocket) return;
  std::string f;
  ws::AppendFrame(f, ws::kClose, ws::ClosePayload(code, reason));
  SendRaw(f);
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosing;
  close_after_flush_ = true;
  catchup_.reset();
  if (in_ && !processing_) thread_.GiveBack(std::move(in_));
}

void Connection::Shutdown() {
  if (phase_ == Phase::kWebSocket) return CloseWs(ws::kCloseGoingAway, "server shutting down");
  if (phase_ != Phase::kClosing && phase_ != Phase::kLingering) Abort();
}

void Connection::Abort() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  if (ssl_) TlsFree(ssl_);
  ssl_ = nullptr;
  if (fd_ >= 0) close(fd_);  // leaves the loop's epoll set
  fd_ = -1;
  if (registered_) {
    registered_ = false;
    ctx_.registry.Remove(this);
    ctx_.presence.SocketClosed(session_.user_id);
    ctx_.metrics.open_sockets.Decrement();
  }
  if (watches_) {
    for (auto& w : *watches_) ctx_.registry.Unwatch(w.user, this);
    watches_.reset();
  }
  if (prev_) prev_->next_ = next_;
  if (next_) next_->prev_ = prev_;
  if (thread_.head == this) thread_.head = next_;
  prev_ = next_ = nullptr;
  if (in_ && !processing_) thread_.GiveBack(std::move(in_));
  if (out_) thread_.GiveBack(std::move(out_));
  out_off_ = 0;
  catchup_.reset();
  http_.reset();
  if (self_) thread_.Release(std::move(self_));
}

}  // namespace pigeon
