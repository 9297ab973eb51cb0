// HotMaintainer (hot_maintainer.h): the faha-hot thread's passes.
#include "server/engine/hot_maintainer.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "common/clock.h"

namespace faha {

using nvm::RecordView;

void HotMaintainer::Start() {
  if (!keys_->hot().enabled()) return;
  aged_ms_ = MonoMs();
  thread_.StartPaced("faha-hot", kBusyWait, [this, wait = kBusyWait]() mutable {
    const bool worked = Pass(Halvings(MonoMs(), &aged_ms_, age_ms_));
    // Idle (nothing sampled hot, nothing over the budget: a backup, or a
    // server without reads), the thread backs off: each wake-up cost 40 us
    // of CPU on this project's VMs, 100 a second. A key sampled hot
    // meanwhile waits for the next pass.
    wait = NextWait(wait, worked, age_ms_);
    return wait;
  });
}

std::chrono::milliseconds HotMaintainer::NextWait(std::chrono::milliseconds last, bool worked,
                                                  int age_ms) {
  if (worked) return kBusyWait;
  std::chrono::milliseconds cap = kIdleWait;
  if (age_ms > 0) cap = std::max(kBusyWait, std::min(cap, std::chrono::milliseconds(age_ms)));
  return std::min(last * 2, cap);
}

int HotMaintainer::Halvings(int64_t now_ms, int64_t* aged_ms, int age_ms) {
  if (age_ms <= 0) return 1;
  const int64_t periods = std::max<int64_t>(0, (now_ms - *aged_ms) / age_ms);
  *aged_ms += periods * age_ms;
  return static_cast<int>(std::min<int64_t>(periods, 64));
}

bool HotMaintainer::Pass(int halvings) {
  HotCache& hot = keys_->hot();
  Index& index = keys_->index();
  if (!hot.enabled()) return false;
  auto candidates = hot.TakeCandidates();
  const bool age = halvings > 0;
  const bool over = hot.bytes() > hot.budget();
  if (candidates.empty() && !age && !over) return false;
  // Readers wait while a pass holds their slots: bound its work. Candidates
  // left out are queued again by their next sampled accesses if still hot.
  constexpr size_t kPromotionsPerPass = 64;
  if (candidates.size() > kPromotionsPerPass) candidates.resize(kPromotionsPerPass);
  // The index cannot change while keys_->writer_mu() is held (every writer of it
  // and of the hot layer's structure takes it): read the candidates' records
  // and copy their values now, with readers running, and hold the readers off
  // only to link the new entries in.
  MutexLock writer(&keys_->writer_mu());
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
    if (hot.Find(key, hash) != nullptr) continue;
    const uint64_t loc = index.Find(key, hash);
    if (loc == 0) continue;  // deleted meanwhile
    RecordView r = log_->ReadRecord(loc);
    if (r.expire_at_ms != 0 && r.expire_at_ms <= now) continue;
    if (HotCache::Cost(key.size(), r.value.size()) > hot.budget() / 16)
      continue;  // would crowd out the rest
    ready.push_back({std::move(key), hash, std::string(r.value), r.expire_at_ms, loc});
  }
  if (ready.empty() && !age && hot.bytes() <= hot.budget()) return !candidates.empty() || over;
  Keyspace::AllReaders readers(keys_);
  for (auto& p : ready) {
    const size_t cost = HotCache::Cost(p.key.size(), p.value.size());
    const uint32_t hits = hot.Estimate(p.hash);
    while (hot.bytes() + cost > hot.budget()) {
      HotCache::Entry* victim = hot.Victim(hits);
      if (victim == nullptr) break;
      keys_->Demote(victim);
    }
    if (hot.bytes() + cost > hot.budget()) continue;  // nothing colder to make room
    hot.Insert(p.key, p.hash, std::move(p.value), p.expire_at_ms, p.location, hits);
    metrics_->hot_promotions.fetch_add(1, std::memory_order_relaxed);
  }
  // Updates to larger values can overrun the budget: shrink back.
  while (hot.bytes() > hot.budget()) {
    HotCache::Entry* victim = hot.Victim(UINT32_MAX);
    keys_->Demote(victim != nullptr ? victim : hot.Any());
  }
  hot.Age(halvings);
  return !candidates.empty() || over;
}

}  // namespace faha
