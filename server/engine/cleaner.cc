// Cleaner (cleaner.h): the faha-clean thread and its passes.
#include "server/engine/cleaner.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <unordered_set>
#include <utility>

#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "nvm/record_iterator.h"
#include "server/engine/namespaces.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

void Cleaner::Start() {
  if (options_.threshold <= 0) return;
  thread_.Start("faha-clean", std::chrono::milliseconds(std::max(options_.interval_ms, 1)),
                [this] { Tick(); });
}

void Cleaner::Tick() {
  // Clean while there is work, then wait for the next period.
  for (int i = 0; i < 16 && !thread_.stopping(); i++) {
    auto r = CleanOnce();
    if (!r.ok()) {
      metrics_->clean_failures.fetch_add(1, std::memory_order_relaxed);
      if (r.status().message() != last_error_) {
        FAHA_LOG_WARN("log cleaning: %s (will retry)", r.status().ToString().c_str());
        last_error_ = r.status().message();
      }
      return;
    }
    if (!*r) return;
  }
}

StatusOr<bool> Cleaner::CleanOnce() {
  MutexLock pass(&pass_mu_);
  // A victim whose estimate was off is not the end of the pass: with its
  // estimate corrected (it no longer qualifies), another segment may.
  while (true) {
    StatusOr<Outcome> r = CleanVictim();
    if (!r.ok()) return r.status();
    if (*r != Outcome::kMisjudged) return *r == Outcome::kCleaned;
  }
}

bool Cleaner::Outgrown(const std::vector<nvm::Log::SegmentInfo>& segs) const {
  double data = 0;
  double live = 0;
  for (const auto& seg : segs) {
    data += static_cast<double>(seg.data_bytes);
    live += keys_->LiveFraction(seg) * static_cast<double>(seg.data_bytes);
  }
  return data > kBackupMaxGrowth * live;
}

const nvm::Log::SegmentInfo* Cleaner::PickVictim(const std::vector<nvm::Log::SegmentInfo>& segs,
                                                 uint64_t safe, uint64_t horizon, uint64_t min_gain,
                                                 uint64_t* older_cleaned) {
  // A backup cleans less eagerly, unless its disk is short of space or its
  // log outgrew its live data: then as a primary does.
  const double threshold = safety_->IsBackup() && !log_->short_of_space() && !Outgrown(segs)
                               ? std::min(options_.threshold, options_.backup_threshold)
                               : options_.threshold;
  const nvm::Log::SegmentInfo* victim = nullptr;
  double victim_live = 2;
  uint64_t running = UINT64_MAX;
  for (const auto& seg : segs) {
    if (seg.end_lsn - 1 > safe || seg.end_lsn > horizon) break;
    const double live = keys_->LiveFraction(seg);
    const double dead = (1 - live) * static_cast<double>(seg.data_bytes);
    if (live < threshold && dead >= static_cast<double>(min_gain) && live < victim_live) {
      victim = &seg;
      victim_live = live;
      *older_cleaned = running;
    }
    running = std::min(running, seg.cleaned ? seg.cleaned_lsn : 0);
  }
  return victim;
}

Cleaner::Verdict Cleaner::Judge(const CleanRec& r, bool doubt, int64_t now, uint64_t older_cleaned,
                                uint64_t* cleaned_lsn) {
  const HotCache& hot = keys_->hot();
  Index& index = keys_->index();
  switch (r.rec.type) {
    case RecordType::kPut: {
      // Held in the hot layer, the key's location is there (updates of
      // held keys leave the base index alone); else the base index holds
      // this very location if and only if the record is current.
      const HotCache::Entry* e = hot.enabled() ? hot.Find(r.rec.key, r.hash) : nullptr;
      const bool current =
          e != nullptr ? e->location == r.location : index.HoldsLocation(r.hash, r.location);
      if (current) {
        const bool expired = r.rec.expire_at_ms != 0 && r.rec.expire_at_ms <= now;
        return expired && !doubt ? Verdict::kExpire : Verdict::kMove;
      }
      if (doubt) {
        // Maybe made obsolete only by a write that may yet be truncated.
        *cleaned_lsn = std::min(*cleaned_lsn, r.lsn);
        return Verdict::kKeep;
      }
      return Verdict::kDrop;
    }
    case RecordType::kDelete:
    case RecordType::kFlushAll:
    case RecordType::kFlushDb: {
      // Needed while an older record of the key may remain: unless every
      // segment before this one was cleaned after the deletion committed.
      // A tombstone of a key written again since (committed) is obsolete.
      const bool rewritten =
          r.rec.type == RecordType::kDelete && !doubt && (index.Find(r.rec.key, r.hash) != 0);
      return !rewritten && r.lsn > older_cleaned ? Verdict::kKeep : Verdict::kDrop;
    }
    case RecordType::kClientReply:
      return keys_->clients().Holds(r.rec.client_id, r.rec.client_seq) ? Verdict::kKeep
                                                                       : Verdict::kDrop;
  }
  return Verdict::kDrop;
}

bool Cleaner::JudgeAll(const std::vector<CleanRec>& recs, uint64_t older_cleaned,
                       std::vector<Verdict>* verdict, uint64_t* cleaned_lsn) {
  // Against the committed state, a chunk at a time under the index writer's
  // lock (publishing waits meanwhile, readers do not).
  verdict->assign(recs.size(), Verdict::kDrop);
  const int64_t now = WallMs();
  constexpr size_t kChunk = 4096;
  // Keys of uncommitted writes (a backup's), by hash: their index entries may
  // not last, so records of theirs are judged conservatively (a hash shared
  // with another key only keeps a record that could have gone). Gathered once
  // per pass and then only from the batches applied since: rebuilt for each
  // chunk, from the 50 ms of batches between two heartbeats of the primary,
  // it cost 5-8 % of a backup's cleaning thread under load. Keys whose writes
  // committed meanwhile stay in doubt until the pass ends.
  static thread_local std::unordered_set<uint64_t> uncommitted;
  static thread_local std::vector<uint64_t> added;
  uncommitted.clear();
  uint64_t covered_end = 0;
  for (size_t begin = 0; begin < recs.size(); begin += kChunk) {
    MutexLock writer(&keys_->writer_mu());
    added.clear();
    if (!safety_->UncommittedKeys(&covered_end, &added)) return false;  // all in doubt
    uncommitted.insert(added.begin(), added.end());
    for (size_t i = begin; i < std::min(recs.size(), begin + kChunk); i++) {
      const bool doubt = !uncommitted.empty() && uncommitted.count(recs[i].hash) != 0;
      (*verdict)[i] = Judge(recs[i], doubt, now, older_cleaned, cleaned_lsn);
    }
  }
  return true;
}

uint64_t Cleaner::KeepRecords(const std::vector<CleanRec>& recs,
                              const std::vector<Verdict>& verdict,
                              std::vector<nvm::Log::KeptRecord>* kept,
                              std::vector<size_t>* kept_from, std::deque<std::string>* encoded,
                              uint64_t* expired) {
  kept->clear();
  kept_from->clear();
  uint64_t kept_bytes = 0;
  for (size_t i = 0; i < recs.size(); i++) {
    if (verdict[i] == Verdict::kDrop) continue;
    const CleanRec& r = recs[i];
    std::string_view bytes(log_->RecordPtr(r.location), r.bytes);
    if (verdict[i] == Verdict::kExpire) {
      nvm::BatchBuilder b;
      b.Add(RecordType::kDelete, r.rec.key, {}, 0);
      encoded->emplace_back(b.payload());
      bytes = encoded->back();
      (*expired)++;
    }
    kept->push_back({bytes, r.lsn});
    kept_from->push_back(i);
    kept_bytes += bytes.size();
  }
  return kept_bytes;
}

void Cleaner::Relocate(const std::vector<CleanRec>& recs, const std::vector<Verdict>& verdict,
                       const std::vector<size_t>& kept_from, const std::vector<uint64_t>& moved_to,
                       uint32_t victim_id) {
  HotCache& hot = keys_->hot();
  Index& index = keys_->index();
  const bool held = hot.enabled();
  // Old location -> new (0: expired) for the hot layer, sorted as the records
  // are (a hash map built each pass cost 5-7 % of a cleaning thread).
  static thread_local std::vector<std::pair<uint64_t, uint64_t>> moved;
  moved.clear();
  for (size_t k = 0; k < kept_from.size(); k++) {
    const CleanRec& r = recs[kept_from[k]];
    const Verdict v = verdict[kept_from[k]];
    if (v == Verdict::kMove) {
      index.Relocate(r.hash, r.location, moved_to[k]);
    } else if (v == Verdict::kExpire && index.Relocate(r.hash, r.location, 0)) {
      keys_->ForgetExpiring(r.ns);
    }
    if (held && (v == Verdict::kMove || v == Verdict::kExpire))
      moved.emplace_back(r.location, v == Verdict::kMove ? moved_to[k] : 0);
  }
  if (!held) return;
  // The victim's records come in log order (ForEachRecord), so this is
  // sorted already; the binary search below must not depend on that.
  if (!std::is_sorted(moved.begin(), moved.end())) std::sort(moved.begin(), moved.end());
  std::vector<HotCache::Entry*> gone;
  auto find = [](uint64_t from) {
    auto it = std::lower_bound(moved.begin(), moved.end(), std::make_pair(from, uint64_t{0}));
    return it != moved.end() && it->first == from ? it : moved.end();
  };
  hot.ForEach([&](HotCache::Entry* e) {
    auto cur = find(e->location);
    if (cur != moved.end() && cur->second == 0) {
      // Expired: the key goes, with its base entry if that names an older record.
      if (index.Relocate(e->hash, e->base_location, 0)) keys_->ForgetExpiring(ns::Of(e->key));
      gone.push_back(e);
      return;
    }
    if (cur != moved.end()) e->location = cur->second;
    auto base = find(e->base_location);
    if (base != moved.end()) {
      e->base_location = base->second;
    } else if (nvm::LocationSegment(e->base_location) == victim_id) {
      // The base named an older record of the key, dropped: write the
      // current one back (the differential part ends early).
      index.Relocate(e->hash, e->base_location, e->location);
      e->base_location = e->location;
    }
  });
  for (HotCache::Entry* e : gone) hot.Remove(e);
}

StatusOr<Cleaner::Outcome> Cleaner::CleanVictim() {
  if (options_.threshold <= 0) return Outcome::kNone;
  const uint64_t safe = safety_->SafeLsn();
  if (safe == 0) return Outcome::kNone;
  const uint64_t horizon = safety_->Horizon();
  const std::vector<nvm::Log::SegmentInfo> segs = log_->SealedSegments();
  // Below the threshold a pass gains at least (1 - threshold) of the data;
  // this only keeps passes from chasing crumbs (a cleaned file whose few
  // records all died). Not a fraction of the segment size: cleaned files are
  // smaller, and their dead bytes must be reclaimable too.
  const uint64_t min_gain = std::min<uint64_t>(64 << 10, log_->segment_bytes() / 16);
  uint64_t older_cleaned = UINT64_MAX;
  const nvm::Log::SegmentInfo* victim = PickVictim(segs, safe, horizon, min_gain, &older_cleaned);
  if (victim == nullptr) return Outcome::kNone;
  const uint32_t id = victim->id;

  // The pass's working arrays keep their memory from pass to pass (a few MiB
  // per cleaning thread): allocated afresh, a 64 MiB victim's cost this VM
  // about 1,300 page faults a pass.
  static thread_local std::vector<CleanRec> recs;
  recs.clear();
  FAHA_RETURN_IF_ERROR(
      log_->ForEachRecord(id, [&](const RecordView& r, uint64_t loc, uint64_t lsn) {
        recs.push_back(CleanRec{r, loc, lsn, HashKey(r.key),
                                nvm::RecordSize(r.key.size(), r.value.size()), ns::Of(r.key)});
      }));

  static thread_local std::vector<Verdict> verdict;
  uint64_t cleaned_lsn = safe;
  if (!JudgeAll(recs, older_cleaned, &verdict, &cleaned_lsn)) return Outcome::kNone;

  // The replacement: kept records as they are, expired ones as deletions.
  static thread_local std::vector<nvm::Log::KeptRecord> kept;
  static thread_local std::vector<size_t> kept_from;  // index into recs
  std::deque<std::string> encoded;
  uint64_t expired = 0;
  const uint64_t kept_bytes = KeepRecords(recs, verdict, &kept, &kept_from, &encoded, &expired);
  if (victim->data_bytes < kept_bytes + min_gain) {
    // The estimate was off (say, a tombstone that must stay): correct it so
    // the segment is not judged again and again for nothing.
    keys_->SetDead(id, victim->data_bytes - std::min(victim->data_bytes, kept_bytes));
    metrics_->clean_misjudged.fetch_add(1, std::memory_order_relaxed);
    return Outcome::kMisjudged;
  }
  static thread_local std::vector<uint64_t> moved_to;
  moved_to.clear();
  auto prepared = log_->PrepareReplacement(*victim, kept, cleaned_lsn, &moved_to);
  if (!prepared.ok()) return prepared.status();
  // On the media first (readers go on with the old mapping meanwhile), then
  // in memory, moving every location that named the old records, with
  // readers held off (they would follow a location into the wrong mapping).
  if (Status committed = log_->CommitReplacement(prepared->get()); !committed.ok()) {
    log_->DiscardReplacement(std::move(*prepared));
    return committed;
  }
  MutexLock writer(&keys_->writer_mu());
  Keyspace::AllReaders readers(keys_);
  const uint64_t old_file = victim->file_bytes;
  log_->SwapReplacement(std::move(*prepared));
  // From here the victim's old locations name nothing: no key may be read
  // through one (Relocate compares locations only).
  Relocate(recs, verdict, kept_from, moved_to, id);
  keys_->SetDead(id, 0);
  metrics_->clean_passes.fetch_add(1, std::memory_order_relaxed);
  metrics_->clean_records_moved.fetch_add(kept.size(), std::memory_order_relaxed);
  metrics_->clean_expired_reclaimed.fetch_add(expired, std::memory_order_relaxed);
  const uint64_t new_file = AlignUp(sizeof(nvm::SegmentHeader) + kept_bytes, 4096);
  if (old_file > new_file) {
    metrics_->clean_bytes_reclaimed.fetch_add(old_file - new_file, std::memory_order_relaxed);
  }
  return Outcome::kCleaned;
}

}  // namespace faha
