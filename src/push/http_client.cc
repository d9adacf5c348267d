#include "push/http_client.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <mutex>

#include "push/address_policy.h"

namespace pigeon::push {
namespace {

size_t OnBody(char* p, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(p, size * n);
  return size * n;
}

size_t OnHeader(char* p, size_t size, size_t n, void* user) {
  std::string line(p, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
      value.pop_back();
    static_cast<HttpReply*>(user)->headers.emplace_back(std::move(name), std::move(value));
  }
  return size * n;
}

// CURLOPT_OPENSOCKETFUNCTION for Reach::kPublicOnly: refuses an address that
// is not public, after the name's resolution and before the connection.
curl_socket_t OpenPublicSocket(void* reply, curlsocktype, curl_sockaddr* a) {
  if (!IsPublicAddress(&a->addr)) {
    static_cast<HttpReply*>(reply)->address_refused = true;
    return CURL_SOCKET_BAD;
  }
  return ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

}  // namespace

std::string HttpReply::Header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k == name) return v;
  return "";
}

HttpClient::HttpClient(Options options) : options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() {
  curl_easy_cleanup(static_cast<CURL*>(curl_));
  if (curl_public_) curl_easy_cleanup(static_cast<CURL*>(curl_public_));
}

HttpReply HttpClient::Post(const std::string& url, const std::vector<std::string>& headers,
                           const std::string& body, Reach reach) {
  // Each handle has its own connection cache: a user's URL never reuses a
  // connection to a provider's host (which may be on a private network).
  if (reach == Reach::kPublicOnly && !curl_public_) curl_public_ = curl_easy_init();
  CURL* c = static_cast<CURL*>(reach == Reach::kPublicOnly ? curl_public_ : curl_);
  HttpReply reply;
  curl_easy_reset(c);  // keeps the connection cache
  curl_slist* list = nullptr;
  for (auto& h : headers) list = curl_slist_append(list, h.c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, options_.timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, options_.timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  // HTTP/2 over TLS via ALPN (APNs requires it), HTTP/1.1 where a server offers only that.
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &reply);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (reach == Reach::kPublicOnly) {
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenPublicSocket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &reply);
    // A proxy from the environment would be the address checked, not the host's.
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  } else {
    reply.status = 0;
    reply.error = reply.address_refused ? "the endpoint's address is not public"
                  : errbuf[0]           ? errbuf
                                        : curl_easy_strerror(rc);
  }
  curl_slist_free_all(list);
  return reply;
}

}  // namespace pigeon::push
