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

// A WAL file that keeps zeros written ahead of its end. Before an append
// leaves fewer than kZeroWrite bytes of zeros past the page the append ends
// in, zeros are written up to kWalZeroAhead past it, through a second
// descriptor of the same file (the same page cache; RocksDB's writer keeps its
// own position). Anything but plain appends (a positioned append, a truncate)
// stops the zeroing for good: zeros are only ever written where the WAL has
// provably not written yet.
class ZeroAheadWal final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  ZeroAheadWal(std::unique_ptr<rocksdb::FSWritableFile> file, int fd,
               std::shared_ptr<const FlushBarrier> barrier,
               std::shared_ptr<WalSyncCounters> counters)
      : FSWritableFileOwnerWrapper(std::move(file)),
        fd_(fd),
        barrier_(std::move(barrier)),
        counters_(std::move(counters)) {}
  ~ZeroAheadWal() override { StopZeroing(); }

  // A commit. While every byte appended lies below durable_to_, its blocks
  // and the file's metadata are as the last fdatasync left them on the disk:
  // writing the pages and flushing the disk's cache makes them durable (3. in
  // the header). Otherwise, an fdatasync, after which the zeros written so far
  // are durable too.
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (!barrier_ || fd_ < 0 || zeroed_to_ != durable_to_ ||
        target()->GetFileSize(options, dbg) > durable_to_) {
      const uint64_t zeroed = zeroed_to_;
      rocksdb::IOStatus s = FSWritableFileOwnerWrapper::Sync(options, dbg);
      if (s.ok()) {
        durable_to_ = zeroed;
        if (counters_) counters_->fdatasyncs.fetch_add(1, std::memory_order_relaxed);
      }
      return s;
    }
    // WAIT_BEFORE: writeback already under way finishes first, so WRITE
    // starts one for every page dirty now, and WAIT_AFTER waits for them all.
    if (::sync_file_range(
            fd_, 0, 0,
            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0)
      return IoError("sync_file_range", errno);
    rocksdb::IOStatus s = barrier_->Flush();
    if (s.ok() && counters_) counters_->flushes.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

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
  // Null: every Sync is an fdatasync (WalSync::kFdatasync, or an unsafe file system).
  const std::shared_ptr<const FlushBarrier> barrier_;
  const std::shared_ptr<WalSyncCounters> counters_;
  uint64_t zeroed_to_ = 0;  // [.., zeroed_to_) past the WAL's end holds written zeros
  // [0, durable_to_) was written, zeros or records, before the last fdatasync.
  uint64_t durable_to_ = 0;
};

class WalFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  WalFileSystem(std::shared_ptr<rocksdb::FileSystem> base, WalSync sync,
                std::shared_ptr<WalSyncCounters> counters)
      : FileSystemWrapper(std::move(base)), sync_(sync), counters_(std::move(counters)) {}
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
    if (fd >= 0) {
      // ext4 journals the data of a file with the j attribute (chattr +j).
      int flags = 0;
      struct stat st {};
      std::shared_ptr<const FlushBarrier> barrier;
      if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_JOURNAL_DATA_FL) &&
          ::fstat(fd, &st) == 0)
        barrier = BarrierFor(name, st.st_ino);
      *file = std::make_unique<ZeroAheadWal>(std::move(*file), fd, std::move(barrier), counters_);
    }
    return s;
  }

 private:
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
  const std::shared_ptr<WalSyncCounters> counters_;
  std::mutex mu_;
  std::string barrier_dir_;
  BarrierPair barriers_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                      WalSync sync,
                                                      std::shared_ptr<WalSyncCounters> counters) {
  return std::make_shared<WalFileSystem>(std::move(base), sync, std::move(counters));
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
