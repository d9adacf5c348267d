#include "gateway/http_api.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <charconv>

#include "chat/chat_service.h"
#include "chat/metrics.h"
#include "chat/presence_service.h"
#include "core/ids.h"
#include "push/push_service.h"
#include "push/webhook/webhook_sender.h"

namespace pigeon {
namespace json = boost::json;
namespace {

constexpr std::string_view kApi = "/api/v1/";

HttpResponse Json(int status, std::string body) {
  return HttpResponse{status, std::move(body), "application/json", {}};
}

std::string_view StatusText(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// The query parameters of a target, percent-decoded. nullopt if malformed.
using Params = std::vector<std::pair<std::string, std::string>>;
std::optional<Params> ParseQuery(const std::string& target) {
  auto u = boost::urls::parse_origin_form(target);
  if (!u) return std::nullopt;
  Params out;
  for (auto p : u->params()) out.emplace_back(p.key, p.has_value ? p.value : "");
  return out;
}

const std::string* Param(const Params& ps, std::string_view key) {
  for (auto& [k, v] : ps)
    if (k == key) return &v;
  return nullptr;
}

std::optional<uint64_t> ParseUint(std::string_view s) {
  uint64_t v = 0;
  if (s.empty() || s.size() > 19) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// A JSON object body, or nullptr.
std::optional<json::object> ParseBody(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::optional<std::string> StringField(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

void AppendMembers(std::string& out, const std::vector<std::string>& members) {
  out.push_back('[');
  for (size_t i = 0; i < members.size(); ++i) {
    if (i) out.push_back(',');
    AppendJsonString(out, members[i]);
  }
  out.push_back(']');
}

}  // namespace

std::string SerializeResponse(const HttpResponse& r, bool keep_alive) {
  std::string out;
  out.reserve(r.body.size() + 160);
  out.append("HTTP/1.1 ").append(std::to_string(r.status)).push_back(' ');
  out.append(StatusText(r.status)).append("\r\n");
  for (auto& [k, v] : r.headers) out.append(k).append(": ").append(v).append("\r\n");
  if (r.status != 101) {
    if (r.status != 204) out.append("Content-Type: ").append(r.content_type).append("\r\n");
    out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
    if (!keep_alive) out.append("Connection: close\r\n");
  }
  out.append("\r\n");
  out.append(r.body);
  return out;
}

HttpResponse HttpApi::Error(const Status& s, int64_t retry_after_s) {
  metrics_.errors(s.code()).Increment();
  HttpResponse r = Json(HttpStatusFor(s.code()), HttpErrorBody(s.code(), s.message()));
  if (s.code() == ErrorCode::kRateLimited)
    r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  return r;
}

Result<DeviceSession> HttpApi::Authenticate(const HttpRequest& req) {
  std::string_view auth = req.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() || !auth.starts_with(kBearer))
    return Status(ErrorCode::kUnauthorized, "missing bearer token");
  return chat_.Authenticate(auth.substr(kBearer.size()));
}

bool HttpApi::RunPasswordCheck(std::string client, std::function<void()> check,
                               std::function<void(HttpResponse)>& done) {
  if (!options_.password_threads) {
    check();
    return true;
  }
  if (options_.max_password_checks_per_client == 0) client.clear();
  if (!client.empty()) {
    std::lock_guard lock(pending_by_client_mu_);
    uint32_t& n = pending_by_client_[client];
    if (n >= options_.max_password_checks_per_client) {
      done(Error(Status(ErrorCode::kRateLimited,
                        "too many sign-ups and logins from this client at once; retry later")));
      return false;
    }
    ++n;
  }
  auto client_done = [this, client] {
    if (client.empty()) return;
    std::lock_guard lock(pending_by_client_mu_);
    auto it = pending_by_client_.find(client);
    if (it != pending_by_client_.end() && --it->second == 0) pending_by_client_.erase(it);
  };
  if (pending_password_checks_.fetch_add(1, std::memory_order_relaxed) >=
      options_.max_pending_password_checks) {
    pending_password_checks_.fetch_sub(1, std::memory_order_relaxed);
    client_done();
    HttpResponse r = Error(Status(ErrorCode::kUnavailable, "server is busy, retry later"));
    r.headers.emplace_back("Retry-After", "1");
    done(std::move(r));
    return false;
  }
  metrics_.password_checks_pending.Increment();
  boost::asio::post(*options_.password_threads,
                    [this, check = std::move(check), client_done = std::move(client_done)] {
                      check();  // hashes here; what follows it (a commit) completes elsewhere
                      client_done();
                      pending_password_checks_.fetch_sub(1, std::memory_order_relaxed);
                      metrics_.password_checks_pending.Decrement();
                    });
  return true;
}

namespace {

// A device's push provider as the devices list shows it.
std::string_view PushProviderJson(PushRegistration::Provider p) {
  switch (p) {
    case PushRegistration::Provider::kApns:
      return R"("apns")";
    case PushRegistration::Provider::kFcm:
      return R"("fcm")";
    case PushRegistration::Provider::kWebhook:
      return R"("webhook")";
    default:
      return "null";
  }
}

}  // namespace

bool HttpApi::UsesClientAddress(const HttpRequest& req) {
  const std::string_view path = req.path();
  return req.method == "POST" && path.starts_with(kApi) &&
         (path.substr(kApi.size()) == "users" || path.substr(kApi.size()) == "sessions");
}

void HttpApi::Handle(const HttpRequest& req, std::function<void(HttpResponse)> done) {
  metrics_.http_requests.Increment();
  Route(req, done);
}

void HttpApi::Route(const HttpRequest& req, std::function<void(HttpResponse)>& done) {
  const std::string_view path = req.path();
  const std::string& m = req.method;
  auto fail = [&](ErrorCode code, std::string msg) { done(Error(Status(code, std::move(msg)))); };

  if (path == "/healthz" && m == "GET") return done(Json(200, R"({"status":"ok"})"));
  if (path == "/readyz" && m == "GET") {
    auto s = chat_.Check();
    if (!s.ok()) return done(Error(s));
    return done(Json(200, R"({"status":"ready"})"));
  }
  if (path == "/metrics" && m == "GET") {
    metrics_.Record(chat_.Health());
    return done(HttpResponse{200, metrics_.Serialize(), "text/plain; version=0.0.4", {}});
  }
  if (!path.starts_with(kApi)) return fail(ErrorCode::kNotFound, "no such endpoint");
  const std::string_view rest = path.substr(kApi.size());
  auto query = ParseQuery(req.target);
  if (!query) return fail(ErrorCode::kBadRequest, "malformed request target");

  // ---- endpoints without a token ----
  if (rest == "users" && m == "POST") {
    auto body = ParseBody(req.body);
    if (!body) return fail(ErrorCode::kBadRequest, "body must be a JSON object");
    auto user = StringField(*body, "username");
    auto pass = StringField(*body, "password");
    if (!user || !pass)
      return fail(ErrorCode::kBadRequest, "username and password are required strings");
    // Sign-ups per client: each one checked (an account made, or a name
    // found taken) counts, as a failure does for logins.
    const int64_t now = NowMs();
    std::string client = options_.clients.ClientOf(req.peer, req.forwarded_for);
    bool counted = false;
    if (int64_t wait_ms = signups_.Begin(client, now, &counted); wait_ms > 0)
      return done(
          Error(Status(ErrorCode::kRateLimited, "too many sign-ups from this client; retry later"),
                (wait_ms + 999) / 1000));
    auto ended = [this, counted, client](const Status& s) {
      if (counted)
        signups_.End(client,
                     s.ok() || s.code() == ErrorCode::kConflict
                         ? LoginLimiter::Outcome::kFailed
                         : LoginLimiter::Outcome::kNotChecked,
                     NowMs());
    };
    auto signup = [this, done, ended, user = *user, pass = *pass] {
      chat_.SignUp(user, pass, [done, ended, this](Result<std::string> r) {
        ended(r.status());
        if (!r.ok()) return done(Error(r.status()));
        std::string out = R"({"user_id":)";
        AppendJsonString(out, *r);
        out.push_back('}');
        done(Json(201, std::move(out)));
      });
    };
    if (!RunPasswordCheck(client, std::move(signup), done))
      ended(Status(ErrorCode::kUnavailable, ""));
    return;
  }
  if (rest == "sessions" && m == "POST") {
    auto body = ParseBody(req.body);
    if (!body) return fail(ErrorCode::kBadRequest, "body must be a JSON object");
    auto user = StringField(*body, "username");
    auto pass = StringField(*body, "password");
    if (!user || !pass)
      return fail(ErrorCode::kBadRequest, "username and password are required strings");
    std::string device_name;
    if (auto* dn = body->if_contains("device_name")) {
      if (!dn->is_string()) return fail(ErrorCode::kBadRequest, "device_name must be a string");
      device_name = std::string(dn->as_string());
    }
    // Failed logins are counted per client (guesses spread over many names)
    // and per username (guesses at one name, from anywhere). Only well-formed
    // names are counted: no other can log in, and the limiter's memory stays
    // bounded by their length.
    const int64_t now = NowMs();
    std::string client = options_.clients.ClientOf(req.peer, req.forwarded_for);
    bool client_counted = false;
    if (int64_t wait_ms = client_logins_.Begin(client, now, &client_counted); wait_ms > 0)
      return done(Error(
          Status(ErrorCode::kRateLimited, "too many failed logins from this client; retry later"),
          (wait_ms + 999) / 1000));
    bool counted = false;
    if (IsValidUserId(*user)) {
      if (int64_t wait_ms = logins_.Begin(*user, now, &counted); wait_ms > 0) {
        if (client_counted) client_logins_.End(client, LoginLimiter::Outcome::kNotChecked, now);
        return done(Error(Status(ErrorCode::kRateLimited,
                                 "too many failed logins for this username; retry later"),
                          (wait_ms + 999) / 1000));
      }
    }
    // A success clears the username's count, not the client's: one account
    // of its own would let a client reset its count between guesses.
    auto ended = [this, counted, client_counted, name = *user, client](LoginLimiter::Outcome o) {
      if (counted) logins_.End(name, o, NowMs());
      if (client_counted)
        client_logins_.End(
            client, o == LoginLimiter::Outcome::kSucceeded ? LoginLimiter::Outcome::kNotChecked : o,
            NowMs());
    };
    auto login = [this, done, ended, user = *user, pass = *pass, device_name] {
      chat_.Login(user, pass, device_name, [done, this, ended](Result<LoginResult> r) {
        ended(r.ok()                                          ? LoginLimiter::Outcome::kSucceeded
              : r.status().code() == ErrorCode::kUnauthorized ? LoginLimiter::Outcome::kFailed
                                                              : LoginLimiter::Outcome::kNotChecked);
        if (!r.ok()) return done(Error(r.status()));
        std::string out = R"({"token":)";
        AppendJsonString(out, r->token);
        out.append(R"(,"user_id":)");
        AppendJsonString(out, r->user_id);
        out.append(R"(,"device_id":)");
        AppendJsonString(out, r->device_id);
        out.push_back('}');
        done(Json(200, std::move(out)));
      });
    };
    if (!RunPasswordCheck(client, std::move(login), done))
      ended(LoginLimiter::Outcome::kNotChecked);
    return;
  }

  // ---- everything else needs a token ----
  auto who = Authenticate(req);
  if (!who.ok()) return done(Error(who.status()));

  if (rest == "sessions/current" && m == "DELETE") {
    std::string token = req.authorization.substr(7);
    return chat_.Logout(token, [done, this](Status s) {
      if (!s.ok()) return done(Error(s));
      done(HttpResponse{204, "", "application/json", {}});
    });
  }
  if (rest == "conversations" && m == "POST") {
    auto body = ParseBody(req.body);
    if (!body) return fail(ErrorCode::kBadRequest, "body must be a JSON object");
    auto peer = StringField(*body, "peer");
    if (!peer) return fail(ErrorCode::kBadRequest, "peer is a required string");
    return chat_.OpenConversation(who->user_id, *peer, [done, this](Result<Conversation> r) {
      if (!r.ok()) return done(Error(r.status()));
      std::string out = R"({"conversation_id":")";
      out.append(r->id).append(R"(","members":)");
      AppendMembers(out, r->members);
      out.push_back('}');
      done(Json(200, std::move(out)));
    });
  }
  if (rest == "conversations" && m == "GET") {
    auto list = chat_.ListConversations(who->user_id);
    if (!list.ok()) return done(Error(list.status()));
    std::string out = R"({"conversations":[)";
    for (size_t i = 0; i < list->size(); ++i) {
      auto& c = (*list)[i];
      if (i) out.push_back(',');
      out.append(R"({"conversation_id":")").append(c.id).append(R"(","members":)");
      AppendMembers(out, c.members);
      out.append(R"(,"last_seq":)").append(std::to_string(c.last_seq));
      out.append(R"(,"read_seq":)").append(std::to_string(c.read_seq)).push_back('}');
    }
    out.append("]}");
    return done(Json(200, std::move(out)));
  }
  if (rest.starts_with("conversations/") && rest.ends_with("/messages") && m == "GET") {
    auto id = rest.substr(14, rest.size() - 14 - 9);
    if (id.empty() || id.find('/') != std::string_view::npos)
      return fail(ErrorCode::kNotFound, "no such endpoint");
    uint64_t before = ~0ull;
    size_t limit = 50;
    if (auto* b = Param(*query, "before_seq")) {
      auto v = ParseUint(*b);
      if (!v) return fail(ErrorCode::kBadRequest, "before_seq must be a non-negative integer");
      before = *v;
    }
    if (auto* l = Param(*query, "limit")) {
      auto v = ParseUint(*l);
      if (!v || *v < 1 || *v > 1000) return fail(ErrorCode::kBadRequest, "limit must be 1-1000");
      limit = *v;
    }
    auto msgs = chat_.History(who->user_id, std::string(id), before, limit);
    if (!msgs.ok()) return done(Error(msgs.status()));
    std::string out = R"({"messages":[)";
    for (size_t i = 0; i < msgs->size(); ++i) {
      if (i) out.push_back(',');
      out.append(ChatService::MessageJson((*msgs)[i], std::nullopt));
    }
    out.append("]}");
    return done(Json(200, std::move(out)));
  }
  if (rest == "messages" && m == "GET") {
    FeedPos since = 0;
    size_t limit = 100;
    const std::string* since_param = Param(*query, "since");
    if (since_param) {
      auto pos = DecodeCursor(*since_param);
      if (!pos) return fail(ErrorCode::kBadRequest, "malformed cursor");
      since = *pos;
    }
    if (auto* l = Param(*query, "limit")) {
      auto v = ParseUint(*l);
      if (!v || *v < 1) return fail(ErrorCode::kBadRequest, "limit must be a positive integer");
      limit = std::min<uint64_t>(*v, 1000);
    }
    auto page = chat_.ReadFeed(*who, since, limit);
    if (!page.ok()) return done(Error(page.status()));
    std::string out = R"({"messages":[)";
    std::string receipts;
    // The last entry read: past references to messages retention removed too,
    // and past entries it removed.
    const FeedPos last = std::max({page->last_pos, page->removed_to, since});
    bool first = true;
    for (auto& e : page->entries) {
      if (e.kind == FeedEntry::Kind::kReceipt) {
        if (!receipts.empty()) receipts.push_back(',');
        receipts.append(ChatService::FeedEntryJson(e));
        continue;
      }
      if (!first) out.push_back(',');
      first = false;
      out.append(ChatService::FeedEntryJson(e));
    }
    out.append(R"(],"receipts":[)").append(receipts).append(R"(],"next_cursor":")");
    AppendCursor(out, last);
    out.append(R"(","has_more":)").append(page->has_more ? "true" : "false");
    // Only a reader that named its cursor missed anything: without one, the
    // read starts at the retained feed's start.
    const bool gap = page->removed_to && since_param;
    out.append(R"(,"gap":)").append(gap ? "true}" : "false}");
    return done(Json(200, std::move(out)));
  }
  if (rest.starts_with("presence/") && m == "GET") {
    std::string user(rest.substr(9));
    auto allowed = chat_.MayWatch(who->user_id, user);
    if (!allowed.ok()) return done(Error(allowed.status()));
    // The same answer for strangers and for users that do not exist.
    if (!*allowed) return fail(ErrorCode::kForbidden, "no conversation shared with this user");
    auto view = presence_.Get(who->user_id, user);
    if (!view.ok()) return done(Error(view.status()));
    std::string out = R"({"user_id":)";
    AppendJsonString(out, user);
    out.append(view->online ? R"(,"online":true,"last_seen":)" : R"(,"online":false,"last_seen":)");
    out.append(view->last_seen_ms < 0 ? "null" : std::to_string(view->last_seen_ms));
    out.push_back('}');
    return done(Json(200, std::move(out)));
  }
  if (rest == "devices" && m == "GET") {
    auto devices = chat_.Devices(who->user_id);
    if (!devices.ok()) return done(Error(devices.status()));
    std::string out = R"({"devices":[)";
    for (size_t i = 0; i < devices->size(); ++i) {
      const DeviceInfo& d = (*devices)[i];
      if (i) out.push_back(',');
      out.append(R"({"device_id":)");
      AppendJsonString(out, d.device_id);
      out.append(R"(,"name":)");
      AppendJsonString(out, d.name);
      out.append(d.device_id == who->device_id ? R"(,"current":true,"push":)"
                                               : R"(,"current":false,"push":)");
      out.append(PushProviderJson(d.push.provider));
      out.push_back('}');
    }
    out.append("]}");
    return done(Json(200, std::move(out)));
  }
  if (rest.starts_with("devices/") && rest != "devices/current/push" && m == "DELETE") {
    std::string device(rest.substr(8));
    if (device == "current") device = who->device_id;
    return chat_.RevokeDevice(who->user_id, device, [done, this](Status s) {
      if (!s.ok()) return done(Error(s));
      done(HttpResponse{204, "", "application/json", {}});
    });
  }
  if (rest == "devices/current/push" && m == "PUT") {
    auto body = ParseBody(req.body);
    if (!body) return fail(ErrorCode::kBadRequest, "body must be a JSON object");
    auto provider = StringField(*body, "provider");
    PushRegistration reg;
    if (provider == "apns") {
      reg.provider = PushRegistration::Provider::kApns;
    } else if (provider == "fcm") {
      reg.provider = PushRegistration::Provider::kFcm;
    } else if (provider == "webhook") {
      reg.provider = PushRegistration::Provider::kWebhook;
    } else {
      return fail(ErrorCode::kBadRequest, R"("provider" must be "apns", "fcm" or "webhook")");
    }
    if (!push_.HasProvider(reg.provider))
      return fail(ErrorCode::kBadRequest, *provider + " is not configured on this server");
    auto token = StringField(*body, "token");
    if (body->contains("token") && !token)
      return fail(ErrorCode::kBadRequest, "token must be a string");
    if (token) reg.token = *token;
    if (reg.provider != PushRegistration::Provider::kWebhook &&
        (reg.token.empty() || reg.token.size() > 4096 ||
         reg.token.find_first_of("/?#% \r\n") != std::string::npos))
      return fail(ErrorCode::kBadRequest,
                  "token must be 1-4096 bytes, with no '/', '?', '#', '%' or spaces");
    if (reg.token.size() > 4096)
      return fail(ErrorCode::kBadRequest, "token must be at most 4096 bytes");
    if (reg.provider == PushRegistration::Provider::kWebhook) {
      auto endpoint = StringField(*body, "endpoint");
      auto* hook = static_cast<push::WebhookSender*>(push_.Sender(reg.provider));
      if (!endpoint)
        return fail(ErrorCode::kBadRequest, "a webhook needs an https:// \"endpoint\"");
      if (Status s = hook->CheckEndpoint(*endpoint); !s.ok()) return fail(s.code(), s.message());
      reg.endpoint = *endpoint;
    }
    return chat_.SetPush(*who, std::move(reg), [done, this](Status s) {
      if (!s.ok()) return done(Error(s));
      done(HttpResponse{204, "", "application/json", {}});
    });
  }
  if (rest == "devices/current/push" && m == "DELETE") {
    return chat_.SetPush(*who, PushRegistration{}, [done, this](Status s) {
      if (!s.ok()) return done(Error(s));
      done(HttpResponse{204, "", "application/json", {}});
    });
  }
  if (rest == "me/settings" && m == "GET") {
    auto u = chat_.GetUser(who->user_id);
    if (!u.ok()) return done(Error(u.status()));
    return done(Json(
        200, u->hides_last_seen ? R"({"last_seen":"nobody"})" : R"({"last_seen":"everyone"})"));
  }
  if (rest == "me/settings" && m == "PUT") {
    auto body = ParseBody(req.body);
    if (!body) return fail(ErrorCode::kBadRequest, "body must be a JSON object");
    auto ls = StringField(*body, "last_seen");
    if (!ls || (*ls != "everyone" && *ls != "nobody"))
      return fail(ErrorCode::kBadRequest, R"("last_seen" must be "everyone" or "nobody")");
    bool hides = *ls == "nobody";
    return chat_.SetPrivacy(who->user_id, hides, [done, hides, this](Status s) {
      if (!s.ok()) return done(Error(s));
      done(Json(200, hides ? R"({"last_seen":"nobody"})" : R"({"last_seen":"everyone"})"));
    });
  }
  fail(ErrorCode::kNotFound, "no such endpoint");
}

std::variant<UpgradeGrant, HttpResponse> HttpApi::AuthorizeUpgrade(const HttpRequest& req) {
  metrics_.http_requests.Increment();
  if (req.method != "GET")
    return Error(Status(ErrorCode::kBadRequest, "WebSocket upgrade needs GET"));
  if (!req.upgrade_websocket || req.ws_key.size() != 24)
    return Error(Status(ErrorCode::kBadRequest, "not a valid WebSocket upgrade request"));
  if (req.ws_version != "13") {
    auto r = Error(Status(ErrorCode::kBadRequest, "unsupported WebSocket version"));
    r.headers.emplace_back("Sec-WebSocket-Version", "13");
    return r;
  }
  auto query = ParseQuery(req.target);
  if (!query) return Error(Status(ErrorCode::kBadRequest, "malformed request target"));
  Result<DeviceSession> who = Status(ErrorCode::kUnauthorized, "missing token");
  if (!req.authorization.empty()) {
    who = Authenticate(req);
  } else if (auto* t = Param(*query, "token")) {
    who = chat_.Authenticate(*t);
  }
  if (!who.ok()) return Error(who.status());
  UpgradeGrant g{*who, std::nullopt};
  if (auto* s = Param(*query, "since")) {
    auto pos = DecodeCursor(*s);
    if (!pos) return Error(Status(ErrorCode::kBadRequest, "malformed cursor"));
    g.since = *pos;
  }
  return g;
}

}  // namespace pigeon
