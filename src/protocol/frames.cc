#include "protocol/frames.h"

#include <boost/json.hpp>

#include "core/ids.h"

namespace pigeon {
namespace json = boost::json;
namespace {

FrameError Bad(std::string message, const std::optional<std::string>& cmid = std::nullopt) {
  return FrameError{ErrorCode::kBadRequest, std::move(message), cmid};
}

// Reads a required string field; nullptr when absent or not a string.
const json::string* StringField(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v ? v->if_string() : nullptr;
}

std::optional<uint64_t> UintField(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<uint64_t>(v->get_int64());
  return std::nullopt;
}

bool ValidConversationId(std::string_view id) { return !id.empty() && id.size() <= 128; }

}  // namespace

std::variant<ClientFrame, FrameError> ParseClientFrame(std::string_view text,
                                                       const FrameLimits& limits) {
  // Small frames parse without touching the heap.
  unsigned char buf[4096];
  json::monotonic_resource mr(buf, sizeof(buf));
  json::parse_options opts;
  opts.max_depth = 16;
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, &mr, opts);
  if (ec) return Bad("frame is not valid JSON");
  auto* obj = v.if_object();
  if (!obj) return Bad("frame is not a JSON object");

  std::optional<std::string> cmid;
  if (auto* c = StringField(*obj, "client_msg_id")) cmid.emplace(c->data(), c->size());

  auto* type = StringField(*obj, "type");
  if (!type) return Bad("missing or non-string \"type\"", cmid);

  if (*type == "send") {
    if (!cmid) return Bad("send needs a string \"client_msg_id\"");
    if (cmid->empty() || cmid->size() > 64) return Bad("client_msg_id must be 1-64 bytes", cmid);
    auto* conv = StringField(*obj, "conversation_id");
    if (!conv || !ValidConversationId(*conv))
      return Bad("send needs a string \"conversation_id\"", cmid);
    auto* body = StringField(*obj, "body");
    if (!body) return Bad("send needs a string \"body\"", cmid);
    if (body->size() > limits.max_body_bytes) {
      return FrameError{ErrorCode::kTooLarge,
                        "body is over " + std::to_string(limits.max_body_bytes) + " bytes", cmid};
    }
    return ClientFrame{SendFrame{std::string(conv->data(), conv->size()), std::move(*cmid),
                                 std::string(body->data(), body->size())}};
  }
  if (*type == "received") {
    auto* c = StringField(*obj, "cursor");
    if (!c) return Bad("received needs a string \"cursor\"", cmid);
    auto pos = DecodeCursor(std::string_view(c->data(), c->size()));
    if (!pos) return Bad("malformed cursor", cmid);
    return ClientFrame{ReceivedFrame{*pos}};
  }
  if (*type == "read") {
    auto* conv = StringField(*obj, "conversation_id");
    if (!conv || !ValidConversationId(*conv))
      return Bad("read needs a string \"conversation_id\"", cmid);
    auto seq = UintField(*obj, "seq");
    if (!seq) return Bad("read needs a non-negative integer \"seq\"", cmid);
    return ClientFrame{ReadFrame{std::string(conv->data(), conv->size()), *seq}};
  }
  if (*type == "typing") {
    auto* conv = StringField(*obj, "conversation_id");
    if (!conv || !ValidConversationId(*conv))
      return Bad("typing needs a string \"conversation_id\"", cmid);
    auto* state = StringField(*obj, "state");
    if (!state || (*state != "composing" && *state != "paused"))
      return Bad("typing needs \"state\": \"composing\" or \"paused\"", cmid);
    return ClientFrame{TypingFrame{std::string(conv->data(), conv->size()), *state == "composing"}};
  }
  if (*type == "presence_subscribe") {
    auto* users = obj->if_contains("users");
    auto* arr = users ? users->if_array() : nullptr;
    if (!arr) return Bad("presence_subscribe needs an array \"users\"", cmid);
    if (arr->size() > 1000) return Bad("at most 1000 users per presence_subscribe", cmid);
    PresenceSubscribeFrame f;
    for (auto& u : *arr) {
      auto* s = u.if_string();
      if (!s) return Bad("\"users\" must hold strings", cmid);
      f.users.emplace_back(s->data(), s->size());
    }
    return ClientFrame{std::move(f)};
  }
  if (*type == "ping") return ClientFrame{PingFrame{}};
  return Bad("unknown frame type", cmid);
}

}  // namespace pigeon
