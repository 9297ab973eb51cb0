// LogDevice on segment files. Each segment is probed with libpmem2:
//  - on a DAX mount (MAP_SYNC) libpmem2 reports CACHE_LINE (or BYTE)
//    granularity; the segment stays mapped read-write and a write is a store
//    into the mapping made durable by a cache-line flush + fence from user space
//    (PmemSegment);
//  - on an ordinary file system it reports PAGE; there a store into a shared
//    mapping costs a write fault, dirty-page tracking and whole-page writeback
//    per batch, so the segment is written like a database writes its log:
//    positioned writes (pwritev) through the page cache, made durable with
//    fdatasync, and the mapping is read-only, for readers (FileSegment). Buffered
//    writes and a shared mapping of the same file see the same page cache, so
//    readers see what was written without a copy.
// docs/architecture.md ("The file device") has the measurements behind this.
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
#include <map>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/mutex.h"
#include "common/strings.h"
#include "nvm/log_device.h"

namespace faha::nvm {
namespace {

std::string PmemError(const std::string& what, int rc = 0) {
  std::string msg = pmem2_errormsg();
  if (msg.empty() && rc != 0) msg = strerror(rc < 0 ? -rc : rc);
  return what + ": " + (msg.empty() ? "unknown error" : msg);
}

// libpmem2 calls that set up a mapping run one at a time: two threads mapping
// at once (the background segment preparer and --log_preallocate_mb after a
// restart) once made both fail without a message under ASan.
Mutex g_map_mu;

// Every mapped segment's address range, for OverlapsLogMapping.
Mutex g_ranges_mu;
std::map<uintptr_t, size_t>& Ranges() {
  static auto* r = new std::map<uintptr_t, size_t>;
  return *r;
}

void AddRange(const char* data, size_t size) {
  MutexLock l(&g_ranges_mu);
  Ranges()[reinterpret_cast<uintptr_t>(data)] = size;
}
void RemoveRange(const char* data) {
  MutexLock l(&g_ranges_mu);
  Ranges().erase(reinterpret_cast<uintptr_t>(data));
}

// madvise(MADV_POPULATE_READ or _WRITE, Linux 5.14+) over the whole pages of
// [off, off + len) of a mapping of `size` bytes at `data`: the pages are
// faulted in now. A failure only costs the speed-up.
void Populate(char* data, size_t size, size_t off, size_t len, int advice) {
  static const uintptr_t kPage = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = (reinterpret_cast<uintptr_t>(data) + off + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + std::min(size, off + len);
  if (end <= start) return;
  if (madvise(reinterpret_cast<void*>(start), end - start, advice) != 0) {
    FAHA_LOG_DEBUG("madvise(MADV_POPULATE_%s): %s", advice == MADV_POPULATE_READ ? "READ" : "WRITE",
                   strerror(errno));
  }
}

const char* GranularityName(pmem2_granularity g) {
  switch (g) {
    case PMEM2_GRANULARITY_BYTE:
      return "BYTE";
    case PMEM2_GRANULARITY_CACHE_LINE:
      return "CACHE_LINE";
    case PMEM2_GRANULARITY_PAGE:
      return "PAGE";
  }
  return "UNKNOWN";
}

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

// A segment on an ordinary file system: written with pwritev at its offset,
// made durable with fdatasync, read through a read-only shared mapping. The
// file is preallocated and zero-written (MakeFile), so an fdatasync writes
// back data pages and flushes the device, with no journal commit for block
// allocation or extent conversion.
// Write() cannot return an error; the first one is kept and returned by every
// later Persist() (the log then refuses further appends), as the kernel's
// fsync reports a failed writeback once.
// A sealed segment gives its descriptor back (a log may have thousands of
// segments) and opens `path` again if it is written once more.
class FileSegment final : public Segment {
 public:
  FileSegment(int fd, char* data, size_t size, std::string path) : fd_(fd), path_(std::move(path)) {
    data_ = data;
    size_ = size;
    AddRange(data_, size_);
  }
  ~FileSegment() override {
    RemoveRange(data_);
    munmap(data_, size_);
    if (fd_ >= 0) close(fd_);
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
    {
      MutexLock one_sync(&sync_mu_);
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
    return s;
  }

  void Prefault(size_t off, size_t len) override {
    // The pages are in the page cache (MakeFile wrote them); this maps them
    // for readers so that reads of fresh records take no page fault.
    Populate(data_, size_, off, len, MADV_POPULATE_READ);
  }

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
  }

  std::atomic<int> fd_;  // -1 while sealed
  std::string path_;
  Mutex sync_mu_;  // one fdatasync at a time
  mutable Mutex error_mu_;
  std::string write_error_ GUARDED_BY(error_mu_);  // the first failed write or sync
};

class PmemDevice final : public LogDevice {
 public:
  explicit PmemDevice(std::string dir) : dir_(std::move(dir)) {}

  ~PmemDevice() override {
    {
      MutexLock l(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    if (preparer_.joinable()) preparer_.join();
    for (auto& spare : spares_) unlink(spare.path.c_str());
    spares_.clear();
  }

  StatusOr<std::unique_ptr<Segment>> CreateSegment(uint32_t id, size_t bytes) override {
    return Create(id, bytes, /*from_reserve=*/false);
  }
  StatusOr<std::unique_ptr<Segment>> CreateSegmentFromReserve(uint32_t id, size_t bytes) override {
    return Create(id, bytes, /*from_reserve=*/true);
  }

  // Up to kSpares spares are kept ready; an ordinary switch leaves the last
  // one (the reserve) alone and makes a file instead, which fails on a full
  // disk; a switch for deletes may take it.
  StatusOr<std::unique_ptr<Segment>> Create(uint32_t id, size_t bytes, bool from_reserve) {
    std::string path = SegmentName(id);
    Spare spare;
    {
      MutexLock l(&mu_);
      const size_t usable_from = from_reserve ? 1 : 2;
      // A spare being prepared is worth waiting for: it is already allocated
      // and faulted in, which is most of the work.
      while (preparing_ && spares_.size() < usable_from) cv_.Wait(&mu_);
      if (spares_.size() >= usable_from && spares_.front().segment->size() == bytes) {
        spare = std::move(spares_.front());
        spares_.pop_front();
      }
    }
    std::unique_ptr<Segment> seg;
    if (spare.segment) {
      if (rename(spare.path.c_str(), path.c_str()) != 0) {
        return Status::IOError(Errno("rename spare to " + path));
      }
      FAHA_RETURN_IF_ERROR(SyncDir());
      seg = std::move(spare.segment);
      if (auto* file = dynamic_cast<FileSegment*>(seg.get())) file->set_path(path);
    } else {
      auto made = MakeFile(path, bytes);
      if (!made.ok()) return made.status();
      seg = std::move(*made);
    }
    StartPreparing(bytes);
    return seg;
  }

  Status Preallocate(size_t bytes, size_t count) override {
    for (size_t i = 0; i < count; i++) {
      std::string path;
      {
        MutexLock l(&mu_);
        path = NextSparePath();
      }
      auto made = MakeFile(path, bytes);
      if (!made.ok()) return made.status();
      (*made)->Prefault(0, bytes);
      MutexLock l(&mu_);
      spares_.push_back(Spare{path, std::move(*made)});
      cv_.SignalAll();
    }
    return Status::OK();
  }

  void PrepareNext(size_t bytes) override { StartPreparing(bytes); }

  static Status WriteZeros(int fd, size_t bytes) {
    static const std::vector<char> kZeros(1 << 20, 0);
    for (size_t off = 0; off < bytes;) {
      const size_t n = std::min(kZeros.size(), bytes - off);
      const ssize_t w = pwrite(fd, kZeros.data(), n, static_cast<off_t>(off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Status::IOError(Errno("write zeros"));
      off += static_cast<size_t>(w);
    }
    return Status::OK();
  }

  // Creates a zeroed, space-reserved file at `path` and maps it.
  StatusOr<std::unique_ptr<Segment>> MakeFile(const std::string& path, size_t bytes) {
    std::string tmp = path + ".tmp";
    int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IOError(Errno("create " + tmp));
    // Reserve the blocks now: a store into a sparse mapping on a full disk would
    // be a SIGBUS later instead of an error here.
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (rc != 0) {
      close(fd);
      unlink(tmp.c_str());
      errno = rc;
      return Status::IOError(Errno("reserve " + std::to_string(bytes) + " bytes for " + tmp));
    }
    // Then write the zeros for real. fallocate leaves "unwritten" extents, and
    // on ext4/xfs the first store into each block turns into an extent
    // conversion that every later fdatasync must commit to the journal: a
    // journal commit per batch, which showed as persist latency
    // (docs/bench/compare.md). Written blocks make an fdatasync a data
    // write-back and a device flush only. This runs on the
    // spare-segment thread, off the write path.
    // tmpfs has no extents to convert: there the zeros would only cost time.
    struct statfs fs;
    const bool extents = (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC);
    Status zeroed = extents ? WriteZeros(fd, bytes) : Status::OK();
    if (!zeroed.ok()) {
      close(fd);
      unlink(tmp.c_str());
      return zeroed.WithPrefix(tmp);
    }
    if (fsync(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
      Status s = Status::IOError(Errno("sync/rename " + tmp));
      close(fd);
      return s;
    }
    close(fd);
    FAHA_RETURN_IF_ERROR(SyncDir());
    return MapFile(path);
  }

  StatusOr<std::unique_ptr<Segment>> OpenSegment(uint32_t id) override {
    return MapFile(SegmentName(id));
  }

  // Maps `path` with libpmem2 to learn the store granularity of its mount;
  // on DAX the segment keeps that mapping (PmemSegment), elsewhere it becomes
  // a FileSegment.
  // `final_path` is where the segment lives once in place (a staged
  // replacement is renamed there), for a FileSegment that must reopen it.
  StatusOr<std::unique_ptr<Segment>> MapFile(const std::string& path,
                                             const std::string& final_path = "") {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Status::IOError(Errno("open " + path));
    pmem2_config* cfg = nullptr;
    pmem2_source* src = nullptr;
    pmem2_map* map = nullptr;
    Status st;
    MutexLock map_lock(&g_map_mu);
    int rc = 0;
    if (pmem2_config_new(&cfg) != 0) {
      st = Status::IOError(PmemError("pmem2_config_new"));
    } else if (pmem2_config_set_required_store_granularity(cfg, PMEM2_GRANULARITY_PAGE) != 0) {
      st = Status::IOError(PmemError("pmem2_config_set_required_store_granularity"));
    } else if (pmem2_source_from_fd(&src, fd) != 0) {
      st = Status::IOError(PmemError("pmem2_source_from_fd " + path));
    } else if ((rc = pmem2_map_new(&map, cfg, src)) != 0) {
      st = Status::IOError(PmemError("pmem2_map_new " + path, rc));
    }
    if (src) pmem2_source_delete(&src);
    if (cfg) pmem2_config_delete(&cfg);
    pmem2_granularity g = PMEM2_GRANULARITY_PAGE;
    if (st.ok()) {
      g = pmem2_map_get_store_granularity(map);
      if (g == PMEM2_GRANULARITY_PAGE) pmem2_map_delete(&map);
    }
    map_lock.Unlock();
    if (!st.ok()) {
      close(fd);
      return st;
    }
    {
      MutexLock l(&mu_);
      granularity_ = GranularityName(g);
    }
    if (g != PMEM2_GRANULARITY_PAGE) {
      close(fd);  // the mapping keeps the file
      return std::unique_ptr<Segment>(new PmemSegment(map));
    }
    struct stat info;
    if (fstat(fd, &info) != 0) {
      Status s = Status::IOError(Errno("stat " + path));
      close(fd);
      return s;
    }
    const size_t size = static_cast<size_t>(info.st_size);
    void* data = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) {
      Status s = Status::IOError(Errno("mmap " + path));
      close(fd);
      return s;
    }
    return std::unique_ptr<Segment>(new FileSegment(fd, static_cast<char*>(data), size,
                                                    final_path.empty() ? path : final_path));
  }

  StatusOr<std::vector<uint32_t>> ListSegments() override {
    std::vector<uint32_t> ids;
    DIR* d = opendir(dir_.c_str());
    if (!d) return Status::IOError(Errno("opendir " + dir_));
    while (dirent* e = readdir(d)) {
      unsigned id = 0;
      char tail = 0;
      if (sscanf(e->d_name, "segment-%8u.log%c", &id, &tail) == 1 &&
          std::strlen(e->d_name) == std::strlen("segment-00000000.log")) {
        ids.push_back(id);
      }
    }
    closedir(d);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  Status RemoveSegment(uint32_t id) override {
    std::string path = SegmentName(id);
    if (unlink(path.c_str()) != 0) return Status::IOError(Errno("unlink " + path));
    return SyncDir();
  }

  // Staged as "segment-N.log.clean": not a segment name, so never listed.
  StatusOr<std::unique_ptr<Segment>> CreateReplacement(uint32_t id, size_t bytes) override {
    const std::string path = SegmentName(id) + ".clean";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IOError(Errno("create " + path));
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    close(fd);
    if (rc != 0) {
      unlink(path.c_str());
      errno = rc;
      return Status::IOError(Errno("reserve " + std::to_string(bytes) + " bytes for " + path));
    }
    return MapFile(path, SegmentName(id));
  }

  Status CommitReplacement(uint32_t id) override {
    const std::string path = SegmentName(id);
    // The caller persisted the staged file's bytes; the rename swaps the
    // directory entry atomically, and the directory's fsync makes it durable.
    if (rename((path + ".clean").c_str(), path.c_str()) != 0) {
      return Status::IOError(Errno("rename " + path + ".clean over it"));
    }
    return SyncDir();
  }

  Status DiscardReplacement(uint32_t id) override {
    if (id != 0) {
      const std::string path = SegmentName(id) + ".clean";
      if (unlink(path.c_str()) != 0 && errno != ENOENT)
        return Status::IOError(Errno("unlink " + path));
      return Status::OK();
    }
    DIR* d = opendir(dir_.c_str());
    if (!d) return Status::IOError(Errno("opendir " + dir_));
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 6 && name.compare(name.size() - 6, 6, ".clean") == 0) stale.push_back(name);
    }
    closedir(d);
    for (const auto& name : stale) {
      const std::string path = dir_ + "/" + name;
      FAHA_LOG_WARN("recovery: removing %s, a cleaned segment never put in place", path.c_str());
      if (unlink(path.c_str()) != 0) return Status::IOError(Errno("unlink " + path));
    }
    return Status::OK();
  }

  std::string SegmentName(uint32_t id) const override {
    char name[32];
    snprintf(name, sizeof(name), "segment-%08u.log", id);
    return dir_ + "/" + name;
  }

  std::string Granularity() const override {
    MutexLock l(&mu_);
    return granularity_;
  }

 private:
  struct Spare {
    std::string path;
    std::unique_ptr<Segment> segment;
  };

  std::string NextSparePath() REQUIRES(mu_) {
    return dir_ + "/segment-spare-" + std::to_string(spare_seq_++) + ".tmp";
  }

  // Keeps at least one spare segment ready, prepared in the background:
  // allocated, mapped and faulted in, so that switching segments does not stall
  // the writer on page-cache (or tmpfs) page allocation, which profiling showed
  // dominates an append otherwise.
  void StartPreparing(size_t bytes) {
    MutexLock l(&mu_);
    if (stop_ || preparing_ || spares_.size() >= kSpares) return;
    preparing_ = true;
    if (preparer_.joinable()) preparer_.join();
    preparer_ = std::thread([this, bytes] {
      pthread_setname_np(pthread_self(), "faha-segprep");
      while (true) {
        std::string path;
        {
          MutexLock l2(&mu_);
          if (stop_ || spares_.size() >= kSpares) break;
          path = NextSparePath();
        }
        auto made = MakeFile(path, bytes);
        if (made.ok()) (*made)->Prefault(0, bytes);
        MutexLock l2(&mu_);
        if (!made.ok()) {
          FAHA_LOG_WARN("preparing the next log segment failed (will retry at switch): %s",
                        made.status().ToString().c_str());
          break;
        }
        spares_.push_back(Spare{path, std::move(*made)});
        cv_.SignalAll();
      }
      MutexLock l2(&mu_);
      preparing_ = false;
      cv_.SignalAll();
    });
  }

  Status SyncDir() {
    int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::IOError(Errno("open dir " + dir_));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return Status::IOError(Errno("fsync dir " + dir_));
    return Status::OK();
  }

  std::string dir_;
  mutable Mutex mu_;
  CondVar cv_;
  std::string granularity_ GUARDED_BY(mu_) = "UNKNOWN";
  std::deque<Spare> spares_ GUARDED_BY(mu_);
  static constexpr size_t kSpares = 2;  // ready segments kept; the last is the reserve
  uint64_t spare_seq_ GUARDED_BY(mu_) = 0;
  bool preparing_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread preparer_;
};

}  // namespace

StatusOr<std::unique_ptr<LogDevice>> OpenPmemDevice(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IOError(Errno("mkdir " + dir));
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::IOError(dir + " is not a directory");
  }
  // Spare segments left by an earlier run hold no data: remove them.
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (std::strncmp(e->d_name, "segment-spare", 13) == 0)
        unlink((dir + "/" + e->d_name).c_str());
    }
    closedir(d);
  }
  return std::unique_ptr<LogDevice>(new PmemDevice(dir));
}

bool OverlapsLogMapping(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  MutexLock l(&g_ranges_mu);
  for (const auto& [start, len] : Ranges()) {
    if (a < start + len && start < a + n) return true;
  }
  return false;
}

}  // namespace faha::nvm
