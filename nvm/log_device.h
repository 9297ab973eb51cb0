// LogDevice: where log segments live. The production device maps segment files
// with PMDK's libpmem2 on DAX (cache-line flush + fence) and writes them with
// pwritev + fdatasync on ordinary file systems (reading through a read-only
// mapping);
// the in-memory device (memory_device.h) keeps a "durable" image apart from the
// mapped bytes so tests can cut the power and lose everything not persisted.
// A device and its segments may be used from several threads only as the Log
// does: one writer appends and persists, any thread reads persisted bytes.
#ifndef FAHA_NVM_LOG_DEVICE_H_
#define FAHA_NVM_LOG_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "faha/status.h"

namespace faha::nvm {

// One mapped segment. Owns its mapping; unmapped on destruction.
class Segment {
 public:
  virtual ~Segment() = default;
  char* data() const { return data_; }
  size_t size() const { return size_; }
  // Copies len bytes to [off, off+len) without the guarantee of durability;
  // readers of data() see them once it returns.
  virtual void Write(size_t off, const void* src, size_t len) = 0;
  // Writes a then b at [off, off + a.size() + b.size()) (a batch header and its
  // payload): one system call on a file device.
  virtual void WriteParts(size_t off, std::string_view a, std::string_view b) {
    Write(off, a.data(), a.size());
    Write(off + a.size(), b.data(), b.size());
  }
  // Makes [off, off+len) durable. On failure nothing can be assumed about the range.
  virtual Status Persist(size_t off, size_t len) = 0;
  // WriteParts, then Persist of what it wrote: on a file one system call.
  virtual Status WritePartsDurable(size_t off, std::string_view a, std::string_view b) {
    WriteParts(off, a, b);
    return Persist(off, a.size() + b.size());
  }
  // Faults [off, off+len) in ahead of writes (a hint; may do nothing).
  virtual void Prefault(size_t /*off*/, size_t /*len*/) {}
  // The writer is done with this segment for now (it is sealed): resources
  // held only for writing, such as a file descriptor, may go. A later Write
  // or Persist (a truncation) takes them again.
  virtual void Seal() {}

 protected:
  char* data_ = nullptr;
  size_t size_ = 0;
};

class LogDevice {
 public:
  virtual ~LogDevice() = default;
  // Creates segment `id` of `bytes` bytes, space-reserved and reading as zeros.
  // Busy when the file system lacks the space (the log reports itself full),
  // another error for any other failure.
  virtual StatusOr<std::unique_ptr<Segment>> CreateSegment(uint32_t id, size_t bytes) = 0;
  // The same from space held back for batches that only delete: a device that
  // keeps a reserve (a spare segment that CreateSegment leaves alone) uses it
  // when no other space can be had, so that DEL and FLUSHALL, which free space
  // once cleaned, still work on a full disk.
  virtual StatusOr<std::unique_ptr<Segment>> CreateSegmentFromReserve(uint32_t id, size_t bytes) {
    return CreateSegment(id, bytes);
  }
  virtual StatusOr<std::unique_ptr<Segment>> OpenSegment(uint32_t id) = 0;
  // Ids of existing segments, ascending.
  virtual StatusOr<std::vector<uint32_t>> ListSegments() = 0;
  virtual Status RemoveSegment(uint32_t id) = 0;
  // Log cleaning. A replacement for segment `id`, staged apart from it (not
  // listed, not opened) while the caller writes and persists it.
  virtual StatusOr<std::unique_ptr<Segment>> CreateReplacement(uint32_t id, size_t bytes) = 0;
  // Puts the staged replacement in place of segment `id`, atomically and
  // durably; the staged Segment stays mapped and becomes the segment.
  virtual Status CommitReplacement(uint32_t id) = 0;
  // Removes the staged replacement of `id`, or with id 0 every one left over
  // (recovery: a crash between staging and committing).
  virtual Status DiscardReplacement(uint32_t id) = 0;
  // The segment that CommitReplacement(id) replaced, once the log no longer
  // needs it: `old` if nothing maps its records any more, else null. A device
  // may keep its file and mapping as a later spare (written with zeros again
  // first), which costs a write of the zeros instead of a new file's
  // allocation and first page faults; the caller still destroys `old`.
  virtual void Recycle(uint32_t /*id*/, Segment* /*old*/) {}
  // Spares made from such files since the device was opened.
  virtual uint64_t files_reused() const { return 0; }
  // Spare segments ready for the next switches (prepared in the background).
  virtual uint64_t spares_ready() const { return 0; }
  // Hint: a segment of `bytes` will be created soon; prepare it in the background.
  virtual void PrepareNext(size_t /*bytes*/) {}
  // Prepares `count` spare segments of `bytes` now (allocated, and faulted in
  // unless mapped as they are written), so that a switch never makes a file.
  virtual Status Preallocate(size_t /*bytes*/, size_t /*count*/) { return Status::OK(); }
  // Human-readable name of a segment for messages (a path for files).
  virtual std::string SegmentName(uint32_t id) const = 0;
  // "CACHE_LINE", "PAGE" or "BYTE": the persist granularity of the last mapping.
  virtual std::string Granularity() const = 0;
};

// Whether a new segment file on a file system with extents (ext4, xfs; not
// tmpfs, not DAX) has its zeros written before it is used (docs/architecture.md,
// "The file device"). Written zeros spare each sync that first touches a block
// a journal commit for the extent's conversion; they cost a second write of
// every byte of the log. kAuto writes them while the syncs of the last
// segments were small (under kZeroFillBelowBytes on average), where the
// commit per sync costs more than the zeros (docs/architecture.md); in 2 MiB
// writes, for 2 MiB folios and mappings, except while syncs are tiny (under
// kSmallFoliosBelowBytes: a few writes each), where 4 KiB writes leave 4 KiB
// folios, whose syncs took 12-14 us less here (1 KB syncs, faha_device_limit
// --zero_chunk). kAlways writes them in 2 MiB writes.
enum class ZeroFill { kAuto, kAlways, kNever };
inline constexpr uint64_t kZeroFillBelowBytes = 64 << 10;
inline constexpr uint64_t kSmallFoliosBelowBytes = 8 << 10;

// Opens (creating if needed) the directory `dir` as a PMDK-backed device.
StatusOr<std::unique_ptr<LogDevice>> OpenPmemDevice(const std::string& dir,
                                                    ZeroFill zero_fill = ZeroFill::kAuto);

// Takes the lock of the data directory `dir` (a POSIX write lock on dir/LOCK,
// as leveldb does) and returns its descriptor, to be kept open while the log
// is in use: a second server on the same directory would append to the same
// segments and remove the first's spares. Busy, naming the holder's pid, if
// another process holds it. The kernel drops the lock when the process exits
// or execs (the descriptor is close-on-exec).
StatusOr<int> LockDataDir(const std::string& dir);

// True if [p, p + n) overlaps a log segment this process has mapped (libpmem2
// segments; the RDMA layer refuses to expose such memory for remote access).
bool OverlapsLogMapping(const void* p, size_t n);

}  // namespace faha::nvm

#endif  // FAHA_NVM_LOG_DEVICE_H_
