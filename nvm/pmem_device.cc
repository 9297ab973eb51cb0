// LogDevice on segment files, each probed with libpmem2. On a DAX mount
// (MAP_SYNC: CACHE_LINE or BYTE granularity) a write is a store into the
// mapping made durable by a cache-line flush + fence (PmemSegment). On an
// ordinary file system (PAGE), where a store into a shared mapping costs write
// faults and whole-page writeback, it is a pwritev through the page cache made
// durable with fdatasync, and the mapping is read-only, for readers, who see
// the same page cache (FileSegment). docs/architecture.md, "The file device".
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
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <string_view>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/mutex.h"
#include "common/strings.h"
#include "nvm/log_device.h"
#include "nvm/segments.h"
#include "nvm/sync_directory.h"

namespace faha::nvm {
namespace {

class PmemDevice final : public LogDevice {
 public:
  PmemDevice(std::string dir, ZeroFill zero_fill)
      : dir_(std::move(dir)), zero_fill_(zero_fill), tmpfs_(IsTmpfs(dir_)) {}

  ~PmemDevice() override {
    {
      MutexLock l(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    if (preparer_.joinable()) preparer_.join();
    for (auto& spare : spares_) unlink(spare.path.c_str());
    spares_.clear();
    for (auto& [id, path] : kept_) unlink(path.c_str());
    for (auto& r : recycled_) Drop(r);
  }

  StatusOr<std::unique_ptr<Segment>> CreateSegment(uint32_t id, size_t bytes) override {
    return Create(id, bytes, /*from_reserve=*/false);
  }
  StatusOr<std::unique_ptr<Segment>> CreateSegmentFromReserve(uint32_t id, size_t bytes) override {
    return Create(id, bytes, /*from_reserve=*/true);
  }

  // Up to kSpares spares are kept ready; an ordinary switch leaves the last one (the
  // reserve) and makes a file instead, failing on a full disk; one for deletes may take it.
  StatusOr<std::unique_ptr<Segment>> Create(uint32_t id, size_t bytes, bool from_reserve) {
    std::string path = SegmentName(id);
    Spare spare;
    {
      MutexLock l(&mu_);
      const size_t usable_from = from_reserve ? 1 : 2;
      // A spare being prepared is worth waiting for (allocated, mapped:
      // most of the work); its zeros stop pacing (Pacer).
      switch_waiting_++;
      cv_.SignalAll();  // a pausing spare thread goes on at full speed
      while (preparing_ && spares_.size() < usable_from) cv_.Wait(&mu_);
      switch_waiting_--;
      if (spares_.size() >= usable_from && spares_.front().segment->size() == bytes) {
        spare = std::move(spares_.front());
        spares_.pop_front();
        switched_ = true;
      }
    }
    std::unique_ptr<Segment> seg;
    if (spare.segment) {
      if (rename(spare.path.c_str(), path.c_str()) != 0) {
        const int err = errno;
        unlink(spare.path.c_str());  // its reserved space goes back
        return SpaceOrIOError(err, "rename spare to " + path);
      }
      FAHA_RETURN_IF_ERROR(SyncDirectory(dir_));
      seg = std::move(spare.segment);
      if (auto* file = dynamic_cast<FileSegment*>(seg.get())) file->set_path(path);
    } else {
      auto made = MakeFile(path, bytes);
      // Short of space: files kept for reuse give theirs back, and from now on
      // replaced files are removed at once (Recycle): cleaning frees space again.
      if (!made.ok() && made.status().code() == Status::Code::kBusy && DropRecycled()) {
        made = MakeFile(path, bytes);
      }
      if (!made.ok()) return made.status();
      short_of_space_.store(false, std::memory_order_relaxed);
      seg = std::move(*made);
    }
    StartPreparing(bytes);
    return seg;
  }

  // Removes every file kept for reuse (false if none) and marks the device short
  // of space until a new file can be made.
  bool DropRecycled() EXCLUDES(mu_) {
    short_of_space_.store(true, std::memory_order_relaxed);
    std::deque<Recycled> dropped;
    {
      MutexLock l(&mu_);
      dropped.swap(recycled_);
    }
    for (auto& r : dropped) Drop(r);
    return !dropped.empty();
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
      MapAhead(made->get());
      MutexLock l(&mu_);
      spares_.push_back(Spare{path, std::move(*made)});
      cv_.SignalAll();
    }
    return Status::OK();
  }

  void PrepareNext(size_t bytes) override { StartPreparing(bytes); }

  // The size of a new file's zero writes (ZeroFill; 0: none), logged when it changes.
  size_t ZeroChunk() {
    const uint64_t avg = sync_sizes_->average.load(std::memory_order_relaxed);
    const bool adapt = zero_fill_ == ZeroFill::kAuto;
    const size_t chunk = zero_fill_ == ZeroFill::kAlways        ? kLargeFolioBytes
                         : !adapt || avg >= kZeroFillBelowBytes ? 0
                         : avg < kSmallFoliosBelowBytes         ? kSmallFolioBytes
                                                                : kLargeFolioBytes;
    if (chunk != zero_chunk_.exchange(chunk) && adapt) {
      FAHA_LOG_INFO("syncs average %llu KiB: the next segments' zeros in %zu KiB writes (0: none)",
                    (unsigned long long)(avg >> 10), chunk >> 10);
    }
    return chunk;
  }

  // Creates a space-reserved file at `path` that reads as zeros (ZeroFill decides
  // whether they are written; a spare's may be paced) and maps it.
  StatusOr<std::unique_ptr<Segment>> MakeFile(const std::string& path, size_t bytes,
                                              bool paced = false) EXCLUDES(mu_) {
    std::string tmp = path + ".tmp";
    int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return SpaceOrIOError(errno, "create " + tmp);
    // Reserve the blocks now: a store into a sparse mapping on a full disk would
    // be a SIGBUS later instead of an error here.
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (rc != 0) {
      close(fd);
      unlink(tmp.c_str());
      return SpaceOrIOError(rc, "reserve " + std::to_string(bytes) + " bytes for " + tmp);
    }
    // Then, unless the syncs are large, write the zeros for real (on the spare
    // thread, but for a switch that found no spare). fallocate leaves "unwritten"
    // extents, and on ext4/xfs each block's first write is an extent conversion
    // the sync commits to the journal (45-150 us more per sync here); zeros cost
    // the device as much as the log. The two meet at 32-128 KiB a sync (ZeroFill;
    // docs/architecture.md). tmpfs has no extents. On DAX the zeros are always
    // written: a store into an unwritten block would fault and convert it.
    struct statfs fs;
    const bool extents = (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC);
    const size_t chunk = !extents ? 0 : MapsWithMapSync(fd) ? kLargeFolioBytes : ZeroChunk();
    const bool pace = paced && chunk == kSmallFolioBytes;  // cut 2 MiB writes: 64 KiB folios
    Status zeroed =
        chunk > 0 ? WriteZeros(fd, bytes, chunk, pace ? Pacer() : nullptr) : Status::OK();
    if (!zeroed.ok()) {
      close(fd);
      unlink(tmp.c_str());
      return zeroed.WithPrefix(tmp + ": ");
    }
    if (fsync(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return SpaceOrIOError(err, "sync/rename " + tmp);
    }
    close(fd);
    FAHA_RETURN_IF_ERROR(SyncDirectory(dir_));
    auto made = MapFile(path);
    // Unwritten blocks (zeros skipped, not tmpfs): mapped as they are written.
    auto* file = made.ok() ? dynamic_cast<FileSegment*>(made->get()) : nullptr;
    if (file != nullptr && extents && chunk == 0) file->MapAsWritten(0);
    return made;
  }

  StatusOr<std::unique_ptr<Segment>> OpenSegment(uint32_t id) override {
    return MapFile(SegmentName(id));
  }

  // On DAX (the file maps with MAP_SYNC) the segment is mapped by libpmem2, which
  // reports its store granularity and keeps that mapping (PmemSegment); elsewhere
  // it becomes a FileSegment with a mapping of our own.
  //
  // libpmem2 is not asked to map a file that cannot be mapped MAP_SYNC: it
  // tries MAP_SYNC with MAP_FIXED over a range it reserved, and when that
  // fails, Linux (6.18 here) has already unmapped the range; another thread's
  // mmap (a new thread's stack) can land in the hole before libpmem2 maps
  // the file over it, and the later unmap takes that thread's stack with it.
  // MapsWithMapSync probes with a mapping the kernel places.
  // `final_path`: where a staged replacement is renamed to, for a FileSegment
  // to reopen; its one large sync is not the log's, and is not sampled (ZeroFill).
  StatusOr<std::unique_ptr<Segment>> MapFile(const std::string& path,
                                             const std::string& final_path = "") {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Status::IOError(Errno("open " + path));
    if (!MapsWithMapSync(fd)) {
      return MapPlainFile(fd, path, final_path, PMEM2_GRANULARITY_PAGE, final_path.empty());
    }
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
    if (g != PMEM2_GRANULARITY_PAGE) {
      {
        MutexLock l(&mu_);
        granularity_ = GranularityName(g);
      }
      close(fd);  // the mapping keeps the file
      return std::unique_ptr<Segment>(new PmemSegment(map));
    }
    return MapPlainFile(fd, path, final_path, g, final_path.empty());
  }

  // A FileSegment for `fd` (which it takes), read through a read-only mapping.
  StatusOr<std::unique_ptr<Segment>> MapPlainFile(int fd, const std::string& path,
                                                  const std::string& final_path,
                                                  pmem2_granularity g, bool sample_syncs) {
    {
      MutexLock l(&mu_);
      granularity_ = GranularityName(g);
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
                                                    final_path.empty() ? path : final_path,
                                                    sample_syncs ? sync_sizes_ : nullptr));
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
    return SyncDirectory(dir_);
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
    // The old file is kept under a spare's name, linked before the rename so that a
    // crash between the two leaves the segment whole (a restart removes it with the
    // spares; a link left by a pass whose swap never came names an older file);
    // Recycle decides whether it becomes a spare.
    std::string keep;
    {
      MutexLock l(&mu_);
      if (auto it = kept_.find(id); it != kept_.end()) {
        unlink(it->second.c_str());
        kept_.erase(it);
      }
      keep = NextSparePath();
    }
    if (link(path.c_str(), keep.c_str()) != 0) keep.clear();  // no recycling, no harm
    // The caller persisted the staged bytes; the rename swaps the entry
    // atomically, and the directory's fsync makes it durable.
    Status done;
    if (rename((path + ".clean").c_str(), path.c_str()) != 0) {
      done = Status::IOError(Errno("rename " + path + ".clean over it"));
    } else {
      done = SyncDirectory(dir_);
    }
    if (!keep.empty() && !done.ok()) unlink(keep.c_str());  // the pass is discarded
    if (!keep.empty() && done.ok()) {
      MutexLock l(&mu_);
      kept_[id] = std::move(keep);
    }
    return done;
  }

  // Keeps the replaced file of an ordinary segment as a spare, with its mapping: rewritten with
  // zeros it needs no allocation and no first faults (2.8 us a page here, the
  // hypervisor's shadow page tables; docs/bench/write-path.md). Only where the
  // zeros are written anyway (tmpfs, or ZeroFill wanting them): else it would
  // cost the disk a second write of the log.
  void Recycle(uint32_t id, Segment* old) override EXCLUDES(mu_) {
    std::string path;
    size_t size = 0;
    {
      MutexLock l(&mu_);
      auto it = kept_.find(id);
      if (it == kept_.end()) return;
      path = std::move(it->second);
      kept_.erase(it);
      auto* file = dynamic_cast<FileSegment*>(old);
      const bool zeros = tmpfs_ || zero_chunk_.load() > 0;
      if (file != nullptr && !stop_ && zeros && recycled_.size() < kSpares &&
          file->size() == segment_bytes_ && !short_of_space_.load() && file->SameFile(path)) {
        size = file->size();
        recycled_.push_back(Recycled{path, file->ReleaseMapping(), size});
      }
    }
    if (size == 0) {
      unlink(path.c_str());
      return;
    }
    StartPreparing(size);  // if a spare is missing, this is the next
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

  uint64_t files_reused() const override { return files_reused_.load(std::memory_order_relaxed); }

  uint64_t spares_ready() const override {
    MutexLock l(&mu_);
    return spares_.size();
  }

  std::string Granularity() const override {
    MutexLock l(&mu_);
    return granularity_;
  }

 private:
  // Faults a new spare in now, unless MakeFile had it mapped as it is written.
  static void MapAhead(Segment* seg) {
    auto* file = dynamic_cast<FileSegment*>(seg);
    if (file == nullptr || !file->maps_as_written()) seg->Prefault(0, seg->size());
  }
  struct Spare {
    std::string path;
    std::unique_ptr<Segment> segment;
  };
  // A replaced segment's file kept for reuse (a spare's name) and its mapping.
  struct Recycled {
    std::string path;
    char* data = nullptr;
    size_t size = 0;
  };

  // The next spare of `bytes` at *path: a recycled file written with zeros (and
  // named by it), else a new file, mapped for readers (MapAhead).
  StatusOr<std::unique_ptr<Segment>> MakeSpare(std::string* path, size_t bytes) EXCLUDES(mu_) {
    Recycled r;
    {
      MutexLock l(&mu_);
      if (!recycled_.empty()) {
        r = std::move(recycled_.front());
        recycled_.pop_front();
      }
    }
    if (r.data != nullptr) {
      if (r.size == bytes) {
        auto reused = Reuse(r);
        if (reused.ok()) {
          *path = r.path;
          files_reused_.fetch_add(1, std::memory_order_relaxed);
          return reused;
        }
        FAHA_LOG_WARN("reusing a cleaned segment's file failed (making a new one): %s",
                      reused.status().ToString().c_str());
      }
      Drop(r);
    }
    auto made = MakeFile(*path, bytes, /*paced=*/true);
    if (made.ok()) MapAhead(made->get());
    return made;
  }

  // Paces a spare's zeros once a switch took a spare (not at start), pausing
  // while no switch waits for one (WriteZeros).
  ZeroPacer Pacer() EXCLUDES(mu_) {
    MutexLock l(&mu_);
    if (!switched_) return nullptr;
    return [this](int64_t pause_us) {
      MutexLock l2(&mu_);
      auto cut = [this]() REQUIRES(mu_) { return stop_ || switch_waiting_ > 0; };
      return !cv_.WaitFor(&mu_, std::chrono::microseconds(pause_us), cut);
    };
  }

  // Unmaps and removes a file kept for reuse.
  static void Drop(const Recycled& r) {
    RemoveRange(r.data);
    munmap(r.data, r.size);
    unlink(r.path.c_str());
  }

  // Writes zeros over a recycled file and syncs them (what recovery reads after
  // the log's end), keeping its mapping.
  StatusOr<std::unique_ptr<Segment>> Reuse(const Recycled& r) EXCLUDES(mu_) {
    const int fd = open(r.path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Status::IOError(Errno("open " + r.path));
    // Paced while syncs are tiny; cut writes keep the folios the file has.
    const bool pace = !tmpfs_ && zero_chunk_.load() == kSmallFolioBytes;
    Status zeroed = WriteZeros(fd, r.size, kLargeFolioBytes, pace ? Pacer() : nullptr);
    if (zeroed.ok() && fdatasync(fd) != 0) zeroed = SpaceOrIOError(errno, "fdatasync");
    if (!zeroed.ok()) {
      close(fd);
      return zeroed.WithPrefix(r.path + ": ");
    }
    return std::unique_ptr<Segment>(new FileSegment(fd, r.data, r.size, r.path, sync_sizes_));
  }

  std::string NextSparePath() REQUIRES(mu_) {
    return dir_ + "/segment-spare-" + std::to_string(spare_seq_++) + ".tmp";
  }

  // Keeps spare segments ready, prepared in the background (allocated, mapped,
  // faulted in unless mapped as written), so that a switch does not stall the
  // writer on making a file, or on page-cache (or tmpfs) page allocation.
  void StartPreparing(size_t bytes) EXCLUDES(mu_) {
    MutexLock l(&mu_);
    segment_bytes_ = bytes;
    if (stop_ || preparing_ || spares_.size() >= kSpares) return;
    preparing_ = true;
    if (preparer_.joinable()) preparer_.join();
    preparer_ = std::thread([this, bytes] {
      pthread_setname_np(pthread_self(), "faha-segprep");
      while (true) {
        std::string path;
        {
          // Stopping is decided and announced under one lock: a switch that
          // takes a spare in between would otherwise see preparing_ still set,
          // start nothing, and leave one spare short.
          MutexLock l2(&mu_);
          if (stop_ || spares_.size() >= kSpares) {
            preparing_ = false;
            cv_.SignalAll();
            return;
          }
          path = NextSparePath();
        }
        auto made = MakeSpare(&path, bytes);
        MutexLock l2(&mu_);
        if (!made.ok()) {
          FAHA_LOG_WARN("preparing the next log segment failed (will retry at switch): %s",
                        made.status().ToString().c_str());
          preparing_ = false;
          cv_.SignalAll();
          return;
        }
        spares_.push_back(Spare{path, std::move(*made)});
        cv_.SignalAll();
      }
    });
  }

  std::string dir_;
  const ZeroFill zero_fill_;
  const std::shared_ptr<SyncSizes> sync_sizes_ = std::make_shared<SyncSizes>();
  // What ZeroChunk last answered (kAuto's first, with no sync seen yet).
  std::atomic<size_t> zero_chunk_{zero_fill_ == ZeroFill::kNever    ? 0
                                  : zero_fill_ == ZeroFill::kAlways ? kLargeFolioBytes
                                                                    : kSmallFolioBytes};
  const bool tmpfs_;  // dir_ is on tmpfs: no extents, zeros cost no I/O
  // No new file for lack of space (Create): replaced ones are removed until one is made.
  std::atomic<bool> short_of_space_{false};
  mutable Mutex mu_;
  CondVar cv_;
  std::string granularity_ GUARDED_BY(mu_) = "UNKNOWN";
  std::deque<Spare> spares_ GUARDED_BY(mu_);
  int switch_waiting_ GUARDED_BY(mu_) = 0;  // segment switches waiting for a spare
  bool switched_ GUARDED_BY(mu_) = false;   // a switch took a spare (Pacer)
  static constexpr size_t kSpares = 2;      // ready segments kept; the last is the reserve
  uint64_t spare_seq_ GUARDED_BY(mu_) = 0;
  // Replaced segments' files (CommitReplacement) by id, until Recycle.
  std::map<uint32_t, std::string> kept_ GUARDED_BY(mu_);
  std::deque<Recycled> recycled_ GUARDED_BY(mu_);  // at most kSpares
  size_t segment_bytes_ GUARDED_BY(mu_) = 0;       // of the spares asked for last
  std::atomic<uint64_t> files_reused_{0};
  bool preparing_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread preparer_;
};

}  // namespace

StatusOr<std::unique_ptr<LogDevice>> OpenPmemDevice(const std::string& dir, ZeroFill zero_fill) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IOError(Errno("mkdir " + dir));
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::IOError(dir + " is not a directory");
  }
  RemoveLeftoverSpares(dir);
  return std::unique_ptr<LogDevice>(new PmemDevice(dir, zero_fill));
}

}  // namespace faha::nvm
