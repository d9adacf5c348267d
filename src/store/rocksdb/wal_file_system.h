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
// The zeros are what the preallocated blocks read as, so a WAL left by a crash
// looks exactly as before: records, then zeros, which recovery reads as the
// end. Zeros are only ever written past the page the WAL's last byte is in, and
// RocksDB trims a closed WAL to its real size.
#pragma once

#include <cstdint>
#include <memory>

namespace rocksdb {
class FileSystem;
}

namespace pigeon {

// Zeros are written this far ahead of the WAL's end, in writes of half of it.
inline constexpr uint64_t kWalZeroAhead = 512 << 10;
// A WAL file grows by preallocations of at most this much.
inline constexpr uint64_t kWalPreallocation = 1 << 20;

// `base` with the two changes above for WAL files (names ending in ".log").
std::shared_ptr<rocksdb::FileSystem> NewWalFileSystem(std::shared_ptr<rocksdb::FileSystem> base);

}  // namespace pigeon
