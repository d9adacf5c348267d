#include "protocol/frames.h"

#include <simdjson.h>

#include <algorithm>
#include <boost/json.hpp>

#include "core/ids.h"

namespace pigeon {
namespace json = boost::json;
namespace dom = simdjson::dom;
namespace {

FrameError Bad(std::string message, const std::optional<std::string>& cmid = std::nullopt) {
  return FrameError{ErrorCode::kBadRequest, std::move(message), cmid};
}

bool ValidConversationId(std::string_view id) { return !id.empty() && id.size() <= 128; }

// The fields a client frame may carry, as found in its object (the last of a
// repeated key wins). A string field is absent when its value is not a string,
// `seq` when it is not a non-negative integer. The views point into the
// parser's memory.
struct Fields {
  std::optional<std::string_view> type, client_msg_id, conversation_id, body, cursor, state;
  std::optional<uint64_t> seq;
  enum class Users { kNotAnArray, kTooMany, kNotStrings, kOk } users = Users::kNotAnArray;
  std::vector<std::string_view> user_list;
};
constexpr size_t kMaxPresenceUsers = 1000;

// The string fields, by name.
constexpr std::pair<std::string_view, std::optional<std::string_view> Fields::*> kStringFields[] = {
    {"type", &Fields::type},
    {"client_msg_id", &Fields::client_msg_id},
    {"conversation_id", &Fields::conversation_id},
    {"body", &Fields::body},
    {"cursor", &Fields::cursor},
    {"state", &Fields::state}};

// Fills `f` from one of the object's members, whatever the parser (boost::json
// or simdjson): `as_string` and `as_uint` read the value, or say it is not one;
// `as_users` reads the presence array into f.user_list and says what it held.
template <typename Value, typename AsString, typename AsUint, typename AsUsers>
void TakeField(Fields& f, std::string_view key, const Value& v, AsString as_string, AsUint as_uint,
               AsUsers as_users) {
  for (auto& [name, field] : kStringFields) {
    if (key == name) {
      f.*field = as_string(v);
      return;
    }
  }
  if (key == "seq") {
    f.seq = as_uint(v);
  } else if (key == "users") {
    f.user_list.clear();
    f.users = as_users(v, f.user_list);
  }  // unknown fields are ignored
}

// boost::json: every frame simdjson refuses (not JSON, or JSON that simdjson
// does not take, such as an integer beyond 64 bits), so that such frames are
// answered exactly as before.
std::optional<FrameError> FieldsByBoost(std::string_view text, json::value& v, Fields& f,
                                        json::monotonic_resource& mr) {
  json::parse_options opts;
  opts.max_depth = 16;
  boost::system::error_code ec;
  v = json::parse(json::string_view(text.data(), text.size()), ec, &mr, opts);
  if (ec) return Bad("frame is not valid JSON");
  auto* obj = v.if_object();
  if (!obj) return Bad("frame is not a JSON object");
  auto as_string = [](const json::value& x) -> std::optional<std::string_view> {
    if (auto* s = x.if_string()) return std::string_view(s->data(), s->size());
    return std::nullopt;
  };
  auto as_uint = [](const json::value& x) -> std::optional<uint64_t> {
    if (x.is_uint64()) return x.get_uint64();
    if (x.is_int64() && x.get_int64() >= 0) return static_cast<uint64_t>(x.get_int64());
    return std::nullopt;
  };
  auto users = [&](const json::value& x, std::vector<std::string_view>& out) {
    auto* arr = x.if_array();
    if (!arr) return Fields::Users::kNotAnArray;
    if (arr->size() > kMaxPresenceUsers) return Fields::Users::kTooMany;
    for (auto& u : *arr) {
      auto s = as_string(u);
      if (!s) return Fields::Users::kNotStrings;
      out.push_back(*s);
    }
    return Fields::Users::kOk;
  };
  for (auto& [key, value] : *obj)
    TakeField(f, std::string_view(key.data(), key.size()), value, as_string, as_uint, users);
  return std::nullopt;
}

// simdjson's DOM parser: it validates the whole frame into a tape it reuses,
// so a frame costs no allocation and no tree of values (a quarter of
// boost::json's time for a send, micro_bench's BM_CodecParseSendFrame).
// False when simdjson refuses the text.
bool FieldsBySimdjson(std::string_view text, dom::parser& parser, Fields& f) {
  dom::element root;
  if (parser.parse(text.data(), text.size()).get(root)) return false;
  dom::object obj;
  if (root.get_object().get(obj)) return false;  // boost::json says what it is instead
  auto as_string = [](const dom::element& x) -> std::optional<std::string_view> {
    std::string_view s;
    if (x.get_string().get(s)) return std::nullopt;
    return s;
  };
  auto as_uint = [](const dom::element& x) -> std::optional<uint64_t> {
    uint64_t n;
    if (!x.is_int64() && !x.is_uint64()) return std::nullopt;  // 1.0 is not a seq
    if (x.get_uint64().get(n)) return std::nullopt;
    return n;
  };
  auto users = [&](const dom::element& x, std::vector<std::string_view>& out) {
    dom::array arr;
    if (x.get_array().get(arr)) return Fields::Users::kNotAnArray;
    if (arr.size() > kMaxPresenceUsers) return Fields::Users::kTooMany;
    for (dom::element u : arr) {
      auto s = as_string(u);
      if (!s) return Fields::Users::kNotStrings;
      out.push_back(*s);
    }
    return Fields::Users::kOk;
  };
  for (dom::key_value_pair kv : obj) TakeField(f, kv.key, kv.value, as_string, as_uint, users);
  return true;
}

std::variant<ClientFrame, FrameError> FrameOf(const Fields& f, const FrameLimits& limits) {
  std::optional<std::string> cmid;
  if (f.client_msg_id) cmid.emplace(*f.client_msg_id);
  if (!f.type) return Bad("missing or non-string \"type\"", cmid);
  const std::string_view type = *f.type;

  if (type == "send") {
    if (!cmid) return Bad("send needs a string \"client_msg_id\"");
    if (cmid->empty() || cmid->size() > 64) return Bad("client_msg_id must be 1-64 bytes", cmid);
    if (!f.conversation_id || !ValidConversationId(*f.conversation_id))
      return Bad("send needs a string \"conversation_id\"", cmid);
    if (!f.body) return Bad("send needs a string \"body\"", cmid);
    if (f.body->size() > limits.max_body_bytes) {
      return FrameError{ErrorCode::kTooLarge,
                        "body is over " + std::to_string(limits.max_body_bytes) + " bytes", cmid};
    }
    return ClientFrame{
        SendFrame{std::string(*f.conversation_id), std::move(*cmid), std::string(*f.body)}};
  }
  if (type == "received") {
    if (!f.cursor) return Bad("received needs a string \"cursor\"", cmid);
    auto pos = DecodeCursor(*f.cursor);
    if (!pos) return Bad("malformed cursor", cmid);
    return ClientFrame{ReceivedFrame{*pos}};
  }
  if (type == "read") {
    if (!f.conversation_id || !ValidConversationId(*f.conversation_id))
      return Bad("read needs a string \"conversation_id\"", cmid);
    if (!f.seq) return Bad("read needs a non-negative integer \"seq\"", cmid);
    return ClientFrame{ReadFrame{std::string(*f.conversation_id), *f.seq}};
  }
  if (type == "typing") {
    if (!f.conversation_id || !ValidConversationId(*f.conversation_id))
      return Bad("typing needs a string \"conversation_id\"", cmid);
    if (!f.state || (*f.state != "composing" && *f.state != "paused"))
      return Bad("typing needs \"state\": \"composing\" or \"paused\"", cmid);
    return ClientFrame{TypingFrame{std::string(*f.conversation_id), *f.state == "composing"}};
  }
  if (type == "presence_subscribe") {
    switch (f.users) {
      case Fields::Users::kNotAnArray:
        return Bad("presence_subscribe needs an array \"users\"", cmid);
      case Fields::Users::kTooMany:
        return Bad("at most 1000 users per presence_subscribe", cmid);
      case Fields::Users::kNotStrings:
        return Bad("\"users\" must hold strings", cmid);
      case Fields::Users::kOk:
        break;
    }
    PresenceSubscribeFrame p;
    p.users.assign(f.user_list.begin(), f.user_list.end());
    return ClientFrame{std::move(p)};
  }
  if (type == "ping") return ClientFrame{PingFrame{}};
  return Bad("unknown frame type", cmid);
}

// Frames up to this size parse with the network thread's own parser, which
// keeps its buffers; a larger one (a body near the limit, or an abuse) gets a
// parser of its own, so that no thread holds a megabyte frame's tape for good.
constexpr size_t kReusedParserBytes = 64 << 10;
// Client frames nest two deep. A deeper one is left to boost::json, which
// takes up to 16 levels, so that both parsers never disagree on depth.
constexpr size_t kSimdjsonMaxDepth = 8;

// A parser held to kSimdjsonMaxDepth (it keeps that depth as it grows), or
// none when its buffers cannot be had: then boost::json parses the frame.
std::optional<dom::parser> NewParser(size_t capacity) {
  dom::parser p;
  if (p.allocate(std::max<size_t>(capacity, 4096), kSimdjsonMaxDepth) != simdjson::SUCCESS)
    return std::nullopt;
  return p;
}

}  // namespace

std::variant<ClientFrame, FrameError> ParseClientFrame(std::string_view text,
                                                       const FrameLimits& limits) {
  Fields f;
  thread_local std::optional<dom::parser> reused = NewParser(4096);
  if (text.size() <= kReusedParserBytes) {
    if (reused && FieldsBySimdjson(text, *reused, f)) return FrameOf(f, limits);
  } else if (auto own = NewParser(text.size()); own && FieldsBySimdjson(text, *own, f)) {
    return FrameOf(f, limits);  // while `own` still holds the strings
  }
  return ParseClientFrameWithBoostJson(text, limits);
}

std::variant<ClientFrame, FrameError> ParseClientFrameWithBoostJson(std::string_view text,
                                                                    const FrameLimits& limits) {
  Fields f;
  unsigned char buf[4096];  // small frames parse without touching the heap
  json::monotonic_resource mr(buf, sizeof(buf));
  json::value v;
  if (auto e = FieldsByBoost(text, v, f, mr)) return *std::move(e);
  return FrameOf(f, limits);
}

}  // namespace pigeon
