#include "chat/chat_service.h"

#include <sodium.h>

#include "core/ids.h"

namespace pigeon {
namespace {

Status Unavailable() { return Status(ErrorCode::kUnavailable, "server is busy, retry later"); }

}  // namespace

ChatService::ChatService(MessageStore& store, CommitPipeline& pipeline, MessageBus& bus,
                         Metrics& metrics, Options options)
    : store_(store), pipeline_(pipeline), bus_(bus), metrics_(metrics), options_(options) {
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, "pigeon-dummy", 12, options_.pwhash_opslimit,
                        options_.pwhash_memlimit) == 0)
    dummy_hash_ = hash;
}

void ChatService::SignUp(const std::string& username, const std::string& password,
                         std::function<void(Result<std::string>)> done) {
  if (!IsValidUserId(username))
    return done(Status(ErrorCode::kBadRequest, "username must match [a-z0-9_.-]{3,32}"));
  if (password.size() < 8 || password.size() > 256)
    return done(Status(ErrorCode::kBadRequest, "password must be 8-256 bytes"));
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, password.data(), password.size(), options_.pwhash_opslimit,
                        options_.pwhash_memlimit) != 0)
    return done(Status(ErrorCode::kUnavailable, "out of memory hashing the password"));
  auto cb = [username, done](OpResult& r) {
    if (!r.status.ok()) return done(r.status);
    done(username);
  };
  if (!pipeline_.Submit(op::CreateUser{username, hash}, std::move(cb))) done(Unavailable());
}

void ChatService::Login(const std::string& username, const std::string& password,
                        const std::string& device_name,
                        std::function<void(Result<LoginResult>)> done) {
  auto bad = Status(ErrorCode::kUnauthorized, "wrong username or password");
  auto user = IsValidUserId(username) ? store_.GetUser(username)
                                      : Result<UserRecord>(Status(ErrorCode::kNotFound, ""));
  if (!user.ok() && user.status().code() != ErrorCode::kNotFound) return done(user.status());
  const std::string& hash = user.ok() ? user->password_hash : dummy_hash_;
  bool match = crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
  if (!user.ok() || !match) return done(bad);
  LoginResult result{NewToken(), username, NewDeviceId()};
  op::CreateSession o{username, result.device_id, device_name.substr(0, 128),
                      TokenHash(result.token)};
  auto cb = [result, done](OpResult& r) {
    if (!r.status.ok()) return done(r.status);
    done(result);
  };
  if (!pipeline_.Submit(std::move(o), std::move(cb))) done(Unavailable());
}

void ChatService::Logout(const std::string& token, std::function<void(Status)> done) {
  EndSession(op::DeleteSession{TokenHash(token), "", ""}, std::move(done));
}

void ChatService::RevokeDevice(const std::string& user, const std::string& device_id,
                               std::function<void(Status)> done) {
  EndSession(op::DeleteSession{"", user, device_id}, std::move(done));
}

void ChatService::EndSession(op::DeleteSession o, std::function<void(Status)> done) {
  auto cb = [this, done](OpResult& r) {
    if (r.status.ok()) {
      auto& s = std::get<DeviceSession>(r.value);
      bus_.PublishCloseDevice(s.user_id, s.device_id, 4001);
    }
    done(r.status);
  };
  if (!pipeline_.Submit(std::move(o), std::move(cb))) done(Unavailable());
}

Result<DeviceSession> ChatService::Authenticate(std::string_view token) {
  if (token.empty() || token.size() > 256)
    return Status(ErrorCode::kUnauthorized, "missing or malformed token");
  return store_.LookupToken(TokenHash(token));
}

void ChatService::OpenConversation(const std::string& user, const std::string& peer,
                                   std::function<void(Result<Conversation>)> done) {
  if (!IsValidUserId(peer)) return done(Status(ErrorCode::kBadRequest, "peer must be a user id"));
  if (peer == user) return done(Status(ErrorCode::kBadRequest, "the peer is the caller"));
  auto cb = [done](OpResult& r) {
    if (!r.status.ok()) return done(r.status);
    done(std::get<Conversation>(r.value));
  };
  if (!pipeline_.Submit(op::OpenDirectConversation{user, peer}, std::move(cb))) done(Unavailable());
}

Result<std::vector<ConversationSummary>> ChatService::ListConversations(const std::string& user) {
  return store_.ListConversations(user);
}

Result<Conversation> ChatService::MembersOf(const std::string& conversation_id) {
  {
    std::shared_lock lock(members_mu_);
    if (auto it = members_.find(conversation_id); it != members_.end()) return it->second;
  }
  auto c = store_.GetConversation(conversation_id);
  if (!c.ok()) return c.status();
  std::unique_lock lock(members_mu_);
  if (members_.size() > 100000) members_.clear();
  members_.emplace(conversation_id, *c);
  return c;
}

Result<std::vector<StoredMessage>> ChatService::History(const std::string& user,
                                                        const std::string& conversation_id,
                                                        uint64_t before_seq, size_t limit) {
  auto c = store_.GetConversation(conversation_id);
  if (!c.ok() && c.status().code() != ErrorCode::kNotFound) return c.status();
  if (!c.ok() || !c->HasMember(user))
    return Status(ErrorCode::kForbidden, "not a member of this conversation");
  return store_.History(conversation_id, before_seq, limit);
}

Result<FeedPage> ChatService::ReadFeed(const DeviceSession& who, FeedPos after, size_t limit,
                                       bool confirm) {
  if (confirm && after > 0) Confirm(who, after);
  return store_.ReadFeed(who.user_id, after, limit);
}

void ChatService::Send(const DeviceSession& who, SendFrame f, SendDone done) {
  SendOutcome base;
  base.client_msg_id = f.client_msg_id;
  op::AppendMessage o{who.user_id, std::move(f.conversation_id), std::move(f.client_msg_id),
                      std::move(f.body)};
  auto cb = [this, done = std::move(done), base = std::move(base)](OpResult& r) mutable {
    if (!r.status.ok()) {
      base.status = r.status;
      return done(std::move(base));
    }
    auto& a = std::get<AppendResult>(r.value);
    base.conversation_id = a.message.conversation_id;
    base.seq = a.message.seq;
    base.ts = a.message.ts;
    (a.duplicate ? metrics_.duplicate_sends : metrics_.messages_committed).Increment();
    done(std::move(base));
    if (a.duplicate) return;
    Route(a);
    if (options_.on_push_outbox)
      for (auto& u : a.push_users) options_.on_push_outbox(u, a.message.ts);
  };
  static_assert(CommitPipeline::Done::FitsInPlace<decltype(cb)>(), "a send's completion allocates");
  CommitPipeline::Done committed = std::move(cb);
  if (!pipeline_.Submit(std::move(o), std::move(committed))) {
    OpResult refused{Unavailable(), {}};
    committed(refused);
  }
}

void ChatService::Confirm(const DeviceSession& who, FeedPos pos) {
  // Nothing waits for it: a lost confirmation is repeated by the client's next one.
  (void)pipeline_.Submit(op::ConfirmFeed{who.user_id, who.device_id, pos},
                         [this, who, pos](OpResult& r) {
                           if (!r.status.ok()) return;
                           auto& receipts = std::get<ReceiptsResult>(r.value);
                           RouteReceipts(receipts);
                           // A long scan is done in slices, so one confirmation never
                           // holds the committer for long.
                           if (receipts.resume_from) Confirm(who, pos);
                         });
}

void ChatService::MarkRead(const DeviceSession& who, std::string conversation_id, uint64_t seq,
                           std::function<void(Status)> done) {
  auto cb = [this, done](OpResult& r) {
    if (r.status.ok()) RouteReceipts(std::get<ReceiptsResult>(r.value));
    done(r.status);
  };
  if (!pipeline_.Submit(op::MarkRead{who.user_id, std::move(conversation_id), seq}, std::move(cb)))
    done(Unavailable());
}

void ChatService::SetPush(const DeviceSession& who, PushRegistration registration,
                          std::function<void(Status)> done) {
  auto cb = [done](OpResult& r) { done(r.status); };
  if (!pipeline_.Submit(op::SetPush{who.user_id, who.device_id, std::move(registration)},
                        std::move(cb)))
    done(Unavailable());
}

void ChatService::SetPrivacy(const std::string& user, bool hides_last_seen,
                             std::function<void(Status)> done) {
  auto cb = [this, user, hides_last_seen, done](OpResult& r) {
    if (r.status.ok()) bus_.PublishPrivacy(user, hides_last_seen);
    done(r.status);
  };
  if (!pipeline_.Submit(op::SetPrivacy{user, hides_last_seen}, std::move(cb))) done(Unavailable());
}

Result<bool> ChatService::MayWatch(const std::string& viewer, const std::string& user) {
  if (viewer == user) return true;
  if (!IsValidUserId(user)) return false;
  auto c = store_.GetConversation(DirectConversationId(viewer, user));
  if (c.ok()) return c->HasMember(viewer) && c->HasMember(user);
  if (c.status().code() == ErrorCode::kNotFound) return false;
  return c.status();
}

std::string ChatService::FeedEntryJson(const FeedEntry& e) {
  if (e.kind == FeedEntry::Kind::kMessage) return MessageJson(e.message, e.pos);
  auto& r = e.receipt;
  return ReceiptFrame(r.conversation_id, r.user,
                      r.status == ReceiptStatus::kRead ? "read" : "delivered", r.seq, r.ts, e.pos);
}

void ChatService::RouteReceipts(const ReceiptsResult& result) {
  for (auto& rr : result.receipts) {
    FeedEntry e;
    e.kind = FeedEntry::Kind::kReceipt;
    e.receipt = rr.receipt;
    for (auto& d : rr.fanout) {
      e.pos = d.pos;
      bus_.PublishFeedEntry(d.user_id, d.pos, [&] { return SharedFrame(FeedEntryJson(e)); });
    }
  }
}

std::string ChatService::MessageJson(const StoredMessage& m, std::optional<FeedPos> cursor) {
  std::string out;
  out.reserve(m.body.size() + m.conversation_id.size() * 2 + m.sender.size() + 160);
  AppendMessageFramePrefix(out, {m.conversation_id, m.seq, m.sender, m.body, m.ts});
  if (cursor) {
    AppendMessageEnd(out, *cursor);
  } else {
    out.push_back('}');
  }
  return out;
}

void ChatService::Route(const AppendResult& r) {
  auto& m = r.message;
  // Each recipient's frame is the shared prefix and its own cursor, made in
  // this thread's scratch text and copied once into its SharedFrame.
  thread_local std::string text;
  text.clear();
  AppendMessageFramePrefix(text, {m.conversation_id, m.seq, m.sender, m.body, m.ts});
  const size_t prefix = text.size();
  // A recipient with no socket gets no frame: the message waits in its feed.
  for (auto& d : r.fanout) {
    bus_.PublishFeedEntry(d.user_id, d.pos, [&] {
      text.resize(prefix);
      AppendMessageEnd(text, d.pos);
      return SharedFrame(text);
    });
  }
  if (text.capacity() > (64 << 10)) std::string().swap(text);  // after a large body
}

void ChatService::RelayTyping(const std::string& user, const Conversation& conv, bool composing) {
  std::string frame = R"({"type":"typing","conversation_id":")";
  frame.append(conv.id).append(R"(","user":")").append(user);
  frame.append(composing ? R"(","state":"composing"})" : R"(","state":"paused"})");
  SharedFrame shared(frame);
  for (auto& m : conv.members)
    if (m != user) bus_.PublishEphemeral(m, shared);
}

}  // namespace pigeon
