// Log recovery: scanning the segments at start-up, telling a torn tail from
// damage, truncating what cannot be replayed (docs/format.md).
#include <algorithm>
#include <cstring>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "nvm/log.h"
#include "nvm/record_iterator.h"

namespace faha::nvm {

namespace {

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

Status Log::OpenForRecovery(const std::vector<uint32_t>& ids, size_t idx, Segment** out) {
  *out = nullptr;
  const uint32_t id = ids[idx];
  const std::string name = device_->SegmentName(id);
  if (id == 0 || id >= kMaxSegments) return Status::Corruption(name + ": segment id out of range");
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
    bool holds_batch = !FindValidBatchAfter(ids, idx, sizeof(SegmentHeader), &b, &r, &err).empty();
    FAHA_RETURN_IF_ERROR(err);
    if (!last || holds_batch) return Status::Corruption(name + " offset 0: damaged segment header");
    // Created but its header never (fully) persisted: a crash during a
    // segment switch. It holds no batch, so nothing is lost by removing it.
    FAHA_LOG_WARN(
        "recovery: %s has no valid header and no batch (crash while creating it); removing it",
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
  if (idx == 0 && id != 1) {
    // Cleaning replaces segments but never removes one, so the log must
    // start at segment 1.
    if (!options_.drop_corrupt) {
      return Status::Corruption(name + ": the log's first segment " + device_->SegmentName(1) +
                                " is missing; restart with --recovery_drop_corrupt to start "
                                "from the segments that remain");
    }
    FAHA_LOG_WARN(
        "recovery: %s is missing; starting from %s because --recovery_drop_corrupt is set",
        device_->SegmentName(1).c_str(), name.c_str());
  }
  if (idx > 0 && id != ids[idx - 1] + 1 && !options_.drop_corrupt) {
    // A missing segment file: batches are lost in the middle of the log.
    return Status::Corruption(name + ": segment " + std::to_string(ids[idx - 1] + 1) +
                              " is missing; restart with --recovery_drop_corrupt to drop the "
                              "log from here");
  }
  *out = seg;
  return Status::OK();
}

bool Log::ContinuesLog(const std::vector<uint32_t>& ids, size_t idx, uint64_t off,
                       const BatchHeader& h, uint64_t expected_lsn, std::string* why) const {
  if (expected_lsn == 0 && ids[idx] == 1 && h.first_lsn != 1) {
    *why = "first LSN " + std::to_string(h.first_lsn) + " where 1 was expected";
    return false;
  }
  if (expected_lsn != 0 && h.first_lsn != expected_lsn) {
    *why = "LSN " + std::to_string(h.first_lsn) + " where " + std::to_string(expected_lsn) +
           " was expected";
    return false;
  }
  if (idx > 0 && off == sizeof(SegmentHeader) && ids[idx] != ids[idx - 1] + 1) {
    *why = "previous segment missing";
    return false;
  }
  return true;
}

Status Log::ReplayBatch(uint32_t id, const Segment& seg, uint64_t off, const BatchHeader& h,
                        const ApplyFn& apply, RecoveryReport* report) {
  const uint32_t payload_at = static_cast<uint32_t>(off + sizeof(BatchHeader));
  RecordIterator it(seg.data() + payload_at, h.payload_bytes);
  uint64_t lsn = h.first_lsn;
  const bool compacted = IsCompacted(h);
  for (uint32_t i = 0; i < h.record_count; i++) {
    RecordView rec;
    bool ok = it.Next(&rec);
    if (ok && compacted) {
      // LSNs ascend inside the span; records of ordinary batches carry no delta.
      const uint64_t at = h.first_lsn + rec.lsn_delta;
      ok = rec.lsn_delta < h.lsn_span && (i == 0 || at > lsn);
      lsn = at;
    } else if (ok) {
      ok = rec.lsn_delta == 0;
    }
    if (!ok) {
      return Status::Corruption(device_->SegmentName(id) + " offset " + std::to_string(off) +
                                ": record " + std::to_string(i) +
                                " is malformed inside a batch whose checksum matches");
    }
    uint64_t loc = MakeLocation(id, payload_at + static_cast<uint32_t>(it.offset()));
    if (apply) apply(rec, loc, lsn);
    if (!compacted) lsn++;
  }
  if (off == sizeof(SegmentHeader)) seg_first_lsn_[id].store(h.first_lsn);
  last_batch_ = h;
  report->batches++;
  report->records += h.record_count;
  report->log_bytes += BatchSize(h.payload_bytes);
  bytes_written_.fetch_add(BatchSize(h.payload_bytes));
  seg_data_bytes_[id].fetch_add(BatchSize(h.payload_bytes));
  next_lsn_.store(BatchEndLsn(h));
  return Status::OK();
}

Status Log::ScanStopped(const std::vector<uint32_t>& ids, size_t idx, uint64_t off,
                        const std::string& why, RecoveryReport* report, bool* next_segment) {
  *next_segment = false;
  const uint32_t id = ids[idx];
  const Segment& seg = *segments_[id].load();
  bool zero_header =
      AllZero(seg.data() + off, std::min<uint64_t>(sizeof(BatchHeader), seg.size() - off));
  bool last = idx + 1 == ids.size();
  if (zero_header && !last && NonZeroEnd(seg, off) == off) {
    // A segment the writer left because the next batch did not fit: only
    // zeros follow, and the next segment must continue the LSN sequence.
    *next_segment = true;
    return Status::OK();
  }
  // Search from the next cache line, not from this batch's claimed end:
  // its length field is unverified, and trusting a damaged one could skip
  // over valid batches and call them a torn tail.
  uint64_t later_batches = 0, later_records = 0, later_end = 0;
  Status err;
  std::string later = FindValidBatchAfter(ids, idx, off + kBatchAlign, &later_batches,
                                          &later_records, &err, SIZE_MAX, &later_end);
  FAHA_RETURN_IF_ERROR(err);
  std::string where = device_->SegmentName(id) + " offset " + std::to_string(off);
  // Fewer than in_flight_batches valid batches ending within
  // kTornWindowBytes of the damaged one may have been written while it was
  // not yet durable (the writer never lets more wait, log_format.h): a page
  // written back before an earlier one when the power went. None of them
  // was acknowledged, so they are part of the torn tail. More, or further,
  // were written after this one was durable: that is damage, not a tear.
  // A log whose writer persists every batch (in_flight_batches 1) has no
  // such window: any valid batch after a damaged one is damage.
  const bool in_window =
      !later.empty() && later_batches < InFlightBatches() && later_end <= off + kTornWindowBytes;
  if (later.empty() || in_window) {
    uint64_t garbage_end = NonZeroEnd(seg, off);
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
    return TruncateAt(id, off, {ids.begin() + idx + 1, ids.end()});
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
  return TruncateAt(id, off, {ids.begin() + idx + 1, ids.end()});
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
    Segment* seg = nullptr;
    FAHA_RETURN_IF_ERROR(OpenForRecovery(ids, idx, &seg));
    if (seg == nullptr) return Status::OK();  // an empty last segment, removed
    uint64_t off = sizeof(SegmentHeader);
    while (true) {
      BatchHeader h;
      std::string why;
      if (ValidBatchAt(*seg, off, &h, &why) && ContinuesLog(ids, idx, off, h, expected_lsn, &why)) {
        FAHA_RETURN_IF_ERROR(ReplayBatch(ids[idx], *seg, off, h, apply, report));
        expected_lsn = BatchEndLsn(h);
        off += BatchSize(h.payload_bytes);
        if (off + sizeof(BatchHeader) > seg->size()) break;  // segment full
        continue;
      }
      // The scan stops here: the normal end, a torn tail, or damage.
      bool next_segment = false;
      FAHA_RETURN_IF_ERROR(ScanStopped(ids, idx, off, why, report, &next_segment));
      if (!next_segment) return Status::OK();
      break;
    }
  }
  // Every segment ended cleanly; append after the data of the last one.
  tail_segment_ = ids.back();
  tail_offset_ = DataEnd(*segments_[tail_segment_].load());
  return Status::OK();
}

}  // namespace faha::nvm
