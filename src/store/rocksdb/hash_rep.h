// The memtable of the store's dedup column family: a hash table of short
// sorted chains (one writer, lock-free readers), sorted whole only when RocksDB
// iterates it in order, that is when it is flushed.
//
// Dedup keys are only ever looked up whole, never scanned, and a
// client_msg_id is often random, so a skiplist searched the whole memtable for
// each insert. RocksDB's HashLinkList (the family's memtable before) has the
// same chains, but in Debian's build (assertions on) every insert first checks
// that its key is new, and a flush iterates it by inserting every entry into a
// new skiplist of RocksDB's, which checks each insert against its neighbours
// at every level: about 0.4 s of CPU per 16 MiB memtable at 50,000 msg/s,
// and at that rate the flushes fell behind and RocksDB stopped the writes
// ("2 immutable memtables, waiting for flush"). Here a flush collects the
// entries and sorts them once.
//
// An iterator that RocksDB asks for in its arena lives in the memtable's own
// pool (iterator_pool.h). A prefix iterator (GetDynamicPrefixIterator, which
// RocksDB's point lookup uses) walks the chain of the key it seeks and no
// further: as in RocksDB's hash memtables, it does not iterate in total order.
#pragma once

#include <rocksdb/memtablerep.h>

#include <cstddef>
#include <memory>

namespace pigeon {

// `buckets` is rounded up to a power of two; the bucket array (8 bytes a
// bucket) is allocated in each memtable's arena.
std::shared_ptr<rocksdb::MemTableRepFactory> NewPigeonHashFactory(size_t buckets);

}  // namespace pigeon
