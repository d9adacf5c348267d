#include "store/rocksdb/wal_file_system.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace pigeon {
namespace {

constexpr uint64_t kPage = 4096;

// Each test runs with the WAL written directly and through the page cache.
class WalFileSystemTest : public testing::TestWithParam<WalWrite> {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "pigeon-wal-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Appends about 2 MB in uneven pieces, as RocksDB's WAL writer does
  // (PrepareWrite preallocates 4 MiB blocks, a Sync every few appends), and
  // returns what was appended. The file is left open and synced.
  std::string Write(rocksdb::FSWritableFile& file) {
    std::mt19937 rng(7);
    std::string all;
    rocksdb::IOOptions io;
    file.SetPreallocationBlockSize(4 << 20);
    for (int i = 0; i < 1200; ++i) {
      std::string piece(200 + rng() % 3300, '\0');
      for (char& c : piece) c = static_cast<char>(1 + rng() % 255);  // never a zero byte
      file.PrepareWrite(all.size(), piece.size(), io, nullptr);
      EXPECT_TRUE(file.Append(piece, io, nullptr).ok());
      all += piece;
      if (i % 8 == 7) {
        EXPECT_TRUE(file.Sync(io, nullptr).ok());
      }
    }
    EXPECT_TRUE(file.Sync(io, nullptr).ok());
    return all;
  }

  // A file `name` through the WAL file system, written by Write().
  struct Written {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    std::string path;
    std::string appended;
    uint64_t clear = 0;  // the first page past the appended bytes
  };
  Written CreateAndWrite(const std::string& name) {
    Written w;
    w.path = dir_ + "/" + name;
    rocksdb::FileOptions options =
        fs_->OptimizeForLogWrite(rocksdb::FileOptions(), rocksdb::DBOptions());
    EXPECT_TRUE(fs_->NewWritableFile(w.path, options, &w.file, nullptr).ok());
    if (!w.file) return w;
    w.appended = Write(*w.file);
    w.clear = (w.appended.size() + kPage - 1) / kPage * kPage;
    return w;
  }

  // Whether a WAL in dir_ is written with O_DIRECT: asked for, a file system
  // that takes it, and commits made durable by the flush barrier.
  bool WritesDirectly() const;

  std::shared_ptr<rocksdb::FileSystem> fs_ =
      NewWalFileSystem(rocksdb::FileSystem::Default(), WalSync::kAuto, nullptr, GetParam());
  std::string dir_;
};

// Whether [from, from + len) of `path` is allocated and written on disk (not
// a hole, not a preallocated "unwritten" extent). nullopt when the file system
// cannot say (no FIEMAP).
std::optional<bool> BlocksWritten(const std::string& path, uint64_t from, uint64_t len) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr int kMax = 64;
  std::vector<char> buf(sizeof(fiemap) + kMax * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buf.data());
  map->fm_start = from;
  map->fm_length = len;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kMax;
  int rc = ::ioctl(fd, FS_IOC_FIEMAP, map);
  ::close(fd);
  if (rc != 0) return std::nullopt;
  uint64_t covered = from;
  for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
    const fiemap_extent& e = map->fm_extents[i];
    if (e.fe_logical > covered || (e.fe_flags & FIEMAP_EXTENT_UNWRITTEN)) return false;
    covered = std::max<uint64_t>(covered, e.fe_logical + e.fe_length);
  }
  return covered >= from + len;
}

std::string ReadAll(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST_P(WalFileSystemTest, WritesZerosAheadOfTheWalAndNeverOverItsRecords) {
  Written w = CreateAndWrite("000007.log");
  ASSERT_TRUE(w.file);
  auto ahead = BlocksWritten(w.path, w.clear, kWalZeroAhead / 2);
  if (!ahead) GTEST_SKIP() << "the file system of " << dir_ << " has no FIEMAP";
  EXPECT_TRUE(*ahead) << "the blocks after the WAL's end are still unwritten";
  EXPECT_EQ(BlocksWritten(w.path, 0, w.clear), true);
  // RocksDB asked for 4 MiB preallocations; the file grows by 1 MiB ones.
  struct stat st {};
  ASSERT_EQ(::stat(w.path.c_str(), &st), 0);
  EXPECT_LE(static_cast<uint64_t>(st.st_size), w.clear + kWalPreallocation);

  std::string on_disk = ReadAll(w.path);
  ASSERT_GE(on_disk.size(), w.clear + kWalZeroAhead / 2);
  EXPECT_TRUE(on_disk.compare(0, w.appended.size(), w.appended) == 0) << "a record was overwritten";
  EXPECT_EQ(on_disk.find_first_not_of('\0', w.appended.size()), std::string::npos);

  // Closed, the WAL is its records and nothing else, as RocksDB leaves it.
  ASSERT_TRUE(w.file->Close(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_EQ(ReadAll(w.path), w.appended);
}

// The open flags of this process's descriptor of `path`; nullopt if none.
std::optional<int> OpenFlagsOf(const std::string& path) {
  const std::string want = std::filesystem::canonical(path).string();
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec).string() != want) continue;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    for (std::string key; info >> key;) {
      if (key != "flags:") continue;
      std::string octal;
      info >> octal;
      return static_cast<int>(std::stoul(octal, nullptr, 8));
    }
  }
  return std::nullopt;
}

// Whether the file system of `dir` takes O_DIRECT opens.
bool TakesDirectIo(const std::string& dir) {
  const std::string probe = dir + "/direct-probe";
  int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT, 0644);
  if (fd < 0) return false;
  ::close(fd);
  ::unlink(probe.c_str());
  return true;
}

bool WalFileSystemTest::WritesDirectly() const {
  return GetParam() == WalWrite::kDirect && TakesDirectIo(dir_) && FlushBarrierIsSafeIn(dir_);
}

TEST_P(WalFileSystemTest, WritesTheWalWithDirectIoWhereTheFileSystemTakesIt) {
  const bool direct = WritesDirectly();
  Written wal = CreateAndWrite("000009.log");
  Written other = CreateAndWrite("MANIFEST-000008");
  ASSERT_TRUE(wal.file && other.file);
  auto wal_flags = OpenFlagsOf(wal.path), other_flags = OpenFlagsOf(other.path);
  ASSERT_TRUE(wal_flags && other_flags);
  EXPECT_EQ((*wal_flags & O_DIRECT) != 0, direct);
  EXPECT_FALSE(*other_flags & O_DIRECT);
  ASSERT_TRUE(wal.file->Close(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_TRUE(ReadAll(wal.path) == wal.appended);
}

// How many of the pages of `path` in [from, to) are in the page cache.
size_t CachedPages(const std::string& path, uint64_t from, uint64_t to) {
  from = from / kPage * kPage;
  to = (to + kPage - 1) / kPage * kPage;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  void* map = ::mmap(nullptr, to - from, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(from));
  ::close(fd);
  if (map == MAP_FAILED) return 0;
  std::vector<unsigned char> resident((to - from) / kPage);
  size_t cached = 0;
  if (::mincore(map, to - from, resident.data()) == 0)
    for (unsigned char r : resident) cached += r & 1;
  ::munmap(map, to - from);
  return cached;
}

TEST_P(WalFileSystemTest, AFlushedAppendIsInTheFileBeforeAnySync) {
  // What a process killed after a commit's write (and before its sync) left.
  Written w;
  w.path = dir_ + "/000013.log";
  rocksdb::FileOptions options =
      fs_->OptimizeForLogWrite(rocksdb::FileOptions(), rocksdb::DBOptions());
  ASSERT_TRUE(fs_->NewWritableFile(w.path, options, &w.file, nullptr).ok());
  w.file->SetPreallocationBlockSize(4 << 20);  // as RocksDB does for a WAL
  std::mt19937 rng(11);
  rocksdb::IOOptions io;
  // A first commit, synced: it writes the zeros ahead and gets the fdatasync,
  // so that the appends below land in blocks it left written.
  auto append = [&](const std::string& piece) {
    w.file->PrepareWrite(w.appended.size(), piece.size(), io, nullptr);
    ASSERT_TRUE(w.file->Append(piece, io, nullptr).ok());
    w.appended += piece;
  };
  append("first");
  ASSERT_TRUE(w.file->Sync(io, nullptr).ok());
  for (int i = 0; i < 40; ++i) {
    // Pieces that end inside a page, on a page's end, and across several;
    // about 100 KiB in all, inside the zeros the first commit wrote ahead.
    const size_t n = i % 5 == 4 ? kPage - w.appended.size() % kPage : 1 + rng() % (2 * kPage);
    const uint64_t start = w.appended.size();
    append(std::string(n, static_cast<char>('A' + i % 26)));
    ASSERT_TRUE(w.file->Flush(io, nullptr).ok());
    // Written directly, the pages did not go through the page cache (the
    // reads below put them there; a direct write drops them again).
    if (WritesDirectly()) {
      EXPECT_EQ(CachedPages(w.path, start, w.appended.size()), 0u) << "after piece " << i;
    }
    const std::string on_disk = ReadAll(w.path);
    ASSERT_GE(on_disk.size(), w.appended.size());
    ASSERT_TRUE(on_disk.compare(0, w.appended.size(), w.appended) == 0) << "after piece " << i;
    EXPECT_EQ(on_disk.find_first_not_of('\0', w.appended.size()), std::string::npos);
  }
  EXPECT_EQ(w.file->GetFileSize(io, nullptr), w.appended.size());
  ASSERT_TRUE(w.file->Close(io, nullptr).ok());
  EXPECT_TRUE(ReadAll(w.path) == w.appended);
}

TEST_P(WalFileSystemTest, ATruncatedWalGoesOnFromItsNewEnd) {
  // RocksDB's own file appends at its old offset after a Truncate (RocksDB
  // truncates only files it writes with direct I/O, and then closes them).
  if (!WritesDirectly()) GTEST_SKIP() << "the WAL is RocksDB's own file";
  Written w = CreateAndWrite("000015.log");
  ASSERT_TRUE(w.file);
  rocksdb::IOOptions io;
  const uint64_t cut = w.appended.size() / 2 + 123;  // inside a page
  ASSERT_TRUE(w.file->Truncate(cut, io, nullptr).ok());
  EXPECT_EQ(w.file->GetFileSize(io, nullptr), cut);
  ASSERT_TRUE(w.file->Append("after the cut", io, nullptr).ok());
  ASSERT_TRUE(w.file->Sync(io, nullptr).ok());
  ASSERT_TRUE(w.file->Close(io, nullptr).ok());
  EXPECT_TRUE(ReadAll(w.path) == w.appended.substr(0, cut) + "after the cut");
}

TEST_P(WalFileSystemTest, LeavesOtherFilesAsRocksDbWritesThem) {
  // The control: the same writes to a file that is not a WAL leave the blocks
  // after its end preallocated and unwritten (what every WAL commit paid for).
  Written w = CreateAndWrite("MANIFEST-000005");
  ASSERT_TRUE(w.file);
  auto ahead = BlocksWritten(w.path, w.clear + kPage, kWalZeroAhead / 2);
  if (!ahead) GTEST_SKIP() << "the file system of " << dir_ << " has no FIEMAP";
  EXPECT_FALSE(*ahead);
  ASSERT_TRUE(w.file->Close(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_EQ(ReadAll(w.path), w.appended);
}

// A file system whose WAL syncs are counted, and one WAL file in dir_.
struct CountedWal {
  std::shared_ptr<WalSyncCounters> counters = std::make_shared<WalSyncCounters>();
  std::shared_ptr<rocksdb::FileSystem> fs;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  std::string appended;

  CountedWal(const std::string& dir, WalSync sync, WalWrite write)
      : fs(NewWalFileSystem(rocksdb::FileSystem::Default(), sync, counters, write)) {
    rocksdb::FileOptions options =
        fs->OptimizeForLogWrite(rocksdb::FileOptions(), rocksdb::DBOptions());
    EXPECT_TRUE(fs->NewWritableFile(dir + "/000011.log", options, &file, nullptr).ok());
    if (file) file->SetPreallocationBlockSize(4 << 20);  // as RocksDB does for a WAL
  }
  // Appends `n` bytes (never a zero byte) and syncs, as a commit does.
  void Commit(size_t n) {
    std::string piece(n, static_cast<char>('a' + appended.size() % 26));
    rocksdb::IOOptions io;
    file->PrepareWrite(appended.size(), piece.size(), io, nullptr);
    ASSERT_TRUE(file->Append(piece, io, nullptr).ok());
    appended += piece;
    ASSERT_TRUE(file->Sync(io, nullptr).ok());
  }
  uint64_t fdatasyncs() const { return counters->fdatasyncs.load(); }
  uint64_t flushes() const { return counters->flushes.load(); }
};

TEST_P(WalFileSystemTest, CommitsInsideBlocksAnFdatasyncWroteFlushTheDiskInstead) {
  if (!FlushBarrierIsSafeIn(dir_)) GTEST_SKIP() << dir_ << " is not on ext4 or XFS";
  CountedWal wal(dir_, WalSync::kAuto, GetParam());
  ASSERT_TRUE(wal.file);
  // The first commit writes zeros ahead: its blocks' metadata changed.
  wal.Commit(300);
  EXPECT_EQ(wal.fdatasyncs(), 1u);
  EXPECT_EQ(wal.flushes(), 0u);
  // The next ones land in blocks that fdatasync left written.
  for (int i = 0; i < 20; ++i) wal.Commit(1000);
  EXPECT_EQ(wal.fdatasyncs(), 1u);
  EXPECT_EQ(wal.flushes(), 20u);
  // Two empty barriers, whose inodes lie in different blocks of the inode
  // table: a WAL flushes through the one that does not share its block.
  struct stat st {
  }, second{};
  ASSERT_EQ(::stat((dir_ + "/" + kFlushBarrier).c_str(), &st), 0);
  ASSERT_EQ(::stat((dir_ + "/" + kFlushBarrier + "-2").c_str(), &second), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(second.st_size, 0);
  EXPECT_FALSE(MayShareInodeBlock(st.st_ino, second.st_ino, 4096));
  // Past them, each commit that writes more zeros ahead gets an fdatasync, and
  // only those: one per kWalZeroAhead / 2 of log.
  const uint64_t commits = 3 * kWalZeroAhead / 1000;
  for (uint64_t i = 0; i < commits; ++i) wal.Commit(1000);
  EXPECT_GE(wal.fdatasyncs(), 1 + 3 * kWalZeroAhead / (kWalZeroAhead / 2) - 1);
  EXPECT_LE(wal.fdatasyncs(), 1 + 3 * kWalZeroAhead / (kWalZeroAhead / 2) + 1);
  EXPECT_EQ(wal.fdatasyncs() + wal.flushes(), 21 + commits);
  std::string on_disk = ReadAll(dir_ + "/000011.log");
  EXPECT_TRUE(on_disk.compare(0, wal.appended.size(), wal.appended) == 0);
  ASSERT_TRUE(wal.file->Close(rocksdb::IOOptions(), nullptr).ok());
  on_disk = ReadAll(dir_ + "/000011.log");
  EXPECT_TRUE(on_disk == wal.appended) << on_disk.size() << " bytes, not " << wal.appended.size();
}

// The zeros ahead of a direct WAL go through the page cache, and leave it
// once the fdatasync that made them durable returned: the direct writes into
// them then find no cached page to write back or drop.
TEST_P(WalFileSystemTest, ZerosAheadOfADirectWalLeaveThePageCacheOnceDurable) {
  if (!WritesDirectly()) GTEST_SKIP() << "the WAL is RocksDB's own file";
  CountedWal wal(dir_, WalSync::kAuto, GetParam());
  ASSERT_TRUE(wal.file);
  // Writes the first zeros ahead: its pages and the zeros go through the page
  // cache, and the fdatasync writes them in one go.
  wal.Commit(300);
  ASSERT_EQ(wal.fdatasyncs(), 1u);
  EXPECT_EQ(CachedPages(dir_ + "/000011.log", 0, kWalZeroAhead + kPage), 0u)
      << "pages of the WAL's first 516 KiB in the page cache";
}

TEST_P(WalFileSystemTest, WithFdatasyncEveryCommitSyncsTheLog) {
  CountedWal wal(dir_, WalSync::kFdatasync, GetParam());
  ASSERT_TRUE(wal.file);
  for (int i = 0; i < 20; ++i) wal.Commit(1000);
  EXPECT_EQ(wal.fdatasyncs(), 20u);
  EXPECT_EQ(wal.flushes(), 0u);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/" + kFlushBarrier));
}

INSTANTIATE_TEST_SUITE_P(WalWrites, WalFileSystemTest,
                         testing::Values(WalWrite::kDirect, WalWrite::kPageCache),
                         [](const testing::TestParamInfo<WalWrite>& info) {
                           return info.param == WalWrite::kDirect ? "Direct" : "PageCache";
                         });

TEST(WalFlushBarrier, IsNotUsedWhereExt4JournalsFileData) {
  // /proc/self/mountinfo lines: the options after " - " are the super block's.
  const std::string mountinfo =
      "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,data=ordered\n"
      "30 22 254:16 / /journaled rw,relatime shared:9 - ext4 /dev/vdb rw,data=journal\n"
      "31 22 254:32 / /odd rw,relatime - ext4 /dev/vdc rw,data=journalled\n";
  EXPECT_FALSE(MountOptionsHave(mountinfo, makedev(254, 0), "data=journal"));
  EXPECT_TRUE(MountOptionsHave(mountinfo, makedev(254, 16), "data=journal"));
  EXPECT_FALSE(MountOptionsHave(mountinfo, makedev(254, 32), "data=journal"));
  EXPECT_FALSE(MountOptionsHave(mountinfo, makedev(8, 1), "data=journal"));
  EXPECT_TRUE(MountOptionsHave(mountinfo, makedev(254, 0), "rw"));
}

TEST(WalFlushBarrier, KnowsWhichInodesMayShareABlockOfTheTable) {
  // 4 KiB blocks of inodes of at least 128 bytes: inodes 1-32, 33-64, ...
  EXPECT_TRUE(MayShareInodeBlock(1, 32, 4096));
  EXPECT_TRUE(MayShareInodeBlock(40, 33, 4096));
  EXPECT_FALSE(MayShareInodeBlock(32, 33, 4096));
  EXPECT_FALSE(MayShareInodeBlock(10961025, 10961057, 4096));
  EXPECT_TRUE(MayShareInodeBlock(10961026, 10961032, 4096));  // seen: a WAL and its barrier
  EXPECT_FALSE(MayShareInodeBlock(8, 9, 1024));
}

TEST(WalFlushBarrier, IsNotUsedOnOtherFileSystems) {
  // /proc is neither ext4 nor XFS.
  EXPECT_FALSE(FlushBarrierIsSafeIn("/proc"));
  EXPECT_FALSE(FlushBarrierIsSafeIn("/no/such/directory"));
}

}  // namespace
}  // namespace pigeon
