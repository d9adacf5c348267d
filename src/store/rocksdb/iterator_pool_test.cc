#include "store/rocksdb/iterator_pool.h"

#include <gtest/gtest.h>

#include <thread>

namespace pigeon {
namespace {

using Pool = IteratorPool<64>;

void* AcquireOnAnotherThread(Pool& pool) {
  void* slot = nullptr;
  std::thread([&] { slot = pool.Acquire(); }).join();
  return slot;
}

// A slot is released from its iterator's destructor, which may still write to
// the object afterwards (GCC's -fsanitize=vptr clears its vtable pointer). No
// other thread may build an iterator there until that destructor returned.
TEST(IteratorPool, ASlotGoesToAnotherThreadOnlyOnceItsReleasingThreadCallsAgain) {
  Pool pool;
  void* a = pool.Acquire();
  pool.Release(a);
  void* b = AcquireOnAnotherThread(pool);
  EXPECT_NE(b, a) << "another thread got a slot whose destructor may still run";
  // This thread's next call: its destructor returned, the slot is free again.
  void* c = pool.Acquire();
  EXPECT_EQ(c, a);
}

TEST(IteratorPool, AThreadParksOneSlotAtATime) {
  Pool pool;
  void* a = pool.Acquire();
  void* b = pool.Acquire();
  pool.Release(a);
  pool.Release(b);  // frees a, parks b
  EXPECT_EQ(AcquireOnAnotherThread(pool), a);
  void* c = AcquireOnAnotherThread(pool);
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
}

}  // namespace
}  // namespace pigeon
