// Binary encodings of store records, shared by backends that keep opaque
// values (RocksDB). Each Decode returns false on corrupt input.
#pragma once

#include <string>
#include <string_view>

#include "store/message_store.h"

namespace pigeon::records {

std::string EncodeUser(const UserRecord& u);
bool DecodeUser(std::string_view in, UserRecord* u);
std::string EncodeConversation(const Conversation& c);
bool DecodeConversation(std::string_view in, Conversation* c);
std::string EncodeMessage(const StoredMessage& m);
// The same, into `out` (its buffer reused).
void EncodeMessage(const StoredMessage& m, std::string* out);
bool DecodeMessage(std::string_view in, StoredMessage* m);

}  // namespace pigeon::records
