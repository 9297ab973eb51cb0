#include "nvm/log.h"

#include <algorithm>
#include <cstring>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "nvm/record_iterator.h"

namespace faha::nvm {

bool DecodeRecord(const char* p, size_t avail, RecordView* out, size_t* record_bytes) {
  if (avail < sizeof(RecordHeader)) return false;
  RecordHeader h;
  std::memcpy(&h, p, sizeof(h));
  if (h.type < static_cast<uint8_t>(RecordType::kPut) ||
      h.type > static_cast<uint8_t>(RecordType::kFlushDb)) {
    return false;
  }
  uint64_t body = static_cast<uint64_t>(h.key_bytes) + h.value_bytes;
  if (body > avail - sizeof(RecordHeader)) return false;
  uint64_t total = RecordSize(h.key_bytes, h.value_bytes);
  if (total > avail) total = avail;  // the last record's padding may be cut by the payload end
  out->type = static_cast<RecordType>(h.type);
  out->key = std::string_view(p + sizeof(RecordHeader), h.key_bytes);
  out->value = std::string_view(p + sizeof(RecordHeader) + h.key_bytes, h.value_bytes);
  out->expire_at_ms = h.expire_at_ms;
  out->client_id = h.client_id;
  out->client_seq = h.client_seq;
  out->lsn_delta = h.lsn_delta;
  *record_bytes = total;
  return true;
}

size_t BatchBuilder::Add(RecordType type, std::string_view key, std::string_view value,
                         int64_t expire_at_ms, uint64_t client_id, uint64_t client_seq) {
  size_t off = buf_.size();
  RecordHeader h{};
  h.type = static_cast<uint8_t>(type);
  h.key_bytes = static_cast<uint32_t>(key.size());
  h.value_bytes = static_cast<uint32_t>(value.size());
  h.expire_at_ms = expire_at_ms;
  h.client_id = client_id;
  h.client_seq = client_seq;
  buf_.append(reinterpret_cast<const char*>(&h), sizeof(h));
  buf_.append(key);
  buf_.append(value);
  buf_.resize(off + RecordSize(key.size(), value.size()), '\0');
  count_++;
  return off - head_room_;
}

std::string BatchBuilder::Release(std::string next) {
  std::string out = std::move(buf_);
  buf_ = std::move(next);
  buf_.clear();
  buf_.reserve(out.size());  // the next batch is likely of a similar size
  buf_.resize(head_room_);
  count_ = 0;
  return out;
}

uint64_t BatchChecksum(const BatchHeader& h, const char* payload) {
  uint64_t seed = Checksum(&h, offsetof(BatchHeader, checksum));
  return Checksum(payload, h.payload_bytes, seed);
}

Log::Log(std::shared_ptr<LogDevice> device, const LogOptions& options)
    : device_(std::move(device)),
      options_(options),
      segments_(new std::atomic<Segment*>[kMaxSegments]()),  // value-initialized: all null
      seg_first_lsn_(new std::atomic<uint64_t>[kMaxSegments]()),
      holders_(new std::shared_ptr<Segment>[kMaxSegments]),
      seg_data_bytes_(new std::atomic<uint64_t>[kMaxSegments]()) {}

Log::~Log() = default;

StatusOr<std::unique_ptr<Log>> Log::Open(std::shared_ptr<LogDevice> device,
                                         const LogOptions& options) {
  if (options.segment_bytes < (1u << 16) || options.segment_bytes > (1ull << 32) ||
      options.segment_bytes % kBatchAlign != 0) {
    return Status::InvalidArgument(
        "segment size must be a multiple of 64 between 64 KiB and 4 GiB");
  }
  return std::unique_ptr<Log>(new Log(std::move(device), options));
}

std::shared_ptr<const void> Log::HoldSegment(uint64_t loc) const {
  const uint32_t id = LocationSegment(loc);
  if (id >= kMaxSegments) return nullptr;
  if (retired_bytes_.load(std::memory_order_relaxed) > kRetiredHeldBudget &&
      RetiredHeldBytes() > kRetiredHeldBudget) {
    return nullptr;
  }
  return holders_[id];
}

uint64_t Log::RetiredHeldBytes() const {
  MutexLock l(&retired_mu_);
  uint64_t bytes = 0;
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [&](const std::weak_ptr<Segment>& w) {
                                  auto s = w.lock();
                                  if (s != nullptr) bytes += s->size();
                                  return s == nullptr;
                                }),
                 retired_.end());
  retired_bytes_.store(bytes, std::memory_order_relaxed);
  return bytes;
}

void Log::DropOwned(uint32_t id, Segment* seg, bool replaced) {
  if (holders_[id].get() == seg) holders_[id].reset();
  for (auto it = owned_.begin(); it != owned_.end(); ++it) {
    if (it->get() != seg) continue;
    const bool held = it->use_count() > 1;
    // A segment cleaning replaced: its file may become a spare, unless a
    // reply still maps it. (A count of 1 cannot grow: holders_ no longer
    // names it. The fence orders the last reply's reads before the reuse.)
    std::atomic_thread_fence(std::memory_order_acquire);
    if (replaced) device_->Recycle(id, held ? nullptr : seg);
    if (held) {
      // A reply still sends from it: it goes when the last one is sent.
      MutexLock l(&retired_mu_);
      retired_.push_back(*it);
      retired_bytes_.fetch_add(seg->size(), std::memory_order_relaxed);
    }
    owned_.erase(it);
    return;
  }
}

Status Log::NewSegment_wt(uint32_t id, bool from_reserve) {
  ThreadRole::Scope writer(&writer_);
  if (id >= kMaxSegments) return Status::IOError("log is full: segment id limit reached");
  auto seg = from_reserve ? device_->CreateSegmentFromReserve(id, options_.segment_bytes)
                          : device_->CreateSegment(id, options_.segment_bytes);
  if (!seg.ok()) {
    // Nothing was written: the log ends, intact and durable, in the segment
    // before. Busy, not an I/O error: the next append tries again, so writes
    // resume once space is freed (a full disk needs no restart). The device
    // says Busy when space was what it lacked; anything else (a descriptor
    // limit, a directory gone read-only) is named for what it is.
    const bool space = seg.status().code() == Status::Code::kBusy;
    create_lacked_space_ = space;
    return Status::Busy(
        std::string(space ? "log full: " : "") + "cannot create segment " + std::to_string(id) +
        ": " + seg.status().message() +
        (space ? "; writes resume once there is space" : "; writes resume once it can be created"));
  }
  SegmentHeader h{};
  h.magic = kSegmentMagic;
  h.version = kFormatVersion;
  h.header_bytes = sizeof(SegmentHeader);
  h.segment_id = id;
  h.segment_bytes = (*seg)->size();
  h.created_ms = WallMs();
  h.checksum = Checksum(&h, offsetof(SegmentHeader, checksum));
  (*seg)->Write(0, &h, sizeof(h));
  FAHA_RETURN_IF_ERROR((*seg)->Persist(0, sizeof(h)));
  segments_[id].store(seg->get(), std::memory_order_release);
  owned_.push_back(std::move(*seg));
  holders_[id] = owned_.back();
  tail_from_reserve_ = from_reserve;
  segment_count_.fetch_add(1);
  if (Segment* old = tail_segment_ != 0 ? segments_[tail_segment_].load() : nullptr) {
    WriterMutexLock no_sync(&sync_mu_);  // no Sync_any in it meanwhile
    old->Seal();
  }
  tail_segment_ = id;
  tail_offset_ = sizeof(SegmentHeader);
  return Status::OK();
}

BatchHeader Log::FrameBatch(std::string_view payload, uint32_t record_count, uint64_t first_lsn,
                            uint64_t epoch) {
  BatchHeader h{};
  h.magic = kBatchMagic;
  h.version = kFormatVersion;
  h.payload_bytes = static_cast<uint32_t>(payload.size());
  h.record_count = record_count;
  h.first_lsn = first_lsn;
  h.epoch = epoch;
  h.checksum = BatchChecksum(h, payload.data());
  return h;
}

Status Log::CheckBatch(const BatchHeader& h, std::string_view payload) {
  const bool compacted = h.version == kCleanedVersion && h.flags == kBatchCompacted;
  if (h.magic != kBatchMagic ||
      (!compacted && (h.version != kFormatVersion || h.flags != 0 || h.lsn_span != 0))) {
    return Status::InvalidArgument("not a version-1 batch header nor a compacted batch");
  }
  if (compacted && (h.lsn_span == 0 || h.lsn_span > (1ull << 32) || h.lsn_span < h.record_count)) {
    return Status::InvalidArgument("compacted batch with an impossible LSN span " +
                                   std::to_string(h.lsn_span));
  }
  if (h.payload_bytes != payload.size() || (payload.empty() && !compacted)) {
    return Status::InvalidArgument("batch length " + std::to_string(h.payload_bytes) +
                                   " does not match its " + std::to_string(payload.size()) +
                                   " payload bytes");
  }
  if (BatchChecksum(h, payload.data()) != h.checksum) {
    return Status::Corruption("batch checksum mismatch");
  }
  RecordIterator it(payload);
  int64_t last_delta = -1;
  for (uint32_t i = 0; i < h.record_count; i++) {
    RecordView r;
    if (!it.Next(&r) ||
        (compacted ? (r.lsn_delta >= h.lsn_span || int64_t{r.lsn_delta} <= last_delta)
                   : r.lsn_delta != 0)) {
      return Status::Corruption("record " + std::to_string(i) + " of the batch is malformed");
    }
    last_delta = r.lsn_delta;
  }
  if ((h.record_count == 0 && !compacted) || it.consumed() != payload.size()) {
    return Status::Corruption("batch holds " + std::to_string(h.record_count) +
                              " records that do not fill its payload");
  }
  return Status::OK();
}

StatusOr<Log::AppendResult> Log::AppendBatch_wt(std::string_view payload, uint32_t record_count,
                                                bool persist) {
  ThreadRole::Scope writer(&writer_);
  if (record_count == 0 || payload.empty()) return Status::InvalidArgument("empty batch");
  return WriteBatch_wt(
      FrameBatch(payload, record_count, next_lsn_.load(std::memory_order_relaxed), options_.epoch),
      payload, persist);
}

Status Log::Sync_any(const AppendResult& r) const {
  ReaderMutexLock l(&sync_mu_);
  Segment* seg = segments_[LocationSegment(r.base_location)].load(std::memory_order_acquire);
  if (seg == nullptr)
    return Status::IOError("segment of LSN " + std::to_string(r.first_lsn) + " is gone");
  return seg->Persist(LocationOffset(r.base_location) - sizeof(BatchHeader), r.bytes);
}

void Log::ForgetDurable_wt() {
  ThreadRole::Scope writer(&writer_);
  const uint64_t durable = durable_end_lsn_.load(std::memory_order_acquire);
  while (!pending_.empty() && pending_.front().end_lsn <= durable) pending_.pop_front();
  unpersisted_from_ = pending_.empty() ? 0 : pending_.front().offset;
  unpersisted_batches_ = static_cast<uint32_t>(pending_.size());
}

StatusOr<Log::AppendResult> Log::AppendReplicated_wt(const BatchHeader& header,
                                                     std::string_view payload, bool persist) {
  ThreadRole::Scope writer(&writer_);
  FAHA_RETURN_IF_ERROR(CheckBatch(header, payload));
  uint64_t want = next_lsn_.load(std::memory_order_relaxed);
  if (header.first_lsn != want) {
    return Status::InvalidArgument("batch starts at LSN " + std::to_string(header.first_lsn) +
                                   " but this log continues at " + std::to_string(want));
  }
  return WriteBatch_wt(header, payload, persist);
}

Status Log::PersistAppended_wt() {
  ThreadRole::Scope writer(&writer_);
  ForgetDurable_wt();  // what another thread synced (Sync_any) needs no second sync
  if (unpersisted_from_ == 0) return Status::OK();
  if (failed_) return Status::IOError("log failed earlier: " + failure_);
  Segment* seg = segments_[tail_segment_].load();
  Status s = seg->Persist(unpersisted_from_, tail_offset_ - unpersisted_from_);
  if (!s.ok()) return Fail_wt(s);
  unpersisted_from_ = 0;
  unpersisted_batches_ = 0;
  pending_.clear();
  return Status::OK();
}

Status Log::Fail_wt(const Status& s) {
  ThreadRole::Scope writer(&writer_);
  failed_ = true;
  failure_ = s.ToString();
  return s;
}

StatusOr<Log::AppendResult> Log::AppendFramed_wt(const BatchHeader& header,
                                                 std::string_view payload, bool persist) {
  ThreadRole::Scope writer(&writer_);
  uint64_t want = next_lsn_.load(std::memory_order_relaxed);
  if (header.first_lsn != want || header.payload_bytes != payload.size() || payload.empty()) {
    return Status::InvalidArgument("framed batch does not continue this log at LSN " +
                                   std::to_string(want));
  }
  return WriteBatch_wt(header, payload, persist);
}

StatusOr<uint64_t> Log::ForEachBatch(uint64_t from_lsn, uint64_t limit_lsn, uint64_t max_bytes,
                                     const BatchFn& fn) const {
  if (from_lsn >= limit_lsn) return from_lsn;
  ReaderMutexLock segments_lock(&segments_mu_);
  // The segment holding from_lsn: the last one whose first batch starts at or
  // before it. Segments are numbered consecutively from the first one present.
  uint32_t id = 0;
  for (uint32_t i = 1; i < kMaxSegments; i++) {
    if (segments_[i].load(std::memory_order_acquire) == nullptr) {
      if (id != 0) break;
      continue;
    }
    uint64_t first = seg_first_lsn_[i].load(std::memory_order_acquire);
    if (first == 0 || first > from_lsn) break;
    id = i;
  }
  if (id == 0) return Status::NotFound("no batch starts at LSN " + std::to_string(from_lsn));
  uint64_t expected = seg_first_lsn_[id].load(std::memory_order_acquire);
  uint64_t off = sizeof(SegmentHeader);
  uint64_t visited = 0;
  bool started = false;
  // The LSN bound is checked before a header is read, so this never reads a
  // batch the writer may still be writing.
  while (expected < limit_lsn && (!started || visited < max_bytes)) {
    const Segment* seg = segments_[id].load(std::memory_order_acquire);
    BatchHeader h;
    bool here = seg != nullptr && off + sizeof(BatchHeader) <= seg->size();
    if (here) std::memcpy(&h, seg->data() + off, sizeof(h));
    if (!here || h.magic != kBatchMagic || h.first_lsn != expected ||
        h.payload_bytes > seg->size() - off - sizeof(BatchHeader)) {
      // The writer moved on to the next segment here.
      id++;
      off = sizeof(SegmentHeader);
      if (id >= kMaxSegments || segments_[id].load(std::memory_order_acquire) == nullptr ||
          seg_first_lsn_[id].load(std::memory_order_acquire) != expected) {
        return Status::Corruption("log has no batch at LSN " + std::to_string(expected) +
                                  " below " + std::to_string(limit_lsn));
      }
      continue;
    }
    uint64_t end = BatchEndLsn(h);
    if (!started) {
      if (h.first_lsn == from_lsn) {
        started = true;
      } else if (from_lsn < end) {
        return Status::NotFound("LSN " + std::to_string(from_lsn) +
                                " lies inside the batch starting at " +
                                std::to_string(h.first_lsn));
      }
    }
    if (started) {
      fn(h, std::string_view(seg->data() + off + sizeof(BatchHeader), h.payload_bytes));
      visited += BatchSize(h.payload_bytes);
    }
    expected = end;
    off += BatchSize(h.payload_bytes);
  }
  if (!started && from_lsn != expected) {
    return Status::NotFound("no batch starts at LSN " + std::to_string(from_lsn));
  }
  return expected;
}

Status Log::TruncateTo_wt(uint64_t lsn) {
  ThreadRole::Scope writer(&writer_);
  // What stays must be durable, and nothing left unpersisted may point past it.
  FAHA_RETURN_IF_ERROR(PersistAppended_wt());
  durable_end_lsn_.store(0, std::memory_order_release);  // LSNs from `lsn` on are written again
  WriterMutexLock segments_lock(&segments_mu_);
  truncations_++;
  const uint64_t next = next_lsn();
  if (lsn == next) return Status::OK();
  if (lsn == 0 || lsn > next) {
    return Status::InvalidArgument("cannot truncate the log to LSN " + std::to_string(lsn) +
                                   ": it ends before LSN " + std::to_string(next));
  }
  // Where the batch starting at `lsn` lies, and the header of the one before it.
  uint32_t seg_id = 0;
  uint64_t off = 0;
  BatchHeader prev{};
  bool found = false;
  for (uint32_t i = 1; i < kMaxSegments && !found; i++) {
    const Segment* seg = segments_[i].load(std::memory_order_acquire);
    if (seg == nullptr) {
      if (seg_id != 0) break;
      continue;
    }
    seg_id = i;
    uint64_t first = seg_first_lsn_[i].load(std::memory_order_acquire);
    uint64_t o = sizeof(SegmentHeader);
    if (first == lsn) {
      off = o;
      found = true;
      break;
    }
    uint64_t next_first = i + 1 < kMaxSegments ? seg_first_lsn_[i + 1].load() : 0;
    if (next_first != 0 && next_first < lsn) continue;  // neither the batch nor the one before
    const bool inside = first != 0 && first < lsn && (next_first == 0 || next_first > lsn);
    // Walk this segment: for the batch at lsn, or to learn its last header.
    while (o + sizeof(BatchHeader) <= seg->size()) {
      BatchHeader h;
      std::memcpy(&h, seg->data() + o, sizeof(h));
      if (h.magic != kBatchMagic) break;
      if (h.first_lsn == lsn) {
        off = o;
        found = true;
        break;
      }
      if (h.first_lsn > lsn) break;
      prev = h;
      o += BatchSize(h.payload_bytes);
    }
    if (inside && !found) break;
  }
  if (!found) {
    return Status::InvalidArgument("cannot truncate the log to LSN " + std::to_string(lsn) +
                                   ": no batch starts there");
  }
  std::vector<uint32_t> later;
  for (uint32_t i = seg_id + 1; i < kMaxSegments && segments_[i].load() != nullptr; i++) {
    later.push_back(i);
  }
  FAHA_RETURN_IF_ERROR(TruncateAt(seg_id, off, later));
  SegmentHeader sh;
  std::memcpy(&sh, segments_[seg_id].load()->data(), sizeof(sh));
  if (off == sizeof(SegmentHeader) && (sh.flags & kSegmentCleaned) != 0) {
    // Emptied, a cleaned segment would still claim what its header says about
    // records it no longer holds: start it afresh.
    Segment* seg = segments_[seg_id].exchange(nullptr);
    DropOwned(seg_id, seg);
    segment_count_.fetch_sub(1);
    FAHA_RETURN_IF_ERROR(device_->RemoveSegment(seg_id));
    FAHA_RETURN_IF_ERROR(NewSegment_wt(seg_id));
  }
  last_batch_ = prev;
  next_lsn_.store(lsn, std::memory_order_release);
  return Status::OK();
}

Status Log::MakeRoom_wt(size_t payload_bytes, bool only_removals) {
  ThreadRole::Scope writer(&writer_);
  if (failed_) return Status::IOError("log failed earlier: " + failure_);
  const Segment* seg = segments_[tail_segment_].load();
  const bool fits = tail_offset_ + BatchSize(payload_bytes) <= seg->size();
  // The reserve is for deletes: anything else moves on to a segment of its own.
  if (fits && (!tail_from_reserve_ || only_removals)) return Status::OK();
  return SwitchSegment_wt(only_removals);
}

Status Log::SwitchSegment_wt(bool from_reserve) {
  ThreadRole::Scope writer(&writer_);
  // After a failed attempt, a while without trying again: each attempt
  // reserves (and gives back) a whole segment's space, which the cleaner,
  // the thing that frees space, may need meanwhile.
  // (Not for the reserve, which is already there.)
  const int64_t now = MonoUs();
  if (!from_reserve && now < switch_retry_us_) return switch_failure_;
  // What waits to be persisted lies in this segment: persist it before the
  // next one exists, so the durable part of the log stays a prefix.
  FAHA_RETURN_IF_ERROR(PersistAppended_wt());
  WriterMutexLock segments_lock(&segments_mu_);
  Status s = NewSegment_wt(tail_segment_ + 1, from_reserve);
  if (s.code() == Status::Code::kBusy) {
    if (!from_reserve) switch_retry_us_ = now + kSwitchRetryUs;
    switch_failure_ = s;
    short_of_space_.store(create_lacked_space_, std::memory_order_relaxed);
    return s;
  }
  if (!s.ok()) return Fail_wt(s);
  if (!from_reserve) short_of_space_.store(false, std::memory_order_relaxed);
  return Status::OK();
}

StatusOr<Log::AppendResult> Log::WriteBatch_wt(const BatchHeader& h, std::string_view payload,
                                               bool persist) {
  ThreadRole::Scope writer(&writer_);
  if (failed_) return Status::IOError("log failed earlier: " + failure_);
  if (payload.size() > max_payload_bytes()) {
    return Status::InvalidArgument("batch of " + std::to_string(payload.size()) +
                                   " bytes exceeds the segment size");
  }
  const uint64_t size = BatchSize(payload.size());
  if (tail_offset_ + size > segments_[tail_segment_].load()->size()) {
    FAHA_RETURN_IF_ERROR(SwitchSegment_wt(/*from_reserve=*/false));
  }
  Segment* seg = segments_[tail_segment_].load();
  ForgetDurable_wt();
  if (unpersisted_from_ != 0 && (unpersisted_batches_ >= InFlightBatches() ||
                                 tail_offset_ + size - unpersisted_from_ > kTornWindowBytes)) {
    // Recovery takes valid batches after a torn one for a tear only within
    // this window: persist what waits before the window would grow past it.
    FAHA_RETURN_IF_ERROR(PersistAppended_wt());
  }
  uint64_t off = tail_offset_;
  if (off == sizeof(SegmentHeader)) {
    seg_first_lsn_[tail_segment_].store(h.first_lsn, std::memory_order_release);
  }
  const std::string_view header(reinterpret_cast<const char*>(&h), sizeof(h));
  if (persist && unpersisted_from_ == 0) {
    // Nothing waits before it: write and persist in one go.
    Status s = seg->WritePartsDurable(off, header, payload);
    if (!s.ok()) return Fail_wt(s);
  } else if (persist) {
    seg->WriteParts(off, header, payload);
    const uint64_t from = unpersisted_from_;
    Status s = seg->Persist(from, off + sizeof(h) + payload.size() - from);
    if (!s.ok()) return Fail_wt(s);
    unpersisted_from_ = 0;
    unpersisted_batches_ = 0;
    pending_.clear();
  } else {
    seg->WriteParts(off, header, payload);
    if (unpersisted_from_ == 0) unpersisted_from_ = off;
    unpersisted_batches_++;
    pending_.push_back(Pending{BatchEndLsn(h), off});
  }
  tail_offset_ += size;
  last_batch_ = h;
  bytes_written_.fetch_add(size, std::memory_order_relaxed);
  seg_data_bytes_[tail_segment_].fetch_add(size, std::memory_order_relaxed);
  next_lsn_.store(BatchEndLsn(h), std::memory_order_release);
  return AppendResult{MakeLocation(tail_segment_, static_cast<uint32_t>(off + sizeof(h))),
                      h.first_lsn, size, h};
}

const char* Log::RecordPtr(uint64_t loc) const {
  Segment* seg = segments_[LocationSegment(loc)].load(std::memory_order_acquire);
  return seg->data() + LocationOffset(loc);
}

uint64_t Log::LocationOf(const char* p) const {
  for (uint32_t i = 1; i < kMaxSegments; i++) {
    const Segment* seg = segments_[i].load(std::memory_order_acquire);
    if (seg != nullptr && p >= seg->data() && p < seg->data() + seg->size()) {
      return MakeLocation(i, static_cast<uint32_t>(p - seg->data()));
    }
  }
  return 0;
}

RecordView Log::ReadRecord(uint64_t loc) const {
  Segment* seg = segments_[LocationSegment(loc)].load(std::memory_order_acquire);
  RecordView r{};
  size_t n;
  uint32_t off = LocationOffset(loc);
  bool ok = DecodeRecord(seg->data() + off, seg->size() - off, &r, &n);
  (void)ok;  // locations come only from verified batches
  return r;
}

}  // namespace faha::nvm
