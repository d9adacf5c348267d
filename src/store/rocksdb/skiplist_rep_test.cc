#include "store/rocksdb/skiplist_rep.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

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
    char tmpl[] = "/tmp/pigeon-skiplist-test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    rocksdb::Options o;
    o.create_if_missing = true;
    o.write_buffer_size = 256 << 20;
    if (GetParam()) {
      o.memtable_factory = NewPigeonSkipListFactory(std::make_shared<UpToColon>());
    } else {
      o.memtable_factory = NewPigeonSkipListFactory(nullptr);
      o.memtable_insert_with_hint_prefix_extractor = std::make_shared<UpToColon>();
    }
    o.allow_concurrent_memtable_write = false;  // one writer, as RocksStore
    rocksdb::DB* raw = nullptr;
    auto s = rocksdb::DB::Open(o, dir_ + "/db", &raw);
    ASSERT_TRUE(s.ok()) << s.ToString();
    db_.reset(raw);
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Every way of reading agrees with the model.
  void ExpectMatches(const std::map<std::string, std::string>& model) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
    auto m = model.begin();
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++m) {
      ASSERT_NE(m, model.end());
      ASSERT_EQ(it->key().ToString(), m->first);
      ASSERT_EQ(it->value().ToString(), m->second);
    }
    EXPECT_EQ(m, model.end());
    auto r = model.rbegin();
    for (it->SeekToLast(); it->Valid(); it->Prev(), ++r) {
      ASSERT_NE(r, model.rend());
      ASSERT_EQ(it->key().ToString(), r->first);
    }
    EXPECT_EQ(r, model.rend());
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {
      std::string probe = Key(rng() % 40, rng() % 400) + (i % 3 ? "" : "~");
      auto lb = model.lower_bound(probe);
      it->Seek(probe);
      ASSERT_EQ(it->Valid(), lb != model.end()) << probe;
      if (it->Valid()) {
        EXPECT_EQ(it->key().ToString(), lb->first);
      }
      it->SeekForPrev(probe);
      auto ub = model.upper_bound(probe);
      ASSERT_EQ(it->Valid(), ub != model.begin()) << probe;
      if (it->Valid()) {
        EXPECT_EQ(it->key().ToString(), std::prev(ub)->first);
      }
      std::string v;
      auto s = db_->Get({}, probe, &v);
      EXPECT_EQ(s.ok(), model.count(probe) == 1) << probe;
      if (s.ok()) {
        EXPECT_EQ(v, model.at(probe));
      }
    }
  }

  static std::string Key(unsigned prefix, unsigned n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "p%03u:%06u", prefix, n);
    return buf;
  }

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
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
