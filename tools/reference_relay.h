// The reference relay: the performance budget's yardstick, measured on the
// same machine, in the same run, under the same load as pigeond.
//
// The budget's CPU line was set from non-durable relays measured on a
// reference day (uWebSockets 34 µs per message at 5,000/s; a bare C++ relay
// 17-21 µs, ../shared/STACK.md). This machine's speed moves by half within
// an hour (its host is shared), so an absolute figure alone cannot say whether
// pigeond meets the line or the hour was fast. `pigeon-bench --relay` drives this relay
// with the very load it drives pigeond with; the ratio of the two is the
// comparison that does not drift.
//
// What it is: one thread, epoll, level-triggered; per message one `recv` and
// one `send` to each socket that gets a frame (several frames per `send`
// when a socket has more pending). It keeps nothing: no store, no fsync, no
// validation beyond the WebSocket framing, no feed, no cursors, and no
// accounts (a token is its user's id). It speaks only what pigeon-bench's
// traffic scenarios use: POST /api/v1/conversations, GET /api/v1/ws (read
// with pigeond's own HttpRequestParser), and on the socket `send` (answered by `ack`, and `message`
// to every socket of both members, with a per-conversation seq), `ping`, close. Never a server for
// anything else.
#pragma once

#include <cstdint>
#include <string>

namespace pigeon::bench {

// The user id a relay token stands for, and the other way round: a relay has no
// accounts, so the token is the user id.
inline std::string RelayUserId(int i) { return "relay-" + std::to_string(i); }

// Serves on `listen_fd` (a bound, listening socket) until the process is
// killed. Names its thread "pg-relay". Meant for a child process of its own.
[[noreturn]] void RunReferenceRelay(int listen_fd);

}  // namespace pigeon::bench
