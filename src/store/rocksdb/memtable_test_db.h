// For the memtable tests: a RocksDB in a temporary directory, everything in
// its memtable until Flush(), and a check that every way of reading it agrees
// with a model.
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pigeon {

class MemtableTestDb {
 public:
  // `o` names the memtable; the rest is set here. One writer, as RocksStore.
  explicit MemtableTestDb(rocksdb::Options o) {
    char tmpl[] = "/tmp/pigeon-memtable-test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    o.create_if_missing = true;
    o.write_buffer_size = 256 << 20;
    o.allow_concurrent_memtable_write = false;
    rocksdb::DB* raw = nullptr;
    status_ = rocksdb::DB::Open(o, dir_ + "/db", &raw);
    db_.reset(raw);
  }
  ~MemtableTestDb() {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  const rocksdb::Status& status() const { return status_; }
  rocksdb::DB* get() const { return db_.get(); }
  rocksdb::DB* operator->() const { return db_.get(); }

  // Scans forward and backward, then Seek, SeekForPrev and Get each probe.
  void ExpectMatches(const std::map<std::string, std::string>& model,
                     const std::vector<std::string>& probes) {
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
    for (const std::string& probe : probes) {
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

 private:
  std::string dir_;
  rocksdb::Status status_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace pigeon
