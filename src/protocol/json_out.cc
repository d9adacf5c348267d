// Server frames, written directly as text: no intermediate JSON tree on the
// hot path. A string that needs escaping goes through Boost.JSON's serializer.
#include <boost/json.hpp>

#include "core/bytes.h"
#include "core/ids.h"
#include "protocol/frames.h"

namespace pigeon {
namespace {

bool NeedsEscape(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == '"' || c == '\\') return true;
  return false;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  // Most strings (ids, most bodies) have nothing to escape: quoted as they are,
  // which is what the serializer below writes for them.
  if (!NeedsEscape(s)) {
    out.push_back('"');
    out.append(s);
    out.push_back('"');
    return;
  }
  thread_local boost::json::serializer sr;
  sr.reset(boost::json::string_view(s.data(), s.size()));
  char buf[1024];
  while (!sr.done()) {
    auto part = sr.read(buf, sizeof(buf));
    out.append(part.data(), part.size());
  }
}

std::string ErrorFrame(ErrorCode code, std::string_view message,
                       const std::optional<std::string>& client_msg_id) {
  std::string out = R"({"type":"error","code":")";
  out.append(ErrorCodeName(code));
  out.append(R"(","message":)");
  AppendJsonString(out, message);
  if (client_msg_id) {
    out.append(R"(,"client_msg_id":)");
    AppendJsonString(out, *client_msg_id);
  }
  out.push_back('}');
  return out;
}

std::string HttpErrorBody(ErrorCode code, std::string_view message) {
  std::string out = R"({"error":{"code":")";
  out.append(ErrorCodeName(code));
  out.append(R"(","message":)");
  AppendJsonString(out, message);
  out.append("}}");
  return out;
}

void AppendMessageFramePrefix(std::string& out, const MessageView& m) {
  out.append(R"({"type":"message","conversation_id":")");
  out.append(m.conversation_id);  // server-made: hex, needs no escaping
  out.append(R"(","server_msg_id":")");
  AppendServerMsgId(out, m.conversation_id, m.seq);
  out.append(R"(","seq":)");
  AppendDecimal(out, m.seq);
  out.append(R"(,"sender":")");
  out.append(m.sender);  // [a-z0-9_.-]
  out.append(R"(","body":)");
  AppendJsonString(out, m.body);
  out.append(R"(,"ts":)");
  AppendDecimal(out, m.ts);
}

void AppendMessageEnd(std::string& out, FeedPos pos) {
  out.append(R"(,"cursor":")");
  AppendCursor(out, pos);
  out.append("\"}");
}

std::string AckFrame(std::string_view client_msg_id, std::string_view conversation_id, uint64_t seq,
                     int64_t ts) {
  std::string out;
  out.reserve(client_msg_id.size() + conversation_id.size() * 2 + 128);
  AppendAckFrame(out, client_msg_id, conversation_id, seq, ts);
  return out;
}

void AppendAckFrame(std::string& out, std::string_view client_msg_id,
                    std::string_view conversation_id, uint64_t seq, int64_t ts) {
  out.append(R"({"type":"ack","client_msg_id":)");
  AppendJsonString(out, client_msg_id);
  out.append(R"(,"conversation_id":")");
  out.append(conversation_id);
  out.append(R"(","server_msg_id":")");
  AppendServerMsgId(out, conversation_id, seq);
  out.append(R"(","seq":)");
  AppendDecimal(out, seq);
  out.append(R"(,"ts":)");
  AppendDecimal(out, ts);
  out.push_back('}');
}

std::string ReceiptFrame(std::string_view conversation_id, std::string_view user,
                         std::string_view status, uint64_t seq, int64_t ts, FeedPos cursor) {
  std::string out;
  out.reserve(conversation_id.size() + user.size() + 128);
  out.append(R"({"type":"receipt","conversation_id":")");
  out.append(conversation_id);
  out.append(R"(","user":")").append(user);
  out.append(R"(","status":")").append(status);
  out.append(R"(","seq":)");
  AppendDecimal(out, seq);
  out.append(R"(,"ts":)");
  AppendDecimal(out, ts);
  out.append(R"(,"cursor":")");
  AppendCursor(out, cursor);
  out.append("\"}");
  return out;
}

std::string PresenceFrame(std::string_view user_id, bool online, int64_t last_seen_ms) {
  std::string out = R"({"type":"presence","user_id":)";
  AppendJsonString(out, user_id);
  out.append(online ? R"(,"online":true,"last_seen":)" : R"(,"online":false,"last_seen":)");
  out.append(last_seen_ms < 0 ? "null" : std::to_string(last_seen_ms));
  out.push_back('}');
  return out;
}

}  // namespace pigeon
