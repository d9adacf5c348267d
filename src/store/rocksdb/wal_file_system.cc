#include "store/rocksdb/wal_file_system.h"

#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace pigeon {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kZeroWrite = kWalZeroAhead / 2;
// Not const: zero-initialized and never written, it lives in .bss, whose
// pages read as the kernel's zero page (a const array would be 256 KiB of the
// binary, read from disk).
char zeros[kZeroWrite];

uint64_t PageUp(uint64_t n) { return (n + kPage - 1) / kPage * kPage; }

bool IsWal(const std::string& name) {
  return name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0;
}

// A WAL file that keeps zeros written ahead of its end. Before an append
// leaves fewer than kZeroWrite bytes of zeros past the page the append ends
// in, zeros are written up to kWalZeroAhead past it, through a second
// descriptor of the same file (the same page cache; RocksDB's writer keeps its
// own position). Anything but plain appends (a positioned append, a truncate)
// stops the zeroing for good: zeros are only ever written where the WAL has
// provably not written yet.
class ZeroAheadWal final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  ZeroAheadWal(std::unique_ptr<rocksdb::FSWritableFile> file, int fd)
      : FSWritableFileOwnerWrapper(std::move(file)), fd_(fd) {}
  ~ZeroAheadWal() override { StopZeroing(); }

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    ZeroAhead(data.size(), options, dbg);
    return FSWritableFileOwnerWrapper::Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    ZeroAhead(data.size(), options, dbg);
    return FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    StopZeroing();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    StopZeroing();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg);
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    StopZeroing();
    return FSWritableFileOwnerWrapper::Truncate(size, options, dbg);
  }
  void SetPreallocationBlockSize(size_t size) override {
    FSWritableFileOwnerWrapper::SetPreallocationBlockSize(
        std::min<size_t>(size, kWalPreallocation));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    StopZeroing();
    return FSWritableFileOwnerWrapper::Close(options, dbg);
  }

 private:
  void ZeroAhead(size_t n, const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) {
    if (fd_ < 0) return;
    // The first page the WAL will not have touched once `n` more bytes are in.
    uint64_t clear = PageUp(target()->GetFileSize(options, dbg) + n);
    if (zeroed_to_ >= clear + kZeroWrite) return;
    uint64_t to = clear + kWalZeroAhead;
    for (uint64_t at = std::max(zeroed_to_, clear); at < to;) {
      ssize_t w = ::pwrite(fd_, zeros, std::min(kZeroWrite, to - at), static_cast<off_t>(at));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {  // no space, or an I/O error: the WAL's own write will say
        StopZeroing();
        return;
      }
      at += static_cast<uint64_t>(w);
      zeroed_to_ = at;
    }
  }

  void StopZeroing() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_;
  uint64_t zeroed_to_ = 0;  // [.., zeroed_to_) past the WAL's end holds written zeros
};

class WalFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  using FileSystemWrapper::FileSystemWrapper;
  const char* Name() const override { return "pigeon.WalFileSystem"; }

  rocksdb::FileOptions OptimizeForLogWrite(const rocksdb::FileOptions& file_options,
                                           const rocksdb::DBOptions& db_options) const override {
    rocksdb::FileOptions o = FileSystemWrapper::OptimizeForLogWrite(file_options, db_options);
    o.fallocate_with_keep_size = false;
    return o;
  }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = FileSystemWrapper::NewWritableFile(name, options, file, dbg);
    if (!s.ok() || !IsWal(name)) return s;
    // Without a second descriptor the WAL is written as RocksDB would.
    int fd = ::open(name.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) *file = std::make_unique<ZeroAheadWal>(std::move(*file), fd);
    return s;
  }
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base) {
  return std::make_shared<WalFileSystem>(std::move(base));
}

}  // namespace pigeon
