// What the store's tests do again and again: commit ops, one batch at a time,
// at increasing time stamps, expecting each batch's write to succeed.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "store/message_store.h"

namespace pigeon {

// Commits `ops` as one batch stamped ++now; one result per op.
inline std::vector<OpResult> CommitOps(MessageStore& store, int64_t& now,
                                       std::vector<WriteOp> ops) {
  std::vector<OpResult> results;
  Status s = store.Commit(ops, ++now, &results);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(results.size(), ops.size());
  return results;
}

inline OpResult CommitOne(MessageStore& store, int64_t& now, WriteOp op) {
  std::vector<WriteOp> ops;
  ops.push_back(std::move(op));
  return CommitOps(store, now, std::move(ops))[0];
}

// The direct conversation of `a` and `b`, creating either user if need be.
inline std::string OpenConversation(MessageStore& store, int64_t& now, const std::string& a,
                                    const std::string& b) {
  for (auto& u : {a, b}) (void)CommitOne(store, now, op::CreateUser{u, "hash"});
  auto r = CommitOne(store, now, op::OpenDirectConversation{a, b});
  EXPECT_TRUE(r.status.ok()) << r.status.message();
  return r.status.ok() ? std::get<Conversation>(r.value).id : std::string();
}

// What a retention sweep does (chat/retention.h): every slice of what was
// committed before `before_ms`, each committed as read; the feed entries and
// messages it removed.
struct Swept {
  uint64_t feed_entries = 0;
  uint64_t messages = 0;
  size_t slices = 0;
};
inline Swept SweepExpired(MessageStore& store, int64_t& now, int64_t before_ms, size_t max_keys) {
  Swept swept;
  std::string resume;
  for (;;) {
    auto slice = store.FindExpired(before_ms, resume, max_keys);
    EXPECT_TRUE(slice.ok()) << slice.status().message();
    if (!slice.ok()) return swept;
    EXPECT_LE(slice->expire.keys.size(), max_keys + 1);  // a message and its dedup key: one over
    if (!slice->expire.keys.empty()) {
      auto r = CommitOne(store, now, std::move(slice->expire));
      EXPECT_TRUE(r.status.ok()) << r.status.message();
      ++swept.slices;
    }
    swept.feed_entries += slice->feed_entries;
    swept.messages += slice->messages;
    if (slice->done) return swept;
    resume = slice->resume;
  }
}

}  // namespace pigeon
