// WakeBatch: while one is open on a thread, the wake-ups that thread would send
// to other threads' event loops are held and sent once, when it closes.
//
// The committer opens one around the callbacks of a commit batch: a batch that
// acks and delivers to hundreds of sockets then wakes each network thread once,
// instead of once per callback (every wake-up of an idle loop is a syscall and
// a context switch on both sides).
#pragma once

#include <vector>

namespace pigeon {

class Wakeable {
 public:
  virtual void Wake() = 0;

 protected:
  ~Wakeable() = default;
};

class WakeBatch {
 public:
  WakeBatch();
  ~WakeBatch();  // wakes everything deferred, in order
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;

  // True if a batch is open on this thread: `w` will be woken when it closes.
  // The caller deduplicates (each target defers itself at most once per batch).
  static bool Defer(Wakeable* w);

 private:
  WakeBatch* outer_;
  std::vector<Wakeable*> pending_;
};

}  // namespace pigeon
