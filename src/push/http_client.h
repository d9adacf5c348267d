// A small blocking HTTPS client over libcurl (HTTP/2 when the server offers
// it, connections reused). One per push thread; not thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace pigeon::push {

struct HttpReply {
  long status = 0;               // 0: no answer (connect failure, timeout, a refused address)
  bool address_refused = false;  // Reach::kPublicOnly: the host's address is not public
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

  // Which addresses a request may connect to. kPublicOnly is for URLs a user
  // chose (webhooks): each address is checked as the connection opens, after
  // the name is resolved (so a name that resolves to 127.0.0.1 is refused as
  // the literal is), and such requests have connections of their own, never
  // one opened for a provider the operator configured.
  enum class Reach { kAny, kPublicOnly };
  HttpReply Post(const std::string& url, const std::vector<std::string>& headers,
                 const std::string& body, Reach reach = Reach::kAny);

 private:
  Options options_;
  void* curl_ = nullptr;         // CURL*, Reach::kAny
  void* curl_public_ = nullptr;  // CURL*, Reach::kPublicOnly (opened on first use)
};

}  // namespace pigeon::push
