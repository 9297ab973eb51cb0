// The file device's zero fill (ZeroFill), checked on real files: the extents
// of each new segment file, as the file system reports them (FIEMAP), are
// written (zeros went through them) or unwritten (only reserved).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "nvm/log_device.h"

namespace faha::nvm {
namespace {

constexpr size_t kSegmentBytes = 4 << 20;

struct Extents {
  bool ok = false;
  size_t written = 0;
  size_t unwritten = 0;
};

Extents ExtentsOf(const std::string& path) {
  Extents e;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return e;
  constexpr int kMax = 64;
  std::vector<char> buf(sizeof(fiemap) + kMax * sizeof(fiemap_extent), 0);
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = kMax;
  if (ioctl(fd, FS_IOC_FIEMAP, fm) == 0) {
    e.ok = true;
    for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
      const fiemap_extent& x = fm->fm_extents[i];
      ((x.fe_flags & FIEMAP_EXTENT_UNWRITTEN) ? e.unwritten : e.written) += x.fe_length;
    }
  }
  close(fd);
  return e;
}

class ZeroFillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // /var/tmp: a disk-backed file system on most machines (/tmp may be tmpfs,
    // which has no extents and never gets zeros).
    char tmpl[] = "/var/tmp/faha-zerofill-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    struct statfs fs;
    ASSERT_EQ(statfs(dir_.c_str(), &fs), 0);
    if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << dir_ << " is tmpfs: no extents to check";
    int fd = open((dir_ + "/probe").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    const bool reserves = posix_fallocate(fd, 0, 1 << 20) == 0;
    close(fd);
    if (!reserves || !ExtentsOf(dir_ + "/probe").ok || ExtentsOf(dir_ + "/probe").unwritten == 0) {
      GTEST_SKIP() << dir_ << ": its file system reports no unwritten extents";
    }
    unlink((dir_ + "/probe").c_str());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<LogDevice> Open(ZeroFill z) {
    auto dev = OpenPmemDevice(dir_, z);
    EXPECT_TRUE(dev.ok()) << dev.status().ToString();
    return dev.ok() ? std::move(*dev) : nullptr;
  }
  // Makes `count` syncs of `bytes` each on `seg`.
  static void Syncs(Segment* seg, size_t bytes, int count) {
    const std::string data(bytes, 'x');
    for (int i = 0; i < count; i++) {
      const size_t off = 4096 + (static_cast<size_t>(i) * bytes) % (kSegmentBytes - bytes - 4096);
      ASSERT_TRUE(seg->WritePartsDurable(off, data, "").ok());
    }
  }
  static void ExpectExtents(const std::string& path, size_t written, size_t unwritten) {
    Extents e = ExtentsOf(path);
    ASSERT_TRUE(e.ok) << path;
    EXPECT_EQ(e.written, written) << path;
    EXPECT_EQ(e.unwritten, unwritten) << path;
  }
  // Creates segments from..from+2, kept in `keep`.
  static void CreateThree(LogDevice* dev, uint32_t from,
                          std::vector<std::unique_ptr<Segment>>* keep) {
    for (uint32_t id = from; id < from + 3; id++) {
      auto seg = dev->CreateSegment(id, kSegmentBytes);
      ASSERT_TRUE(seg.ok()) << seg.status().ToString();
      keep->push_back(std::move(*seg));
    }
  }
  std::string dir_;
};

TEST_F(ZeroFillTest, AlwaysWritesTheZerosAndNeverOnlyReserves) {
  {
    auto dev = Open(ZeroFill::kAlways);
    ASSERT_TRUE(dev->CreateSegment(1, kSegmentBytes).ok());
    ExpectExtents(dev->SegmentName(1), kSegmentBytes, 0);
  }
  auto dev = Open(ZeroFill::kNever);
  ASSERT_TRUE(dev->CreateSegment(2, kSegmentBytes).ok());
  ExpectExtents(dev->SegmentName(2), 0, kSegmentBytes);
}

// Auto follows the syncs: large ones leave the next segments unwritten, small
// ones bring the zeros back. Two spares are made ahead, so a change shows from
// the third segment created after it.
TEST_F(ZeroFillTest, AutoSkipsTheZerosWhileSyncsAreLarge) {
  auto dev = Open(ZeroFill::kAuto);
  auto first = dev->CreateSegment(1, kSegmentBytes);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(ExtentsOf(dev->SegmentName(1)).unwritten, 0u) << "no syncs yet: zeros";
  Syncs(first->get(), 512 << 10, 64);
  std::vector<std::unique_ptr<Segment>> keep;
  CreateThree(dev.get(), 2, &keep);
  ExpectExtents(dev->SegmentName(4), 0, kSegmentBytes);

  Syncs(keep.back().get(), 4 << 10, 200);
  CreateThree(dev.get(), 5, &keep);
  ExpectExtents(dev->SegmentName(7), kSegmentBytes, 0);
}

}  // namespace
}  // namespace faha::nvm
