#include "push/push_service.h"

#include <spdlog/spdlog.h>

#include <random>

#include "core/ids.h"
#include "core/thread_name.h"

namespace pigeon::push {

int64_t RetryAfterMs(const HttpReply& reply) {
  std::string v = reply.Header("retry-after");
  if (v.empty()) return 0;
  try {
    return std::max<int64_t>(0, std::stoll(v)) * 1000;
  } catch (...) {
    return 0;  // an HTTP date: fall back to our own backoff
  }
}

Outcome ClassifyCommon(const HttpReply& reply) {
  if (reply.status >= 200 && reply.status < 300) return Outcome{Outcome::Kind::kAccepted, 0, ""};
  if (reply.status == 0) return Outcome{Outcome::Kind::kRetry, 0, reply.error};
  if (reply.status == 429 || reply.status >= 500)
    return Outcome{Outcome::Kind::kRetry, RetryAfterMs(reply),
                   "HTTP " + std::to_string(reply.status)};
  return Outcome{Outcome::Kind::kRejected, 0,
                 "HTTP " + std::to_string(reply.status) + " " + reply.body.substr(0, 200)};
}

PushService::PushService(MessageStore& store, CommitPipeline& pipeline, Metrics& metrics,
                         Options options,
                         std::function<bool(const std::string&, const std::string&)> device_online)
    : store_(store),
      pipeline_(pipeline),
      metrics_(metrics),
      options_(std::move(options)),
      device_online_(std::move(device_online)) {}

PushService::~PushService() { Stop(); }

void PushService::AddSender(PushRegistration::Provider provider,
                            std::unique_ptr<PushSender> sender) {
  senders_[provider] = std::move(sender);
}

PushSender* PushService::Sender(PushRegistration::Provider provider) const {
  auto it = senders_.find(provider);
  return it == senders_.end() ? nullptr : it->second.get();
}

Status PushService::Start() {
  // What a crash left in the outbox goes out now.
  auto pending = store_.ListOutbox(1000000);
  if (!pending.ok()) return pending.status();
  for (auto& e : *pending)
    Schedule(e.user_id, std::max(e.first_ms + options_.delay_ms, e.next_try_ms));
  if (!pending->empty())
    spdlog::info("push: {} outbox entries pending from before the restart", pending->size());
  for (unsigned i = 0; i < std::max(1u, options_.threads); ++i)
    threads_.emplace_back([this] { Run(); });
  return Status::Ok();
}

void PushService::Pending(const std::string& user, int64_t commit_ms) {
  Schedule(user, commit_ms + options_.delay_ms);
}

void PushService::Schedule(const std::string& user, int64_t due_ms) {
  {
    std::lock_guard lock(mu_);
    auto it = planned_.find(user);
    if (it != planned_.end() && it->second <= due_ms) return;  // already due earlier
    planned_[user] = due_ms;
    due_.emplace(due_ms, user);
  }
  cv_.notify_one();
}

void PushService::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void PushService::Run() {
  NameThisThread("pg-push");
  HttpClient http(options_.http);
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = due_.begin();
    const int64_t now = NowMs();
    if (first->first > now) {
      cv_.wait_for(lock, std::chrono::milliseconds(first->first - now));
      continue;
    }
    std::string user = first->second;
    int64_t when = first->first;
    due_.erase(first);
    auto plan = planned_.find(user);
    if (plan == planned_.end() || plan->second != when) continue;  // superseded
    if (busy_.count(user)) {
      // Another thread has this user: look again shortly.
      due_.emplace(now + 100, user);
      plan->second = now + 100;
      continue;
    }
    planned_.erase(plan);
    busy_.insert(user);
    lock.unlock();
    int64_t again = 0;
    try {
      again = Process(user, http);
    } catch (const std::exception& e) {
      spdlog::error("push: {}: {}", user, e.what());
      again = NowMs() + options_.backoff_base_ms;
    }
    lock.lock();
    busy_.erase(user);
    if (again > 0) {
      auto it = planned_.find(user);
      if (it == planned_.end() || it->second > again) {
        planned_[user] = again;
        due_.emplace(again, user);
      }
    }
  }
}

int64_t PushService::Process(const std::string& user, HttpClient& http) {
  const int64_t now = NowMs();
  auto box = store_.GetOutbox(user);
  if (!box.ok()) {
    if (box.status().code() == ErrorCode::kNotFound) return 0;
    return now + options_.backoff_base_ms;  // the store is unwell: later
  }
  if (box->next_try_ms > now) return box->next_try_ms;
  auto devices = store_.Devices(user);
  if (!devices.ok()) return now + options_.backoff_base_ms;

  bool retry = false;
  int64_t retry_after = 0, not_before = 0;
  std::optional<StoredMessage> preview;
  for (auto& d : *devices) {
    PushSender* sender = Sender(d.push.provider);
    if (!sender) continue;
    const std::string key = user + '\0' + d.device_id;
    if (d.confirmed >= box->latest_pos) continue;     // it has everything
    if (device_online_(user, d.device_id)) continue;  // it gets it live
    {
      std::lock_guard lock(mu_);
      if (pushed_upto_[key] >= box->latest_pos) continue;  // told already (a retry round)
      if (auto it = last_push_.find(key);
          it != last_push_.end() && now < it->second + options_.min_interval_ms) {
        not_before = std::max(not_before, it->second + options_.min_interval_ms);
        continue;
      }
    }
    Notification n{user, d.device_id, d.push, box->latest_pos, box->count, "", ""};
    if (options_.preview) {
      if (!preview) {
        auto page = store_.ReadFeed(user, box->latest_pos - 1, 1);
        if (page.ok() && !page->entries.empty() && page->entries[0].pos == box->latest_pos &&
            page->entries[0].kind == FeedEntry::Kind::kMessage)
          preview = page->entries[0].message;
      }
      if (preview) {
        n.preview_title = preview->sender;
        n.preview_body = preview->body.substr(0, 200);
      }
    }
    Outcome o = sender->Send(n, http);
    const std::string provider(sender->name());
    switch (o.kind) {
      case Outcome::Kind::kAccepted: {
        metrics_.push_sent(provider).Increment();
        metrics_.push_latency_seconds.Observe(static_cast<double>(NowMs() - box->first_ms) /
                                              1000.0);
        std::lock_guard lock(mu_);
        if (last_push_.size() >= 100000) {
          // Only pushes within the interval matter: forget older ones, so the
          // map holds at most the devices pushed in the last interval.
          const int64_t horizon = NowMs() - options_.min_interval_ms;
          std::erase_if(last_push_, [horizon](const auto& kv) { return kv.second < horizon; });
        }
        last_push_[key] = NowMs();
        pushed_upto_[key] = box->latest_pos;
        break;
      }
      case Outcome::Kind::kInvalidToken:
        metrics_.push_pruned.Increment();
        spdlog::info("push: {} token of {}/{} is dead ({}): removed", provider, user, d.device_id,
                     o.detail);
        (void)pipeline_.Submit(op::SetPush{user, d.device_id, PushRegistration{}},
                               [](OpResult&) {});
        break;
      case Outcome::Kind::kRetry:
        metrics_.push_failed(provider).Increment();
        retry = true;
        retry_after = std::max(retry_after, o.retry_after_ms);
        spdlog::debug("push: {} to {}/{} will be retried: {}", provider, user, d.device_id,
                      o.detail);
        break;
      case Outcome::Kind::kRejected:
        metrics_.push_failed(provider).Increment();
        spdlog::warn("push: {} refused a push to {}/{}: {}", provider, user, d.device_id, o.detail);
        break;
    }
  }
  if (retry && box->attempts + 1 < options_.max_attempts) {
    // Exponential backoff with full jitter, but never sooner than Retry-After.
    static thread_local std::mt19937_64 rng(std::random_device{}());
    int64_t cap = std::min(options_.backoff_max_ms,
                           options_.backoff_base_ms << std::min<uint32_t>(box->attempts, 20));
    int64_t wait = std::max(
        retry_after, cap / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(cap / 2 + 1)));
    int64_t next = NowMs() + wait;
    metrics_.push_retried.Increment();
    (void)pipeline_.Submit(op::RetryOutbox{user, box->attempts + 1, next}, [](OpResult&) {});
    return next;
  }
  if (not_before > 0) return not_before;  // some device waits for its interval
  // Done (or given up): what arrived meanwhile stays in the outbox.
  auto latest = box->latest_pos;
  auto count = box->count;
  (void)pipeline_.Submit(op::CompleteOutbox{user, latest, count}, [](OpResult&) {});
  {
    std::lock_guard lock(mu_);
    for (auto& d : *devices) pushed_upto_.erase(user + '\0' + d.device_id);
  }
  return 0;
}

}  // namespace pigeon::push
