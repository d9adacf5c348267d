// Microbenchmarks of the commit path: RocksStore::Commit with batches of N
// messages, with the WAL fsync'd (as pigeond runs). Per-message time = time
// per iteration / N. Run: build/micro_bench --benchmark_filter=Commit
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/ids.h"
#include "store/rocksdb/rocks_store.h"

namespace pigeon {
namespace {

class Fixture {
 public:
  explicit Fixture(int users) {
    char tmpl[] = "/tmp/pigeon-micro.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    store_ = std::move(*RocksStore::Open({.path = dir_}));
    std::vector<WriteOp> ops;
    for (int i = 0; i < users; ++i) ops.push_back(op::CreateUser{"u" + std::to_string(i), "h"});
    std::vector<OpResult> r;
    (void)store_->Commit(ops, 1, &r);
    ops.clear();
    for (int i = 0; i + 1 < users; i += 2)
      ops.push_back(
          op::OpenDirectConversation{"u" + std::to_string(i), "u" + std::to_string(i + 1)});
    (void)store_->Commit(ops, 1, &r);
    for (auto& x : r) convs_.push_back(std::get<Conversation>(x.value).id);
  }
  ~Fixture() {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  RocksStore& store() { return *store_; }
  const std::vector<std::string>& convs() const { return convs_; }

 private:
  std::string dir_;
  std::unique_ptr<RocksStore> store_;
  std::vector<std::string> convs_;
};

// Batches of messages, round-robin over the conversations. `random_ids`: each
// client_msg_id is 16 random hex digits, as many apps make them, so its dedup
// key lands at a random place among its sender's; otherwise a counter.
// `pause_us`: the thread sleeps that long after each commit (not timed).
void CommitMessages(benchmark::State& state, bool random_ids, unsigned pause_us = 0) {
  const size_t batch = static_cast<size_t>(state.range(0));
  Fixture f(1000);
  std::vector<OpResult> results;
  uint64_t n = 0;
  std::mt19937_64 rng(42);
  const std::string body(100, 'x');
  for (auto _ : state) {
    std::vector<WriteOp> ops;
    ops.reserve(batch);
    for (size_t i = 0; i < batch; ++i, ++n) {
      auto& conv = f.convs()[n % f.convs().size()];
      char id[17];
      if (random_ids)
        std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(rng()));
      ops.push_back(op::AppendMessage{"u" + std::to_string((n % f.convs().size()) * 2), conv,
                                      random_ids ? std::string(id) : "k" + std::to_string(n),
                                      body});
    }
    auto s = f.store().Commit(ops, NowMs(), &results);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
    if (pause_us) {
      state.PauseTiming();
      ::usleep(pause_us);
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}

void BM_CommitMessages(benchmark::State& state) { CommitMessages(state, false); }
// Each Commit is one fsync'd WAL write.
BENCHMARK(BM_CommitMessages)->Arg(1)->Arg(16)->Arg(256)->Arg(4096)->UseRealTime();

void BM_CommitMessagesRandomIds(benchmark::State& state) { CommitMessages(state, true); }
BENCHMARK(BM_CommitMessagesRandomIds)->Arg(256)->Arg(4096)->UseRealTime();

// Fixed amounts of work (1,000 and 2,000 commits of 16 messages), for counting
// rather than timing: bench/count-commit.sh runs both under callgrind and
// divides the difference of their counts by the 16,000 messages between them
// (the fixture's set-up cancels out). Instruction and simulated cache-miss
// counts do not move with the host, so a change below the timed benchmarks'
// noise can still be measured before and after.
BENCHMARK(BM_CommitMessages)->Name("BM_CommitMessagesCounted")->Arg(16)->Iterations(1000);
BENCHMARK(BM_CommitMessages)->Name("BM_CommitMessagesCounted")->Arg(16)->Iterations(2000);

// As pigeond's committer at 5,000/s: a commit of 16 messages every 2 ms, the
// thread asleep in between. Its CPU time per commit is about 2.3 times a
// back-to-back one's on the machine we measure on (benchmarks.md, fifteenth
// round): the store's data and code are out of the caches after each sleep.
void BM_CommitMessagesEvery2ms(benchmark::State& state) { CommitMessages(state, false, 2000); }
BENCHMARK(BM_CommitMessagesEvery2ms)->Arg(16);

// Retention: slices of N keys found (FindExpired) and committed (op::Expire,
// one fsync'd WAL write each), as pigeond's retention thread does. 1,000
// users, 200,000 expired messages (800,000 keys: the message, its dedup key
// and two feed entries) written first
// and again whenever a sweep has taken them all (not timed). Per key: time per
// iteration / N. `commit_ms`: the commit's share of a slice, the time the
// messages that share its batch wait for it.
void BM_ExpireSlices(benchmark::State& state) {
  const size_t keys = static_cast<size_t>(state.range(0));
  Fixture f(1000);
  std::vector<OpResult> results;
  const std::string body(100, 'x');
  uint64_t n = 0;
  auto refill = [&] {
    for (int b = 0; b < 200; ++b) {
      std::vector<WriteOp> ops;
      for (int i = 0; i < 1000; ++i, ++n)
        ops.push_back(op::AppendMessage{"u" + std::to_string((n % f.convs().size()) * 2),
                                        f.convs()[n % f.convs().size()], "k" + std::to_string(n),
                                        body});
      (void)f.store().Commit(ops, 1000, &results);
    }
  };
  std::string resume;
  double commit_s = 0;
  uint64_t removed = 0;
  refill();
  for (auto _ : state) {
    auto slice = f.store().FindExpired(2000, resume, keys);
    if (!slice.ok()) state.SkipWithError(slice.status().message().c_str());
    removed += slice->expire.keys.size();
    std::vector<WriteOp> ops;
    ops.push_back(std::move(slice->expire));
    auto start = std::chrono::steady_clock::now();
    auto s = f.store().Commit(ops, NowMs(), &results);
    commit_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!s.ok()) state.SkipWithError(s.message().c_str());
    resume = slice->resume;
    if (slice->done) {
      state.PauseTiming();
      resume.clear();
      refill();
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(removed));
  state.counters["commit_ms"] = commit_s * 1000 / static_cast<double>(state.iterations());
}
BENCHMARK(BM_ExpireSlices)->Arg(512)->UseRealTime();  // Retention::Options::keys_per_commit

// A user's conversation list (GET /api/v1/conversations) with 999 conversations,
// one message in each: a record, a last-message seek and a marks lookup each.
void BM_ListConversations(benchmark::State& state) {
  Fixture f(1000);
  std::vector<WriteOp> ops;
  for (int i = 1; i < 1000; ++i)
    ops.push_back(op::OpenDirectConversation{"u0", "u" + std::to_string(i)});
  std::vector<OpResult> r;
  (void)f.store().Commit(ops, 1, &r);
  ops.clear();
  for (auto& x : r)
    ops.push_back(op::AppendMessage{"u0", std::get<Conversation>(x.value).id, "m", "hello"});
  (void)f.store().Commit(ops, 2, &r);
  for (auto _ : state) {
    auto list = f.store().ListConversations("u0");
    if (!list.ok() || list->size() != 999) state.SkipWithError("wrong list");
    benchmark::DoNotOptimize(list);
  }
}
BENCHMARK(BM_ListConversations)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pigeon

BENCHMARK_MAIN();
