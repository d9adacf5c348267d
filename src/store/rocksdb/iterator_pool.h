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
#include <thread>
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
    FreeParkedLocked();
    if (free_.empty()) {
      slots_.push_back(std::make_unique<Slot>());
      return slots_.back().get();
    }
    void* slot = free_.back();
    free_.pop_back();
    return slot;
  }
  // Called from the destructor of the iterator in `slot`, which is still
  // running: the compiler may write to the object after this returns (GCC's
  // -fsanitize=vptr clears the vtable pointer once every base is destroyed).
  // So the slot is parked until this thread's next call into the pool, which
  // comes after that destructor has returned, and only then can another thread
  // take it. A thread parks at most one slot.
  void Release(void* slot) {
    std::lock_guard lock(mu_);
    FreeParkedLocked();
    parked_.push_back({std::this_thread::get_id(), slot});
  }

  // An iterator in a slot derives from this first: base classes are
  // destroyed last, in reverse order, so this hands the slot back only after
  // the iterator's members and its RocksDB base are gone.
  class Held {
   protected:
    Held(IteratorPool* pool, void* slot) : pool_(pool), slot_(slot) {}
    ~Held() {
      if (slot_) pool_->Release(slot_);
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

   private:
    IteratorPool* pool_;
    void* slot_;  // the pool's slot the iterator lives in, or null (not the pool's)
  };

  // The calling thread's slot, shared by every memtable's point lookups: one
  // lookup's iterator is done with before the thread's next lookup begins.
  static void* ThreadSlot() {
    static thread_local Slot slot;
    return &slot;
  }

 private:
  struct Parked {
    std::thread::id by;
    void* slot;
  };
  // The slot this thread parked earlier is free now: its destructor returned.
  void FreeParkedLocked() {
    const auto self = std::this_thread::get_id();
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      if (it->by != self) continue;
      free_.push_back(it->slot);
      *it = parked_.back();
      parked_.pop_back();
      return;
    }
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<void*> free_;
  std::vector<Parked> parked_;  // released by a destructor that may still run
};

}  // namespace pigeon
