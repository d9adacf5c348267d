// Microbenchmarks of a memtable flush: the store's two memtables (the
// message skiplist and the dedup hash table) filled the way the committer
// fills them, then written to a level-0 table. A flush reads every entry in
// key order, scattered over the arena; at 50,000 msg/s the flushes were about
// 3 us of CPU per message (docs/benchmarks.md, "Eleventh round"). Time per
// iteration is one flush (wall time; the machine is otherwise idle, so about
// its CPU); the filling is not timed.
//
// Run: build/micro_bench --benchmark_filter=Flush
#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "store/rocksdb/hash_rep.h"
#include "store/rocksdb/rocks_store.h"
#include "store/rocksdb/skiplist_rep.h"

namespace pigeon {
namespace {

class FlushDb {
 public:
  explicit FlushDb(rocksdb::Options o) {
    char tmpl[] = "/tmp/pigeon-micro-flush.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    o.create_if_missing = true;
    o.write_buffer_size = 256 << 20;  // nothing flushes but Flush()
    o.disable_auto_compactions = true;
    o.allow_concurrent_memtable_write = false;
    rocksdb::DB* raw = nullptr;
    if (rocksdb::DB::Open(o, dir_ + "/db", &raw).ok()) db_.reset(raw);
  }
  ~FlushDb() {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  rocksdb::DB* get() const { return db_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
};

std::string Fixed64BE(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
  return s;
}

// Fills `db` with `messages` messages' keys as the committer writes them, in
// write batches of 48 keys, and flushes. `dedup`: the dedup keys (sender, a random
// client_msg_id); otherwise a message and its two feed entries, each to a
// random one of 500 conversations.
void FlushMemtable(benchmark::State& state, bool dedup) {
  const int messages = static_cast<int>(state.range(0));
  rocksdb::Options o;
  if (dedup) {
    o.memtable_factory = NewPigeonHashFactory(1 << 18);
    o.prefix_extractor.reset(rocksdb::NewNoopTransform());
  } else {
    o.memtable_factory = NewPigeonSkipListFactory(StoreKeyPrefix());
  }
  FlushDb db(o);
  if (!db.get()) {
    state.SkipWithError("cannot open");
    return;
  }
  std::mt19937_64 rng(7);
  std::vector<uint64_t> seq(500), pos(1000);
  const std::string body(140, 'b');
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  for (auto _ : state) {
    state.PauseTiming();
    rocksdb::WriteBatch batch;
    for (int i = 0; i < messages; ++i) {
      const uint64_t c = rng() % 500;
      const std::string sender = "user-" + std::to_string(2 * c);
      if (dedup) {
        char id[40];
        std::snprintf(id, sizeof id, "%016llx-%016llx", static_cast<unsigned long long>(rng()),
                      static_cast<unsigned long long>(rng()));
        (void)batch.Put("X" + sender + '\0' + id, std::string(27, 'v'));
      } else {
        char conv[33];
        std::snprintf(conv, sizeof conv, "%032llx", static_cast<unsigned long long>(c * 7919));
        (void)batch.Put("M" + std::string(conv) + '\0' + Fixed64BE(++seq[c]), body);
        for (uint64_t u : {2 * c, 2 * c + 1}) {
          (void)batch.Put("Fuser-" + std::to_string(u) + '\0' + Fixed64BE(++pos[u]),
                          std::string(20, 'f'));
        }
      }
      if (batch.Count() >= 48 || i + 1 == messages) {
        (void)db.get()->Write(wo, &batch);
        batch.Clear();
      }
    }
    state.ResumeTiming();
    if (!db.get()->Flush(rocksdb::FlushOptions()).ok()) state.SkipWithError("flush failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * messages);
}

// 160,000 messages fill about the store's 64 MB message memtable; 140,000
// dedup keys its 16 MB dedup memtable.
void BM_FlushMessageMemtable(benchmark::State& state) { FlushMemtable(state, false); }
BENCHMARK(BM_FlushMessageMemtable)
    ->Arg(160000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(5);

void BM_FlushDedupMemtable(benchmark::State& state) { FlushMemtable(state, true); }
BENCHMARK(BM_FlushDedupMemtable)
    ->Arg(140000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(5);

}  // namespace
}  // namespace pigeon
