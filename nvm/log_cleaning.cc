// Log cleaning's side of the log: sealed segments, their records, and
// replacement segments prepared, committed and swapped in.
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
    const uint32_t payload_at = static_cast<uint32_t>(off + sizeof(BatchHeader));
    RecordIterator it(seg->data() + payload_at, h.payload_bytes);
    for (uint32_t i = 0; i < h.record_count; i++) {
      RecordView rec;
      if (!it.Next(&rec)) {
        return Status::Corruption(device_->SegmentName(id) + " offset " + std::to_string(off) +
                                  ": malformed record");
      }
      const uint64_t lsn = h.first_lsn + (IsCompacted(h) ? rec.lsn_delta : i);
      fn(rec, MakeLocation(id, payload_at + static_cast<uint32_t>(it.offset())), lsn);
    }
    expected = BatchEndLsn(h);
    off += BatchSize(h.payload_bytes);
  }
  return Status::OK();
}

namespace {

// Compacted batches of a cleaned segment: kept[begin, end), `payload` bytes.
struct Group {
  size_t begin, end;
  uint64_t payload;
};

// Groups the kept records into compacted batches of at most `limit` payload
// bytes; checks that each record decodes, lies in the segment and follows
// the one before it.
Status GroupKept(const Log::SegmentInfo& seg, const std::vector<Log::KeptRecord>& kept,
                 uint64_t limit, std::vector<Group>* groups) {
  groups->assign(1, Group{0, 0, 0});
  for (size_t i = 0; i < kept.size(); i++) {
    RecordView r;
    size_t n;
    if (!DecodeRecord(kept[i].bytes.data(), kept[i].bytes.size(), &r, &n) ||
        kept[i].lsn < seg.first_lsn || kept[i].lsn >= seg.end_lsn ||
        (i > 0 && kept[i].lsn <= kept[i - 1].lsn)) {
      return Status::InvalidArgument("cleaning: a kept record is malformed or out of order");
    }
    const uint64_t size = RecordSize(r.key.size(), r.value.size());
    if (groups->back().payload > 0 && groups->back().payload + size > limit) {
      groups->push_back({i, i, 0});
    }
    groups->back().end = i + 1;
    groups->back().payload += size;
  }
  if (seg.end_lsn - seg.first_lsn > (1ull << 32)) {
    return Status::InvalidArgument("cleaning: segment covers too many LSNs");
  }
  return Status::OK();
}

void WriteCleanedHeader(Segment* out, uint32_t id, uint64_t file, uint64_t cleaned_lsn) {
  SegmentHeader sh{};
  sh.magic = kSegmentMagic;
  sh.version = kCleanedVersion;
  sh.header_bytes = sizeof(SegmentHeader);
  sh.segment_id = id;
  sh.segment_bytes = file;
  sh.created_ms = WallMs();
  sh.flags = kSegmentCleaned;
  sh.cleaned_lsn = cleaned_lsn;
  sh.checksum = Checksum(&sh, offsetof(SegmentHeader, checksum));
  out->Write(0, &sh, sizeof(sh));
}

// Writes group g as one compacted batch at `off` of segment `id`, covering
// LSNs [first, end); each record's new location goes to (*locations)[i].
// Returns the batch's size. `payload` is a reused buffer.
uint64_t WriteCompactedBatch(Segment* out, uint32_t id, uint64_t off, const Group& g,
                             uint64_t first, uint64_t end, uint64_t epoch,
                             const std::vector<Log::KeptRecord>& kept, std::string* payload,
                             std::vector<uint64_t>* locations) {
  payload->clear();
  for (size_t i = g.begin; i < g.end; i++) {
    const size_t at = payload->size();
    (*locations)[i] = MakeLocation(id, static_cast<uint32_t>(off + sizeof(BatchHeader) + at));
    RecordView r;
    size_t n;
    DecodeRecord(kept[i].bytes.data(), kept[i].bytes.size(), &r, &n);
    payload->append(kept[i].bytes.data(), sizeof(RecordHeader) + r.key.size() + r.value.size());
    payload->resize(at + RecordSize(r.key.size(), r.value.size()), '\0');
    const uint32_t delta = static_cast<uint32_t>(kept[i].lsn - first);
    std::memcpy(payload->data() + at + offsetof(RecordHeader, lsn_delta), &delta, sizeof(delta));
  }
  BatchHeader h{};
  h.magic = kBatchMagic;
  h.version = kCleanedVersion;
  h.flags = kBatchCompacted;
  h.payload_bytes = static_cast<uint32_t>(payload->size());
  h.record_count = static_cast<uint32_t>(g.end - g.begin);
  h.first_lsn = first;
  h.epoch = epoch;
  h.lsn_span = end - first;
  h.checksum = BatchChecksum(h, payload->data());
  out->WriteParts(off, std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), *payload);
  return BatchSize(payload->size());
}

}  // namespace

StatusOr<std::unique_ptr<Log::Replacement>> Log::PrepareReplacement(
    const SegmentInfo& seg, const std::vector<KeptRecord>& kept, uint64_t cleaned_lsn,
    std::vector<uint64_t>* locations) {
  // Batch g covers from its first record's LSN (the segment's first LSN for
  // the first batch) to the next batch's start (the segment's end for the
  // last). Compacted batches of about a MiB: the buffer that assembles one
  // stays small and is reused (building one batch of tens of MiB cost more in
  // page faults than the copying), and each is persisted as it is written.
  constexpr uint64_t kGroupBytes = 1 << 20;
  const uint64_t group_limit = std::min<uint64_t>(kGroupBytes, max_payload_bytes());
  std::vector<Group> groups;
  FAHA_RETURN_IF_ERROR(GroupKept(seg, kept, group_limit, &groups));
  uint64_t data = 0;
  for (const auto& g : groups) data += BatchSize(g.payload);
  const uint64_t file = AlignUp(sizeof(SegmentHeader) + data, 4096);
  if (file > (1ull << 32)) return Status::InvalidArgument("cleaning: replacement too large");

  const uint64_t truncations = truncations_now();
  auto staged = device_->CreateReplacement(seg.id, file);
  if (!staged.ok()) return staged.status();
  Segment* out = staged->get();
  WriteCleanedHeader(out, seg.id, file, cleaned_lsn);

  locations->assign(kept.size(), 0);
  uint64_t off = sizeof(SegmentHeader);
  uint64_t persisted_to = 0;  // [0, persisted_to) is durable
  Status persisted;
  std::string payload;
  payload.reserve(group_limit);
  for (size_t g = 0; g < groups.size(); g++) {
    const uint64_t first = g == 0 ? seg.first_lsn : kept[groups[g].begin].lsn;
    const uint64_t end = g + 1 < groups.size() ? kept[groups[g + 1].begin].lsn : seg.end_lsn;
    off += WriteCompactedBatch(out, seg.id, off, groups[g], first, end, options_.epoch, kept,
                               &payload, locations);
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
  // Maps its pages for readers now, here, rather than at their first reads:
  // the writer's thread reads a moved record when its key is written again
  // (the index compares keys, and counts the dead bytes), and on this
  // project's VMs each first read of a page costs an exit to the hypervisor
  // (docs/architecture.md, "Log").
  out->Prefault(0, file);
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
  DropOwned(r->id, old, /*replaced=*/true);  // unmaps it, unless a reply still holds it
  seg_data_bytes_[r->id].store(r->data_bytes);
  segments_cleaned_.fetch_add(1, std::memory_order_relaxed);
}

void Log::DiscardReplacement(std::unique_ptr<Replacement> r) {
  r->segment.reset();
  // A staged file left behind is removed at the next start.
  if (!r->committed) device_->DiscardReplacement(r->id).IgnoreError();
}

}  // namespace faha::nvm
