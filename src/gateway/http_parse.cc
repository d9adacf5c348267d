#include "gateway/http_parse.h"

#include <algorithm>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

namespace pigeon {
namespace http = boost::beast::http;

struct HttpRequestParser::Impl {
  http::request_parser<http::string_body> parser;
};

namespace {

bool HasToken(std::string_view value, std::string_view token) {
  // Comma-separated, case-insensitive tokens (Connection: keep-alive, Upgrade).
  size_t i = 0;
  while (i <= value.size()) {
    size_t j = value.find(',', i);
    if (j == std::string_view::npos) j = value.size();
    auto part = value.substr(i, j - i);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (part.size() == token.size() &&
        std::equal(part.begin(), part.end(), token.begin(),
                   [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
      return true;
    i = j + 1;
  }
  return false;
}

}  // namespace

HttpRequestParser::HttpRequestParser(size_t header_limit, size_t body_limit)
    : impl_(std::make_unique<Impl>()) {
  impl_->parser.header_limit(static_cast<std::uint32_t>(header_limit));
  impl_->parser.body_limit(body_limit);
  impl_->parser.eager(true);
}

HttpRequestParser::~HttpRequestParser() = default;

size_t HttpRequestParser::Put(const char* data, size_t len, State* state, std::string* error) {
  boost::system::error_code ec;
  size_t used = impl_->parser.put(boost::asio::const_buffer(data, len), ec);
  if (ec == http::error::need_more) {
    *state = State::kNeedMore;
    return used;
  }
  if (ec) {
    too_large_ = ec == http::error::body_limit;
    *state = State::kError;
    *error = ec.message();
    return used;
  }
  *state = impl_->parser.is_done() ? State::kDone : State::kNeedMore;
  return used;
}

bool HttpRequestParser::TakeExpectContinue() {
  auto& p = impl_->parser;
  if (continue_answered_ || !p.is_header_done() || p.is_done()) return false;
  if (!HasToken(p.get()[http::field::expect], "100-continue")) return false;
  continue_answered_ = true;
  return true;
}

HttpRequest HttpRequestParser::Take() {
  auto msg = impl_->parser.release();
  HttpRequest r;
  r.method = std::string(msg.method_string());
  r.target = std::string(msg.target());
  r.authorization = std::string(msg[http::field::authorization]);
  r.keep_alive = msg.keep_alive();
  r.upgrade_websocket = HasToken(msg[http::field::upgrade], "websocket") &&
                        HasToken(msg[http::field::connection], "upgrade");
  r.ws_key = std::string(msg[http::field::sec_websocket_key]);
  r.ws_version = std::string(msg[http::field::sec_websocket_version]);
  for (auto [it, end] = msg.equal_range("X-Forwarded-For"); it != end; ++it) {
    if (!r.forwarded_for.empty()) r.forwarded_for.push_back(',');
    r.forwarded_for.append(it->value());
  }
  r.body = std::move(msg.body());
  return r;
}

}  // namespace pigeon
