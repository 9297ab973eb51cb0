#include "server/engine/hot_cache.h"

#include <algorithm>

#include "common/mutex.h"

namespace faha {

HotCache::HotCache(size_t budget_bytes) : budget_(budget_bytes) {
  if (budget_ > 0) {
    sketch_ = std::make_unique<std::atomic<uint16_t>[]>(size_t{2} << kSketchBits);
  }
}

const HotCache::Entry* HotCache::Find(std::string_view key, uint64_t hash) const {
  if (count_.load(std::memory_order_relaxed) == 0) return nullptr;
  auto [it, end] = map_.equal_range(hash);
  for (; it != end; ++it) {
    if (it->second->key == key) return it->second.get();
  }
  return nullptr;
}

HotCache::Entry* HotCache::FindMutable(std::string_view key, uint64_t hash) {
  return const_cast<Entry*>(Find(key, hash));
}

void HotCache::RecordAccess(const Entry* held, std::string_view key, uint64_t hash) const {
  if (budget_ == 0) return;
  thread_local uint32_t tick = 0;
  if ((++tick & (kSampleEvery - 1)) != 0) return;
  if (held != nullptr) {
    held->hits.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto bump = [](std::atomic<uint16_t>& c) {
    uint16_t v = c.load(std::memory_order_relaxed);
    if (v != UINT16_MAX) c.store(static_cast<uint16_t>(v + 1), std::memory_order_relaxed);
  };
  bump(sketch_[Row0(hash)]);
  bump(sketch_[(size_t{1} << kSketchBits) + Row1(hash)]);
  if (Estimate(hash) < kPromoteAt) return;
  MutexLock l(&candidates_mu_);
  if (candidates_.size() >= kMaxCandidates || !candidate_hashes_.insert(hash).second) return;
  candidates_.emplace_back(std::string(key), hash);
}

uint32_t HotCache::Estimate(uint64_t hash) const {
  if (budget_ == 0) return 0;
  return std::min(sketch_[Row0(hash)].load(std::memory_order_relaxed),
                  sketch_[(size_t{1} << kSketchBits) + Row1(hash)].load(std::memory_order_relaxed));
}

std::vector<std::pair<std::string, uint64_t>> HotCache::TakeCandidates() {
  std::vector<std::pair<std::string, uint64_t>> out;
  MutexLock l(&candidates_mu_);
  out.swap(candidates_);
  candidate_hashes_.clear();
  return out;
}

HotCache::Entry* HotCache::Insert(std::string_view key, uint64_t hash, std::string value,
                                  int64_t expire_at_ms, uint64_t location, uint32_t hits) {
  auto e = std::make_unique<Entry>();
  e->key.assign(key);
  e->value = std::move(value);
  e->expire_at_ms = expire_at_ms;
  e->location = location;
  e->base_location = location;
  e->hash = hash;
  e->hits.store(hits, std::memory_order_relaxed);
  e->slot = entries_.size();
  Entry* raw = e.get();
  entries_.push_back(raw);
  map_.emplace(hash, std::move(e));
  bytes_.fetch_add(Cost(raw->key.size(), raw->value.capacity()), std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  return raw;
}

uint64_t HotCache::Update(std::string_view key, uint64_t hash, std::string_view value,
                          int64_t expire_at_ms, uint64_t location) {
  Entry* e = FindMutable(key, hash);
  if (e == nullptr) return 0;
  const size_t before = e->value.capacity();
  e->value.assign(value);
  bytes_.fetch_add(e->value.capacity() - before, std::memory_order_relaxed);
  e->expire_at_ms = expire_at_ms;
  const uint64_t old = e->location;
  e->location = location;
  return old;
}

void HotCache::Remove(Entry* e) {
  Entry* last = entries_.back();
  entries_[e->slot] = last;
  last->slot = e->slot;
  entries_.pop_back();
  bytes_.fetch_sub(Cost(e->key.size(), e->value.capacity()), std::memory_order_relaxed);
  count_.fetch_sub(1, std::memory_order_relaxed);
  auto [it, end] = map_.equal_range(e->hash);
  while (it != end && it->second.get() != e) ++it;
  map_.erase(it);  // destroys e
}

HotCache::Entry* HotCache::Victim(uint32_t hits) {
  if (entries_.empty()) return nullptr;
  Entry* coldest = nullptr;
  for (int i = 0; i < kVictimSamples; i++) {
    victim_rng_ ^= victim_rng_ << 13;
    victim_rng_ ^= victim_rng_ >> 7;
    victim_rng_ ^= victim_rng_ << 17;
    Entry* e = entries_[victim_rng_ % entries_.size()];
    if (coldest == nullptr ||
        e->hits.load(std::memory_order_relaxed) < coldest->hits.load(std::memory_order_relaxed)) {
      coldest = e;
    }
  }
  return coldest->hits.load(std::memory_order_relaxed) < hits ? coldest : nullptr;
}

HotCache::Entry* HotCache::Any() { return entries_.empty() ? nullptr : entries_.back(); }

void HotCache::Clear() {
  map_.clear();
  entries_.clear();
  bytes_.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
}

void HotCache::Age(int halvings) {
  if (budget_ == 0 || halvings <= 0) return;
  // Counts are 32 (entries) and 16 bits (sketch) wide: that many halvings
  // or more leave nothing (and a shift by the width would be undefined).
  for (Entry* e : entries_) {
    const uint32_t h = e->hits.load(std::memory_order_relaxed);
    e->hits.store(halvings >= 32 ? 0 : h >> halvings, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < (size_t{2} << kSketchBits); i++) {
    const uint16_t c = sketch_[i].load(std::memory_order_relaxed);
    sketch_[i].store(halvings >= 16 ? 0 : static_cast<uint16_t>(c >> halvings),
                     std::memory_order_relaxed);
  }
}

}  // namespace faha
