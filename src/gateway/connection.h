// Connection: one client socket, from its first HTTP byte to its close.
// Speaks HTTP/1.1 (keep-alive) until a WebSocket upgrade, then RFC 6455.
//
// Threading: a connection belongs to the network thread that accepted it;
// every member function runs in a turn of that thread's EventLoop: on the
// thread itself, or on the committer in a borrowed turn while the thread
// sleeps (never both at once: see event_loop.h). The Post* functions are the
// only entry points from other threads: they post to that loop.
//
// Memory: an idle socket holds no buffer. It is registered once with its
// thread's EventLoop (edge-triggered); when readable, bytes are read into the
// thread's shared buffer and parsed in place. `in_` exists only while a frame or request is
// incomplete, `out_` only while output is queued, `catchup_` only while a `since` replay runs.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/cursor.h"
#include "core/shared_frame.h"
#include "gateway/event_loop.h"
#include "gateway/gateway_context.h"
#include "gateway/http_api.h"
#include "protocol/ws_codec.h"
#include "store/message_store.h"

using SSL = struct ssl_st;

namespace pigeon {

class HttpRequestParser;
struct ThreadState;

class Connection : public std::enable_shared_from_this<Connection>, public EventLoop::Handler {
 public:
  // Takes ownership of `fd`, a connected non-blocking TCP socket, and with
  // TLS (ctx.tls) of `ssl`, its session, the handshake done (TlsHandshaker).
  Connection(int fd, GatewayContext& ctx, ThreadState& thread, SSL* ssl = nullptr);
  ~Connection();

  // On the connection's thread: registers it with the thread's loop.
  void Start();
  void OnEvents(uint32_t events) override;

  // ---- any thread ----
  // A committed entry of this socket's user's feed, at `pos`.
  void PostFeedEntry(FeedPos pos, SharedFrame frame);
  // A frame outside the feed (typing).
  void PostEphemeral(SharedFrame frame);
  // Closes a WebSocket with `code` (or an HTTP connection at once).
  void PostClose(uint16_t code, std::string reason);
  // A watched user went online or offline.
  void PostPresence(const std::string& user, bool online, int64_t last_seen_ms);
  // `user` (this socket's own, or a watched one) changed its privacy setting.
  void PostPrivacy(const std::string& user, bool hides_last_seen);

  // Set once at the upgrade, before the connection is registered; then const.
  const DeviceSession& session() const { return session_; }

  // Intrusive list of the thread's connections (for draining at shutdown).
  Connection* prev_ = nullptr;
  Connection* next_ = nullptr;

  // On the connection's thread: close WebSockets with 1001, drop HTTP ones.
  void Shutdown();
  // On the connection's thread (or once its thread is stopped): close now.
  void Abort();
  // On the connection's thread, every heartbeat interval: a WebSocket that
  // sent nothing since the previous tick (not even the pong to its ping) is
  // closed; otherwise it gets a ping.
  void Heartbeat();
  // On the connection's thread, every half HTTP idle timeout: a connection
  // waiting for a request for the third tick in a row,
  // with no response written meanwhile, is closed (Server::Options).
  void HttpTick();

 private:
  enum class Phase : uint8_t { kHttp, kHttpBusy, kWebSocket, kClosing, kLingering, kClosed };
  struct CatchUp;
  // A presence subscription. Until the first answer (`pending`), nothing is
  // sent for it: the subscriber may not be allowed to see this user.
  struct Watch {
    std::string user;
    bool pending = true;
    bool user_hides = false;
    bool has_event = false;  // an event arrived while pending
    bool event_online = false;
    int64_t event_last_seen = -1;
  };
  struct PresenceAnswer {
    std::string user;
    Status status;  // forbidden when not allowed
    bool online = false;
    int64_t last_seen_ms = -1;
    bool user_hides = false;
    bool viewer_hides = false;
  };

  bool Reading() const {
    return phase_ == Phase::kHttp || phase_ == Phase::kWebSocket || phase_ == Phase::kLingering;
  }
  void OnReadable();
  void OnBytes(char* data, size_t len);
  size_t Process(char* data, size_t len);
  void ProcessBuffered();
  void Resume();

  // HTTP
  size_t ProcessHttp(const char* data, size_t len);
  void DispatchHttp(HttpRequest req);
  void OnHttpResponse(const HttpResponse& resp, bool keep_alive);
  void OnUpgrade(std::variant<UpgradeGrant, HttpResponse> decision, std::string ws_key,
                 bool keep_alive);

  // WebSocket
  void OnWsEvent(const ws::Event& ev);
  void OnText(std::string_view text);
  void OnFeedEntry(FeedPos pos, const SharedFrame& frame);
  void RequestCatchUpPage();
  // `read_to`: the last feed position the page covers, past entries with
  // nothing to send (references to messages retention removed).
  void OnCatchUpPage(Result<std::vector<std::pair<FeedPos, SharedFrame>>> page, FeedPos read_to,
                     bool has_more);
  void OnPresenceSubscribe(std::vector<std::string> users);
  void OnPresenceAnswers(std::vector<PresenceAnswer> answers);
  Watch* FindWatch(const std::string& user);
  void SendPresence(const Watch& w, bool online, int64_t last_seen_ms);
  void SendError(ErrorCode code, std::string_view message,
                 const std::optional<std::string>& client_msg_id = std::nullopt);

  // Output
  void SendText(std::string_view json);
  // `limited`: counts against max_output_bytes (pushed traffic); responses the
  // client asked for (HTTP bodies) are not limited.
  void SendRaw(std::string_view bytes, bool limited = true);
  // After the last byte is out: shut down our side, read and discard until the
  // peer closes (or a deadline), so that it gets all we sent instead of a reset.
  void LingerClose();
  void ScheduleFlush();

 public:
  void Flush();  // ThreadState::FlushQueued, at the end of the turn

 private:
  void CloseWs(uint16_t code, std::string_view reason);

  int fd_;
  SSL* ssl_ = nullptr;  // with TLS (ctx_.tls): reads and writes go through it
  GatewayContext& ctx_;
  ThreadState& thread_;
  DeviceSession session_;
  // Buffers exist only while needed, drawn from and returned to the thread's
  // spares: an idle socket holds two null pointers.
  std::unique_ptr<std::string> in_;   // an incomplete frame or request
  std::unique_ptr<std::string> out_;  // output not yet written
  size_t out_off_ = 0;
  std::unique_ptr<HttpRequestParser> http_;
  std::unique_ptr<CatchUp> catchup_;
  std::unique_ptr<std::vector<Watch>> watches_;  // only once presence_subscribe is used
  // Registered with the loop, from Start() to Abort(): the loop's events hold
  // a plain pointer, so the connection keeps itself alive meanwhile.
  std::shared_ptr<Connection> self_;
  ws::FrameReader reader_;
  FeedPos last_sent_pos_ = 0;
  uint32_t inflight_sends_ = 0;
  uint32_t typing_window_ = 0;  // steady seconds / 10 of the current typing window
  uint32_t typing_count_ = 0;
  Phase phase_ = Phase::kHttp;
  uint8_t http_ticks_ = 0;  // HttpTick()s since the last request or write progress
  // Flags, a bit each: a socket's state is a first-class memory budget.
  bool read_pending_ : 1 = false;   // readable while not reading (busy, closing): read later
  bool write_waiting_ : 1 = false;  // the kernel's buffer is full: EPOLLOUT resumes
  bool peer_closed_ : 1 = false;    // the peer's FIN or reset was reported: read to the EOF
  bool flush_scheduled_ : 1 = false;
  bool close_after_flush_ : 1 = false;
  bool registered_ : 1 = false;
  bool processing_ : 1 = false;    // parsing from in_: it must not be released yet
  bool alive_ : 1 = true;          // heard from since the last heartbeat tick
  bool viewer_hides_ : 1 = false;  // this user hides its last_seen (so sees nobody's)
  // TLS only: the session waits for the other direction (a handshake flight
  // that did not fit the socket; a write that needs a read).
  bool tls_read_on_write_ : 1 = false;
  bool tls_write_on_read_ : 1 = false;
};

// Per network thread: its event loop, the shared read buffer and the list of
// connections.
struct ThreadState {
  static constexpr size_t kReadBufferBytes = 64 << 10;
  static constexpr size_t kSpareBuffers = 256;        // kept for reuse, at most
  static constexpr size_t kSpareCapacity = 16 << 10;  // larger buffers are freed
  std::unique_ptr<char[]> read_buffer{new char[kReadBufferBytes]};
  Connection* head = nullptr;
  std::vector<std::unique_ptr<std::string>> spare;
  EventLoop loop;

  // Any thread: runs `task` in a turn of this thread's loop. Tasks from other
  // threads (the committer's acks and deliveries, workers' answers) queue here
  // and run together in one turn: a commit batch touching many sockets of
  // this thread wakes it once, not once per socket (each wake-up of an idle
  // loop is a syscall and a context switch). Inside a WakeBatch (the
  // committer's callbacks) the wake-up waits for the batch's end, and after a
  // small batch the committer runs the turn itself if this thread sleeps
  // (EventLoop::WakeFromBatch). FIFO per thread.
  void Post(Task task) { loop.Post(std::move(task)); }
  // Work that may wait behind live traffic: an upgrade's answer, an HTTP
  // response, a replay page (EventLoop::PostBulk).
  void PostBulk(Task task) { loop.PostBulk(std::move(task)); }

  // This thread: `c` writes its output at the end of this turn (one write for
  // everything queued meanwhile).
  void QueueFlush(std::shared_ptr<Connection> c);
  // This thread: `c` is closed; it is freed at the end of this turn, once no
  // event of this turn can still name it.
  void Release(std::shared_ptr<Connection> c);

  // An empty buffer, reused when possible (no allocation on the hot path).
  std::unique_ptr<std::string> TakeBuffer() {
    if (spare.empty()) return std::make_unique<std::string>();
    auto b = std::move(spare.back());
    spare.pop_back();
    return b;
  }
  void GiveBack(std::unique_ptr<std::string> b) {
    if (spare.size() >= kSpareBuffers || b->capacity() > kSpareCapacity) return;  // freed
    b->clear();
    spare.push_back(std::move(b));
  }

 private:
  void FlushQueued();
  std::vector<std::shared_ptr<Connection>> flushes_;   // this turn's
  std::vector<std::shared_ptr<Connection>> flushing_;  // being flushed
  std::vector<std::shared_ptr<Connection>> released_;
};

}  // namespace pigeon
