#include "store/rocksdb/skiplist_rep.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/rocksdb/memtable_test_db.h"

namespace pigeon {
namespace {

// A RocksDB with its memtable on the pigeon skiplist, everything in memory
// until Flush(), an insert hint per key prefix (up to the first ':'): the
// memtable's own hints (true, as the store has them) or RocksDB's (false).
class PigeonSkipList : public ::testing::TestWithParam<bool> {
 protected:
  struct UpToColon : rocksdb::SliceTransform {
    const char* Name() const override { return "test.UpToColon"; }
    rocksdb::Slice Transform(const rocksdb::Slice& k) const override {
      auto* colon = static_cast<const char*>(std::memchr(k.data(), ':', k.size()));
      return colon ? rocksdb::Slice(k.data(), static_cast<size_t>(colon - k.data()) + 1) : k;
    }
    bool InDomain(const rocksdb::Slice&) const override { return true; }
  };

  void SetUp() override {
    rocksdb::Options o;
    if (GetParam()) {
      o.memtable_factory = NewPigeonSkipListFactory(std::make_shared<UpToColon>());
    } else {
      o.memtable_factory = NewPigeonSkipListFactory(nullptr);
      o.memtable_insert_with_hint_prefix_extractor = std::make_shared<UpToColon>();
    }
    test_db_ = std::make_unique<MemtableTestDb>(o);
    ASSERT_TRUE(test_db_->status().ok()) << test_db_->status().ToString();
    db_ = test_db_->get();
  }

  // Every way of reading agrees with the model.
  void ExpectMatches(const std::map<std::string, std::string>& model) {
    std::mt19937 rng(7);
    std::vector<std::string> probes;
    for (int i = 0; i < 300; ++i)
      probes.push_back(Key(rng() % 40, rng() % 400) + (i % 3 ? "" : "~"));
    test_db_->ExpectMatches(model, probes);
  }

  static std::string Key(unsigned prefix, unsigned n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "p%03u:%06u", prefix, n);
    return buf;
  }

  std::unique_ptr<MemtableTestDb> test_db_;
  rocksdb::DB* db_ = nullptr;
};

TEST_P(PigeonSkipList, KeepsKeysInOrderForEveryReadAndAfterAFlush) {
  std::map<std::string, std::string> model;
  std::mt19937 rng(1);
  // Appends per prefix (what the hints are for), interleaved across prefixes,
  // plus keys that land anywhere, overwrites and deletes, some batched.
  unsigned next[40] = {};
  for (int round = 0; round < 60; ++round) {
    rocksdb::WriteBatch batch;
    for (int i = 0; i < 100; ++i) {
      unsigned p = rng() % 40;
      std::string k = rng() % 4 ? Key(p, next[p]++ * 2) : Key(p, rng() % 400);
      if (rng() % 10 == 0 && !model.empty()) {
        k = model.begin()->first;
        ASSERT_TRUE(batch.Delete(k).ok());
        model.erase(k);
        continue;
      }
      std::string v = std::to_string(round * 1000 + i);
      ASSERT_TRUE(batch.Put(k, v).ok());
      model[k] = v;
    }
    ASSERT_TRUE(db_->Write({}, &batch).ok());
  }
  ExpectMatches(model);
  ASSERT_TRUE(db_->Flush({}).ok());  // the flush reads the memtable in order too
  ExpectMatches(model);
}

TEST_P(PigeonSkipList, ReadersRunWhileTheWriterInserts) {
  std::atomic<bool> done{false};
  std::atomic<long> scans{0};
  std::atomic<int> readers{2};  // a reader that fails stops the writer too
  auto scan = [&] {
    while (!done.load()) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
      std::string last;
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        ASSERT_LT(last, it->key().ToString());
        last = it->key().ToString();
      }
      for (it->SeekToLast(); it->Valid(); it->Prev()) {
        ASSERT_GE(last, it->key().ToString());
        last = it->key().ToString();
      }
      ++scans;
    }
  };
  auto reader = [&] {
    scan();
    --readers;
  };
  std::thread r1(reader), r2(reader);
  std::mt19937 rng(2);
  unsigned next[40] = {};
  for (int i = 0; (i < 20000 || scans.load() < 4) && readers.load() == 2; ++i) {
    unsigned p = rng() % 40;
    ASSERT_TRUE(db_->Put({}, Key(p, next[p]++), "v").ok());
  }
  done = true;
  r1.join();
  r2.join();
}

INSTANTIATE_TEST_SUITE_P(Hints, PigeonSkipList, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "Own" : "RocksDBs"; });

}  // namespace
}  // namespace pigeon
