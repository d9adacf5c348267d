// A small blocking HTTPS client over libcurl (HTTP/2 when the server offers
// it, connections reused). One per push thread; not thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace pigeon::push {

struct HttpReply {
  long status = 0;  // 0: no answer (connect failure, timeout)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string error;                                         // why there is no answer
  std::string Header(std::string_view name) const;
};

class HttpClient {
 public:
  struct Options {
    long timeout_ms = 5000;
    std::string ca_file;  // extra trusted CA bundle (tests, private CAs); empty: system store
  };
  explicit HttpClient(Options options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpReply Post(const std::string& url, const std::vector<std::string>& headers,
                 const std::string& body);

 private:
  Options options_;
  void* curl_;  // CURL*
};

}  // namespace pigeon::push
