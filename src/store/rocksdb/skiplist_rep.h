// The memtable of the store's default column family: a skiplist, as
// RocksDB's own (one writer, lock-free readers, an insert hint per key
// prefix), without the assertions Debian's build of RocksDB carries.
//
// Debian's librocksdb is built with assertions on. Its skiplist checks the
// order of every new key against its neighbours at every level, with a key
// comparison each, on nodes that are mostly out of cache: 33 comparisons per
// insert where one that follows its prefix's hint needs 2 to 4 (counted with
// uprobes at 10,000 msg/s: 99 per message for 3 inserts), and the comparator
// was the largest user-space item of the committer's profile.
//
// The algorithm is RocksDB's InlineSkipList (memtable/inlineskiplist.h, not
// installed): nodes in the memtable's arena, each key right after its node's
// links, a splice per hint that remembers where its prefix's last insert
// went, and the same validation of that splice before it is trusted. The
// hints are the memtable's own, found by a hash of the key's prefix in a flat
// table (RocksDB's, in a std::unordered_map keyed by a pointer into the
// arena, took three cache misses per insert).
//
// RocksDB allocates an iterator in its own arena when it asks for one with an
// arena (`GetIterator(Arena*)`), and then only runs its destructor. The Arena
// class is not installed, so such an iterator lives in a slot of this
// memtable's own pool instead, and its destructor hands the slot back.
#pragma once

#include <rocksdb/memtablerep.h>
#include <rocksdb/slice_transform.h>

#include <memory>

namespace pigeon {

// `hint_prefix` (may be null): the memtable keeps an insert hint per prefix
// of a user key (hint_prefix->Transform), in a table of its own.
std::shared_ptr<rocksdb::MemTableRepFactory> NewPigeonSkipListFactory(
    std::shared_ptr<const rocksdb::SliceTransform> hint_prefix);

}  // namespace pigeon
