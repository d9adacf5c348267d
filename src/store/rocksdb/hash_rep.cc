#include "store/rocksdb/hash_rep.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include "core/string_hash.h"
#include "store/rocksdb/iterator_pool.h"

namespace pigeon {
namespace {

using rocksdb::KeyHandle;
using rocksdb::Slice;

// Bytes of user key a flush's sort compares in place (Sorted()).
constexpr size_t kSortPrefix = 24;
// How far ahead of a flush's reads entries are fetched into the cache.
constexpr size_t kLookAhead = 4;

// An entry's key and value, about 100 bytes: its first two cache lines.
void PrefetchEntry(const char* entry) {
  __builtin_prefetch(entry);
  __builtin_prefetch(entry + 64);
}

// A chain's node: its link, then its entry (RocksDB's encoded key and value).
struct Node {
  std::atomic<Node*> next{nullptr};
  const char* Key() const { return reinterpret_cast<const char*>(this + 1); }
  char* Key() { return reinterpret_cast<char*>(this + 1); }
};

class HashRep final : public rocksdb::MemTableRep {
 public:
  HashRep(const KeyComparator& compare, rocksdb::Allocator* allocator, size_t buckets)
      : MemTableRep(allocator), compare_(compare), mask_(std::bit_ceil(buckets) - 1) {
    buckets_ = static_cast<std::atomic<Node*>*>(
        AlignedInArena(sizeof(std::atomic<Node*>) * (mask_ + 1), alignof(std::atomic<Node*>)));
    for (size_t i = 0; i <= mask_; ++i) ::new (&buckets_[i]) std::atomic<Node*>(nullptr);
  }

  KeyHandle Allocate(const size_t len, char** buf) override {
    Node* x = ::new (AlignedInArena(sizeof(Node) + len, alignof(Node))) Node;
    *buf = x->Key();
    return x;
  }

  // The writer's only: readers see the node once its predecessor's link,
  // stored last with release, points to it.
  void Insert(KeyHandle handle) override {
    auto* x = static_cast<Node*>(handle);
    const Slice key = compare_.decode_key(x->Key());
    std::atomic<Node*>* link = &Bucket(key);
    Node* next = link->load(std::memory_order_relaxed);
    while (next != nullptr && compare_(next->Key(), key) < 0) {
      link = &next->next;
      next = link->load(std::memory_order_relaxed);
    }
    x->next.store(next, std::memory_order_relaxed);
    link->store(x, std::memory_order_release);
    entries_.fetch_add(1, std::memory_order_relaxed);
  }

  bool Contains(const char* key) const override {
    const Slice k = compare_.decode_key(key);
    Node* x = FindGreaterOrEqual(k);
    return x != nullptr && compare_(x->Key(), k) == 0;
  }

  size_t ApproximateMemoryUsage() override { return 0; }  // all in the arena

  Iterator* GetIterator(rocksdb::Arena* arena) override;
  Iterator* GetDynamicPrefixIterator(rocksdb::Arena* arena) override;

 private:
  class SortedIter;
  class ChainIter;
  using Pool = IteratorPool<64>;

  // `len` bytes of the arena at an `align`ed address. Its unaligned
  // allocations are packed: ask for room to align.
  void* AlignedInArena(size_t len, size_t align) {
    char* raw = nullptr;
    (void)MemTableRep::Allocate(len + align - 1, &raw);
    const size_t skew = reinterpret_cast<uintptr_t>(raw) % align;
    return raw + (skew ? align - skew : 0);
  }
  // The chain of an internal key's user key (the key without its 8-byte
  // sequence and type).
  std::atomic<Node*>& Bucket(const Slice& internal_key) const {
    const std::string_view user(internal_key.data(), internal_key.size() - 8);
    return buckets_[HashString(user) & mask_];
  }
  // The first node of `key`'s chain at or after it, or null.
  Node* FindGreaterOrEqual(const Slice& key) const {
    Node* x = Bucket(key).load(std::memory_order_acquire);
    while (x != nullptr && compare_(x->Key(), key) < 0) x = x->next.load(std::memory_order_acquire);
    return x;
  }
  // Every entry, in order. Sorting the pointers alone compared keys in the
  // arena, a cache miss on each side of most of the n log n comparisons: at
  // a flush, most of the memtable's CPU. Each entry's first kSortPrefix bytes
  // of user key (zero-padded) sort it first; whole keys are only compared
  // where those are equal. A shorter key's padding orders it before any
  // longer key it is a prefix of, so the two orders agree.
  std::vector<const char*> Sorted() const {
    struct Entry {
      uint64_t prefix[kSortPrefix / 8];
      const char* key;
    };
    std::vector<Entry> entries;
    entries.reserve(entries_.load(std::memory_order_relaxed));
    for (size_t i = 0; i <= mask_; ++i) {
      if (i + kLookAhead <= mask_) {
        __builtin_prefetch(buckets_[i + kLookAhead].load(std::memory_order_relaxed));
      }
      for (Node* x = buckets_[i].load(std::memory_order_acquire); x != nullptr;
           x = x->next.load(std::memory_order_acquire)) {
        Entry& e = entries.emplace_back();
        e.key = x->Key();
        const Slice internal = compare_.decode_key(e.key);
        char bytes[kSortPrefix] = {};
        std::memcpy(bytes, internal.data(), std::min(internal.size() - 8, kSortPrefix));
        for (size_t w = 0; w < kSortPrefix / 8; ++w) {
          uint64_t v;
          std::memcpy(&v, bytes + 8 * w, 8);
          e.prefix[w] = BigEndian(v);
        }
      }
    }
    std::sort(entries.begin(), entries.end(), [this](const Entry& a, const Entry& b) {
      for (size_t w = 0; w < kSortPrefix / 8; ++w) {
        if (a.prefix[w] != b.prefix[w]) return a.prefix[w] < b.prefix[w];
      }
      return compare_(a.key, b.key) < 0;
    });
    std::vector<const char*> keys;
    keys.reserve(entries.size());
    for (const Entry& e : entries) keys.push_back(e.key);
    return keys;
  }
  static uint64_t BigEndian(uint64_t v) {
    return std::endian::native == std::endian::big ? v : __builtin_bswap64(v);
  }

  const KeyComparator& compare_;
  const size_t mask_;
  std::atomic<Node*>* buckets_;
  std::atomic<size_t> entries_{0};
  Pool pool_;  // iterators RocksDB meant for its arena
};

Slice SeekTarget(const Slice& internal_key, const char* memtable_key) {
  return memtable_key ? rocksdb::GetLengthPrefixedSlice(memtable_key) : internal_key;
}

// Every entry in order: a sorted copy of the pointers, taken when created.
class HashRep::SortedIter final : private Pool::Held, public rocksdb::MemTableRep::Iterator {
 public:
  SortedIter(HashRep* rep, void* slot) : Held(&rep->pool_, slot), rep_(rep), keys_(rep->Sorted()) {}

  bool Valid() const override { return at_ < keys_.size(); }
  const char* key() const override { return keys_[at_]; }
  // A flush reads every entry in order: the arena's, scattered. The entry
  // kLookAhead places on is fetched while this one is written out.
  void Next() override {
    ++at_;
    if (at_ + kLookAhead < keys_.size()) PrefetchEntry(keys_[at_ + kLookAhead]);
  }
  void Prev() override { at_ = at_ == 0 ? keys_.size() : at_ - 1; }
  void Seek(const Slice& internal_key, const char* memtable_key) override {
    const Slice target = SeekTarget(internal_key, memtable_key);
    at_ = static_cast<size_t>(
        std::partition_point(keys_.begin(), keys_.end(),
                             [&](const char* k) { return rep_->compare_(k, target) < 0; }) -
        keys_.begin());
  }
  void SeekForPrev(const Slice& internal_key, const char* memtable_key) override {
    const Slice target = SeekTarget(internal_key, memtable_key);
    const size_t after = static_cast<size_t>(
        std::partition_point(keys_.begin(), keys_.end(),
                             [&](const char* k) { return rep_->compare_(k, target) <= 0; }) -
        keys_.begin());
    at_ = after == 0 ? keys_.size() : after - 1;
  }
  void SeekToFirst() override {
    at_ = 0;
    for (size_t i = 0; i < kLookAhead && i < keys_.size(); ++i) PrefetchEntry(keys_[i]);
  }
  void SeekToLast() override { at_ = keys_.empty() ? 0 : keys_.size() - 1; }

 private:
  HashRep* rep_;
  std::vector<const char*> keys_;
  size_t at_ = 0;
};

// The chain of the key it seeks, from that key on; nothing in total order.
class HashRep::ChainIter final : private Pool::Held, public rocksdb::MemTableRep::Iterator {
 public:
  ChainIter(HashRep* rep, void* slot) : Held(&rep->pool_, slot), rep_(rep) {}
  // RocksDB's point lookup takes this iterator without an arena and never
  // frees it: it lives in the thread's slot (iterator_pool.h).
  static void operator delete(void* p) {
    if (p != Pool::ThreadSlot()) ::operator delete(p);
  }

  bool Valid() const override { return node_ != nullptr; }
  const char* key() const override { return node_->Key(); }
  void Next() override { node_ = node_->next.load(std::memory_order_acquire); }
  void Seek(const Slice& internal_key, const char* memtable_key) override {
    node_ = rep_->FindGreaterOrEqual(SeekTarget(internal_key, memtable_key));
  }
  // As RocksDB's hash memtables: a prefix iterator has no order to go back
  // in or start from.
  void Prev() override { node_ = nullptr; }
  void SeekForPrev(const Slice&, const char*) override { node_ = nullptr; }
  void SeekToFirst() override { node_ = nullptr; }
  void SeekToLast() override { node_ = nullptr; }

 private:
  HashRep* rep_;
  Node* node_ = nullptr;
};

rocksdb::MemTableRep::Iterator* HashRep::GetIterator(rocksdb::Arena* arena) {
  static_assert(sizeof(SortedIter) <= sizeof(Pool::Slot) &&
                alignof(SortedIter) <= alignof(Pool::Slot));
  if (!arena) return new SortedIter(this, nullptr);
  void* slot = pool_.Acquire();
  return ::new (slot) SortedIter(this, slot);
}

rocksdb::MemTableRep::Iterator* HashRep::GetDynamicPrefixIterator(rocksdb::Arena* arena) {
  static_assert(sizeof(ChainIter) <= sizeof(Pool::Slot) &&
                alignof(ChainIter) <= alignof(Pool::Slot));
  if (!arena) return ::new (Pool::ThreadSlot()) ChainIter(this, nullptr);
  void* slot = pool_.Acquire();
  return ::new (slot) ChainIter(this, slot);
}

class Factory final : public rocksdb::MemTableRepFactory {
 public:
  explicit Factory(size_t buckets) : buckets_(buckets) {}
  const char* Name() const override { return "PigeonHashFactory"; }
  rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& compare,
                                          rocksdb::Allocator* allocator,
                                          const rocksdb::SliceTransform*,
                                          rocksdb::Logger*) override {
    return new HashRep(compare, allocator, buckets_);
  }

 private:
  size_t buckets_;
};

}  // namespace

std::shared_ptr<rocksdb::MemTableRepFactory> NewPigeonHashFactory(size_t buckets) {
  return std::make_shared<Factory>(buckets);
}

}  // namespace pigeon
