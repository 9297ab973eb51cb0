#include "nvm/log.h"

#include <algorithm>
#include <cstring>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"

namespace faha::nvm {

bool DecodeRecord(const char* p, size_t avail, RecordView* out, size_t* record_bytes) {
  if (avail < sizeof(RecordHeader)) return false;
  RecordHeader h;
  std::memcpy(&h, p, sizeof(h));
  if (h.type < static_cast<uint8_t>(RecordType::kPut) ||
      h.type > static_cast<uint8_t>(RecordType::kClientReply)) {
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
  return off;
}

namespace {

uint64_t BatchChecksum(const BatchHeader& h, const char* payload) {
  uint64_t seed = Checksum(&h, offsetof(BatchHeader, checksum));
  return Checksum(payload, h.payload_bytes, seed);
}

bool AllZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Offset just past the last non-zero byte in [from, size), or `from` if none.
uint64_t NonZeroEnd(const Segment& seg, uint64_t from) {
  const char* d = seg.data();
  uint64_t end = seg.size();
  while (end > from) {
    uint64_t chunk_start = end >= from + 4096 ? end - 4096 : from;
    if (!AllZero(d + chunk_start, end - chunk_start)) {
      while (end > chunk_start && d[end - 1] == 0) end--;
      return end;
    }
    end = chunk_start;
  }
  return from;
}

}  // namespace

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

Status Log::Recover(const ApplyFn& apply, RecoveryReport* report) {
  RecoveryReport local;
  if (!report) report = &local;
  *report = RecoveryReport{};
  int64_t t0 = MonoNs();
  Status s = RecoverImpl(apply, report);
  if (s.ok()) {
    for (const auto& seg : owned_) {
      if (seg.get() != segments_[tail_segment_].load()) seg->Seal();
    }
    Segment* tail = segments_[tail_segment_].load();
    tail->Prefault(tail_offset_, tail->size() - tail_offset_);
    device_->PrepareNext(options_.segment_bytes);
  }
  report->seconds = static_cast<double>(MonoNs() - t0) / 1e9;
  report->segments = segment_count();
  if (!s.ok()) {
    failed_ = true;
    failure_ = s.ToString();
  }
  return s;
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

void Log::DropOwned(uint32_t id, const Segment* seg) {
  if (holders_[id].get() == seg) holders_[id].reset();
  for (auto it = owned_.begin(); it != owned_.end(); ++it) {
    if (it->get() != seg) continue;
    if (it->use_count() > 1) {
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
  if (id >= kMaxSegments) return Status::IOError("log is full: segment id limit reached");
  auto seg = from_reserve ? device_->CreateSegmentFromReserve(id, options_.segment_bytes)
                          : device_->CreateSegment(id, options_.segment_bytes);
  if (!seg.ok()) {
    // Nothing was written: the log ends, intact and durable, in the segment
    // before. Busy, not an I/O error: the next append tries again, so writes
    // resume once space is freed (a full disk needs no restart).
    return Status::Busy("log full: cannot create segment " + std::to_string(id) + ": " +
                        seg.status().message() + "; writes resume once there is space");
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

bool Log::ValidBatchAt(const Segment& seg, uint64_t off, BatchHeader* hdr, std::string* why) const {
  if (off + sizeof(BatchHeader) > seg.size()) {
    *why = "no room for a batch header";
    return false;
  }
  std::memcpy(hdr, seg.data() + off, sizeof(BatchHeader));
  if (hdr->magic != kBatchMagic) {
    *why = "bad batch magic";
    return false;
  }
  const bool compacted = hdr->version == kCleanedVersion && hdr->flags == kBatchCompacted;
  if (!compacted && (hdr->version != kFormatVersion || hdr->flags != 0 || hdr->lsn_span != 0)) {
    *why = "unknown batch version " + std::to_string(hdr->version) + " or flags";
    return false;
  }
  if (compacted &&
      (hdr->lsn_span == 0 || hdr->lsn_span > (1ull << 32) || hdr->lsn_span < hdr->record_count)) {
    *why = "impossible LSN span " + std::to_string(hdr->lsn_span);
    return false;
  }
  if (hdr->payload_bytes > seg.size() - off - sizeof(BatchHeader)) {
    *why = "batch length " + std::to_string(hdr->payload_bytes) + " runs past the segment end";
    return false;
  }
  if ((hdr->record_count == 0 && !compacted) ||
      hdr->record_count > hdr->payload_bytes / sizeof(RecordHeader)) {
    *why = "impossible record count " + std::to_string(hdr->record_count);
    return false;
  }
  if (BatchChecksum(*hdr, seg.data() + off + sizeof(BatchHeader)) != hdr->checksum) {
    *why = "checksum mismatch";
    return false;
  }
  return true;
}

uint64_t Log::DataEnd(const Segment& seg) const {
  uint64_t pos = sizeof(SegmentHeader);
  BatchHeader h;
  std::string why;
  while (ValidBatchAt(seg, pos, &h, &why)) pos += BatchSize(h.payload_bytes);
  return pos;
}

std::string Log::FindValidBatchAfter(const std::vector<uint32_t>& ids, size_t idx, uint64_t off,
                                     uint64_t* batches, uint64_t* records, Status* error,
                                     size_t end_idx, uint64_t* last_end) {
  std::string found;
  *batches = 0;
  *records = 0;
  if (last_end) *last_end = 0;
  for (size_t i = idx; i < std::min(end_idx, ids.size()); i++) {
    std::unique_ptr<Segment> opened;
    const Segment* seg = segments_[ids[i]].load();
    if (!seg) {
      auto s = device_->OpenSegment(ids[i]);
      if (!s.ok()) {
        // Never judge an unreadable segment empty: that could truncate data.
        *error = s.status();
        return "";
      }
      opened = std::move(*s);
      seg = opened.get();
    }
    uint64_t pos = i == idx ? AlignUp(off, kBatchAlign) : sizeof(SegmentHeader);
    while (pos + sizeof(BatchHeader) <= seg->size()) {
      BatchHeader h;
      std::string why;
      if (ValidBatchAt(*seg, pos, &h, &why)) {
        if (found.empty()) {
          found = "valid batch at " + device_->SegmentName(ids[i]) + " offset " +
                  std::to_string(pos) + " (LSN " + std::to_string(h.first_lsn) + ")";
        }
        (*batches)++;
        *records += h.record_count;
        pos += BatchSize(h.payload_bytes);
        if (last_end) *last_end = i == idx ? pos : UINT64_MAX;
      } else {
        pos += kBatchAlign;
      }
    }
  }
  return found;
}

Status Log::TruncateAt(uint32_t seg_id, uint64_t off, const std::vector<uint32_t>& later) {
  // Later segments first, newest first: a crash part way leaves a valid prefix.
  for (auto it = later.rbegin(); it != later.rend(); ++it) {
    if (Segment* seg = segments_[*it].exchange(nullptr)) {
      DropOwned(*it, seg);
      segment_count_.fetch_sub(1);
    }
    seg_first_lsn_[*it].store(0);
    seg_data_bytes_[*it].store(0);
    FAHA_RETURN_IF_ERROR(device_->RemoveSegment(*it));
  }
  Segment* seg = segments_[seg_id].load();
  uint64_t end = NonZeroEnd(*seg, off);
  if (end > off) {
    std::vector<char> zeros(end - off, 0);
    seg->Write(off, zeros.data(), zeros.size());
    FAHA_RETURN_IF_ERROR(seg->Persist(off, end - off));
  }
  if (off == sizeof(SegmentHeader)) seg_first_lsn_[seg_id].store(0);
  seg_data_bytes_[seg_id].store(off - sizeof(SegmentHeader));
  tail_segment_ = seg_id;
  tail_offset_ = off;
  return Status::OK();
}

Status Log::RecoverImpl(const ApplyFn& apply, RecoveryReport* report) {
  auto listed = device_->ListSegments();
  if (!listed.ok()) return listed.status();
  const std::vector<uint32_t>& ids = *listed;
  // A cleaning pass that crashed before putting its replacement in place left
  // it staged: the segment it was made from is intact and stays.
  FAHA_RETURN_IF_ERROR(device_->DiscardReplacement(0));
  if (ids.empty()) return NewSegment_wt(1);

  uint64_t expected_lsn = 0;  // 0 until the first batch fixes it
  for (size_t idx = 0; idx < ids.size(); idx++) {
    uint32_t id = ids[idx];
    std::string name = device_->SegmentName(id);
    if (id == 0 || id >= kMaxSegments)
      return Status::Corruption(name + ": segment id out of range");
    auto opened = device_->OpenSegment(id);
    if (!opened.ok()) return opened.status();
    Segment* seg = opened->get();
    if (seg->size() < sizeof(SegmentHeader) + kBatchAlign || seg->size() > (1ull << 32)) {
      return Status::Corruption(name + ": impossible segment size " + std::to_string(seg->size()));
    }
    segments_[id].store(seg);
    owned_.push_back(std::move(*opened));
    holders_[id] = owned_.back();
    segment_count_.fetch_add(1);

    SegmentHeader sh;
    std::memcpy(&sh, seg->data(), sizeof(sh));
    bool header_ok = sh.magic == kSegmentMagic &&
                     (sh.version == kFormatVersion || sh.version == kCleanedVersion) &&
                     sh.segment_id == id &&
                     sh.checksum == Checksum(&sh, offsetof(SegmentHeader, checksum));
    if (!header_ok) {
      uint64_t b, r;
      Status err;
      bool last = idx + 1 == ids.size();
      bool holds_batch =
          !FindValidBatchAfter(ids, idx, sizeof(SegmentHeader), &b, &r, &err).empty();
      FAHA_RETURN_IF_ERROR(err);
      if (last && !holds_batch) {
        // Created but its header never (fully) persisted: a crash during a
        // segment switch. It holds no batch, so nothing is lost by removing it.
        FAHA_LOG_WARN(
            "recovery: %s has no valid header and no batch (crash while creating "
            "it); removing it",
            name.c_str());
        segments_[id].store(nullptr);
        owned_.pop_back();
        holders_[id].reset();
        segment_count_.fetch_sub(1);
        FAHA_RETURN_IF_ERROR(device_->RemoveSegment(id));
        if (idx == 0) return NewSegment_wt(1);
        tail_segment_ = ids[idx - 1];
        tail_offset_ = DataEnd(*segments_[tail_segment_].load());
        return Status::OK();
      }
      return Status::Corruption(name + " offset 0: damaged segment header");
    }
    if (idx == 0 && id != 1) {
      // Cleaning replaces segments but never removes one, so the log must
      // start at segment 1.
      if (!options_.drop_corrupt) {
        return Status::Corruption(name + ": the log's first segment " + device_->SegmentName(1) +
                                  " is missing; restart with --recovery_drop_corrupt to start "
                                  "from the segments that remain");
      }
      FAHA_LOG_WARN(
          "recovery: %s is missing; starting from %s because --recovery_drop_corrupt "
          "is set",
          device_->SegmentName(1).c_str(), name.c_str());
    }
    if (idx > 0 && id != ids[idx - 1] + 1) {
      // A missing segment file: batches are lost in the middle of the log.
      if (!options_.drop_corrupt) {
        return Status::Corruption(name + ": segment " + std::to_string(ids[idx - 1] + 1) +
                                  " is missing; restart with --recovery_drop_corrupt to drop the "
                                  "log from here");
      }
    }

    uint64_t off = sizeof(SegmentHeader);
    while (true) {
      BatchHeader h;
      std::string why;
      bool valid = ValidBatchAt(*seg, off, &h, &why);
      if (valid && expected_lsn == 0 && id == 1 && h.first_lsn != 1) {
        valid = false;
        why = "first LSN " + std::to_string(h.first_lsn) + " where 1 was expected";
      }
      if (valid && expected_lsn != 0 && h.first_lsn != expected_lsn) {
        valid = false;
        why = "LSN " + std::to_string(h.first_lsn) + " where " + std::to_string(expected_lsn) +
              " was expected";
      }
      if (valid && idx > 0 && off == sizeof(SegmentHeader) && id != ids[idx - 1] + 1) {
        valid = false;
        why = "previous segment missing";
      }
      if (valid) {
        const char* p = seg->data() + off + sizeof(BatchHeader);
        size_t left = h.payload_bytes;
        uint64_t lsn = h.first_lsn;
        const bool compacted = IsCompacted(h);
        for (uint32_t i = 0; i < h.record_count; i++) {
          RecordView rec;
          size_t n;
          bool ok = DecodeRecord(p, left, &rec, &n);
          if (ok && compacted) {
            // LSNs ascend inside the span; records of ordinary batches carry no delta.
            const uint64_t at = h.first_lsn + rec.lsn_delta;
            ok = rec.lsn_delta < h.lsn_span && (i == 0 || at > lsn);
            lsn = at;
          } else if (ok) {
            ok = rec.lsn_delta == 0;
          }
          if (!ok) {
            return Status::Corruption(name + " offset " + std::to_string(off) + ": record " +
                                      std::to_string(i) +
                                      " is malformed inside a batch whose checksum matches");
          }
          uint64_t loc = MakeLocation(id, static_cast<uint32_t>(p - seg->data()));
          if (apply) apply(rec, loc, lsn);
          if (!compacted) lsn++;
          p += n;
          left -= n;
        }
        if (off == sizeof(SegmentHeader)) seg_first_lsn_[id].store(h.first_lsn);
        last_batch_ = h;
        report->batches++;
        report->records += h.record_count;
        report->log_bytes += BatchSize(h.payload_bytes);
        bytes_written_.fetch_add(BatchSize(h.payload_bytes));
        seg_data_bytes_[id].fetch_add(BatchSize(h.payload_bytes));
        expected_lsn = BatchEndLsn(h);
        next_lsn_.store(expected_lsn);
        off += BatchSize(h.payload_bytes);
        if (off + sizeof(BatchHeader) > seg->size()) break;  // segment full
        continue;
      }

      // The scan stops here. What follows decides whether this is the normal
      // end, a torn tail, or damage in the middle of the log.
      bool zero_header =
          AllZero(seg->data() + off, std::min<uint64_t>(sizeof(BatchHeader), seg->size() - off));
      bool last = idx + 1 == ids.size();
      if (zero_header && !last && NonZeroEnd(*seg, off) == off) {
        // A segment the writer left because the next batch did not fit: only
        // zeros follow, and the next segment must continue the LSN sequence.
        break;
      }
      // Search from the next cache line, not from this batch's claimed end:
      // its length field is unverified, and trusting a damaged one could skip
      // over valid batches and call them a torn tail.
      uint64_t later_batches = 0, later_records = 0, later_end = 0;
      Status err;
      std::string later = FindValidBatchAfter(ids, idx, off + kBatchAlign, &later_batches,
                                              &later_records, &err, SIZE_MAX, &later_end);
      FAHA_RETURN_IF_ERROR(err);
      std::string where = name + " offset " + std::to_string(off);
      // Fewer than in_flight_batches valid batches ending within
      // kTornWindowBytes of the damaged one may have been written while it was
      // not yet durable (the writer never lets more wait, log_format.h): a page
      // written back before an earlier one when the power went. None of them
      // was acknowledged, so they are part of the torn tail. More, or further,
      // were written after this one was durable: that is damage, not a tear.
      // A log whose writer persists every batch (in_flight_batches 1) has no
      // such window: any valid batch after a damaged one is damage.
      const bool in_window = !later.empty() && later_batches < InFlightBatches() &&
                             later_end <= off + kTornWindowBytes;
      if (later.empty() || in_window) {
        uint64_t garbage_end = NonZeroEnd(*seg, off);
        if (garbage_end > off) {
          report->torn_tail = true;
          report->torn_detail = where + ": " + (zero_header ? "header not persisted" : why) + ", " +
                                std::to_string(garbage_end - off) +
                                " bytes of an incomplete last batch dropped";
          if (in_window) {
            report->torn_detail += ", with the " + std::to_string(later_batches) +
                                   " batches after it (" + std::to_string(later_records) +
                                   " records) written in the same in-flight window (" + later + ")";
          }
          FAHA_LOG_WARN("recovery: dropped torn tail at %s", report->torn_detail.c_str());
        }
        FAHA_RETURN_IF_ERROR(TruncateAt(id, off, {ids.begin() + idx + 1, ids.end()}));
        return Status::OK();
      }
      std::string what = where + ": damaged batch (" + (zero_header ? "zeroed header" : why) +
                         ") followed by " + later;
      if (!options_.drop_corrupt) {
        return Status::Corruption(what +
                                  "; this is lost media, not a torn tail. Restart with "
                                  "--recovery_drop_corrupt to drop the log from here");
      }
      report->dropped_corrupt = true;
      report->dropped_batches = later_batches;
      report->dropped_records = later_records;
      report->dropped_detail = what + "; dropped " + std::to_string(later_batches) +
                               " later valid batches (" + std::to_string(later_records) +
                               " records) because --recovery_drop_corrupt is set";
      FAHA_LOG_WARN("recovery: %s", report->dropped_detail.c_str());
      FAHA_RETURN_IF_ERROR(TruncateAt(id, off, {ids.begin() + idx + 1, ids.end()}));
      return Status::OK();
    }
  }
  // Every segment ended cleanly; append after the data of the last one.
  tail_segment_ = ids.back();
  tail_offset_ = DataEnd(*segments_[tail_segment_].load());
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
  size_t off = 0;
  int64_t last_delta = -1;
  for (uint32_t i = 0; i < h.record_count; i++) {
    RecordView r;
    size_t n;
    if (!DecodeRecord(payload.data() + off, payload.size() - off, &r, &n) ||
        (compacted ? (r.lsn_delta >= h.lsn_span || int64_t{r.lsn_delta} <= last_delta)
                   : r.lsn_delta != 0)) {
      return Status::Corruption("record " + std::to_string(i) + " of the batch is malformed");
    }
    last_delta = r.lsn_delta;
    off += n;
  }
  if ((h.record_count == 0 && !compacted) || off != payload.size()) {
    return Status::Corruption("batch holds " + std::to_string(h.record_count) +
                              " records that do not fill its payload");
  }
  return Status::OK();
}

StatusOr<Log::AppendResult> Log::AppendBatch_wt(std::string_view payload, uint32_t record_count,
                                                bool persist) {
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
  const uint64_t durable = durable_end_lsn_.load(std::memory_order_acquire);
  while (!pending_.empty() && pending_.front().end_lsn <= durable) pending_.pop_front();
  unpersisted_from_ = pending_.empty() ? 0 : pending_.front().offset;
  unpersisted_batches_ = static_cast<uint32_t>(pending_.size());
}

StatusOr<Log::AppendResult> Log::AppendReplicated_wt(const BatchHeader& header,
                                                     std::string_view payload, bool persist) {
  FAHA_RETURN_IF_ERROR(CheckBatch(header, payload));
  uint64_t want = next_lsn_.load(std::memory_order_relaxed);
  if (header.first_lsn != want) {
    return Status::InvalidArgument("batch starts at LSN " + std::to_string(header.first_lsn) +
                                   " but this log continues at " + std::to_string(want));
  }
  return WriteBatch_wt(header, payload, persist);
}

Status Log::PersistAppended_wt() {
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
  failed_ = true;
  failure_ = s.ToString();
  return s;
}

StatusOr<Log::AppendResult> Log::AppendFramed_wt(const BatchHeader& header,
                                                 std::string_view payload) {
  uint64_t want = next_lsn_.load(std::memory_order_relaxed);
  if (header.first_lsn != want || header.payload_bytes != payload.size() || payload.empty()) {
    return Status::InvalidArgument("framed batch does not continue this log at LSN " +
                                   std::to_string(want));
  }
  return WriteBatch_wt(header, payload);
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
  if (failed_) return Status::IOError("log failed earlier: " + failure_);
  const Segment* seg = segments_[tail_segment_].load();
  const bool fits = tail_offset_ + BatchSize(payload_bytes) <= seg->size();
  // The reserve is for deletes: anything else moves on to a segment of its own.
  if (fits && (!tail_from_reserve_ || only_removals)) return Status::OK();
  return SwitchSegment_wt(only_removals);
}

Status Log::SwitchSegment_wt(bool from_reserve) {
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
    short_of_space_.store(true, std::memory_order_relaxed);
    return s;
  }
  if (!s.ok()) return Fail_wt(s);
  if (!from_reserve) short_of_space_.store(false, std::memory_order_relaxed);
  return Status::OK();
}

StatusOr<Log::AppendResult> Log::WriteBatch_wt(const BatchHeader& h, std::string_view payload,
                                               bool persist) {
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

namespace faha::nvm {

std::vector<Log::SegmentInfo> Log::SealedSegments() const {
  ReaderMutexLock segments_lock(&segments_mu_);
  std::vector<SegmentInfo> out;
  bool seen = false;
  for (uint32_t i = 1; i + 1 < kMaxSegments; i++) {
    const Segment* seg = segments_[i].load(std::memory_order_acquire);
    if (seg == nullptr) {
      if (seen) break;
      continue;
    }
    seen = true;
    // Sealed: the writer has moved on to the next segment and appended there.
    const uint64_t end = seg_first_lsn_[i + 1].load(std::memory_order_acquire);
    const uint64_t first = seg_first_lsn_[i].load(std::memory_order_acquire);
    if (end == 0 || segments_[i + 1].load(std::memory_order_acquire) == nullptr) break;
    if (first == 0) continue;
    SegmentHeader sh;
    std::memcpy(&sh, seg->data(), sizeof(sh));
    SegmentInfo info;
    info.id = i;
    info.first_lsn = first;
    info.end_lsn = end;
    info.data_bytes = seg_data_bytes_[i].load(std::memory_order_relaxed);
    info.file_bytes = seg->size();
    info.cleaned = (sh.flags & kSegmentCleaned) != 0;
    info.cleaned_lsn = info.cleaned ? sh.cleaned_lsn : 0;
    out.push_back(info);
  }
  return out;
}

uint64_t Log::file_bytes() const {
  ReaderMutexLock segments_lock(&segments_mu_);
  uint64_t total = 0;
  for (const auto& seg : owned_) total += seg->size();
  return total;
}

Status Log::ForEachRecord(uint32_t id, const ApplyFn& fn) const {
  ReaderMutexLock segments_lock(&segments_mu_);
  const Segment* seg = id > 0 && id + 1 < kMaxSegments ? segments_[id].load() : nullptr;
  const uint64_t end = seg != nullptr ? seg_first_lsn_[id + 1].load() : 0;
  if (seg == nullptr || end == 0) {
    return Status::NotFound("segment " + std::to_string(id) + " is not sealed");
  }
  uint64_t off = sizeof(SegmentHeader);
  uint64_t expected = seg_first_lsn_[id].load();
  while (expected < end) {
    BatchHeader h;
    std::string why;
    if (!ValidBatchAt(*seg, off, &h, &why) || h.first_lsn != expected) {
      return Status::Corruption(device_->SegmentName(id) + " offset " + std::to_string(off) +
                                ": no batch at LSN " + std::to_string(expected) + " (" + why + ")");
    }
    const char* p = seg->data() + off + sizeof(BatchHeader);
    size_t left = h.payload_bytes;
    for (uint32_t i = 0; i < h.record_count; i++) {
      RecordView rec;
      size_t n;
      if (!DecodeRecord(p, left, &rec, &n)) {
        return Status::Corruption(device_->SegmentName(id) + " offset " + std::to_string(off) +
                                  ": malformed record");
      }
      const uint64_t lsn = h.first_lsn + (IsCompacted(h) ? rec.lsn_delta : i);
      fn(rec, MakeLocation(id, static_cast<uint32_t>(p - seg->data())), lsn);
      p += n;
      left -= n;
    }
    expected = BatchEndLsn(h);
    off += BatchSize(h.payload_bytes);
  }
  return Status::OK();
}

StatusOr<std::unique_ptr<Log::Replacement>> Log::PrepareReplacement(
    const SegmentInfo& seg, const std::vector<KeptRecord>& kept, uint64_t cleaned_lsn,
    std::vector<uint64_t>* locations) {
  // Group the records into compacted batches of at most max_payload_bytes;
  // batch g covers from its first record's LSN (the segment's first LSN for
  // the first batch) to the next batch's start (the segment's end for the last).
  struct Group {
    size_t begin, end;  // indexes into kept
    uint64_t payload;
  };
  // Compacted batches of about a MiB: the buffer that assembles one stays
  // small and is reused (building one batch of tens of MiB cost more in page
  // faults than the copying), and each is persisted as it is written.
  constexpr uint64_t kGroupBytes = 1 << 20;
  const uint64_t group_limit = std::min<uint64_t>(kGroupBytes, max_payload_bytes());
  std::vector<Group> groups;
  groups.push_back({0, 0, 0});
  for (size_t i = 0; i < kept.size(); i++) {
    RecordView r;
    size_t n;
    if (!DecodeRecord(kept[i].bytes.data(), kept[i].bytes.size(), &r, &n) ||
        kept[i].lsn < seg.first_lsn || kept[i].lsn >= seg.end_lsn ||
        (i > 0 && kept[i].lsn <= kept[i - 1].lsn)) {
      return Status::InvalidArgument("cleaning: a kept record is malformed or out of order");
    }
    const uint64_t size = RecordSize(r.key.size(), r.value.size());
    if (groups.back().payload > 0 && groups.back().payload + size > group_limit) {
      groups.push_back({i, i, 0});
    }
    groups.back().end = i + 1;
    groups.back().payload += size;
  }
  if (seg.end_lsn - seg.first_lsn > (1ull << 32)) {
    return Status::InvalidArgument("cleaning: segment covers too many LSNs");
  }
  uint64_t data = 0;
  for (const auto& g : groups) data += BatchSize(g.payload);
  const uint64_t file = AlignUp(sizeof(SegmentHeader) + data, 4096);
  if (file > (1ull << 32)) return Status::InvalidArgument("cleaning: replacement too large");

  const uint64_t truncations = truncations_now();
  auto staged = device_->CreateReplacement(seg.id, file);
  if (!staged.ok()) return staged.status();
  Segment* out = staged->get();

  SegmentHeader sh{};
  sh.magic = kSegmentMagic;
  sh.version = kCleanedVersion;
  sh.header_bytes = sizeof(SegmentHeader);
  sh.segment_id = seg.id;
  sh.segment_bytes = file;
  sh.created_ms = WallMs();
  sh.flags = kSegmentCleaned;
  sh.cleaned_lsn = cleaned_lsn;
  sh.checksum = Checksum(&sh, offsetof(SegmentHeader, checksum));
  out->Write(0, &sh, sizeof(sh));

  locations->assign(kept.size(), 0);
  uint64_t off = sizeof(SegmentHeader);
  uint64_t persisted_to = 0;  // [0, persisted_to) is durable
  Status persisted;
  std::string payload;
  payload.reserve(group_limit);
  for (size_t g = 0; g < groups.size(); g++) {
    const uint64_t first = g == 0 ? seg.first_lsn : kept[groups[g].begin].lsn;
    const uint64_t end = g + 1 < groups.size() ? kept[groups[g + 1].begin].lsn : seg.end_lsn;
    payload.clear();
    for (size_t i = groups[g].begin; i < groups[g].end; i++) {
      const size_t at = payload.size();
      (*locations)[i] = MakeLocation(seg.id, static_cast<uint32_t>(off + sizeof(BatchHeader) + at));
      RecordView r;
      size_t n;
      DecodeRecord(kept[i].bytes.data(), kept[i].bytes.size(), &r, &n);
      payload.append(kept[i].bytes.data(), sizeof(RecordHeader) + r.key.size() + r.value.size());
      payload.resize(at + RecordSize(r.key.size(), r.value.size()), '\0');
      const uint32_t delta = static_cast<uint32_t>(kept[i].lsn - first);
      std::memcpy(payload.data() + at + offsetof(RecordHeader, lsn_delta), &delta, sizeof(delta));
    }
    BatchHeader h{};
    h.magic = kBatchMagic;
    h.version = kCleanedVersion;
    h.flags = kBatchCompacted;
    h.payload_bytes = static_cast<uint32_t>(payload.size());
    h.record_count = static_cast<uint32_t>(groups[g].end - groups[g].begin);
    h.first_lsn = first;
    h.epoch = options_.epoch;
    h.lsn_span = end - first;
    h.checksum = BatchChecksum(h, payload.data());
    out->WriteParts(off, std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), payload);
    off += BatchSize(payload.size());
    // Persisted about a MiB at a time as it is written: one flush of tens of
    // MiB would queue ahead of the writer's small per-batch persists on the
    // same device for its whole length (seen as write p99,
    // docs/bench/clean.md). On a file a persist writes back every dirty page
    // of the file, so the chunks are persisted before the next is written.
    if (persisted.ok() && off - persisted_to >= kGroupBytes) {
      persisted = out->Persist(persisted_to, off - persisted_to);
      persisted_to = off;
    }
  }
  if (persisted.ok() && off > persisted_to)
    persisted = out->Persist(persisted_to, off - persisted_to);
  if (!persisted.ok()) {
    // The persist error is the one to report; a staged file left behind is
    // removed at the next start.
    device_->DiscardReplacement(seg.id).IgnoreError();
    return persisted;
  }
  auto r = std::unique_ptr<Replacement>(new Replacement());
  r->id = seg.id;
  r->truncations = truncations;
  r->data_bytes = data;
  r->segment = std::move(*staged);
  return r;
}

Status Log::CommitReplacement(Replacement* r) {
  // Shared: a truncation (exclusive) cannot run meanwhile, readers can.
  ReaderMutexLock segments_lock(&segments_mu_);
  if (r->truncations != truncations_ || segments_[r->id].load() == nullptr) {
    return Status::Unavailable("the log was truncated while segment " + std::to_string(r->id) +
                               " was being cleaned");
  }
  FAHA_RETURN_IF_ERROR(device_->CommitReplacement(r->id));
  r->committed = true;
  r->segment->Seal();  // never appended to
  return Status::OK();
}

void Log::SwapReplacement(std::unique_ptr<Replacement> r) {
  WriterMutexLock segments_lock(&segments_mu_);
  Segment* old = segments_[r->id].exchange(r->segment.get(), std::memory_order_acq_rel);
  owned_.push_back(std::move(r->segment));
  holders_[r->id] = owned_.back();
  DropOwned(r->id, old);  // unmaps it, unless a reply still holds it
  seg_data_bytes_[r->id].store(r->data_bytes);
  segments_cleaned_.fetch_add(1, std::memory_order_relaxed);
}

void Log::DiscardReplacement(std::unique_ptr<Replacement> r) {
  r->segment.reset();
  // A staged file left behind is removed at the next start.
  if (!r->committed) device_->DiscardReplacement(r->id).IgnoreError();
}

}  // namespace faha::nvm
