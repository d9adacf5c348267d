#include "core/wake_batch.h"

namespace pigeon {
namespace {
thread_local WakeBatch* current = nullptr;
}  // namespace

WakeBatch::WakeBatch() : outer_(current) { current = this; }

WakeBatch::~WakeBatch() {
  current = outer_;
  for (auto* w : pending_) {
    if (run_here_) {
      w->WakeFromBatch();
    } else {
      w->Wake();
    }
  }
}

bool WakeBatch::Defer(Wakeable* w) {
  if (!current) return false;
  current->pending_.push_back(w);
  return true;
}

}  // namespace pigeon
