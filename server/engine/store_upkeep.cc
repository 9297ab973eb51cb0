// Store upkeep off the write path: the hot layer's maintenance thread
// (promotion, ageing, demotion) and log cleaning (victim choice, the
// compacting pass, relocation in the index). See docs/architecture.md.
#include <pthread.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <optional>
#include <unordered_set>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "nvm/record_iterator.h"
#include "server/engine/store.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

void Store::HotLoop() {
  constexpr auto kPass = std::chrono::milliseconds(10);
  int64_t aged_ms = MonoMs();
  MutexLock l(&hot_mu_);
  while (!hot_cv_.WaitFor(&hot_mu_, kPass, [&]() REQUIRES(hot_mu_) { return hot_stopping_; })) {
    l.Unlock();
    const bool age = MonoMs() - aged_ms >= options_.hot_age_ms;
    if (age) aged_ms = MonoMs();
    MaintainHot(age);
    l.Lock();
  }
}

void Store::StopHot() {
  {
    MutexLock l(&hot_mu_);
    hot_stopping_ = true;
    clean_stopping_ = true;
  }
  hot_cv_.SignalAll();
  if (hot_thread_.joinable()) hot_thread_.join();
  if (clean_thread_.joinable()) clean_thread_.join();
}

void Store::MaintainHot(bool age) {
  if (!hot_.enabled()) return;
  auto candidates = hot_.TakeCandidates();
  if (candidates.empty() && !age && hot_.bytes() <= hot_.budget()) return;
  // Readers wait while a pass holds their slots: bound its work. Candidates
  // left out are queued again by their next sampled accesses if still hot.
  constexpr size_t kPromotionsPerPass = 64;
  if (candidates.size() > kPromotionsPerPass) candidates.resize(kPromotionsPerPass);
  // The index cannot change while index_writer_mu_ is held (every writer of it
  // and of the hot layer's structure takes it): read the candidates' records
  // and copy their values now, with readers running, and hold the readers off
  // only to link the new entries in.
  MutexLock writer(&index_writer_mu_);
  struct Promotion {
    std::string key;
    uint64_t hash;
    std::string value;
    int64_t expire_at_ms;
    uint64_t location;
  };
  std::vector<Promotion> ready;
  const int64_t now = WallMs();
  for (auto& [key, hash] : candidates) {
    if (hot_.Find(key, hash) != nullptr) continue;
    const uint64_t loc = index_.Find(key, hash);
    if (loc == 0) continue;  // deleted meanwhile
    RecordView r = log_->ReadRecord(loc);
    if (r.expire_at_ms != 0 && r.expire_at_ms <= now) continue;
    if (HotCache::Cost(key.size(), r.value.size()) > hot_.budget() / 16)
      continue;  // would crowd out the rest
    ready.push_back({std::move(key), hash, std::string(r.value), r.expire_at_ms, loc});
  }
  if (ready.empty() && !age && hot_.bytes() <= hot_.budget()) return;
  AllReadSlots slots(read_slots_);
  for (auto& p : ready) {
    const size_t cost = HotCache::Cost(p.key.size(), p.value.size());
    const uint32_t hits = hot_.Estimate(p.hash);
    while (hot_.bytes() + cost > hot_.budget()) {
      HotCache::Entry* victim = hot_.Victim(hits);
      if (victim == nullptr) break;
      DemoteHot(victim);
    }
    if (hot_.bytes() + cost > hot_.budget()) continue;  // nothing colder to make room
    hot_.Insert(p.key, p.hash, std::move(p.value), p.expire_at_ms, p.location, hits);
    metrics_->hot_promotions.fetch_add(1, std::memory_order_relaxed);
  }
  // Updates to larger values can overrun the budget: shrink back.
  while (hot_.bytes() > hot_.budget()) {
    HotCache::Entry* victim = hot_.Victim(UINT32_MAX);
    DemoteHot(victim != nullptr ? victim : hot_.Any());
  }
  if (age) hot_.Age();
}

void Store::DemoteHot(HotCache::Entry* e) {
  // The base index still names the record it named at promotion: write the
  // current one back (the differential part ends here).
  if (e->dirty()) index_.Upsert(e->key, e->hash, e->location);
  hot_.Remove(e);
  metrics_->hot_demotions.fetch_add(1, std::memory_order_relaxed);
}

void Store::AddDead(uint64_t location, uint64_t bytes) {
  const uint32_t seg = nvm::LocationSegment(location);
  if (seg < nvm::Log::kMaxSegments) dead_bytes_[seg].fetch_add(bytes, std::memory_order_relaxed);
}

double Store::LiveFraction(const nvm::Log::SegmentInfo& seg) const {
  if (seg.data_bytes == 0) return 1.0;
  const uint64_t dead = dead_bytes_[seg.id].load(std::memory_order_relaxed);
  return dead >= seg.data_bytes
             ? 0.0
             : static_cast<double>(seg.data_bytes - dead) / static_cast<double>(seg.data_bytes);
}

void Store::SetBackup() {
  backup_.store(true);
  commit_hint_.store(0);
  clean_floor_.store(applied_end_.load());
}

void Store::set_clean_horizon(std::function<uint64_t()> horizon) {
  MutexLock l(&horizon_mu_);
  clean_horizon_ = std::move(horizon);
}

uint64_t Store::CleanSafeLsn() const {
  uint64_t safe = applied_end_.load(std::memory_order_acquire) - 1;
  if (backup_.load()) safe = std::min(safe, commit_hint_.load(std::memory_order_acquire));
  return safe >= clean_floor_.load() ? safe : 0;
}

void Store::CleanLoop() {
  const auto interval = std::chrono::milliseconds(std::max(options_.clean_interval_ms, 1));
  std::string last_error;
  MutexLock l(&hot_mu_);
  while (
      !hot_cv_.WaitFor(&hot_mu_, interval, [&]() REQUIRES(hot_mu_) { return clean_stopping_; })) {
    l.Unlock();
    // Clean while there is work, then wait for the next period.
    for (int i = 0; i < 16; i++) {
      auto r = CleanOnce();
      if (!r.ok()) {
        metrics_->clean_failures.fetch_add(1, std::memory_order_relaxed);
        if (r.status().message() != last_error) {
          FAHA_LOG_WARN("log cleaning: %s (will retry)", r.status().ToString().c_str());
          last_error = r.status().message();
        }
        break;
      }
      if (!*r) break;
      MutexLock stop(&hot_mu_);
      if (clean_stopping_) break;
    }
    l.Lock();
  }
}

StatusOr<bool> Store::CleanOnce() {
  MutexLock pass(&clean_pass_mu_);
  // A victim whose estimate was off is not the end of the pass: with its
  // estimate corrected (it no longer qualifies), another segment may.
  while (true) {
    StatusOr<CleanOutcome> r = CleanVictim();
    if (!r.ok()) return r.status();
    if (*r != CleanOutcome::kMisjudged) return *r == CleanOutcome::kCleaned;
  }
}

const nvm::Log::SegmentInfo* Store::PickVictim(const std::vector<nvm::Log::SegmentInfo>& segs,
                                               uint64_t safe, uint64_t horizon, uint64_t min_gain,
                                               uint64_t* older_cleaned) {
  // A backup cleans less eagerly, unless its disk is short of space.
  const double threshold = backup_.load() && !log_->short_of_space()
                               ? std::min(options_.clean_threshold, options_.backup_clean_threshold)
                               : options_.clean_threshold;
  const nvm::Log::SegmentInfo* victim = nullptr;
  double victim_live = 2;
  uint64_t running = UINT64_MAX;
  for (const auto& seg : segs) {
    if (seg.end_lsn - 1 > safe || seg.end_lsn > horizon) break;
    const double live = LiveFraction(seg);
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

bool Store::UncommittedKeys(std::unordered_set<std::string_view>* keys) {
  if (!backup_.load()) return true;
  const uint64_t hint = commit_hint_.load(std::memory_order_acquire);
  MutexLock l(&recent_mu_);
  for (const Recent& b : recent_) {
    if (b.end_lsn <= hint + 1) continue;
    const char* base = log_->RecordPtr(b.base_location);
    nvm::RecordIterator it(base, b.bytes);
    for (RecordView r; it.Next(&r);) {
      if (r.type == RecordType::kFlushAll) return false;
      keys->insert(r.key);
    }
  }
  return true;
}

Store::Verdict Store::Judge(const CleanRec& r, bool doubt, int64_t now, uint64_t older_cleaned,
                            uint64_t* cleaned_lsn) {
  switch (r.rec.type) {
    case RecordType::kPut: {
      // Held in the hot layer, the key's location is there (updates of
      // held keys leave the base index alone); else the base index holds
      // this very location if and only if the record is current.
      const HotCache::Entry* e = hot_.enabled() ? hot_.Find(r.rec.key, r.hash) : nullptr;
      const bool current =
          e != nullptr ? e->location == r.location : index_.HoldsLocation(r.hash, r.location);
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
    case RecordType::kFlushAll: {
      // Needed while an older record of the key may remain: unless every
      // segment before this one was cleaned after the deletion committed.
      // A tombstone of a key written again since (committed) is obsolete.
      const bool rewritten =
          r.rec.type == RecordType::kDelete && !doubt && (index_.Find(r.rec.key, r.hash) != 0);
      return !rewritten && r.lsn > older_cleaned ? Verdict::kKeep : Verdict::kDrop;
    }
    case RecordType::kClientReply:
      return clients_.Holds(r.rec.client_id, r.rec.client_seq) ? Verdict::kKeep : Verdict::kDrop;
  }
  return Verdict::kDrop;
}

uint64_t Store::CleanHorizonNow() {
  MutexLock l(&horizon_mu_);
  return clean_horizon_ ? clean_horizon_() : UINT64_MAX;
}

bool Store::JudgeAll(const std::vector<CleanRec>& recs, uint64_t older_cleaned,
                     std::vector<Verdict>* verdict, uint64_t* cleaned_lsn) {
  // Against the committed state, a chunk at a time under the index writer's
  // lock (publishing waits meanwhile, readers do not).
  verdict->assign(recs.size(), Verdict::kDrop);
  const int64_t now = WallMs();
  constexpr size_t kChunk = 4096;
  for (size_t begin = 0; begin < recs.size(); begin += kChunk) {
    MutexLock writer(&index_writer_mu_);
    // Their index entries may not last: judged conservatively.
    std::unordered_set<std::string_view> uncommitted;
    if (!UncommittedKeys(&uncommitted)) return false;  // all in doubt
    for (size_t i = begin; i < std::min(recs.size(), begin + kChunk); i++) {
      const bool doubt = !uncommitted.empty() && uncommitted.count(recs[i].rec.key) != 0;
      (*verdict)[i] = Judge(recs[i], doubt, now, older_cleaned, cleaned_lsn);
    }
  }
  return true;
}

uint64_t Store::KeepRecords(const std::vector<CleanRec>& recs, const std::vector<Verdict>& verdict,
                            std::vector<nvm::Log::KeptRecord>* kept, std::vector<size_t>* kept_from,
                            std::deque<std::string>* encoded, uint64_t* expired) {
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

void Store::Relocate(const std::vector<CleanRec>& recs, const std::vector<Verdict>& verdict,
                     const std::vector<size_t>& kept_from, const std::vector<uint64_t>& moved_to,
                     const std::unordered_map<uint64_t, uint64_t>& moved, uint32_t victim_id) {
  for (size_t k = 0; k < kept_from.size(); k++) {
    const CleanRec& r = recs[kept_from[k]];
    const Verdict v = verdict[kept_from[k]];
    if (v == Verdict::kMove) {
      index_.Relocate(r.hash, r.location, moved_to[k]);
    } else if (v == Verdict::kExpire && index_.Relocate(r.hash, r.location, 0)) {
      keys_with_expiry_.fetch_sub(1);
    }
  }
  if (!hot_.enabled()) return;
  std::vector<HotCache::Entry*> gone;
  hot_.ForEach([&](HotCache::Entry* e) {
    auto cur = moved.find(e->location);
    if (cur != moved.end() && cur->second == 0) {
      // Expired: the key goes, with its base entry if that names an older record.
      if (index_.Relocate(e->hash, e->base_location, 0)) keys_with_expiry_.fetch_sub(1);
      gone.push_back(e);
      return;
    }
    if (cur != moved.end()) e->location = cur->second;
    auto base = moved.find(e->base_location);
    if (base != moved.end()) {
      e->base_location = base->second;
    } else if (nvm::LocationSegment(e->base_location) == victim_id) {
      // The base named an older record of the key, dropped: write the
      // current one back (the differential part ends early).
      index_.Relocate(e->hash, e->base_location, e->location);
      e->base_location = e->location;
    }
  });
  for (HotCache::Entry* e : gone) hot_.Remove(e);
}

StatusOr<Store::CleanOutcome> Store::CleanVictim() {
  if (options_.clean_threshold <= 0 || failed_.load()) return CleanOutcome::kNone;
  const uint64_t safe = CleanSafeLsn();
  if (safe == 0) return CleanOutcome::kNone;
  const uint64_t horizon = CleanHorizonNow();
  const std::vector<nvm::Log::SegmentInfo> segs = log_->SealedSegments();
  // Below the threshold a pass gains at least (1 - threshold) of the data;
  // this only keeps passes from chasing crumbs (a cleaned file whose few
  // records all died). Not a fraction of the segment size: cleaned files are
  // smaller, and their dead bytes must be reclaimable too.
  const uint64_t min_gain = std::min<uint64_t>(64 << 10, log_->segment_bytes() / 16);
  uint64_t older_cleaned = UINT64_MAX;
  const nvm::Log::SegmentInfo* victim = PickVictim(segs, safe, horizon, min_gain, &older_cleaned);
  if (victim == nullptr) return CleanOutcome::kNone;
  const uint32_t id = victim->id;

  // The pass's working arrays keep their memory from pass to pass (a few MiB
  // per cleaning thread): allocated afresh, a 64 MiB victim's cost this VM
  // about 1,300 page faults a pass.
  static thread_local std::vector<CleanRec> recs;
  recs.clear();
  FAHA_RETURN_IF_ERROR(
      log_->ForEachRecord(id, [&](const RecordView& r, uint64_t loc, uint64_t lsn) {
        recs.push_back(
            CleanRec{r, loc, lsn, HashKey(r.key), nvm::RecordSize(r.key.size(), r.value.size())});
      }));

  static thread_local std::vector<Verdict> verdict;
  uint64_t cleaned_lsn = safe;
  if (!JudgeAll(recs, older_cleaned, &verdict, &cleaned_lsn)) return CleanOutcome::kNone;

  // The replacement: kept records as they are, expired ones as deletions.
  static thread_local std::vector<nvm::Log::KeptRecord> kept;
  static thread_local std::vector<size_t> kept_from;  // index into recs
  std::deque<std::string> encoded;
  uint64_t expired = 0;
  const uint64_t kept_bytes = KeepRecords(recs, verdict, &kept, &kept_from, &encoded, &expired);
  if (victim->data_bytes < kept_bytes + min_gain) {
    // The estimate was off (say, a tombstone that must stay): correct it so
    // the segment is not judged again and again for nothing.
    dead_bytes_[id].store(victim->data_bytes - std::min(victim->data_bytes, kept_bytes));
    metrics_->clean_misjudged.fetch_add(1, std::memory_order_relaxed);
    return CleanOutcome::kMisjudged;
  }
  static thread_local std::vector<uint64_t> moved_to;
  moved_to.clear();
  auto prepared = log_->PrepareReplacement(*victim, kept, cleaned_lsn, &moved_to);
  if (!prepared.ok()) return prepared.status();
  // Old location -> new (0: expired), for the hot layer.
  std::unordered_map<uint64_t, uint64_t> moved;
  for (size_t k = 0; k < kept.size(); k++) {
    const Verdict v = verdict[kept_from[k]];
    if (v == Verdict::kMove || v == Verdict::kExpire)
      moved[recs[kept_from[k]].location] = v == Verdict::kMove ? moved_to[k] : 0;
  }
  // On the media first (readers go on with the old mapping meanwhile), then
  // in memory, moving every location that named the old records, with
  // readers held off (they would follow a location into the wrong mapping).
  if (Status committed = log_->CommitReplacement(prepared->get()); !committed.ok()) {
    log_->DiscardReplacement(std::move(*prepared));
    return committed;
  }
  MutexLock writer(&index_writer_mu_);
  AllReadSlots slots(read_slots_);
  const uint64_t old_file = victim->file_bytes;
  log_->SwapReplacement(std::move(*prepared));
  // From here the victim's old locations name nothing: no key may be read
  // through one (Relocate compares locations only).
  Relocate(recs, verdict, kept_from, moved_to, moved, id);
  dead_bytes_[id].store(0);
  metrics_->clean_passes.fetch_add(1, std::memory_order_relaxed);
  metrics_->clean_records_moved.fetch_add(kept.size(), std::memory_order_relaxed);
  metrics_->clean_expired_reclaimed.fetch_add(expired, std::memory_order_relaxed);
  const uint64_t new_file = AlignUp(sizeof(nvm::SegmentHeader) + kept_bytes, 4096);
  if (old_file > new_file) {
    metrics_->clean_bytes_reclaimed.fetch_add(old_file - new_file, std::memory_order_relaxed);
  }
  return CleanOutcome::kCleaned;
}

}  // namespace faha
