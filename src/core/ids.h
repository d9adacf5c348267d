// Identifiers: user ids, conversation ids, message ids, tokens.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pigeon {

// [a-z0-9_.-]{3,32}; nothing is folded (spec: "Identities").
bool IsValidUserId(std::string_view id);

// The one id of the 1:1 conversation between `a` and `b`, whoever asks first:
// 24 hex digits of SHA-256 over the sorted pair. Deterministic, so two
// concurrent creations cannot make two conversations.
std::string DirectConversationId(std::string_view a, std::string_view b);

// Unique across the service because (conversation, seq) is.
std::string ServerMsgId(std::string_view conversation_id, uint64_t seq);
// The same, appended to `out` (frames are written without temporaries).
void AppendServerMsgId(std::string& out, std::string_view conversation_id, uint64_t seq);

// A fresh bearer token: 32 random bytes, base64url without padding.
std::string NewToken();
// A fresh device id: 10 random bytes, base64url (14 characters).
std::string NewDeviceId();
// What the store keeps of a token: its SHA-256, raw 32 bytes.
std::string TokenHash(std::string_view token);

// Milliseconds since the Unix epoch, server clock.
int64_t NowMs();

}  // namespace pigeon
