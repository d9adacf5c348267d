#include "store/rocksdb/skiplist_rep.h"

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "core/string_hash.h"
#include "store/rocksdb/iterator_pool.h"

namespace pigeon {
namespace {

using rocksdb::KeyHandle;
using rocksdb::Slice;

constexpr int kMaxHeight = 12;  // branching 4: room for 4^12 (16M) nodes per memtable
constexpr uint32_t kBranching = 4;

// A node: its links, then its key. Level 0's link is `next_[0]`; level i's
// is i slots below it, so a node of height h allocates h links and no more.
struct Node {
  const char* Key() const { return reinterpret_cast<const char*>(&next_[1]); }
  char* Key() { return reinterpret_cast<char*>(&next_[1]); }

  Node* Next(int n) { return Link(n).load(std::memory_order_acquire); }
  void SetNext(int n, Node* x) { Link(n).store(x, std::memory_order_release); }
  void NoBarrierSetNext(int n, Node* x) { Link(n).store(x, std::memory_order_relaxed); }

  // Before its insert, level 0's link holds the node's height.
  void StashHeight(int h) {
    next_[0].store(reinterpret_cast<Node*>(static_cast<uintptr_t>(h)), std::memory_order_relaxed);
  }
  int UnstashHeight() const {
    return static_cast<int>(reinterpret_cast<uintptr_t>(next_[0].load(std::memory_order_relaxed)));
  }

 private:
  std::atomic<Node*>& Link(int n) { return *(&next_[0] - n); }
  std::atomic<Node*> next_[1];
};

// A node's level-0 link, key and value (about 140 bytes for a message):
// its first three cache lines. Null is fine: a prefetch never faults.
void PrefetchNode(const Node* x) {
  const char* p = reinterpret_cast<const char*>(x);
  __builtin_prefetch(p);
  __builtin_prefetch(p + 64);
  __builtin_prefetch(p + 128);
}

// Where a prefix's last insert went, at every level: prev[i] < key < next[i].
struct Splice {
  // The key prefix this splice is the hint of (the memtable's own hints):
  // kept here, next to the links it guards, so that finding a prefix's
  // splice touches no other memory than the hint table's slot.
  static constexpr size_t kInlinePrefix = 44;
  uint32_t prefix_len = 0;
  int height = 0;               // levels [0, height) are set
  Splice* same_hash = nullptr;  // another prefix with the same 64-bit hash
  char prefix[kInlinePrefix];   // when it fits; else long_prefix
  std::string long_prefix;
  Node* prev[kMaxHeight + 1];
  Node* next[kMaxHeight + 1];

  bool Is(std::string_view p) const {
    return p.size() == prefix_len &&
           std::memcmp(p.data(), p.size() <= kInlinePrefix ? prefix : long_prefix.data(),
                       p.size()) == 0;
  }
  void SetPrefix(std::string_view p) {
    prefix_len = static_cast<uint32_t>(p.size());
    if (p.size() <= kInlinePrefix) {
      std::memcpy(prefix, p.data(), p.size());
    } else {
      long_prefix.assign(p);
    }
  }
};

class SkipListRep final : public rocksdb::MemTableRep {
 public:
  SkipListRep(const KeyComparator& compare, rocksdb::Allocator* allocator,
              const rocksdb::SliceTransform* hint_prefix)
      : MemTableRep(allocator),
        compare_(compare),
        head_(PlaceNode(head_mem_, kMaxHeight)),
        hint_prefix_(hint_prefix) {}

  KeyHandle Allocate(const size_t len, char** buf) override {
    const int height = RandomHeight();
    const size_t links = sizeof(std::atomic<Node*>) * static_cast<size_t>(height - 1);
    char* raw = nullptr;
    // The arena's unaligned allocations are packed: ask for room to align.
    (void)MemTableRep::Allocate(links + sizeof(Node) + len + alignof(Node) - 1, &raw);
    const size_t skew = reinterpret_cast<uintptr_t>(raw) % alignof(Node);
    Node* x = PlaceNode(raw + (skew ? alignof(Node) - skew : 0), height);
    x->StashHeight(height);
    *buf = x->Key();
    return x;
  }

  void Insert(KeyHandle handle) override {
    auto* x = static_cast<Node*>(handle);
    Insert(x, hint_prefix_ ? HintOf(x) : &seq_splice_);
  }

  // RocksDB's own hints (memtable_insert_with_hint_prefix_extractor), kept
  // in a std::unordered_map of its MemTable's, cost a hash lookup and two
  // cache misses more per insert than HintOf; the store does not use them.
  void InsertWithHint(KeyHandle handle, void** hint) override {
    auto* splice = static_cast<Splice*>(*hint);
    if (!splice) {
      splice = NewSplice();
      *hint = splice;
    }
    Insert(static_cast<Node*>(handle), splice);
  }

  bool Contains(const char* key) const override {
    const Slice k = compare_.decode_key(key);
    Node* x = FindGreaterOrEqual(k);
    return x && compare_(x->Key(), k) == 0;
  }

  size_t ApproximateMemoryUsage() override { return 0; }  // all in the arena

  Iterator* GetIterator(rocksdb::Arena* arena) override;
  // Point lookups use RocksDB's MemTableRep::Get, which takes an iterator from
  // here and never frees it. Without an arena, the iterator lives in the
  // calling thread's storage, rebuilt for each lookup; deleting it (should
  // any caller) frees nothing.
  Iterator* GetDynamicPrefixIterator(rocksdb::Arena* arena) override;

 private:
  class Iter;
  using Pool = IteratorPool<64>;

  // A node of `height` links at `mem` (aligned, big enough), its key after it.
  static Node* PlaceNode(char* mem, int height) {
    for (int i = 0; i < height - 1; ++i)
      ::new (mem + i * sizeof(std::atomic<Node*>)) std::atomic<Node*>(nullptr);
    return ::new (mem + static_cast<size_t>(height - 1) * sizeof(std::atomic<Node*>)) Node;
  }
  int RandomHeight() {
    int height = 1;
    while (height < kMaxHeight && NextRandom() % kBranching == 0) ++height;
    return height;
  }
  uint32_t NextRandom() {  // xorshift32; the writer's only
    rnd_ ^= rnd_ << 13;
    rnd_ ^= rnd_ >> 17;
    rnd_ ^= rnd_ << 5;
    return rnd_;
  }

  // Whether `key` (decoded, or a node's) sorts after node n; false for null.
  template <typename Key>
  bool KeyIsAfterNode(const Key& key, Node* n) const {
    return n != nullptr && compare_(n->Key(), key) < 0;
  }

  // The first node at or after `key`, or null.
  Node* FindGreaterOrEqual(const Slice& key) const {
    Node* x = head_;
    int level = max_height_.load(std::memory_order_relaxed) - 1;
    Node* last_bigger = nullptr;
    while (true) {
      Node* next = x->Next(level);
      // A node compared at the level above is not compared again.
      int cmp = (next == nullptr || next == last_bigger) ? 1 : compare_(next->Key(), key);
      if (cmp == 0 || (cmp > 0 && level == 0)) return next;
      if (cmp < 0) {
        x = next;
      } else {
        last_bigger = next;
        --level;
      }
    }
  }

  // The last node before `key` (head_ if none).
  Node* FindLessThan(const char* key) const {
    Node* x = head_;
    int level = max_height_.load(std::memory_order_relaxed) - 1;
    Node* last_not_after = nullptr;
    while (true) {
      Node* next = x->Next(level);
      if (next != last_not_after && KeyIsAfterNode(key, next)) {
        x = next;
      } else {
        if (level == 0) return x;
        last_not_after = next;
        --level;
      }
    }
  }

  Node* FindLast() const {
    Node* x = head_;
    int level = max_height_.load(std::memory_order_relaxed) - 1;
    while (true) {
      Node* next = x->Next(level);
      if (next != nullptr) {
        x = next;
      } else {
        if (level == 0) return x;
        --level;
      }
    }
  }

  // From `before` (whose key is less than `key`) along `level` to the pair
  // that brackets `key`; `after` is a node known to be past it, or null.
  void FindSpliceForLevel(const Slice& key, Node* before, Node* after, int level, Node** out_prev,
                          Node** out_next) const {
    while (true) {
      Node* next = before->Next(level);
      if (next == after || !KeyIsAfterNode(key, next)) {
        *out_prev = before;
        *out_next = next;
        return;
      }
      before = next;
    }
  }

  void RecomputeSpliceLevels(const Slice& key, Splice* splice, int recompute_level) const {
    for (int i = recompute_level - 1; i >= 0; --i)
      FindSpliceForLevel(key, splice->prev[i + 1], splice->next[i + 1], i, &splice->prev[i],
                         &splice->next[i]);
  }

  // InlineSkipList::Insert<false>(key, splice, allow_partial_splice_fix=true).
  void Insert(Node* x, Splice* splice) {
    const Slice key = compare_.decode_key(x->Key());
    const int height = x->UnstashHeight();
    int max_height = max_height_.load(std::memory_order_relaxed);
    if (height > max_height) {
      // Readers may see the new height before the node: they find null links
      // at the new levels of head_, and go down.
      max_height_.store(height, std::memory_order_relaxed);
      max_height = height;
    }
    int recompute_height = 0;
    if (splice->height < max_height) {
      // A new splice, or the list grew taller since its last use.
      splice->prev[max_height] = head_;
      splice->next[max_height] = nullptr;
      splice->height = max_height;
      recompute_height = max_height;
    } else {
      // Trust the splice from the lowest level that still brackets the key.
      while (recompute_height < max_height) {
        Node* prev = splice->prev[recompute_height];
        Node* next = splice->next[recompute_height];
        if (prev->Next(recompute_height) != next) {
          ++recompute_height;  // other inserts went in between
        } else if (prev != head_ && !KeyIsAfterNode(key, prev)) {
          while (splice->prev[recompute_height] == prev) ++recompute_height;  // key is before it
        } else if (KeyIsAfterNode(key, next)) {
          while (splice->next[recompute_height] == next) ++recompute_height;  // key is after it
        } else {
          break;  // this level brackets the key
        }
      }
    }
    if (recompute_height > 0) RecomputeSpliceLevels(key, splice, recompute_height);
    for (int i = 0; i < height; ++i) {
      if (i >= recompute_height && splice->prev[i]->Next(i) != splice->next[i])
        FindSpliceForLevel(key, splice->prev[i], nullptr, i, &splice->prev[i], &splice->next[i]);
      x->NoBarrierSetNext(i, splice->next[i]);
      splice->prev[i]->SetNext(i, x);  // publishes x (and its key) at this level
    }
    for (int i = 0; i < height; ++i) splice->prev[i] = x;
  }

  Splice* NewSplice() {
    splices_.push_back(std::make_unique<Splice>());
    return splices_.back().get();
  }

  // The splice of x's key prefix (hint_prefix_ of its user key).
  Splice* HintOf(Node* x) {
    const Slice internal = compare_.decode_key(x->Key());
    // An internal key is the user key and an 8-byte trailer (sequence, type).
    const Slice user(internal.data(), internal.size() >= 8 ? internal.size() - 8 : 0);
    if (!hint_prefix_->InDomain(user)) return &seq_splice_;
    const Slice p = hint_prefix_->Transform(user);
    const std::string_view prefix(p.data(), p.size());
    const uint64_t h = HashString(prefix);
    Splice** at = &hints_.try_emplace(h, nullptr).first->second;
    while (*at && !(*at)->Is(prefix)) at = &(*at)->same_hash;
    if (!*at) {
      *at = NewSplice();
      (*at)->SetPrefix(prefix);
    }
    return *at;
  }

  const KeyComparator& compare_;
  // The head has every level and no key: it is never compared.
  alignas(Node) char head_mem_[kMaxHeight * sizeof(std::atomic<Node*>)];
  Node* const head_;
  std::atomic<int> max_height_{1};
  uint32_t rnd_ = 0xdeadbeef;
  const rocksdb::SliceTransform* const hint_prefix_;  // null: no hints of ours
  Splice seq_splice_;                                 // for inserts without a hint
  std::vector<std::unique_ptr<Splice>> splices_;      // the hints' (the writer's)
  boost::unordered_flat_map<uint64_t, Splice*, HashValueHash>
      hints_;  // prefix hash -> splice (chain)
  Pool pool_;  // iterators RocksDB meant for its arena
};

class SkipListRep::Iter final : private Pool::Held, public rocksdb::MemTableRep::Iterator {
 public:
  Iter(SkipListRep* list, void* slot) : Held(&list->pool_, slot), list_(list) {}
  // The thread's own iterator (GetDynamicPrefixIterator) is not the heap's.
  static void operator delete(void* p) {
    if (p != Pool::ThreadSlot()) ::operator delete(p);
  }

  bool Valid() const override { return node_ != nullptr; }
  const char* key() const override { return node_->Key(); }
  // A flush reads every node in order, each somewhere else in the arena:
  // the next one is fetched into the cache while this one is written out.
  void Next() override {
    node_ = node_->Next(0);
    if (node_) PrefetchNode(node_->Next(0));
  }
  void Prev() override {
    node_ = list_->FindLessThan(node_->Key());
    if (node_ == list_->head_) node_ = nullptr;
  }
  void Seek(const Slice& internal_key, const char* memtable_key) override {
    node_ = list_->FindGreaterOrEqual(Target(internal_key, memtable_key));
  }
  void SeekForPrev(const Slice& internal_key, const char* memtable_key) override {
    const Slice target = Target(internal_key, memtable_key);
    node_ = list_->FindGreaterOrEqual(target);
    if (!node_) {
      SeekToLast();
    }
    while (node_ && list_->compare_(node_->Key(), target) > 0) Prev();
  }
  void SeekToFirst() override {
    node_ = list_->head_->Next(0);
    if (node_) PrefetchNode(node_->Next(0));
  }
  void SeekToLast() override {
    node_ = list_->FindLast();
    if (node_ == list_->head_) node_ = nullptr;
  }

 private:
  static Slice Target(const Slice& internal_key, const char* memtable_key) {
    return memtable_key ? rocksdb::GetLengthPrefixedSlice(memtable_key) : internal_key;
  }

  SkipListRep* list_;
  Node* node_ = nullptr;
};

rocksdb::MemTableRep::Iterator* SkipListRep::GetDynamicPrefixIterator(rocksdb::Arena* arena) {
  if (arena) return GetIterator(arena);
  return ::new (Pool::ThreadSlot()) Iter(this, nullptr);
}

rocksdb::MemTableRep::Iterator* SkipListRep::GetIterator(rocksdb::Arena* arena) {
  static_assert(sizeof(Iter) <= sizeof(Pool::Slot) && alignof(Iter) <= alignof(Pool::Slot));
  if (!arena) return new Iter(this, nullptr);
  void* slot = pool_.Acquire();
  return ::new (slot) Iter(this, slot);
}

class Factory final : public rocksdb::MemTableRepFactory {
 public:
  explicit Factory(std::shared_ptr<const rocksdb::SliceTransform> hint_prefix)
      : hint_prefix_(std::move(hint_prefix)) {}
  const char* Name() const override { return "PigeonSkipListFactory"; }
  rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& compare,
                                          rocksdb::Allocator* allocator,
                                          const rocksdb::SliceTransform*,
                                          rocksdb::Logger*) override {
    return new SkipListRep(compare, allocator, hint_prefix_.get());
  }

 private:
  std::shared_ptr<const rocksdb::SliceTransform> hint_prefix_;
};

}  // namespace

std::shared_ptr<rocksdb::MemTableRepFactory> NewPigeonSkipListFactory(
    std::shared_ptr<const rocksdb::SliceTransform> hint_prefix) {
  return std::make_shared<Factory>(std::move(hint_prefix));
}

}  // namespace pigeon
