// ChatService: the rules of pigeon, independent of sockets and of the store's
// engine. Validates requests, turns them into WriteOps for the CommitPipeline,
// and routes what was committed to the MessageBus (in commit order).
//
// Threads: methods marked "blocking" read the store or hash passwords; call
// them from a worker thread, never from a network thread. The others only
// queue work and may be called from anywhere. Callbacks may run on the
// committer thread: they must not block.
#pragma once

#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "bus/message_bus.h"
#include "chat/commit_pipeline.h"
#include "chat/metrics.h"
#include "core/task.h"
#include "protocol/frames.h"
#include "store/message_store.h"

namespace pigeon {

struct LoginResult {
  std::string token;
  std::string user_id;
  std::string device_id;
};

struct SendOutcome {
  Status status;
  std::string client_msg_id;
  std::string conversation_id;
  uint64_t seq = 0;
  int64_t ts = 0;
};

class ChatService {
 public:
  struct Options {
    // Argon2id cost (libsodium crypto_pwhash): defaults are libsodium's
    // "interactive" limits (2 passes, 64 MiB).
    unsigned long long pwhash_opslimit = 2;
    size_t pwhash_memlimit = 64ull << 20;
    // Called (on the committer thread) when a committed message entered
    // `user`'s push outbox; the push service schedules it.
    std::function<void(const std::string& user, int64_t commit_ms)> on_push_outbox;
  };

  ChatService(MessageStore& store, CommitPipeline& pipeline, MessageBus& bus, Metrics& metrics,
              Options options);

  // ---- accounts (blocking) ----
  void SignUp(const std::string& username, const std::string& password,
              std::function<void(Result<std::string>)> done);
  void Login(const std::string& username, const std::string& password,
             const std::string& device_name, std::function<void(Result<LoginResult>)> done);
  // Revokes the token; its live sockets are closed with 4001 once committed.
  void Logout(const std::string& token, std::function<void(Status)> done);
  // Revokes the device `device_id` of `user` as its logout would (not_found
  // if `user` has no such device).
  void RevokeDevice(const std::string& user, const std::string& device_id,
                    std::function<void(Status)> done);
  // Blocking: the user's logged-in devices, by id.
  Result<std::vector<DeviceInfo>> Devices(const std::string& user) { return store_.Devices(user); }
  Result<DeviceSession> Authenticate(std::string_view token);

  // ---- conversations and reads (blocking) ----
  void OpenConversation(const std::string& user, const std::string& peer,
                        std::function<void(Result<Conversation>)> done);
  Result<std::vector<ConversationSummary>> ListConversations(const std::string& user);
  // forbidden unless `user` is a member of an existing conversation.
  Result<std::vector<StoredMessage>> History(const std::string& user,
                                             const std::string& conversation_id,
                                             uint64_t before_seq, size_t limit);
  // Entries after `after`; with `confirm`, also confirms `after` for the device.
  Result<FeedPage> ReadFeed(const DeviceSession& who, FeedPos after, size_t limit,
                            bool confirm = true);
  Status Check() { return store_.Check(); }
  StoreHealth Health() { return store_.Health(); }

  // ---- the message path (non-blocking) ----
  // Commits the message, then calls done (ack or error), then routes it to
  // every member's sockets. A repeated client_msg_id is answered with the
  // original ack and routes nothing.
  using SendDone = InlineFunction<void(SendOutcome), 32>;
  void Send(const DeviceSession& who, SendFrame frame, SendDone done);
  // The device holds its feed up to `pos`. Delivered receipts that this
  // produces are committed, then routed to the other members.
  void Confirm(const DeviceSession& who, FeedPos pos);
  // The user read `conversation_id` up to `seq`; done gets forbidden or
  // bad_request (beyond the last seq), else ok (a read receipt, if the mark
  // moved, is committed and routed).
  void MarkRead(const DeviceSession& who, std::string conversation_id, uint64_t seq,
                std::function<void(Status)> done);
  // Registers (provider kNone: removes) the device's push registration.
  void SetPush(const DeviceSession& who, PushRegistration registration,
               std::function<void(Status)> done);
  // Privacy: hide last_seen from everyone (and see nobody's).
  void SetPrivacy(const std::string& user, bool hides_last_seen, std::function<void(Status)> done);
  // Blocking.
  Result<UserRecord> GetUser(const std::string& user) { return store_.GetUser(user); }
  // Blocking: whether `viewer` may see `user`'s presence (itself, or a user it
  // shares a conversation with).
  Result<bool> MayWatch(const std::string& viewer, const std::string& user);
  // Relays a typing frame to the other members; `members` of the conversation
  // must come from MembersOf.
  void RelayTyping(const std::string& user, const Conversation& conv, bool composing);
  // Blocking when the conversation is not cached: members of a conversation,
  // or not_found.
  Result<Conversation> MembersOf(const std::string& conversation_id);

  // A message frame, with its cursor (feed, live) or without (history).
  static std::string MessageJson(const StoredMessage& m, std::optional<FeedPos> cursor);
  // The frame of any feed entry (message or receipt), with its cursor.
  static std::string FeedEntryJson(const FeedEntry& e);

 private:
  // Commits `o` and closes the ended device's sockets with 4001.
  void EndSession(op::DeleteSession o, std::function<void(Status)> done);
  void Route(const AppendResult& r);
  void RouteReceipts(const ReceiptsResult& r);

  MessageStore& store_;
  CommitPipeline& pipeline_;
  MessageBus& bus_;
  Metrics& metrics_;
  Options options_;
  std::string dummy_hash_;  // verified against for unknown users: equal login timing

  // Conversation membership never changes once created: cache it.
  std::shared_mutex members_mu_;
  std::unordered_map<std::string, Conversation> members_;
};

}  // namespace pigeon
