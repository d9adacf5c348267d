// The file system RocksStore's RocksDB writes through: the default (POSIX)
// one, with two changes to how a WAL file is written. Both keep a commit's
// disk work down to writing its own data.
//
//  1. A WAL file is preallocated with its size, kWalPreallocation at a time.
//     RocksDB's default keeps the size, so every append grew the file and
//     every fdatasync wrote the new size back. RocksDB preallocates the whole
//     file (1.1 x the memtable, 74 MB) with the first write, inside the commit
//     that switched memtables. That fallocate searched for 74 MB of free space
//     and read block bitmaps from the disk: 0.3 to 4.4 ms. 1 MiB takes 20 us.
//  2. The blocks just ahead of the WAL's end hold written zeros before the WAL
//     reaches them. A preallocated block is "unwritten" (ext4, XFS): the first
//     write into it changes the file's extent map, so the fdatasync of every
//     commit that entered a new block waited for a kernel worker to convert
//     the extent, then wrote the inode synchronously: one more I/O and two
//     more waits, in most commits. Now zeros are kept up to kWalZeroAhead
//     bytes ahead, written half of that at a time, and only the commit that
//     carries such a write pays for a conversion, once per 256 KiB of WAL.
//
//  3. A commit whose records all lie in blocks that a completed fdatasync
//     already left written (the zeros of 2.) is made durable without an
//     fdatasync of the WAL: sync_file_range writes its pages and waits for
//     them, then an fdatasync of an empty file beside the WAL (kFlushBarrier)
//     has the disk flush its write cache. Nothing about the WAL's blocks, its
//     size or its extents changed since that fdatasync; only its mtime did,
//     and ext4 without a journal wrote that inode back in 6 of 10 commits:
//     one device request of 2.6 per commit (docs/benchmarks.md, twelfth round).
//     ext4 and XFS flush the disk's cache in an fdatasync with nothing to
//     write (ext4_sync_file, xfs_file_fsync); file systems that may not, and
//     ext4 with data=journal (file data goes through the journal, which only
//     an fsync of the file itself commits), always get the fdatasync.
//
//  4. With WalWrite::kDirect, where the file system takes direct I/O and
//     commits use the flush barrier (3.), the WAL is written with O_DIRECT: a
//     commit's pages go straight from an aligned buffer to the disk, and its
//     Sync is left with only the disk's cache to flush (or the fdatasync of
//     3.). Through the page cache, a commit copied its pages into it, had
//     sync_file_range find them, start their writeback and wait for it. The
//     committer spends 0.8 us less per message at 5,000/s, but end-to-end
//     latency at 25,000/s was 0.08 ms higher at p50 and 0.2 ms at p99, so it
//     is not the default (docs/benchmarks.md, fourteenth round). RocksDB's
//     own direct WAL (use_direct_writes) is no substitute: it skips the
//     file's Sync, and a direct write is not durable until the disk's cache
//     is flushed. A flushed append is on the disk (in its cache), so a
//     process killed after it has lost nothing, as with the page cache.
//
// The zeros are what the preallocated blocks read as, so a WAL left by a crash
// looks exactly as before: records, then zeros, which recovery reads as the
// end. Zeros are only ever written past the page the WAL's last byte is in, and
// RocksDB trims a closed WAL to its real size.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace rocksdb {
class FileSystem;
}

namespace pigeon {

// Zeros are written this far ahead of the WAL's end, in writes of half of it.
inline constexpr uint64_t kWalZeroAhead = 512 << 10;
// A WAL file grows by preallocations of at most this much.
inline constexpr uint64_t kWalPreallocation = 1 << 20;

// The empty files, in each WAL directory, whose fdatasync flushes the disk
// (3.): kFlushBarrier, and kFlushBarrier + "-2", whose inode lies in another
// block of the inode table. A WAL uses the one that does not share its own
// inode's block: ext4 without a journal writes an fsynced inode's table block
// when it is dirty, and the WAL's mtime dirties its block in most commits.
inline constexpr const char* kFlushBarrier = "FLUSH-BARRIER";

enum class WalSync {
  kAuto,       // 3. where the file system is known to make it safe, else fdatasync
  kFdatasync,  // an fdatasync of the WAL file for every commit
};

enum class WalWrite {
  kPageCache,  // through the page cache (1.-3. only)
  kDirect,     // 4. where the file system takes direct I/O, else through the page cache
};

// How the WAL commits were made durable, counted by a WalFileSystem.
struct WalSyncCounters {
  std::atomic<uint64_t> fdatasyncs{0};  // fdatasync of the WAL file
  std::atomic<uint64_t> flushes{0};     // sync_file_range and a cache flush (3.)
};

// `base` with the changes above for WAL files (names ending in ".log").
// `counters`, if given, counts its WAL syncs.
std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, WalSync sync = WalSync::kAuto,
    std::shared_ptr<WalSyncCounters> counters = nullptr, WalWrite write = WalWrite::kPageCache);

// Whether 3. is safe in `dir`: ext4 mounted without data=journal, or XFS.
bool FlushBarrierIsSafeIn(const std::string& dir);
// Whether inodes `a` and `b` may lie in one block (of `block_bytes`) of the
// inode table, for inodes of at least 128 bytes (exposed for tests).
bool MayShareInodeBlock(ino_t a, ino_t b, uint64_t block_bytes);
// Whether the super block options of the file system on device `dev`, in
// /proc/self/mountinfo's text, include `option` (exposed for tests).
bool MountOptionsHave(std::string_view mountinfo, dev_t dev, std::string_view option);

}  // namespace pigeon
