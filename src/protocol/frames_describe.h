// What a client frame's parse says, in full, as text: for comparing two
// parsers' answers (the tests and the fuzz target).
#pragma once

#include <string>
#include <type_traits>
#include <variant>

#include "protocol/frames.h"

namespace pigeon {

inline std::string DescribeParse(const std::variant<ClientFrame, FrameError>& r) {
  if (auto* e = std::get_if<FrameError>(&r))
    return "error " + std::to_string(static_cast<int>(e->code)) + " " + e->message +
           " cmid=" + (e->client_msg_id ? "[" + *e->client_msg_id + "]" : "none");
  return std::visit(
      [](const auto& f) -> std::string {
        using F = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<F, SendFrame>) {
          return "send [" + f.conversation_id + "] [" + f.client_msg_id + "] [" + f.body + "]";
        } else if constexpr (std::is_same_v<F, ReceivedFrame>) {
          return "received " + std::to_string(f.pos);
        } else if constexpr (std::is_same_v<F, ReadFrame>) {
          return "read [" + f.conversation_id + "] " + std::to_string(f.seq);
        } else if constexpr (std::is_same_v<F, TypingFrame>) {
          return "typing [" + f.conversation_id + "] " + (f.composing ? "composing" : "paused");
        } else if constexpr (std::is_same_v<F, PresenceSubscribeFrame>) {
          std::string out = "presence";
          for (auto& u : f.users) out += " [" + u + "]";
          return out;
        } else {
          return "ping";
        }
      },
      std::get<ClientFrame>(r));
}

}  // namespace pigeon
