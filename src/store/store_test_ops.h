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

}  // namespace pigeon
