// The segments of the file device (pmem_device.cc): PmemSegment on a DAX
// mapping, FileSegment on an ordinary file system, and the helpers they share.
// See pmem_device.cc for which is used where and why.
#ifndef FAHA_NVM_SEGMENTS_H_
#define FAHA_NVM_SEGMENTS_H_

#include <dirent.h>
#include <fcntl.h>
#include <libpmem2.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/mutex.h"
#include "common/strings.h"
#include "nvm/log_device.h"

namespace faha::nvm {

// pmem2_errormsg() (or strerror(rc)) after `what`.
std::string PmemError(const std::string& what, int rc = 0);
// libpmem2 calls that set up a mapping run one at a time: two threads mapping
// at once (the background segment preparer and --log_preallocate_mb after a
// restart) once made both fail without a message under ASan.
extern Mutex g_map_mu;
// Every mapped segment's address range, for OverlapsLogMapping.
void AddRange(const char* data, size_t size);
void RemoveRange(const char* data);
// madvise(MADV_POPULATE_READ or _WRITE, Linux 5.14+) over the whole pages of
// [off, off + len) of a mapping of `size` bytes at `data`: the pages are
// faulted in now. A failure only costs the speed-up.
void Populate(char* data, size_t size, size_t off, size_t len, int advice);
// The system's page size.
inline size_t PageBytes() {
  static const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return kPage;
}
const char* GranularityName(pmem2_granularity g);
// Busy when errno `err` says the file system is out of space (blocks, inodes
// or quota): the log then reports itself full and tries again later.
Status SpaceOrIOError(int err, const std::string& what);
// Writes `bytes` zeros from offset 0 of `fd`, `chunk` (at most 2 MiB) at a
// time. The page cache sizes a file's folios by the writes that bring its
// pages in (ext4 on Linux 6.16+, xfs): 2 MiB writes at 2 MiB offsets give
// 2 MiB folios, which a read mapping maps with one entry each (FileSegment);
// 4 KiB writes give 4 KiB folios, whose small syncs cost less (ZeroFill).
// With `pace`, the zeros go to the disk `piece` bytes at a time (writes are cut
// at the pieces' ends, and so are a new file's folios), and after each piece
// pace(pause_us) pauses up to four times as long as its write-back took (at
// most kZeroPauseMaxUs) and says whether to go on; after a no, the rest is
// left to the caller's sync. A spare's 64 MiB of zeros synced at once held the
// disk for 100-200 ms here, and every log sync (every SET) waited behind them.
inline constexpr size_t kLargeFolioBytes = 2 << 20;
inline constexpr size_t kSmallFolioBytes = 4 << 10;
inline constexpr size_t kZeroPaceBytes = 64 << 10;
inline constexpr int64_t kZeroPauseMaxUs = 20000;
using ZeroPacer = std::function<bool(int64_t pause_us)>;
Status WriteZeros(int fd, size_t bytes, size_t chunk = kLargeFolioBytes,
                  const ZeroPacer& pace = nullptr);
// Removes the spare segments an earlier run left in `dir`, and the segment
// files it was still making (segment-N.log.tmp, never renamed): no data.
void RemoveLeftoverSpares(const std::string& dir);
// Whether `dir` is on tmpfs (no extents; zeros cost no I/O).
bool IsTmpfs(const std::string& dir);
// Whether `fd` maps with MAP_SYNC (its file system is DAX).
bool MapsWithMapSync(int fd);

class PmemSegment final : public Segment {
 public:
  explicit PmemSegment(pmem2_map* map) : map_(map) {
    data_ = static_cast<char*>(pmem2_map_get_address(map));
    size_ = pmem2_map_get_size(map);
    persist_ = pmem2_get_persist_fn(map);
    memcpy_ = pmem2_get_memcpy_fn(map);
    AddRange(data_, size_);
  }
  ~PmemSegment() override {
    RemoveRange(data_);
    MutexLock l(&g_map_mu);
    pmem2_map_delete(&map_);
  }
  PmemSegment(const PmemSegment&) = delete;
  PmemSegment& operator=(const PmemSegment&) = delete;

  void Prefault(size_t off, size_t len) override {
    // Faults the pages in now, writable.
    Populate(data_, size_, off, len, MADV_POPULATE_WRITE);
  }

  void Write(size_t off, const void* src, size_t len) override {
    // NOFLUSH: Persist() below flushes the whole batch once.
    memcpy_(data_ + off, src, len, PMEM2_F_MEM_NOFLUSH);
  }

  Status Persist(size_t off, size_t len) override {
    if (len == 0) return Status::OK();
    persist_(data_ + off, len);
    return Status::OK();
  }

 private:
  pmem2_map* map_;
  pmem2_persist_fn persist_;
  pmem2_memcpy_fn memcpy_;
};

// What the file device's segments tell it about their syncs: the average
// bytes each made durable (an exponential average over the last ~16), which
// decides whether the next spare segment gets its zeros written (ZeroFill).
struct SyncSizes {
  std::atomic<uint64_t> average{0};
  // Concurrent samples may lose one another: an estimate is all it needs.
  void Sample(uint64_t bytes) {
    const uint64_t a = average.load(std::memory_order_relaxed);
    average.store(a - a / 16 + bytes / 16, std::memory_order_relaxed);
  }
};

// A segment on an ordinary file system: written with pwritev at its offset,
// made durable with fdatasync, read through a read-only shared mapping. The
// file is preallocated (MakeFile), and zero-written while syncs are small, so
// that an fdatasync writes back data pages and flushes the device, with no
// journal commit for block allocation or extent conversion (ZeroFill).
// Write() cannot return an error; the first one is kept and returned by every
// later Persist() (the log then refuses further appends), as the kernel's
// fsync reports a failed writeback once.
// A sealed segment gives its descriptor back (a log may have thousands of
// segments) and opens `path` again if it is written once more.
class FileSegment final : public Segment {
 public:
  FileSegment(int fd, char* data, size_t size, std::string path,
              std::shared_ptr<SyncSizes> sync_sizes = nullptr)
      : fd_(fd), path_(std::move(path)), sync_sizes_(std::move(sync_sizes)) {
    data_ = data;
    size_ = size;
    AddRange(data_, size_);
    // In 2 MiB pages where the kernel can: ext4 (Linux 6.16+) and xfs cache
    // files in large folios (WriteZeros of 2 MiB writes for that), and
    // the kernel maps a 2 MiB folio under a 2 MiB-aligned mapping (it aligns
    // large file mappings) with one entry. The advice also makes read-ahead
    // of uncached ranges 2 MiB. A random record read through 4 KiB pages
    // misses the TLB and walks the page tables: on ext4 the first load of
    // each overwritten record was 25-47 % of a backup's CPU
    // (docs/architecture.md). It fails only where the kernel has no THP.
    if (madvise(data_, size_, MADV_HUGEPAGE) != 0) {
      FAHA_LOG_DEBUG("madvise(MADV_HUGEPAGE) %s: %s", path_.c_str(), strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
      dev_ = st.st_dev;
      ino_ = st.st_ino;
    }
  }
  ~FileSegment() override {
    if (data_ != nullptr) {  // null once the mapping was given up
      RemoveRange(data_);
      munmap(data_, size_);
    }
    if (fd_ >= 0) close(fd_);
  }

  // Gives the mapping up to the caller, who unmaps it and removes its range
  // (a recycled file keeps its mapping; PmemDevice::Recycle), and closes the
  // descriptor.
  char* ReleaseMapping() {
    char* data = data_;
    data_ = nullptr;
    Seal();
    return data;
  }
  // Whether `path` names this segment's file, at this segment's size.
  bool SameFile(const std::string& path) const {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_ &&
           static_cast<size_t>(st.st_size) == size_;
  }

  void Seal() override {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  // Thread-safety: Write, WriteParts and Seal from the log's writer; Persist
  // from the writer and from other threads at once (Log::Sync_any), never at
  // the same time as Seal (the log excludes that).
  // The file was renamed (a spare put in place as a segment).
  void set_path(std::string path) { path_ = std::move(path); }
  FileSegment(const FileSegment&) = delete;
  FileSegment& operator=(const FileSegment&) = delete;

  void Write(size_t off, const void* src, size_t len) override {
    iovec iov{const_cast<void*>(src), len};
    WriteAll(off, &iov, 1, 0);
  }

  void WriteParts(size_t off, std::string_view a, std::string_view b) override {
    iovec iov[2] = {{const_cast<char*>(a.data()), a.size()},
                    {const_cast<char*>(b.data()), b.size()}};
    WriteAll(off, iov, 2, 0);
  }

  // One pwritev2(RWF_DSYNC): the write and its sync in one system call (the
  // kernel syncs that range as fdatasync would).
  Status WritePartsDurable(size_t off, std::string_view a, std::string_view b) override {
    iovec iov[2] = {{const_cast<char*>(a.data()), a.size()},
                    {const_cast<char*>(b.data()), b.size()}};
    WriteAll(off, iov, 2, RWF_DSYNC);
    if (std::string e = error(); !e.empty()) return Status::IOError(e);
    if (sync_sizes_) sync_sizes_->Sample(a.size() + b.size());
    return Status::OK();
  }

  Status Persist(size_t off, size_t len) override {
    if (len == 0) return Status::OK();
    if (std::string e = error(); !e.empty()) return Status::IOError(e);
    if (off + len > size_) return Status::InvalidArgument("persist past the end of the segment");
    // Sealed meanwhile: sync through a descriptor of its own.
    int fd = fd_.load(std::memory_order_acquire);
    const bool own = fd < 0;
    if (own && (fd = open(path_.c_str(), O_RDWR | O_CLOEXEC)) < 0) {
      return Status::IOError(SetError(Errno("open " + path_ + " again")));
    }
    // fdatasync rather than sync_file_range: only fdatasync flushes the
    // device's volatile cache and commits whatever metadata the data needs.
    // One at a time: the kernel reports a failed writeback to one fdatasync
    // of a file, which could be a sync of a later batch while the batch whose
    // pages failed is told it is durable. In turn, a 0 means every page dirty
    // when the call began is durable, and a failure is kept for all later.
    Status s;
    uint64_t synced = 0;
    {
      MutexLock one_sync(&sync_mu_);
      // What this sync covers: the bytes written since the last one began.
      synced = unsynced_bytes_.exchange(0, std::memory_order_relaxed);
      if (std::string e = error(); !e.empty()) {
        s = Status::IOError(e);
      } else {
        while (fdatasync(fd) != 0) {
          if (errno == EINTR) continue;
          s = Status::IOError(SetError(Errno("fdatasync")));
          break;
        }
      }
    }
    if (own) close(fd);
    if (s.ok() && sync_sizes_ && synced > 0) sync_sizes_->Sample(synced);
    return s;
  }

  void Prefault(size_t off, size_t len) override {
    // This maps the pages for readers so that reads of fresh records take no
    // page fault (they are in the page cache when MakeFile wrote the zeros,
    // and read as zeros from unwritten blocks otherwise).
    Populate(data_, size_, off, len, MADV_POPULATE_READ);
  }

  // Maps the pages for readers as writes fill them, not ahead (Prefault):
  // WriteAll maps the whole pages written every kMapStepBytes, on the writing
  // thread, and a record read before that maps its page by the fault. For a
  // file whose blocks are unwritten (PmemDevice::MakeFile): mapped ahead, each
  // page was allocated and zeroed for the mapping, then written over.
  void MapAsWritten(size_t from) { mapped_end_ = from & ~(PageBytes() - 1); }
  bool maps_as_written() const { return mapped_end_ != SIZE_MAX; }

 private:
  // Opens the file again after Seal(); false (with the error kept) if it cannot.
  bool Reopen() {
    if (fd_ >= 0) return true;
    fd_ = open(path_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) SetError(Errno("open " + path_ + " again"));
    return fd_ >= 0;
  }
  std::string error() const {
    MutexLock l(&error_mu_);
    return write_error_;
  }
  // Keeps the first error; returns the one kept.
  std::string SetError(const std::string& e) {
    MutexLock l(&error_mu_);
    if (write_error_.empty()) write_error_ = e;
    return write_error_;
  }

  // pwritev2 with `flags` (0 or RWF_DSYNC) until every byte is written.
  void WriteAll(size_t off, iovec* iov, int n, int flags) {
    if (!Reopen()) return;
    size_t want = 0;
    for (int i = 0; i < n; i++) want += iov[i].iov_len;
    if (off + want > size_) {
      SetError("write past the end of the segment");
      return;
    }
    if (flags == 0) unsynced_bytes_.fetch_add(want, std::memory_order_relaxed);
    while (want > 0) {
      const ssize_t w =
          pwritev2(fd_.load(std::memory_order_relaxed), iov, n, static_cast<off_t>(off), flags);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        SetError(Errno(flags == 0 ? "pwritev2" : "pwritev2(RWF_DSYNC)"));
        return;
      }
      // A short write (a signal, or a full disk on a file that was not
      // preallocated): step past what was written and write the rest.
      size_t done = static_cast<size_t>(w);
      off += done;
      want -= done;
      while (n > 0 && done >= iov[0].iov_len) {
        done -= iov[0].iov_len;
        iov++;
        n--;
      }
      if (n > 0) {
        iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + done;
        iov[0].iov_len -= done;
      }
    }
    if (mapped_end_ != SIZE_MAX && off >= mapped_end_ + kMapStepBytes) {
      // The whole pages written since the last step; a page read before its
      // step is mapped by the read's fault, as before any populate.
      const size_t to = off & ~(PageBytes() - 1);
      Populate(data_, size_, mapped_end_, to - mapped_end_, MADV_POPULATE_READ);
      mapped_end_ = to;
    }
  }

  std::atomic<int> fd_;  // -1 while sealed
  std::string path_;
  dev_t dev_ = 0;  // the file's identity (SameFile)
  ino_t ino_ = 0;
  Mutex sync_mu_;                                // one fdatasync at a time
  const std::shared_ptr<SyncSizes> sync_sizes_;  // the device's; may be null
  std::atomic<uint64_t> unsynced_bytes_{0};      // written since the last Persist
  // With MapAsWritten: the offset up to which writes have mapped the pages
  // (SIZE_MAX: none mapped here), a page boundary, and how far writes go on
  // before the next populate: a system call of its own, about as costly as a
  // small batch's other work at eight clients if made for every batch.
  // Only the thread writing the segment uses it.
  static constexpr size_t kMapStepBytes = 64 << 10;
  size_t mapped_end_ = SIZE_MAX;
  mutable Mutex error_mu_;
  std::string write_error_ GUARDED_BY(error_mu_);  // the first failed write or sync
};

}  // namespace faha::nvm

#endif  // FAHA_NVM_SEGMENTS_H_
