// SharedFrame: an encoded server frame (JSON text), shared by every socket it
// goes to, on any thread.
//
// One allocation holds the reference count and the bytes. A
// std::shared_ptr<const std::string> took two (the control block with the
// string, and the string's own buffer), and the committer makes one frame per
// recipient of every message, freed later on a network thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

namespace pigeon {

class SharedFrame {
 public:
  SharedFrame() noexcept = default;
  // A frame holding a copy of `text`.
  explicit SharedFrame(std::string_view text) {
    void* mem = std::malloc(sizeof(Block) + text.size());
    if (!mem) throw std::bad_alloc();
    block_ = ::new (mem) Block{{1}, text.size()};
    if (!text.empty()) std::memcpy(block_->bytes(), text.data(), text.size());
  }
  SharedFrame(const SharedFrame& o) noexcept : block_(o.block_) {
    if (block_) block_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  SharedFrame(SharedFrame&& o) noexcept : block_(std::exchange(o.block_, nullptr)) {}
  SharedFrame& operator=(SharedFrame o) noexcept {
    std::swap(block_, o.block_);
    return *this;
  }
  ~SharedFrame() {
    if (block_ && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      block_->~Block();
      std::free(block_);
    }
  }

  std::string_view view() const noexcept {
    return block_ ? std::string_view(block_->bytes(), block_->size) : std::string_view();
  }
  std::string_view operator*() const noexcept { return view(); }
  explicit operator bool() const noexcept { return block_ != nullptr; }

 private:
  struct Block {
    std::atomic<uint32_t> refs;
    size_t size;
    char* bytes() { return reinterpret_cast<char*>(this + 1); }
  };
  Block* block_ = nullptr;
};

}  // namespace pigeon
