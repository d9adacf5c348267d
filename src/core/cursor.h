// Feed cursors: an opaque string for a position in one user's feed.
//
// Positions start at 1 for a user's first feed entry; position 0 is "before
// everything" (the start cursor). The wire form is "f" followed by exactly 16
// lowercase hex digits; anything else is malformed. Clients never parse it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pigeon {

using FeedPos = uint64_t;

std::string EncodeCursor(FeedPos pos);
void AppendCursor(std::string& out, FeedPos pos);
// nullopt when `cursor` is not a well-formed cursor.
std::optional<FeedPos> DecodeCursor(std::string_view cursor);

}  // namespace pigeon
