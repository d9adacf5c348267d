// Client frames (JSON text) <-> typed structs, and the server frames pigeon
// writes. No I/O; fuzzable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/cursor.h"
#include "core/status.h"

namespace pigeon {

struct SendFrame {
  std::string conversation_id;
  std::string client_msg_id;
  std::string body;
};
struct ReceivedFrame {
  FeedPos pos;
};
struct ReadFrame {
  std::string conversation_id;
  uint64_t seq;
};
struct TypingFrame {
  std::string conversation_id;
  bool composing;
};
struct PresenceSubscribeFrame {
  std::vector<std::string> users;
};
struct PingFrame {};

using ClientFrame = std::variant<SendFrame, ReceivedFrame, ReadFrame, TypingFrame,
                                 PresenceSubscribeFrame, PingFrame>;

struct FrameLimits {
  size_t max_body_bytes = 65536;  // larger: too_large
};

struct FrameError {
  ErrorCode code;
  std::string message;
  std::optional<std::string> client_msg_id;  // echoed when the frame had one
};

// Parses one WebSocket text message (already UTF-8 validated). Unknown fields
// are ignored; anything missing, mistyped or out of range is a FrameError.
std::variant<ClientFrame, FrameError> ParseClientFrame(std::string_view text,
                                                       const FrameLimits& limits);
// The same with Boost.JSON alone, as every frame was parsed before simdjson:
// ParseClientFrame must answer each text exactly as this does (for tests and
// fuzz/client_frame_fuzz.cc), but for texts that Boost.JSON refuses for an
// exponent beyond its range, which are valid JSON (RFC 8259 sets no limit).
std::variant<ClientFrame, FrameError> ParseClientFrameWithBoostJson(std::string_view text,
                                                                    const FrameLimits& limits);

// ---- server frames --------------------------------------------------------

// Appends `s` as a JSON string literal (quoted, escaped).
void AppendJsonString(std::string& out, std::string_view s);

std::string ErrorFrame(ErrorCode code, std::string_view message,
                       const std::optional<std::string>& client_msg_id = std::nullopt);
// {"error": {"code", "message"}}: the HTTP error body.
std::string HttpErrorBody(ErrorCode code, std::string_view message);

struct MessageView {
  std::string_view conversation_id;
  uint64_t seq;
  std::string_view sender;
  std::string_view body;
  int64_t ts;
};
// `{"type":"message",...,"ts":N` without the closing brace: the part shared by
// every member's copy. Close it with AppendMessageEnd (with a cursor) or "}".
void AppendMessageFramePrefix(std::string& out, const MessageView& m);
// Appends ,"cursor":"..."} to a prefix.
void AppendMessageEnd(std::string& out, FeedPos pos);
std::string AckFrame(std::string_view client_msg_id, std::string_view conversation_id, uint64_t seq,
                     int64_t ts);
void AppendAckFrame(std::string& out, std::string_view client_msg_id,
                    std::string_view conversation_id, uint64_t seq, int64_t ts);
// status: "delivered" or "read".
std::string ReceiptFrame(std::string_view conversation_id, std::string_view user,
                         std::string_view status, uint64_t seq, int64_t ts, FeedPos cursor);
// last_seen_ms < 0: null.
std::string PresenceFrame(std::string_view user_id, bool online, int64_t last_seen_ms);

}  // namespace pigeon
