#include "store/rocksdb/hash_rep.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
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

// A RocksDB with its memtable on the pigeon hash table, everything in memory
// until Flush(). The parameter is the number of buckets: 4 makes every chain
// long (many keys share one), 1 << 18 is the store's.
class PigeonHash : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    rocksdb::Options o;
    o.memtable_factory = NewPigeonHashFactory(GetParam());
    test_db_ = std::make_unique<MemtableTestDb>(o);
    ASSERT_TRUE(test_db_->status().ok()) << test_db_->status().ToString();
    db_ = test_db_->get();
  }

  // Every way of reading agrees with the model: in total order (RocksDB's
  // iterators, the flush), and by point lookups.
  void ExpectMatches(const std::map<std::string, std::string>& model) {
    std::mt19937 rng(7);
    std::vector<std::string> probes;
    for (int i = 0; i < 500; ++i) probes.push_back(Key(rng() % 3000) + (i % 3 ? "" : "~"));
    test_db_->ExpectMatches(model, probes);
  }

  // Random, as a client_msg_id often is: no order to follow.
  static std::string Key(unsigned n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "X%08x", n * 2654435761u);
    return buf;
  }

  std::unique_ptr<MemtableTestDb> test_db_;
  rocksdb::DB* db_ = nullptr;
};

TEST_P(PigeonHash, ReadsInOrderAndByKeyBeforeAndAfterAFlush) {
  std::map<std::string, std::string> model;
  std::mt19937 rng(1);
  // New keys, overwrites and deletes of earlier ones, some batched.
  for (int round = 0; round < 60; ++round) {
    rocksdb::WriteBatch batch;
    for (int i = 0; i < 100; ++i) {
      std::string k = Key(rng() % 3000);
      if (rng() % 10 == 0) {
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
  ASSERT_TRUE(db_->Flush({}).ok());  // the flush reads the memtable in order
  ExpectMatches(model);
}

// A key's versions share its chain, newest first: a snapshot reads the one
// it was taken after, and a prefix iterator (the store's family has a
// whole-key prefix) finds a key in its chain.
TEST_P(PigeonHash, SnapshotsReadTheirVersionOfAKey) {
  ASSERT_TRUE(db_->Put({}, "X1", "old").ok());
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  ASSERT_TRUE(db_->Put({}, "X1", "new").ok());
  ASSERT_TRUE(db_->Put({}, "X2", "other").ok());
  std::string v;
  rocksdb::ReadOptions at;
  at.snapshot = snap;
  ASSERT_TRUE(db_->Get(at, "X1", &v).ok());
  EXPECT_EQ(v, "old");
  EXPECT_TRUE(db_->Get(at, "X2", &v).IsNotFound());
  ASSERT_TRUE(db_->Get({}, "X1", &v).ok());
  EXPECT_EQ(v, "new");
  db_->ReleaseSnapshot(snap);
}

// A flush sorts by each key's first 24 bytes in place, then by whole keys:
// keys that are prefixes of others, that end in zero bytes (the padding's
// value), that have bytes over 0x7f, or that share their first 24 bytes
// still come out in the comparator's order.
TEST_P(PigeonHash, SortsKeysThatShareTheirFirstBytesOrEndInZeros) {
  const std::string base = "Xsender-with-a-long-name";  // 24 bytes
  std::vector<std::string> keys = {"",
                                   "a",
                                   std::string("a\0", 2),
                                   std::string("a\0\0", 3),
                                   std::string("a\0b", 3),
                                   "ab",
                                   "\x7f",
                                   "\x80",
                                   "\xff\xff",
                                   std::string("\x80\0\x01", 3),
                                   base,
                                   base + std::string(1, '\0'),
                                   base + "a",
                                   base + "\xfe",
                                   base.substr(0, 23),
                                   base.substr(0, 23) + "\xff",
                                   base.substr(0, 16) + std::string(8, '\0'),
                                   base.substr(0, 16) + std::string(8, '\0') + "z"};
  for (int i = 0; i < 40; ++i) keys.push_back(base + std::string(1, '\0') + Key(i));
  std::map<std::string, std::string> model;
  std::mt19937 rng(5);
  std::shuffle(keys.begin(), keys.end(), rng);
  for (const std::string& k : keys) {
    if (k.empty()) continue;  // not a key RocksDB's users write
    ASSERT_TRUE(db_->Put({}, k, "v" + std::to_string(model.size())).ok());
    model[k] = "v" + std::to_string(model.size());
  }
  test_db_->ExpectMatches(model, keys);
  ASSERT_TRUE(db_->Flush({}).ok());
  test_db_->ExpectMatches(model, keys);
}

TEST_P(PigeonHash, ReadersRunWhileTheWriterInserts) {
  std::atomic<bool> done{false};
  std::atomic<unsigned> written{0};
  std::atomic<long> reads{0};
  std::atomic<int> readers{2};  // a reader that fails stops the writer too
  auto read = [&] {
    std::mt19937 rng(3);
    while (!done.load()) {
      // Everything written before the lookup began is found.
      const unsigned n = written.load();
      if (n == 0) continue;
      std::string v;
      ASSERT_TRUE(db_->Get({}, Key(rng() % n), &v).ok());
      if (++reads % 64 == 0) {
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
        std::string last;
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
          ASSERT_LT(last, it->key().ToString());
          last = it->key().ToString();
        }
      }
    }
  };
  auto reader = [&] {
    read();
    --readers;
  };
  std::thread r1(reader), r2(reader);
  for (unsigned i = 0; (i < 20000 || reads.load() < 1000) && readers.load() == 2; ++i) {
    ASSERT_TRUE(db_->Put({}, Key(i), "v").ok());
    written.store(i + 1);
  }
  done = true;
  r1.join();
  r2.join();
}

INSTANTIATE_TEST_SUITE_P(Buckets, PigeonHash, ::testing::Values(size_t{4}, size_t{1} << 18),
                         [](const auto& p) { return "Of" + std::to_string(p.param); });

}  // namespace
}  // namespace pigeon
