// Log: the append-only, batch-framed log of FaHA on a LogDevice.
//
// Thread-safety: Open() runs recovery on the calling thread. After that exactly
// one thread at a time (the writer, suffix _wt; asserted) appends batches; any thread may read
// records that an append has returned. A segment's mapping goes away only when
// log cleaning swaps in its replacement (SwapReplacement, whose caller keeps
// readers of records away meanwhile) or truncation removes it; ForEachBatch
// and ForEachRecord hold a shared lock against both.
#ifndef FAHA_NVM_LOG_H_
#define FAHA_NVM_LOG_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/thread_role.h"
#include "faha/status.h"
#include "nvm/log_device.h"
#include "nvm/log_format.h"

namespace faha::nvm {

// A decoded record; views point into the mapped log (or into a builder buffer).
struct RecordView {
  RecordType type;
  std::string_view key;
  std::string_view value;
  int64_t expire_at_ms;
  uint64_t client_id;
  uint64_t client_seq;
  uint32_t lsn_delta = 0;  // RecordHeader::lsn_delta (compacted batches)
};

// Decodes the record at `p`, which has `avail` readable bytes. Returns false if
// the bytes cannot be a record (bounds or type).
bool DecodeRecord(const char* p, size_t avail, RecordView* out, size_t* record_bytes);
// A batch's checksum: of its header up to the checksum field, seeding that of
// its payload (docs/format.md).
uint64_t BatchChecksum(const BatchHeader& h, const char* payload);

// Serializes records into the payload of one batch.
class BatchBuilder {
 public:
  // head_room: bytes kept before the payload for the caller to fill in (a
  // replicated primary's frame headers: Release hands the batch to its
  // backups without copying it).
  explicit BatchBuilder(size_t head_room = 0) : head_room_(head_room) { buf_.resize(head_room); }
  // Appends a record; returns its byte offset inside the payload.
  size_t Add(RecordType type, std::string_view key, std::string_view value, int64_t expire_at_ms,
             uint64_t client_id = 0, uint64_t client_seq = 0);
  std::string_view payload() const { return std::string_view(buf_).substr(head_room_); }
  uint32_t count() const { return count_; }
  size_t bytes() const { return buf_.size() - head_room_; }
  bool empty() const { return count_ == 0; }
  void Clear() { Truncate(0, 0); }
  // Drops the records added after the builder held `bytes` bytes and `count` records.
  void Truncate(size_t bytes, uint32_t count) {
    buf_.resize(head_room_ + bytes);
    count_ = count;
  }
  // Gives the buffer away (the head room, then the payload) and goes on in
  // `next` (a buffer given away earlier, whose room is kept; else a new one).
  std::string Release(std::string next = {});

 private:
  const size_t head_room_;
  std::string buf_;
  uint32_t count_ = 0;
};

struct LogOptions {
  uint64_t segment_bytes = 64ull << 20;
  // Recovery normally refuses to start when it finds a damaged batch with valid
  // batches after it (lost media, not a torn tail). With this set it drops the
  // log from the damaged batch on and reports what it dropped.
  bool drop_corrupt = false;
  uint64_t epoch = 0;  // written into batch headers
  // Batches the writer may leave written but not yet durable at once (at most
  // kTornWindowBatches; never more than kTornWindowBytes of them). 1: each
  // batch is durable before the next is written. A backup, which persists a
  // burst of its primary's batches together, uses kTornWindowBatches. Recovery
  // takes up to this many - 1 valid batches after a torn one for part of the
  // tear (their pages reached the media first); any more is damage.
  uint32_t in_flight_batches = 1;
};

struct RecoveryReport {
  uint64_t segments = 0;
  uint64_t batches = 0;
  uint64_t records = 0;
  uint64_t log_bytes = 0;
  double seconds = 0;
  bool torn_tail = false;   // an incomplete last batch was dropped
  std::string torn_detail;  // where, and why it was judged torn
  bool dropped_corrupt = false;
  std::string dropped_detail;
  uint64_t dropped_batches = 0;  // valid batches thrown away after damage
  uint64_t dropped_records = 0;
};

class Log {
 public:
  // Called for every record of every valid batch, in log order, during Open().
  using ApplyFn = std::function<void(const RecordView&, uint64_t location, uint64_t lsn)>;

  // Makes a log on `device`. Recover() must run before anything else.
  static StatusOr<std::unique_ptr<Log>> Open(std::shared_ptr<LogDevice> device,
                                             const LogOptions& options);
  // Scans the log, creating the first segment when empty, replays every valid
  // batch through `apply` (records are readable through this Log while apply
  // runs), and drops a torn tail. Fails with Corruption naming the segment and
  // offset if damage is found before the end and drop_corrupt is off.
  Status Recover(const ApplyFn& apply, RecoveryReport* report);
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  struct AppendResult {
    uint64_t base_location;  // location of payload offset 0; record at payload offset o is base+o
    uint64_t first_lsn;
    uint64_t bytes;      // bytes the batch took in the log, header and padding included
    BatchHeader header;  // as written: what a replica must store to hold the same batch
  };
  // Frames, writes and persists one batch. The payload must be well formed
  // (BatchBuilder). On error the batch is not durable and the log refuses
  // further appends (the caller reports it; a restart recovers), except Busy:
  // the next segment could not be created (a full disk), nothing was written
  // and a later append tries again.
  // With persist=false the batch is written but not yet durable: Sync_any
  // makes it durable, possibly on another thread while this one appends the
  // next batch (two syncs in flight). The writer still never leaves more than
  // in_flight_batches batches not known durable (NoteDurable_any): past that
  // it persists them itself before writing another.
  StatusOr<AppendResult> AppendBatch_wt(std::string_view payload, uint32_t record_count,
                                        bool persist = true);
  // Makes room for a batch of `payload_bytes`: moves to a new segment if the
  // tail one cannot hold it. Busy if that segment cannot be created (a full
  // disk; nothing changed, try again later). A primary calls it before it
  // ships a batch, so that a full disk never leaves a batch on its backups
  // that its own log lacks.
  // Whether a batch fits the tail segment as it is (false while the tail is
  // the reserve: only deletes go there, MakeRoom_wt decides).
  bool HasRoom_wt(size_t payload_bytes) const {
    ThreadRole::Scope writer(&writer_);
    return !tail_from_reserve_ &&
           tail_offset_ + BatchSize(payload_bytes) <= segments_[tail_segment_].load()->size();
  }
  // only_removals: the batch only deletes; it may use the device's reserve.
  Status MakeRoom_wt(size_t payload_bytes, bool only_removals = false);
  // Makes the batch `r` (appended with persist=false) durable. Any thread, at
  // the same time as the writer appends and as other Sync_any calls. Only
  // this batch's range is certain to be durable when it returns: the caller
  // that needs a durable prefix waits for the earlier batches' syncs too.
  Status Sync_any(const AppendResult& r) const;
  // Every batch ending at or before end_lsn is durable (the caller synced
  // them, in order): the writer may count them out of its in-flight window.
  void NoteDurable_any(uint64_t end_lsn) {
    uint64_t cur = durable_end_lsn_.load(std::memory_order_relaxed);
    while (cur < end_lsn && !durable_end_lsn_.compare_exchange_weak(cur, end_lsn)) {
    }
  }

  // Appends a batch framed elsewhere (a replica storing its primary's batch),
  // byte for byte: same LSNs, same epoch. Refuses, changing nothing, a header
  // that is not valid, a checksum or record layout that does not match the
  // payload, or a first LSN that does not continue this log.
  // With persist=false the batch is written but not yet durable: a backup
  // taking a burst of batches makes them durable together with
  // PersistAppended_wt() (one sync instead of one per batch) before it
  // acknowledges any of them.
  StatusOr<AppendResult> AppendReplicated_wt(const BatchHeader& header, std::string_view payload,
                                             bool persist = true);
  // Makes every batch appended so far durable. A no-op when nothing waits.
  Status PersistAppended_wt();

  // Appends a batch framed by FrameBatch on this node (a primary that shipped
  // the header to its backups before persisting locally). Only the LSN is
  // checked: the header must come from FrameBatch over this payload.
  // With persist=false it is written but not yet durable, as AppendBatch_wt's
  // (a replicated primary's committer syncs it: Sync_any, NoteDurable_any).
  StatusOr<AppendResult> AppendFramed_wt(const BatchHeader& header, std::string_view payload,
                                         bool persist = true);

  // Drops every batch from the one starting at `lsn` on (a replica's
  // unacknowledged suffix that its new primary does not have): later segments
  // are removed first, then the rest of the segment is zeroed and persisted,
  // so a crash part way leaves a shorter valid log. lsn == next_lsn() changes
  // nothing. InvalidArgument if no batch starts at lsn. The caller makes sure
  // no reader holds a location at or beyond it.
  Status TruncateTo_wt(uint64_t lsn);
  // The epoch written into the headers of later batches (a promoted backup).
  void set_epoch_wt(uint64_t epoch) {
    ThreadRole::Scope writer(&writer_);
    options_.epoch = epoch;
  }

  // Calls fn(header, payload) for each batch from the one starting at
  // `from_lsn`, in log order, while batches start below `limit_lsn` and until
  // about `max_bytes` were visited. Any thread may call it for LSNs the writer
  // has appended (below next_lsn()); payload views stay valid while the Log
  // lives. NotFound if no batch starts at from_lsn (it lies inside a batch or
  // beyond the log). Returns the LSN after the last batch visited.
  using BatchFn = std::function<void(const BatchHeader&, std::string_view payload)>;
  StatusOr<uint64_t> ForEachBatch(uint64_t from_lsn, uint64_t limit_lsn, uint64_t max_bytes,
                                  const BatchFn& fn) const;

  // Header of the last batch in the log (first_lsn 0 if the log is empty).
  // Writer thread only (or before the writer starts).
  const BatchHeader& last_batch_wt() const {
    ThreadRole::Scope writer(&writer_);
    return last_batch_;
  }

  // The header AppendBatch_wt would write for this payload.
  static BatchHeader FrameBatch(std::string_view payload, uint32_t record_count, uint64_t first_lsn,
                                uint64_t epoch);
  // Checks header fields, checksum and record layout of a batch.
  static Status CheckBatch(const BatchHeader& header, std::string_view payload);

  // Pointer to the record at `loc`. REQUIRES: loc was returned by an append or
  // by recovery.
  const char* RecordPtr(uint64_t loc) const;
  RecordView ReadRecord(uint64_t loc) const;
  // Keeps the mapping that holds `loc` alive for as long as the result is
  // held, even once the segment is cleaned (swapped), truncated or the log
  // is gone: what RecordPtr(loc) returned stays readable and unchanged
  // (records are never written over in place). Null if no segment holds
  // `loc`. Replies send big values from the log with it instead of copying.
  // REQUIRES: loc is current under the caller's read guard (no cleaning swap
  // or truncation of its segment can run meanwhile).
  std::shared_ptr<const void> HoldSegment(uint64_t loc) const;
  // Bytes of segments dropped from the log that replies still hold.
  uint64_t RetiredHeldBytes() const;
  // Whether the last attempt to create a segment failed for want of space
  // (until one succeeds): cleaning should then free what it can.
  bool short_of_space() const { return short_of_space_.load(std::memory_order_relaxed); }
  // The location of a record given a pointer to it inside a mapped segment
  // (e.g. from a ForEachBatch payload). REQUIRES: p points into the log.
  uint64_t LocationOf(const char* p) const;

  // Prepares `segments` spare segments ahead of need (see LogDevice::Preallocate).
  Status Preallocate(size_t segments) {
    return device_->Preallocate(options_.segment_bytes, segments);
  }

  uint64_t next_lsn() const { return next_lsn_.load(std::memory_order_acquire); }
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }
  uint64_t segment_count() const { return segment_count_.load(std::memory_order_relaxed); }
  uint64_t segment_bytes() const { return options_.segment_bytes; }
  std::string Granularity() const { return device_->Granularity(); }
  // Segment files made from files log cleaning replaced (LogDevice::Recycle).
  uint64_t segment_files_reused() const { return device_->files_reused(); }
  // Spare segments ready (LogDevice::spares_ready).
  uint64_t spare_segments() const { return device_->spares_ready(); }
  uint64_t max_payload_bytes() const {
    return options_.segment_bytes - sizeof(SegmentHeader) - sizeof(BatchHeader) - kBatchAlign;
  }

  // ---- Log cleaning (docs/architecture.md, "Log cleaning") ----

  // A sealed segment: one the writer has left (a later segment holds a batch).
  struct SegmentInfo {
    uint32_t id = 0;
    uint64_t first_lsn = 0;  // it covers the LSNs [first_lsn, end_lsn)
    uint64_t end_lsn = 0;
    uint64_t data_bytes = 0;  // bytes of the batches in it
    uint64_t file_bytes = 0;
    bool cleaned = false;
    uint64_t cleaned_lsn = 0;  // SegmentHeader::cleaned_lsn; 0 if never cleaned
  };
  // The sealed segments, oldest first. Any thread.
  std::vector<SegmentInfo> SealedSegments() const;
  // Calls fn(record, location, lsn) for every record of sealed segment `id`,
  // in LSN order. Any thread; the views are valid during the call.
  Status ForEachRecord(uint32_t id, const ApplyFn& fn) const;

  // A record that cleaning keeps: its bytes as DecodeRecord reads them (from
  // the log, or encoded anew) and its LSN.
  struct KeptRecord {
    std::string_view bytes;
    uint64_t lsn;
  };
  // A replacement written by PrepareReplacement, not yet in place.
  class Replacement {
   private:
    friend class Log;
    uint32_t id = 0;
    uint64_t truncations = 0;  // the log's count when prepared
    uint64_t data_bytes = 0;
    bool committed = false;
    std::unique_ptr<Segment> segment;
  };
  // Writes and persists the cleaned replacement of sealed segment `seg`: a
  // file of compacted batches covering the same LSNs that holds only `kept`
  // (ascending LSNs within the segment's). The segment stays in use; nothing
  // changes for readers. (*locations)[i] is where kept[i] lies once installed.
  StatusOr<std::unique_ptr<Replacement>> PrepareReplacement(const SegmentInfo& seg,
                                                            const std::vector<KeptRecord>& kept,
                                                            uint64_t cleaned_lsn,
                                                            std::vector<uint64_t>* locations);
  // Puts a prepared replacement in place of its segment on the media,
  // atomically: a crash before recovers the old segment, after, the new one.
  // Readers go on with the old mapping meanwhile. Unavailable, changing
  // nothing, if the log was truncated since the replacement was prepared.
  Status CommitReplacement(Replacement* replacement);
  // Then in memory: readers of the segment see the replacement and the old
  // mapping is unmapped. REQUIRES: CommitReplacement succeeded; no thread
  // reads records of the segment from before the call until the caller has
  // moved every location it holds to the new ones.
  void SwapReplacement(std::unique_ptr<Replacement> replacement);
  // Drops a prepared replacement (a pass that gave up).
  void DiscardReplacement(std::unique_ptr<Replacement> replacement);
  uint64_t segments_cleaned() const { return segments_cleaned_.load(std::memory_order_relaxed); }
  // Bytes of the segment files on the media (what the log occupies).
  uint64_t file_bytes() const;

  static constexpr uint32_t kMaxSegments = 1u << 16;

 private:
  // Held by the thread inside a _wt function: two at once abort (checked in
  // builds without NDEBUG; the writer may change between calls).
  mutable ThreadRole writer_{"the log's writer"};
  Log(std::shared_ptr<LogDevice> device, const LogOptions& options);
  Status RecoverImpl(const ApplyFn& apply, RecoveryReport* report);
  // RecoverImpl's steps (log_recovery.cc). Opens segment ids[idx] and checks
  // its header and its place in the sequence. *seg is null, with OK, if it
  // was the last segment, headerless and empty (a crash while creating it):
  // it was removed and recovery ends there.
  Status OpenForRecovery(const std::vector<uint32_t>& ids, size_t idx, Segment** seg);
  // Whether the valid batch h at `off` of ids[idx] continues the log
  // (expected_lsn 0: no batch yet); else why not in *why.
  bool ContinuesLog(const std::vector<uint32_t>& ids, size_t idx, uint64_t off,
                    const BatchHeader& h, uint64_t expected_lsn, std::string* why) const;
  // Hands the records of batch h at `off` of segment `id` to `apply` and
  // counts the batch.
  Status ReplayBatch(uint32_t id, const Segment& seg, uint64_t off, const BatchHeader& h,
                     const ApplyFn& apply, RecoveryReport* report);
  // The scan of ids[idx] stopped at `off` (no valid batch there, for `why`):
  // the normal end of a full segment (*next_segment), a torn tail (dropped),
  // or damage (Corruption, or dropped with --recovery_drop_corrupt).
  Status ScanStopped(const std::vector<uint32_t>& ids, size_t idx, uint64_t off,
                     const std::string& why, RecoveryReport* report, bool* next_segment);
  StatusOr<AppendResult> WriteBatch_wt(const BatchHeader& header, std::string_view payload,
                                       bool persist = true);
  // Records a persist failure: the log refuses further appends.
  Status Fail_wt(const Status& s);
  Status NewSegment_wt(uint32_t id, bool from_reserve = false);
  // Persists what waits and moves to a new segment; Busy (remembered for
  // kSwitchRetryUs) if it cannot be created.
  Status SwitchSegment_wt(bool from_reserve);
  static constexpr int64_t kSwitchRetryUs = 100000;
  // Drops segment `seg` (id `id`): unmapped now, or once the last reply
  // holding it (HoldSegment) is sent. REQUIRES: segments_mu_ held
  // exclusively, or recovery.
  void DropOwned(uint32_t id, Segment* seg, bool replaced = false);
  // Drops the log from (seg_id, off) on: removes the `later` segments (newest
  // first), then zeroes and persists the rest of seg_id; appends continue there.
  Status TruncateAt(uint32_t seg_id, uint64_t off, const std::vector<uint32_t>& later);
  // Looks for any valid batch at or after (ids[idx], off), in segments before
  // ids[end_idx]. Returns a description of the first one, or "" if none.
  // A segment that cannot be opened sets *error (never "nothing found").
  // *last_end, if given, is set to the end of the last valid batch found when
  // every one found lies in segment ids[idx], and to UINT64_MAX otherwise.
  std::string FindValidBatchAfter(const std::vector<uint32_t>& ids, size_t idx, uint64_t off,
                                  uint64_t* batches, uint64_t* records, Status* error,
                                  size_t end_idx = SIZE_MAX, uint64_t* last_end = nullptr);
  // Offset just past the run of valid batches from the start of a segment
  // already judged sound by recovery.
  uint64_t DataEnd(const Segment& seg) const;
  // Checks the batch at `off` of `seg`; on success fills header.
  bool ValidBatchAt(const Segment& seg, uint64_t off, BatchHeader* hdr, std::string* why) const;

  std::shared_ptr<LogDevice> device_;
  LogOptions options_;
  // Segment i is at segments_[i] (nullptr if absent). Readers load without locks.
  std::unique_ptr<std::atomic<Segment*>[]> segments_;
  // LSN of the first batch of segment i (0: no batch yet), for ForEachBatch.
  std::unique_ptr<std::atomic<uint64_t>[]> seg_first_lsn_;
  BatchHeader last_batch_{};                     // writer-owned
  std::vector<std::shared_ptr<Segment>> owned_;  // shared with HoldSegment's holders
  // Per segment id, owned_'s entry for segments_[id] (null if none): what
  // HoldSegment hands out, read under the store's read guard without a lock.
  // An id's entry changes only before any location names the id, or while
  // no reader runs (a cleaning swap, a truncation).
  std::unique_ptr<std::shared_ptr<Segment>[]> holders_;
  // Segments dropped from the log (cleaned, truncated) that replies still
  // hold: their space on the media is not free until the last holder goes.
  // Over kRetiredHeldBudget, HoldSegment gives nothing (replies copy).
  static constexpr uint64_t kRetiredHeldBudget = 1ull << 30;
  mutable Mutex retired_mu_;
  mutable std::vector<std::weak_ptr<Segment>> retired_ GUARDED_BY(retired_mu_);
  mutable std::atomic<uint64_t> retired_bytes_{0};
  uint32_t tail_segment_ = 0;         // writer-owned
  uint64_t tail_offset_ = 0;          // writer-owned
  bool tail_from_reserve_ = false;    // writer-owned: the tail segment is the device's reserve
  int64_t switch_retry_us_ = 0;       // writer-owned: no new segment attempt before (MonoUs)
  Status switch_failure_;             // writer-owned: why the last attempt failed
  bool create_lacked_space_ = false;  // writer-owned: the last failed creation was for space
  std::atomic<bool> short_of_space_{false};  // the last segment switch failed for want of space
  bool failed_ = false;                      // writer-owned
  // Start, in the tail segment, of bytes appended but not yet persisted
  // (AppendReplicated_wt with persist=false); 0: none. Writer-owned.
  uint32_t InFlightBatches() const {
    return std::clamp<uint32_t>(options_.in_flight_batches, 1, kTornWindowBatches);
  }
  // Counts out of the window the batches NoteDurable_any reported durable.
  void ForgetDurable_wt();
  // Batches written with persist=false and not known durable, oldest first.
  struct Pending {
    uint64_t end_lsn;
    uint64_t offset;
  };
  std::deque<Pending> pending_;  // writer-owned
  std::atomic<uint64_t> durable_end_lsn_{0};
  // Sync_any holds it shared while it persists a segment; sealing a segment
  // (which may close its file) holds it exclusively.
  mutable SharedMutex sync_mu_;
  uint64_t unpersisted_from_ = 0;
  uint32_t unpersisted_batches_ = 0;  // batches written since unpersisted_from_
  std::string failure_;
  std::atomic<uint64_t> next_lsn_{1};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> segment_count_{0};
  // Bytes of batches in segment i.
  std::unique_ptr<std::atomic<uint64_t>[]> seg_data_bytes_;
  // Shared by readers that walk segments (ForEachBatch, ForEachRecord,
  // SealedSegments); exclusive to whoever adds, removes or replaces one.
  mutable SharedMutex segments_mu_;
  uint64_t truncations_ GUARDED_BY(segments_mu_) = 0;  // invalidates prepared replacements
  uint64_t truncations_now() const EXCLUDES(segments_mu_) {
    ReaderMutexLock l(&segments_mu_);
    return truncations_;
  }
  std::atomic<uint64_t> segments_cleaned_{0};
};

}  // namespace faha::nvm

#endif  // FAHA_NVM_LOG_H_
