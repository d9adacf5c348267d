// Small helpers the black-box tests share: JSON field access, a send frame,
// a metric's value.
#pragma once

#include <cstdint>
#include <string>

#include "client/pigeon_client.h"

namespace pigeon::test {

inline std::string S(const client::json::value& v) { return std::string(v.as_string()); }
inline int64_t I(const client::json::value& v) { return v.to_number<int64_t>(); }

inline client::json::object SendFrameJson(const std::string& conv, const std::string& cmid,
                                          const std::string& body) {
  return client::json::object{
      {"type", "send"}, {"conversation_id", conv}, {"client_msg_id", cmid}, {"body", body}};
}

// An unlabelled metric's value as GET /metrics shows it; -1 when it is not there.
inline double MetricValue(uint16_t port, const std::string& name) {
  return client::MetricIn(client::Http(port, "GET", "/metrics").body, name).value_or(-1.0);
}

}  // namespace pigeon::test
