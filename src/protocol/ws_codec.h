// RFC 6455 framing, I/O-free: parses frames out of a byte buffer (unmasking in
// place) and appends encoded frames to an output string. Used by the gateway
// (server role) and by the test client and load generator (client role).
//
// Only what pigeon needs: no extensions (any RSV bit is a protocol error), no
// subprotocols. Text messages are UTF-8 validated once complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace pigeon::ws {

enum Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes (RFC 6455 section 7.4.1) and pigeon's own.
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseNoStatus = 1005;
inline constexpr uint16_t kCloseInvalidPayload = 1007;
inline constexpr uint16_t kClosePolicy = 1008;
inline constexpr uint16_t kCloseTooBig = 1009;
inline constexpr uint16_t kCloseTryAgainLater = 1013;
inline constexpr uint16_t kCloseLoggedOut = 4001;  // spec: logout closes the token's sockets

struct Event {
  // kContinuation_ is internal to FrameReader (a fragment was consumed); it
  // is never passed to a caller's callback.
  enum class Kind : uint8_t { kText, kBinary, kPing, kPong, kClose, kError, kContinuation_ };
  Kind kind;
  // The message or control payload; valid until the next Consume call.
  std::string_view payload;
  // kClose: the peer's code (1005 when it sent none). kError: the code to close with.
  uint16_t code = 0;
};

// Decodes a stream of frames. Keeps state only for a fragmented message in
// progress (the fragments collected so far); an idle reader holds no heap.
class FrameReader {
 public:
  // `max_message_bytes`: a frame or reassembled message larger than this is a
  // kError with 1009. `server_role`: frames must be masked (clients mask,
  // servers do not).
  FrameReader(size_t max_message_bytes, bool server_role)
      : max_message_(max_message_bytes), server_role_(server_role) {}

  // Parses every complete frame in [data, data + len), unmasking in place,
  // and calls on_event(const Event&) for each complete message and control
  // frame. Returns the number of bytes consumed; the caller keeps the rest (an
  // incomplete frame) and presents it again, followed by more bytes. After a
  // kClose or kError event it consumes nothing more.
  template <typename F>
  size_t Consume(char* data, size_t len, F&& on_event) {
    size_t off = 0;
    while (!stopped_) {
      Event ev;
      size_t used = Step(data + off, len - off, &ev);
      if (used == 0) break;
      off += used;
      if (ev.kind == Event::Kind::kContinuation_) continue;
      if (ev.kind == Event::Kind::kClose || ev.kind == Event::Kind::kError) stopped_ = true;
      on_event(static_cast<const Event&>(ev));
      if (ev.kind == Event::Kind::kText || ev.kind == Event::Kind::kBinary) ReleaseFragments();
    }
    return off;
  }

  bool stopped() const { return stopped_; }
  // True while a fragmented message is being reassembled.
  bool in_message() const { return frag_opcode_ != 0; }
  // How many more bytes the frame at the front of an unconsumed buffer needs, at
  // least; lets a caller reserve once for a large frame.
  static size_t FrameSizeHint(const char* data, size_t len);

 private:
  // Parses at most one frame; returns bytes used (0: incomplete). Fills `ev`;
  // ev->kind == kContinuation_ means "a frame was consumed, no event".
  size_t Step(char* data, size_t len, Event* ev);
  void ReleaseFragments();

  size_t max_message_;
  std::unique_ptr<std::string> fragments_;  // only while a fragmented message is open
  uint8_t frag_opcode_ = 0;
  bool server_role_;
  bool stopped_ = false;
};

// Appends one frame (FIN set). With `mask` (4 bytes), the payload is masked,
// as a client must.
void AppendFrame(std::string& out, uint8_t opcode, std::string_view payload,
                 const uint8_t* mask = nullptr);
// Appends only the header of an unmasked frame whose payload the caller appends.
void AppendFrameHeader(std::string& out, uint8_t opcode, size_t payload_len, bool fin = true);
// A close frame's payload: the code, big-endian, then the reason.
std::string ClosePayload(uint16_t code, std::string_view reason);
// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
std::string AcceptKey(std::string_view client_key);
bool IsValidUtf8(std::string_view s);

}  // namespace pigeon::ws
