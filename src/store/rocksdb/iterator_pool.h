// Storage for the memtable iterators RocksDB asks for "in its arena"
// (`GetIterator(Arena*)`): it only runs their destructors, and the Arena class
// is not installed, so such an iterator lives in a slot of its memtable's own
// pool instead, and its destructor hands the slot back.
//
// RocksDB's default point lookup (`MemTableRep::Get`) takes an iterator
// without an arena and never frees it: that one lives in the calling thread's
// own slot (ThreadSlot), rebuilt for each lookup, and must hold nothing that
// would need freeing. Its class's operator delete frees nothing for that slot,
// should any caller delete it.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace pigeon {

template <size_t kSlotBytes>
class IteratorPool {
 public:
  struct alignas(std::max_align_t) Slot {
    unsigned char bytes[kSlotBytes];
  };

  // A free slot for an iterator of at most kSlotBytes; any thread.
  void* Acquire() {
    std::lock_guard lock(mu_);
    if (free_.empty()) {
      slots_.push_back(std::make_unique<Slot>());
      return slots_.back().get();
    }
    void* slot = free_.back();
    free_.pop_back();
    return slot;
  }
  void Release(void* slot) {
    std::lock_guard lock(mu_);
    free_.push_back(slot);
  }

  // The calling thread's slot, shared by every memtable's point lookups: one
  // lookup's iterator is done with before the thread's next lookup begins.
  static void* ThreadSlot() {
    static thread_local Slot slot;
    return &slot;
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<void*> free_;
};

}  // namespace pigeon
