#include "store/rocksdb/wal_file_system.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <rocksdb/file_system.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

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

rocksdb::IOStatus IoError(const char* what, int err) {
  return rocksdb::IOStatus::IOError(what, std::strerror(err));
}

// An open, empty file beside the WALs: fdatasync of it flushes the disk.
class FlushBarrier {
 public:
  FlushBarrier(int fd, ino_t ino) : fd_(fd), ino_(ino) {}
  ~FlushBarrier() { ::close(fd_); }
  FlushBarrier(const FlushBarrier&) = delete;
  FlushBarrier& operator=(const FlushBarrier&) = delete;

  ino_t ino() const { return ino_; }
  rocksdb::IOStatus Flush() const {
    if (::fdatasync(fd_) != 0) return IoError("flush barrier", errno);
    return rocksdb::IOStatus::OK();
  }

 private:
  int fd_;
  ino_t ino_;
};

// Opens (creating it if need be) `path`; null on failure.
std::shared_ptr<FlushBarrier> OpenBarrier(const std::string& path, int flags = 0) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | flags, 0644);
  struct stat st {};
  if (fd < 0) return nullptr;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return nullptr;
  }
  return std::make_shared<FlushBarrier>(fd, st.st_ino);
}

// The two barriers of one directory, in different blocks of the inode table,
// so that a WAL can always use one that does not share its block.
struct BarrierPair {
  std::shared_ptr<const FlushBarrier> first, second;
  uint64_t block_bytes = 4096;

  // Null if the directory has none. ext4 without a journal writes an fsynced
  // inode's table block when it is dirty, and a WAL's block is dirty after
  // nearly every write (its mtime): a barrier sharing it would write it too.
  std::shared_ptr<const FlushBarrier> For(ino_t wal) const {
    if (!first || !second) return nullptr;
    return MayShareInodeBlock(first->ino(), wal, block_bytes) ? second : first;
  }

  static BarrierPair Open(const std::string& dir) {
    BarrierPair pair;
    struct statfs fs {};
    if (::statfs(dir.c_str(), &fs) == 0 && fs.f_bsize > 0)
      pair.block_bytes = static_cast<uint64_t>(fs.f_bsize);
    pair.first = OpenBarrier(dir + "/" + kFlushBarrier);
    if (!pair.first) return {};
    const std::string second = dir + "/" + kFlushBarrier + "-2";
    if (auto kept = OpenBarrier(second);
        kept && !MayShareInodeBlock(pair.first->ino(), kept->ino(), pair.block_bytes)) {
      pair.second = std::move(kept);
      return pair;
    }
    // New files take the lowest free inodes: create them until one lies in
    // another block, holding the rejected ones open (and their inodes taken)
    // meanwhile.
    ::unlink(second.c_str());
    std::vector<std::shared_ptr<FlushBarrier>> rejected;
    const std::string trial = second + ".new";
    for (int i = 0; i < 256 && !pair.second; ++i) {
      ::unlink(trial.c_str());
      auto candidate = OpenBarrier(trial, O_EXCL);
      if (!candidate) break;
      if (MayShareInodeBlock(pair.first->ino(), candidate->ino(), pair.block_bytes)) {
        rejected.push_back(std::move(candidate));
        continue;
      }
      if (::rename(trial.c_str(), second.c_str()) == 0) pair.second = std::move(candidate);
    }
    ::unlink(trial.c_str());
    if (!pair.second) return {};
    return pair;
  }
};

// What a WAL file keeps of its zeros ahead (2. in the header) and of its last
// fdatasync (3.). Before an append leaves fewer than kZeroWrite bytes of zeros
// past the page it ends in, zeros are written up to kWalZeroAhead past it,
// through a descriptor of its own (buffered: the zeros reach the disk with the
// fdatasync their commit gets, in one round of I/O with its records). Anything
// but plain appends stops the zeroing for good: zeros are only ever written
// where the WAL has provably not written yet.
class ZeroAhead {
 public:
  explicit ZeroAhead(int fd) : fd_(fd) {}
  ~ZeroAhead() { Stop(); }
  ZeroAhead(const ZeroAhead&) = delete;
  ZeroAhead& operator=(const ZeroAhead&) = delete;

  // Before the WAL grows to `end` bytes.
  void Before(uint64_t end) {
    if (fd_ < 0) return;
    // The first page the WAL will not have touched once it is `end` long.
    const uint64_t clear = PageUp(end);
    if (zeroed_to_ >= clear + kZeroWrite) return;
    const uint64_t to = clear + kWalZeroAhead;
    for (uint64_t at = std::max(zeroed_to_, clear); at < to;) {
      ssize_t w = ::pwrite(fd_, zeros, std::min(kZeroWrite, to - at), static_cast<off_t>(at));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {  // no space, or an I/O error: the WAL's own write will say
        Stop();
        return;
      }
      at += static_cast<uint64_t>(w);
      zeroed_to_ = at;
    }
  }

  // Whether a WAL of `size` bytes is made durable by writing its pages and
  // flushing the disk's cache: every block it lies in, and the file's
  // metadata, are as the last fdatasync left them.
  bool FlushSuffices(uint64_t size) const {
    return fd_ >= 0 && zeroed_to_ == durable_to_ && size <= durable_to_;
  }
  // After an fdatasync of the WAL: the zeros written so far are durable.
  // Returns where they begin and end, for a caller that drops them from the
  // page cache.
  std::pair<uint64_t, uint64_t> Synced() {
    const std::pair<uint64_t, uint64_t> fresh{durable_to_, zeroed_to_};
    durable_to_ = zeroed_to_;
    return fresh;
  }

  int fd() const { return fd_; }
  void Stop() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  uint64_t zeroed_to_ = 0;  // [.., zeroed_to_) past the WAL's end holds written zeros
  // [0, durable_to_) was written, zeros or records, before the last fdatasync.
  uint64_t durable_to_ = 0;
};

// Counts one sync in `counters` (if any) when `s` is OK; returns `s`.
rocksdb::IOStatus Counted(rocksdb::IOStatus s, const std::shared_ptr<WalSyncCounters>& counters,
                          std::atomic<uint64_t> WalSyncCounters::*which) {
  if (s.ok() && counters) (counters.get()->*which).fetch_add(1, std::memory_order_relaxed);
  return s;
}

// A WAL file RocksDB's own (buffered) file writes, with zeros ahead through a
// second descriptor of the same file (the same page cache; RocksDB's writer
// keeps its own position).
class ZeroAheadWal final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  ZeroAheadWal(std::unique_ptr<rocksdb::FSWritableFile> file, int fd,
               std::shared_ptr<const FlushBarrier> barrier,
               std::shared_ptr<WalSyncCounters> counters)
      : FSWritableFileOwnerWrapper(std::move(file)),
        zeros_(fd),
        barrier_(std::move(barrier)),
        counters_(std::move(counters)) {}

  // A commit. While every byte appended lies in blocks and under metadata as
  // the last fdatasync left them on the disk, writing the pages and flushing
  // the disk's cache makes them durable (3. in the header). Otherwise, an
  // fdatasync, after which the zeros written so far are durable too.
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (!barrier_ || !zeros_.FlushSuffices(target()->GetFileSize(options, dbg))) {
      rocksdb::IOStatus s = FSWritableFileOwnerWrapper::Sync(options, dbg);
      if (s.ok()) zeros_.Synced();
      return Counted(s, counters_, &WalSyncCounters::fdatasyncs);
    }
    // WAIT_BEFORE: writeback already under way finishes first, so WRITE
    // starts one for every page dirty now, and WAIT_AFTER waits for them all.
    if (::sync_file_range(
            zeros_.fd(), 0, 0,
            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0)
      return IoError("sync_file_range", errno);
    return Counted(barrier_->Flush(), counters_, &WalSyncCounters::flushes);
  }

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    zeros_.Before(target()->GetFileSize(options, dbg) + data.size());
    return FSWritableFileOwnerWrapper::Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    zeros_.Before(target()->GetFileSize(options, dbg) + data.size());
    return FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    zeros_.Stop();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    zeros_.Stop();
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg);
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    zeros_.Stop();
    return FSWritableFileOwnerWrapper::Truncate(size, options, dbg);
  }
  void SetPreallocationBlockSize(size_t size) override {
    FSWritableFileOwnerWrapper::SetPreallocationBlockSize(
        std::min<size_t>(size, kWalPreallocation));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    zeros_.Stop();
    return FSWritableFileOwnerWrapper::Close(options, dbg);
  }

 private:
  ZeroAhead zeros_;  // without a second descriptor, never any
  // Null: every Sync is an fdatasync (WalSync::kFdatasync, or an unsafe file system).
  const std::shared_ptr<const FlushBarrier> barrier_;
  const std::shared_ptr<WalSyncCounters> counters_;
};

// A WAL file written with O_DIRECT (4. in the header). Appends gather in an
// aligned buffer that starts at the page the last flushed byte ends in; Flush
// writes its pages to the disk, rewriting the last, partly filled page each
// time with zeros after the WAL's end (so the file reads as it would have
// written through the page cache), and keeps that page for the next appends.
// Zeros ahead go through the page cache (ZeroAhead), and so do the pages of a
// commit that will get an fdatasync anyway (one in 16 or so): the fdatasync
// writes both in one round of I/O. They leave the cache once it returns, so
// that the direct writes into them find no cached page to write back or drop.
// A Sync is the same choice between an fdatasync and the flush barrier as
// ZeroAheadWal's; a WAL without a flush barrier is not written directly.
class DirectWal final : public rocksdb::FSWritableFile {
 public:
  // `fd`: the file, opened with O_DIRECT; `zeros_fd`: the same file, buffered;
  // `barrier`: not null (only a WAL whose commits use it is written directly).
  DirectWal(int fd, int zeros_fd, std::shared_ptr<const FlushBarrier> barrier,
            std::shared_ptr<WalSyncCounters> counters, const rocksdb::FileOptions& options)
      : FSWritableFile(options),
        fd_(fd),
        zeros_(zeros_fd),
        barrier_(std::move(barrier)),
        counters_(std::move(counters)) {}
  ~DirectWal() override {
    if (fd_ >= 0) (void)Close(rocksdb::IOOptions(), nullptr);
    std::free(buf_);
  }
  DirectWal(const DirectWal&) = delete;
  DirectWal& operator=(const DirectWal&) = delete;

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions&,
                           rocksdb::IODebugContext*) override {
    if (fd_ < 0) return rocksdb::IOStatus::IOError("append to a closed WAL");
    if (!Reserve(size_ - buf_start_ + data.size()))
      return rocksdb::IOStatus::IOError("WAL buffer", std::strerror(ENOMEM));
    std::memcpy(buf_ + (size_ - buf_start_), data.data(), data.size());
    size_ += data.size();
    return rocksdb::IOStatus::OK();
  }

  // The appended bytes go to the disk (its write cache, until a Sync), or to
  // the page cache: a process that dies after a Flush has lost nothing of it.
  rocksdb::IOStatus Flush(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    if (fd_ < 0) return rocksdb::IOStatus::IOError("flush of a closed WAL");
    if (flushed_ == size_) return rocksdb::IOStatus::OK();
    zeros_.Before(size_);
    const uint64_t used = size_ - buf_start_;
    // A commit that will get an fdatasync (it wrote zeros ahead, or reaches
    // past them) writes its pages through the page cache: the fdatasync then
    // writes them with the zeros in one round of I/O, where a direct write
    // would wait for its own first. They leave the cache with the zeros.
    const bool through_cache = !zeros_.FlushSuffices(size_) && zeros_.fd() >= 0;
    const int fd = through_cache ? zeros_.fd() : fd_;
    if (rocksdb::IOStatus s = WriteAll(fd, buf_, PageUp(used), buf_start_); !s.ok()) return s;
    if (through_cache) cached_from_ = std::min(cached_from_, buf_start_);
    flushed_ = size_;
    // Keep the last, partly filled page; what follows it in the buffer must
    // read as zeros again.
    const uint64_t keep = size_ / kPage * kPage;
    if (keep > buf_start_) {
      const uint64_t kept = size_ - keep;
      std::memmove(buf_, buf_ + (keep - buf_start_), kept);
      std::memset(buf_ + kept, 0, used - kept);
      buf_start_ = keep;
    }
    if (cap_ > kKeptBuffer && size_ - buf_start_ <= kKeptBuffer) Shrink();
    return rocksdb::IOStatus::OK();
  }

  // As ZeroAheadWal::Sync, the pages being on the disk already.
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = Flush(options, dbg); !s.ok()) return s;
    if (zeros_.FlushSuffices(size_))
      return Counted(barrier_->Flush(), counters_, &WalSyncCounters::flushes);
    if (::fdatasync(fd_) != 0) return IoError("WAL fdatasync", errno);
    auto [from, to] = zeros_.Synced();
    from = std::min(from, cached_from_);
    cached_from_ = UINT64_MAX;
    if (to > from && zeros_.fd() >= 0)
      (void)::posix_fadvise(zeros_.fd(), static_cast<off_t>(from), static_cast<off_t>(to - from),
                            POSIX_FADV_DONTNEED);
    return Counted(rocksdb::IOStatus::OK(), counters_, &WalSyncCounters::fdatasyncs);
  }

  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = Flush(options, dbg); !s.ok()) return s;
    zeros_.Stop();  // whatever was zeroed past `size` is gone
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return IoError("WAL truncate", errno);
    if (size == size_) return rocksdb::IOStatus::OK();
    if (!Reserve(kPage)) return rocksdb::IOStatus::IOError("WAL buffer", std::strerror(ENOMEM));
    // The page `size` ends in, read back: the next appends continue it.
    buf_start_ = size / kPage * kPage;
    size_ = flushed_ = size;
    std::memset(buf_, 0, cap_);
    const uint64_t part = size - buf_start_;
    if (part > 0) {
      ssize_t r = ::pread(fd_, buf_, kPage, static_cast<off_t>(buf_start_));
      if (r < static_cast<ssize_t>(part)) return IoError("WAL read", r < 0 ? errno : EIO);
      std::memset(buf_ + part, 0, kPage - part);
    }
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (fd_ < 0) return rocksdb::IOStatus::OK();
    rocksdb::IOStatus s = Flush(options, dbg);
    zeros_.Stop();
    // As RocksDB's own WAL file: the preallocated rest is cut off.
    if (s.ok() && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0)
      s = IoError("WAL truncate", errno);
    if (::close(fd_) != 0 && s.ok()) s = IoError("WAL close", errno);
    fd_ = -1;
    return s;
  }

  uint64_t GetFileSize(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return size_;
  }
  void SetPreallocationBlockSize(size_t size) override {
    FSWritableFile::SetPreallocationBlockSize(std::min<size_t>(size, kWalPreallocation));
  }
  rocksdb::IOStatus Allocate(uint64_t offset, uint64_t len, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    // Without FALLOC_FL_KEEP_SIZE, as RocksDB's WAL file is with
    // fallocate_with_keep_size off: the WAL writes inside the file's size.
    if (fd_ >= 0 && ::fallocate(fd_, 0, static_cast<off_t>(offset), static_cast<off_t>(len)) != 0)
      return IoError("WAL fallocate", errno);
    return rocksdb::IOStatus::OK();
  }

 private:
  // A buffer larger than this (a large batch's) is let go after its flush.
  static constexpr uint64_t kKeptBuffer = 256 << 10;

  // Room for `n` bytes from buf_start_, and zeros after them.
  bool Reserve(uint64_t n) {
    if (n <= cap_) return true;
    uint64_t cap = std::max<uint64_t>(cap_ ? cap_ : 64 << 10, kPage);
    while (cap < n) cap *= 2;
    void* p = nullptr;
    if (::posix_memalign(&p, kPage, cap) != 0) return false;
    auto* grown = static_cast<char*>(p);
    const uint64_t used = size_ - buf_start_;
    if (used) std::memcpy(grown, buf_, used);
    std::memset(grown + used, 0, cap - used);
    std::free(buf_);
    buf_ = grown;
    cap_ = cap;
    return true;
  }
  void Shrink() {
    void* p = nullptr;
    if (::posix_memalign(&p, kPage, kKeptBuffer) != 0) return;
    auto* small = static_cast<char*>(p);
    std::memcpy(small, buf_, kKeptBuffer);  // the kept page, then zeros
    std::free(buf_);
    buf_ = small;
    cap_ = kKeptBuffer;
  }

  rocksdb::IOStatus WriteAll(int fd, const char* from, uint64_t n, uint64_t at) {
    while (n > 0) {
      ssize_t w = ::pwrite(fd, from, n, static_cast<off_t>(at));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return IoError("WAL write", errno);
      if (w == 0) return IoError("WAL write", EIO);
      // A short direct write ends on a block the device took whole.
      from += w;
      at += static_cast<uint64_t>(w);
      n -= static_cast<uint64_t>(w);
    }
    return rocksdb::IOStatus::OK();
  }

  int fd_;
  ZeroAhead zeros_;
  const std::shared_ptr<const FlushBarrier> barrier_;
  const std::shared_ptr<WalSyncCounters> counters_;
  char* buf_ = nullptr;  // [buf_start_, size_) of the file, then zeros; page-aligned
  uint64_t cap_ = 0;
  uint64_t buf_start_ = 0;  // a page boundary
  uint64_t size_ = 0;       // the WAL's bytes
  uint64_t flushed_ = 0;    // [0, flushed_) is on the disk
  // Pages from here on were written through the page cache since the last
  // fdatasync (UINT64_MAX: none).
  uint64_t cached_from_ = UINT64_MAX;
};

class WalFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  WalFileSystem(std::shared_ptr<rocksdb::FileSystem> base, WalSync sync,
                std::shared_ptr<WalSyncCounters> counters, WalWrite write)
      : FileSystemWrapper(std::move(base)),
        sync_(sync),
        write_(write),
        counters_(std::move(counters)) {}
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
    if (write_ == WalWrite::kDirect && IsWal(name) && !options.use_direct_writes &&
        !options.use_mmap_writes) {
      // Only where commits are made durable by the flush barrier: a WAL
      // that gets an fdatasync every commit is written as best for that.
      if (int fd = OpenDirect(name); fd >= 0) {
        auto barrier = BarrierOf(name, fd);
        // Without a buffered descriptor for the zeros, there are none ahead.
        const int zeros_fd = barrier ? ::open(name.c_str(), O_WRONLY | O_CLOEXEC) : -1;
        if (barrier && zeros_fd >= 0) {
          *file = std::make_unique<DirectWal>(fd, zeros_fd, std::move(barrier), counters_, options);
          return rocksdb::IOStatus::OK();
        }
        if (zeros_fd >= 0) ::close(zeros_fd);
        ::close(fd);
      }
    }
    rocksdb::IOStatus s = FileSystemWrapper::NewWritableFile(name, options, file, dbg);
    if (!s.ok() || !IsWal(name)) return s;
    // Without a second descriptor the WAL is written as RocksDB would.
    int fd = ::open(name.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0)
      *file = std::make_unique<ZeroAheadWal>(std::move(*file), fd, BarrierOf(name, fd), counters_);
    return s;
  }

 private:
  // `name` created (or emptied) and opened for direct writes of whole pages,
  // or -1 where its file system cannot (then RocksDB's own file writes it).
  static int OpenDirect(const std::string& name) {
    int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
    if (fd < 0) return -1;
    struct statx stx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) &&
        (stx.stx_dio_offset_align == 0 || stx.stx_dio_offset_align > kPage ||
         stx.stx_dio_mem_align > kPage)) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // The flush barrier for the WAL open as `fd`, or null where a commit needs
  // an fdatasync: ext4 journals the data of a file with the j attribute
  // (chattr +j).
  std::shared_ptr<const FlushBarrier> BarrierOf(const std::string& name, int fd) {
    int flags = 0;
    struct stat st {};
    if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0 || (flags & FS_JOURNAL_DATA_FL) ||
        ::fstat(fd, &st) != 0)
      return nullptr;
    return BarrierFor(name, st.st_ino);
  }

  // The flush barrier for the WAL `name` (inode `ino`), or null where a
  // commit needs an fdatasync. The last directory's are kept: a store has one.
  std::shared_ptr<const FlushBarrier> BarrierFor(const std::string& name, ino_t ino) {
    if (sync_ != WalSync::kAuto) return nullptr;
    auto slash = name.rfind('/');
    std::string dir = slash == std::string::npos ? "." : name.substr(0, slash);
    std::lock_guard lock(mu_);
    if (dir != barrier_dir_) {
      barrier_dir_ = dir;
      barriers_ = FlushBarrierIsSafeIn(dir) ? BarrierPair::Open(dir) : BarrierPair{};
    }
    return barriers_.For(ino);
  }

  const WalSync sync_;
  const WalWrite write_;
  const std::shared_ptr<WalSyncCounters> counters_;
  std::mutex mu_;
  std::string barrier_dir_;
  BarrierPair barriers_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                      WalSync sync,
                                                      std::shared_ptr<WalSyncCounters> counters,
                                                      WalWrite write) {
  return std::make_shared<WalFileSystem>(std::move(base), sync, std::move(counters), write);
}

bool MayShareInodeBlock(ino_t a, ino_t b, uint64_t block_bytes) {
  // Inodes are numbered from 1 and take at least 128 bytes of the table.
  const uint64_t per_block = std::max<uint64_t>(block_bytes / 128, 1);
  return (a - 1) / per_block == (b - 1) / per_block;
}

bool MountOptionsHave(std::string_view mountinfo, dev_t dev, std::string_view option) {
  // Each line: id parent major:minor root mountpoint options [optional...] -
  // fstype source super-options.
  const std::string device = std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  std::istringstream lines{std::string(mountinfo)};
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string id, parent, majmin, field;
    if (!(fields >> id >> parent >> majmin) || majmin != device) continue;
    while (fields >> field && field != "-") {
    }
    std::string fstype, source, options;
    if (!(fields >> fstype >> source >> options)) continue;
    std::istringstream each(options);
    for (std::string o; std::getline(each, o, ',');)
      if (o == option) return true;
  }
  return false;
}

bool FlushBarrierIsSafeIn(const std::string& dir) {
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) != 0) return false;
  if (fs.f_type == XFS_SUPER_MAGIC) return true;
  if (fs.f_type != EXT4_SUPER_MAGIC) return false;
  struct stat st {};
  std::ifstream in("/proc/self/mountinfo");
  if (::stat(dir.c_str(), &st) != 0 || !in) return false;
  std::stringstream mountinfo;
  mountinfo << in.rdbuf();
  return !MountOptionsHave(mountinfo.str(), st.st_dev, "data=journal");
}

}  // namespace pigeon
