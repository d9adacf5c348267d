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
  // What a closing WakeBatch that may run the work here (RunHere) calls: a
  // target may do the work on the caller's thread instead of waking its own
  // (EventLoop's borrowed turns).
  virtual void WakeFromBatch() { Wake(); }

 protected:
  ~Wakeable() = default;
};

class WakeBatch {
 public:
  WakeBatch();
  ~WakeBatch();  // wakes everything deferred, in order
  // At the close, let each target do the work here instead of waking its
  // thread (Wakeable::WakeFromBatch): for a caller with nothing more urgent to
  // do than that work.
  void RunHere() { run_here_ = true; }
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;

  // True if a batch is open on this thread: `w` will be woken when it closes.
  // The caller deduplicates (each target defers itself at most once per batch).
  static bool Defer(Wakeable* w);

 private:
  WakeBatch* outer_;
  bool run_here_ = false;
  std::vector<Wakeable*> pending_;
};

}  // namespace pigeon
