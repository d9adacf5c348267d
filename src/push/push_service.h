// PushService: turns the durable outbox into push notifications.
//
// A message committed for a user with a push-registered device enters that
// user's outbox in the same commit. The ChatService tells this service; the
// service waits `delay_ms` so that a burst becomes one push, then, for each
// device of the user with a registration: skips it if it is online (it gets
// the message live) or already confirmed the message; sends at most one push
// per device per `min_interval_ms`; and finally removes what it handled from
// the outbox (a commit). Failures (429, 5xx, timeouts) are retried with
// exponential backoff and jitter, honouring Retry-After, with the attempt
// count and next time kept in the outbox; tokens the provider reports dead
// are removed. At start-up the outbox is read back, so a crash between the
// commit and the push still sends the push.
//
// Threads: `threads` push threads, each with its own HTTP client; nothing
// here runs on a network thread. Memory: one schedule entry per user with a
// pending outbox; the outbox itself lives in the store.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "chat/commit_pipeline.h"
#include "chat/metrics.h"
#include "push/push_sender.h"
#include "store/message_store.h"

namespace pigeon::push {

class PushService {
 public:
  struct Options {
    int64_t delay_ms = 500;          // gather a burst before the first push
    int64_t min_interval_ms = 3000;  // at most one push per device this often
    uint32_t max_attempts = 8;       // delivery rounds before giving up
    int64_t backoff_base_ms = 1000;  // first retry; doubles, with jitter, up to backoff_max_ms
    int64_t backoff_max_ms = 300000;
    bool preview = false;  // put sender and body in the payload
    unsigned threads = 2;
    HttpClient::Options http;
  };
  // `device_online(user, device)`: whether the device has a live socket.
  PushService(MessageStore& store, CommitPipeline& pipeline, Metrics& metrics, Options options,
              std::function<bool(const std::string&, const std::string&)> device_online);
  ~PushService();  // Stop()

  void AddSender(PushRegistration::Provider provider, std::unique_ptr<PushSender> sender);
  bool HasProvider(PushRegistration::Provider provider) const {
    return senders_.count(provider) > 0;
  }
  PushSender* Sender(PushRegistration::Provider provider) const;

  // Reads the outbox back from the store and starts the push threads.
  Status Start();
  // A message entered `user`'s outbox, committed at `commit_ms`.
  void Pending(const std::string& user, int64_t commit_ms);
  void Stop();

 private:
  void Schedule(const std::string& user, int64_t due_ms);
  void Run();
  // Handles one user's outbox; returns when to look again (0: done).
  int64_t Process(const std::string& user, HttpClient& http);

  MessageStore& store_;
  CommitPipeline& pipeline_;
  Metrics& metrics_;
  Options options_;
  std::function<bool(const std::string&, const std::string&)> device_online_;
  std::map<PushRegistration::Provider, std::unique_ptr<PushSender>> senders_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<int64_t, std::string> due_;           // due time -> user
  std::unordered_map<std::string, int64_t> planned_;  // user -> its earliest due time
  std::set<std::string> busy_;                        // users being processed
  std::unordered_map<std::string, int64_t>
      last_push_;  // user '\0' device -> ms (pruned past the interval)
  std::unordered_map<std::string, FeedPos> pushed_upto_;  // user '\0' device -> cursor pushed
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pigeon::push
