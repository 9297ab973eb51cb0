// The file device's zero fill (ZeroFill), checked on real files: the extents
// of each new segment file, as the file system reports them (FIEMAP), are
// written (zeros went through them) or unwritten (only reserved).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nvm/log.h"
#include "nvm/log_device.h"
#include "nvm/log_format.h"
#include "nvm/segments.h"

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

// A fresh directory under /var/tmp (a disk-backed file system on most
// machines; /tmp may be tmpfs), "" if none could be made.
std::string MakeTempDir(const std::string& name) {
  std::string tmpl = "/var/tmp/faha-" + name + "-XXXXXX";
  return mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
}

class ZeroFillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // /var/tmp: a disk-backed file system on most machines (/tmp may be tmpfs,
    // which has no extents and never gets zeros).
    dir_ = MakeTempDir("zerofill");
    ASSERT_FALSE(dir_.empty());
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

// Log cleaning's replaced files (PmemDevice::Recycle), on real files: a file
// a reply no longer maps becomes a later segment, written with zeros first
// (recovery reads only what was appended since); one a reply still maps is
// removed. An open descriptor of the old file says where it went: its link
// count, and the header it holds now.
class RecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("recycle");
    ASSERT_FALSE(dir_.empty());
    options_.segment_bytes = 256 << 10;
    Start(ZeroFill::kAlways);
  }
  void Start(ZeroFill zero_fill) {
    log_.reset();
    auto dev = OpenPmemDevice(dir_, zero_fill);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    auto log = Log::Open(std::shared_ptr<LogDevice>(std::move(*dev)), options_);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(*log);
    ASSERT_TRUE(log_->Recover(nullptr, nullptr).ok());
    if (log_->Granularity() != "PAGE") GTEST_SKIP() << "DAX mount: segments are not recycled";
  }
  void TearDown() override {
    for (int fd : fds_) close(fd);
    log_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Appends batch `i` of 20 records of 200 bytes; keeps its keys.
  void Append(int i) {
    BatchBuilder b;
    for (int r = 0; r < 20; r++) {
      const std::string key = "k" + std::to_string(i) + "-" + std::to_string(r);
      b.Add(RecordType::kPut, key, std::string(200, static_cast<char>('a' + i % 26)), 0);
      keys_.push_back(key);
    }
    auto appended = log_->AppendBatch_wt(b.payload(), b.count());
    ASSERT_TRUE(appended.ok()) << appended.status().ToString();
    firsts_.push_back({appended->base_location, "k" + std::to_string(i) + "-0",
                       std::string(200, static_cast<char>('a' + i % 26))});
  }
  // A descriptor of segment `id`'s file as it is now.
  int OpenSegment(uint32_t id) {
    char name[32];
    snprintf(name, sizeof(name), "/segment-%08u.log", id);
    const int fd = open((dir_ + name).c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << name;
    fds_.push_back(fd);
    return fd;
  }
  static nlink_t Links(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_nlink : 99;
  }
  // The id in the segment header the file behind `fd` holds (0: none).
  static uint32_t HeaderId(int fd) {
    SegmentHeader h{};
    if (pread(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) return 0;
    return h.magic == kSegmentMagic ? h.segment_id : 0;
  }
  // Cleans sealed segment `id`, keeping its first record only; its keys go.
  void Clean(uint32_t id) {
    Log::SegmentInfo info;
    for (const auto& s : log_->SealedSegments())
      if (s.id == id) info = s;
    ASSERT_EQ(info.id, id);
    std::string first;
    uint64_t first_lsn = 0;
    ASSERT_TRUE(log_->ForEachRecord(id,
                                    [&](const RecordView& r, uint64_t loc, uint64_t lsn) {
                                      if (first_lsn != 0) {
                                        gone_.insert(std::string(r.key));
                                        return;
                                      }
                                      RecordView v;
                                      size_t n = 0;
                                      ASSERT_TRUE(
                                          DecodeRecord(log_->RecordPtr(loc), 1 << 20, &v, &n));
                                      first.assign(log_->RecordPtr(loc), n);
                                      first_lsn = lsn;
                                    })
                    .ok());
    std::vector<uint64_t> where;
    auto r = log_->PrepareReplacement(info, {{first, first_lsn}}, first_lsn, &where);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(log_->CommitReplacement(r->get()).ok());
    log_->SwapReplacement(std::move(*r));
  }

  std::string dir_;
  LogOptions options_;
  std::unique_ptr<Log> log_;
  std::vector<std::string> keys_;
  std::set<std::string> gone_;
  struct First {
    uint64_t location;
    std::string key, value;
  };
  std::vector<First> firsts_;  // each batch's first record
  std::vector<int> fds_;
};

TEST_F(RecycleTest, AReplacedFileBecomesALaterSegmentAndRecoveryReadsOnlyItsNewBatches) {
  int batch = 0;
  while (log_->SealedSegments().size() < 2) Append(batch++);
  const int old_file = OpenSegment(1);
  Clean(1);
  // Kept as a spare-to-be (its one link now a spare's name), not yet reused.
  EXPECT_EQ(Links(old_file), 1u);
  EXPECT_EQ(HeaderId(old_file), 1u);
  // Appends until the old file holds a later segment, then a few batches
  // more: the log ends inside it, where the old segment's batches were.
  uint32_t now_id = 0;
  for (int more = 0; more < 400 && (now_id = HeaderId(old_file)) <= 1; more++) Append(batch++);
  ASSERT_GT(now_id, 2u) << "the replaced file was never used again";
  for (int i = 0; i < 3; i++) Append(batch++);
  EXPECT_EQ(log_->segment_count(), now_id);
  EXPECT_EQ(Links(old_file), 1u);  // segment-<now_id>.log, the spare name gone
  EXPECT_EQ(log_->segment_files_reused(), 1u);
  // Readers see the new batches through the mapping the file kept.
  for (size_t i = firsts_.size() - 3; i < firsts_.size(); i++) {
    ASSERT_EQ(LocationSegment(firsts_[i].location), now_id);
    const RecordView r = log_->ReadRecord(firsts_[i].location);
    EXPECT_EQ(r.key, firsts_[i].key);
    EXPECT_EQ(r.value, firsts_[i].value);
  }
  log_.reset();
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().rfind("segment-spare", 0), std::string::npos)
        << e.path() << " left behind";
  }

  auto dev = OpenPmemDevice(dir_, ZeroFill::kAlways);
  ASSERT_TRUE(dev.ok());
  auto log = Log::Open(std::shared_ptr<LogDevice>(std::move(*dev)), options_);
  std::vector<std::string> got;
  RecoveryReport rep;
  Status s = (*log)->Recover(
      [&](const RecordView& r, uint64_t, uint64_t) { got.emplace_back(r.key); }, &rep);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> want;
  for (const auto& k : keys_)
    if (gone_.count(k) == 0) want.push_back(k);
  EXPECT_EQ(got, want);
}

// INFO's log_spare_segments: a fresh log gets two spares in the background,
// a switch takes one, and the thread that makes spares puts it back.
TEST_F(RecycleTest, SparesReadyAreCountedAndRefilledAfterASwitch) {
  auto wait_for_two = [&] {
    for (int i = 0; i < 1000 && log_->spare_segments() < 2; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return log_->spare_segments();
  };
  EXPECT_EQ(wait_for_two(), 2u);
  const uint64_t before = log_->segment_count();
  int batch = 0;
  while (log_->segment_count() == before) Append(batch++);
  EXPECT_EQ(wait_for_two(), 2u);
}

TEST_F(RecycleTest, AFileAReplyStillMapsIsRemovedNotReused) {
  int batch = 0;
  while (log_->SealedSegments().size() < 2) Append(batch++);
  const int old_file = OpenSegment(1);
  auto held = log_->HoldSegment(MakeLocation(1, sizeof(SegmentHeader)));
  ASSERT_NE(held, nullptr);
  Clean(1);
  EXPECT_EQ(Links(old_file), 0u);  // no spare name: it goes with the reply
  held.reset();
  for (int i = 0; i < 60; i++) Append(batch++);
  EXPECT_EQ(HeaderId(old_file), 1u);
  EXPECT_EQ(log_->segment_files_reused(), 0u);
}

// Opening a data directory removes what an earlier run left that holds no
// data: spares (new, or replaced segments' files kept for reuse), spares
// still being made, and segment files never renamed into place. Segments and
// anything else stay.
// Only a full-size file is kept (a cleaned segment's smaller file is removed
// when it is replaced in turn), and only where its zeros cost no more than a
// new file's: with ZeroFill never on a disk, replaced files are removed.
TEST_F(RecycleTest, SmallerFilesAndFilesWithoutZeroFillAreRemoved) {
  int batch = 0;
  while (log_->SealedSegments().size() < 2) Append(batch++);
  Clean(1);
  const int cleaned = OpenSegment(1);
  Clean(1);
  EXPECT_EQ(Links(cleaned), 0u);
  struct statfs fs;
  ASSERT_EQ(statfs(dir_.c_str(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << "tmpfs: its zeros cost no I/O, always kept";
  Start(ZeroFill::kNever);
  while (log_->SealedSegments().size() < 3) Append(batch++);
  const int old_file = OpenSegment(2);
  Clean(2);
  EXPECT_EQ(Links(old_file), 0u);
}

// The lines of /proc/self/smaps for the mapping that starts at `addr`.
std::string SmapsOf(const void* addr) {
  std::ifstream in("/proc/self/smaps");
  char start[32];
  snprintf(start, sizeof(start), "%lx-",
           static_cast<unsigned long>(reinterpret_cast<uintptr_t>(addr)));
  std::string line, out;
  bool in_vma = false;
  while (std::getline(in, line)) {
    const bool header = line.find('-') != std::string::npos && line.find(':') > line.find(' ');
    if (header) in_vma = line.rfind(start, 0) == 0;
    if (in_vma) out += line + "\n";
  }
  return out;
}

size_t SmapsKb(const std::string& smaps, const std::string& field) {
  const size_t at = smaps.find(field + ":");
  return at == std::string::npos ? 0 : std::stoul(smaps.substr(at + field.size() + 1));
}

bool ThpOn() {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(thp, mode);
  return !mode.empty() && mode.find("[never]") == std::string::npos;
}

// Whether THP is on and `dir` is ext4 on Linux 6.16 or later, which caches a
// file in large folios and maps a 2 MiB one with one entry.
bool LargeFoliosMapped(const std::string& dir) {
  struct statfs fs;
  utsname u;
  if (!ThpOn() || statfs(dir.c_str(), &fs) != 0 || fs.f_type != EXT4_SUPER_MAGIC ||
      uname(&u) != 0) {
    return false;
  }
  int major = 0, minor = 0;
  sscanf(u.release, "%d.%d", &major, &minor);
  return major > 6 || (major == 6 && minor >= 16);
}

// KiB of `seg`'s mapping in 2 MiB pages once faulted in, as the spare-segment
// thread does; -1 for a DAX mapping (libpmem2's, not advised).
long PmdMappedKb(Segment* seg) {
  seg->Prefault(0, kSegmentBytes);
  const std::string smaps = SmapsOf(seg->data());
  EXPECT_FALSE(smaps.empty()) << "no mapping at the segment's address";
  if (smaps.find(" sf") != std::string::npos) return -1;  // MAP_SYNC
  EXPECT_NE(smaps.find(" hg"), std::string::npos) << smaps;
  return static_cast<long>(SmapsKb(smaps, "FilePmdMapped"));
}

// A segment's read mapping asks for 2 MiB pages (FileSegment), and where the
// kernel caches the file in large folios (ext4 from Linux 6.16) a segment
// whose zeros were written in 2 MiB writes is mapped in them: 4 KiB pages
// cost each record read a TLB walk of its own.
TEST(HugeMappingTest, ASegmentIsMappedIn2MiBPagesWhereTheKernelCan) {
  if (!ThpOn()) GTEST_SKIP() << "transparent huge pages are off here";
  const std::string dir = MakeTempDir("huge");
  ASSERT_FALSE(dir.empty());
  long kb = 0;
  {
    auto dev = OpenPmemDevice(dir, ZeroFill::kAlways);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    auto seg = (*dev)->CreateSegment(1, kSegmentBytes);
    ASSERT_TRUE(seg.ok()) << seg.status().ToString();
    kb = PmdMappedKb(seg->get());
    if (kb >= 0 && LargeFoliosMapped(dir)) {
      EXPECT_GE(kb, 2048);
    }
  }
  std::filesystem::remove_all(dir);
  if (kb < 0) GTEST_SKIP() << "a DAX mapping is libpmem2's and not advised";
}

// Auto writes the zeros in 4 KiB writes while syncs are tiny (4 KiB folios,
// cheaper syncs) and in 2 MiB writes once they are larger (2 MiB mappings for
// reads). Two spares are made ahead, so a change shows from the third segment.
TEST_F(ZeroFillTest, AutoWritesSmallFoliosWhileSyncsAreTiny) {
  if (!LargeFoliosMapped(dir_)) GTEST_SKIP() << "no 2 MiB folios mapped here to tell apart";
  auto dev = Open(ZeroFill::kAuto);
  auto first = dev->CreateSegment(1, kSegmentBytes);
  ASSERT_TRUE(first.ok());
  const long kb = PmdMappedKb(first->get());
  if (kb < 0) GTEST_SKIP() << "a DAX mount: no page cache";
  EXPECT_EQ(kb, 0) << "no syncs yet: taken as tiny";
  Syncs(first->get(), 32 << 10, 64);
  std::vector<std::unique_ptr<Segment>> keep;
  CreateThree(dev.get(), 2, &keep);
  EXPECT_GE(PmdMappedKb(keep.back().get()), 2048) << "32 KiB syncs: 2 MiB folios";
  ExpectExtents(dev->SegmentName(4), kSegmentBytes, 0);
  Syncs(keep.back().get(), 1 << 10, 200);
  CreateThree(dev.get(), 5, &keep);
  EXPECT_EQ(PmdMappedKb(keep.back().get()), 0) << "1 KiB syncs again: 4 KiB folios";
  ExpectExtents(dev->SegmentName(7), kSegmentBytes, 0);
}

// Whether this kernel has MADV_POPULATE_READ (Linux 5.14+).
bool HasPopulateRead() {
  void* p = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool ok = madvise(p, 4096, MADV_POPULATE_READ) == 0;
  munmap(p, 4096);
  return ok;
}

// A new file whose blocks are unwritten (zeros skipped) maps its pages for
// readers as writes fill them, not ahead (a page mapped ahead is allocated and
// zeroed for the mapping, then written over); a spare whose zeros were written
// is faulted in ahead, as before. Writes of 1-5 KB, as batches at a few
// clients: before any read through the mapping, the pages written are mapped
// (but for the last 64 KiB step at most), the rest of the 4 MiB segment is
// not (at most one 2 MiB page past the writes), and what was written reads back.
TEST(MapAsWrittenTest, UnwrittenBlocksAreMappedAsWritesFillThem) {
  if (!HasPopulateRead()) GTEST_SKIP() << "no MADV_POPULATE_READ (Linux before 5.14)";
  const std::string dir = MakeTempDir("mapped");
  ASSERT_FALSE(dir.empty());
  if (IsTmpfs(dir)) GTEST_SKIP() << "tmpfs has no unwritten blocks: mapped ahead";
  for (ZeroFill zero_fill : {ZeroFill::kNever, ZeroFill::kAlways}) {
    SCOPED_TRACE(zero_fill == ZeroFill::kNever ? "zeros skipped" : "zeros written");
    auto dev = OpenPmemDevice(dir, zero_fill);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    std::vector<std::unique_ptr<Segment>> segs;
    for (uint32_t id = 1; id <= 3; id++) {  // the third is a spare
      auto seg = (*dev)->CreateSegment(id, kSegmentBytes);
      ASSERT_TRUE(seg.ok()) << seg.status().ToString();
      segs.push_back(std::move(*seg));
    }
    Segment* s = segs.back().get();
    auto* file = dynamic_cast<FileSegment*>(s);
    if (file == nullptr) GTEST_SKIP() << "DAX: faulted in ahead";
    const size_t before = SmapsKb(SmapsOf(s->data()), "Rss");
    if (zero_fill == ZeroFill::kAlways) {
      EXPECT_FALSE(file->maps_as_written());
      EXPECT_EQ(before, kSegmentBytes >> 10) << "a spare with zeros is faulted in ahead";
      continue;
    }
    EXPECT_TRUE(file->maps_as_written());
    EXPECT_EQ(before, 0u) << "nothing written, nothing mapped";
    std::string written;
    for (int i = 0; written.size() < (1 << 20) + 5000; i++) {
      const std::string p(1000 + (i * 997) % 4000, static_cast<char>('a' + i % 26));
      s->Write(written.size(), p.data(), p.size());
      written += p;
    }
    ASSERT_TRUE(s->Persist(0, written.size()).ok());
    const size_t rss = SmapsKb(SmapsOf(s->data()), "Rss");  // before any read through it
    EXPECT_GE(rss, (written.size() - (68 << 10)) >> 10) << "the pages written are mapped";
    EXPECT_LE(rss, (written.size() + (2 << 20)) >> 10) << "pages not written yet are not";
    EXPECT_EQ(std::string_view(s->data(), written.size()), written);
    segs.clear();
    dev->reset();
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(std::filesystem::create_directory(dir));
  }
  std::filesystem::remove_all(dir);
}

// Paced zeros (a spare's, on a disk): written back a piece at a time, the
// pacer asked between pieces (not after the last) with a pause no longer than
// kZeroPauseMaxUs, never again once it said no; the file reads as zeros.
TEST(WriteZerosTest, PacedZerosAreWrittenBackAPieceAtATime) {
  const std::string dir = MakeTempDir("paced");
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/paced";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  const size_t bytes = 4 << 20;
  const std::string junk(bytes, 'x');
  ASSERT_EQ(pwrite(fd, junk.data(), bytes, 0), static_cast<ssize_t>(bytes));
  int asked = 0;
  int64_t longest = -1;
  auto always = [&](int64_t pause_us) {
    asked++;
    longest = std::max(longest, pause_us);
    return true;
  };
  EXPECT_TRUE(WriteZeros(fd, bytes, kSmallFolioBytes, always).ok());
  EXPECT_EQ(asked, static_cast<int>(bytes / kZeroPaceBytes) - 1);
  EXPECT_GE(longest, 0);
  EXPECT_LE(longest, kZeroPauseMaxUs);
  asked = 0;  // larger writes are cut at the pieces' ends
  EXPECT_TRUE(WriteZeros(fd, bytes, kLargeFolioBytes, always).ok());
  EXPECT_EQ(asked, static_cast<int>(bytes / kZeroPaceBytes) - 1);
  ASSERT_EQ(pwrite(fd, junk.data(), bytes, 0), static_cast<ssize_t>(bytes));
  asked = 0;  // a no ends the pacing: the rest is the caller's sync
  auto twice = [&](int64_t) { return ++asked < 2; };
  EXPECT_TRUE(WriteZeros(fd, bytes, kSmallFolioBytes, twice).ok());
  EXPECT_EQ(asked, 2);
  std::string back(bytes, 'y');
  EXPECT_EQ(pread(fd, back.data(), bytes, 0), static_cast<ssize_t>(bytes));
  close(fd);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(back, std::string(bytes, '\0'));
}

TEST(DeviceOpenTest, LeftoverSparesAndUnfinishedSegmentFilesAreRemoved) {
  const std::string dir = MakeTempDir("leftover");
  ASSERT_FALSE(dir.empty());
  const std::vector<std::string> gone = {"segment-spare-3.tmp", "segment-spare-4.tmp.tmp",
                                         "segment-00000002.log.tmp"};
  const std::vector<std::string> kept = {"segment-00000001.log", "segment-00000001.log.clean",
                                         "notes.txt"};
  for (const auto& name : gone) std::ofstream(dir + "/" + name) << "x";
  for (const auto& name : kept) std::ofstream(dir + "/" + name) << "x";
  {
    auto dev = OpenPmemDevice(dir);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    auto ids = (*dev)->ListSegments();
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, std::vector<uint32_t>{1});
  }
  for (const auto& name : gone) EXPECT_FALSE(std::filesystem::exists(dir + "/" + name)) << name;
  // (A staged .clean file goes at recovery, DiscardReplacement(0).)
  for (const auto& name : kept) EXPECT_TRUE(std::filesystem::exists(dir + "/" + name)) << name;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace faha::nvm
