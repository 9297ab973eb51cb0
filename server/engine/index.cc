#include "server/engine/index.h"

#include "common/checksum.h"

namespace faha {

namespace {
constexpr size_t kInitialSlots = 16;
}  // namespace

Index::Index(const KeyReader* reader, int shard_bits)
    : reader_(reader),
      shard_bits_(shard_bits),
      shard_mask_((1ull << shard_bits) - 1),
      shards_(new Shard[1ull << shard_bits]) {
  for (uint64_t i = 0; i <= shard_mask_; i++) shards_[i].slots.assign(kInitialSlots, 0);
}

size_t Index::Locate(const Shard& s, std::string_view key, uint64_t hash) const {
  const size_t mask = s.slots.size() - 1;
  const uint64_t tag = hash & 0xFFFF000000000000ull;
  for (size_t i = HomeOf(s, hash), n = 0; n <= mask; i = (i + 1) & mask, n++) {
    uint64_t v = s.slots[i];
    if (v == 0) return SIZE_MAX;
    if ((v & 0xFFFF000000000000ull) == tag && (v & ((1ull << kLocationBits) - 1)) != kTombstone &&
        reader_->KeyAt(Unpack(v)) == key) {
      return i;
    }
  }
  return SIZE_MAX;
}

uint64_t Index::Find(std::string_view key, uint64_t hash) const {
  const Shard& s = ShardOf(hash);
  ReaderMutexLock lock(&s.mu);
  size_t i = Locate(s, key, hash);
  return i == SIZE_MAX ? 0 : Unpack(s.slots[i]);
}

size_t Index::SlotOfLocation(const Shard& s, uint64_t hash, uint64_t location) const {
  const size_t mask = s.slots.size() - 1;
  const uint64_t want = Pack(hash, location);
  for (size_t i = HomeOf(s, hash), n = 0; n <= mask; i = (i + 1) & mask, n++) {
    const uint64_t v = s.slots[i];
    if (v == 0) return SIZE_MAX;
    if (v == want) return i;
  }
  return SIZE_MAX;
}

bool Index::HoldsLocation(uint64_t hash, uint64_t location) const {
  const Shard& s = ShardOf(hash);
  ReaderMutexLock lock(&s.mu);
  return SlotOfLocation(s, hash, location) != SIZE_MAX;
}

void Index::Grow(Shard& s) {
  size_t want = s.slots.size();
  while ((s.used + 1) * 2 > want) want *= 2;  // live entries at most 1/2 after growth
  std::vector<uint64_t> old;
  old.swap(s.slots);
  s.slots.assign(want, 0);
  s.tombstones = 0;
  const size_t mask = want - 1;
  for (uint64_t v : old) {
    if (v == 0 || (v & ((1ull << kLocationBits) - 1)) == kTombstone) continue;
    uint64_t hash = HashKey(reader_->KeyAt(Unpack(v)));
    size_t i = HomeOf(s, hash);
    while (s.slots[i] != 0) i = (i + 1) & mask;
    s.slots[i] = v;
  }
}

void Index::PrefetchSlots_wt(uint64_t hash) const {
  ThreadRole::Scope writer(&writer_);
  const Shard& s = ShardOf(hash);
  __builtin_prefetch(&s.slots[HomeOf(s, hash)]);
}

uint64_t Index::Candidate_wt(uint64_t hash) const {
  ThreadRole::Scope writer(&writer_);
  const Shard& s = ShardOf(hash);
  const size_t mask = s.slots.size() - 1;
  const uint64_t tag = hash & 0xFFFF000000000000ull;
  for (size_t i = HomeOf(s, hash), n = 0; n <= mask; i = (i + 1) & mask, n++) {
    uint64_t v = s.slots[i];
    if (v == 0) return 0;
    if ((v & 0xFFFF000000000000ull) == tag && (v & ((1ull << kLocationBits) - 1)) != kTombstone) {
      return Unpack(v);
    }
  }
  return 0;
}

uint64_t Index::Upsert(std::string_view key, uint64_t hash, uint64_t location) {
  ThreadRole::Scope writer(&writer_);
  Shard& s = ShardOf(hash);
  WriterMutexLock lock(&s.mu);
  size_t i = Locate(s, key, hash);
  if (i != SIZE_MAX) {
    uint64_t old = Unpack(s.slots[i]);
    s.slots[i] = Pack(hash, location);
    return old;
  }
  if ((s.used + s.tombstones + 1) * 4 > s.slots.size() * 3) Grow(s);
  const size_t mask = s.slots.size() - 1;
  size_t j = HomeOf(s, hash);
  while (s.slots[j] != 0 && (s.slots[j] & ((1ull << kLocationBits) - 1)) != kTombstone) {
    j = (j + 1) & mask;
  }
  if (s.slots[j] != 0) s.tombstones--;
  s.slots[j] = Pack(hash, location);
  s.used++;
  size_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

uint64_t Index::Erase(std::string_view key, uint64_t hash) {
  ThreadRole::Scope writer(&writer_);
  Shard& s = ShardOf(hash);
  WriterMutexLock lock(&s.mu);
  size_t i = Locate(s, key, hash);
  if (i == SIZE_MAX) return 0;
  uint64_t old = Unpack(s.slots[i]);
  RemoveSlot(s, i);
  return old;
}

void Index::RemoveSlot(Shard& s, size_t i) {
  const size_t mask = s.slots.size() - 1;
  if (s.slots[(i + 1) & mask] == 0) {
    s.slots[i] = 0;  // end of a probe run: no tombstone needed
  } else {
    s.slots[i] = kTombstone;
    s.tombstones++;
  }
  s.used--;
  size_.fetch_sub(1, std::memory_order_relaxed);
}

bool Index::Relocate(uint64_t hash, uint64_t from, uint64_t to) {
  ThreadRole::Scope writer(&writer_);
  Shard& s = ShardOf(hash);
  WriterMutexLock lock(&s.mu);
  const size_t i = SlotOfLocation(s, hash, from);
  if (i == SIZE_MAX) return false;
  if (to != 0) {
    s.slots[i] = Pack(hash, to);
  } else {
    RemoveSlot(s, i);
  }
  return true;
}

void Index::Clear() {
  ThreadRole::Scope writer(&writer_);
  for (uint64_t i = 0; i <= shard_mask_; i++) {
    Shard& s = shards_[i];
    WriterMutexLock lock(&s.mu);
    std::vector<uint64_t>(kInitialSlots, 0).swap(s.slots);
    s.used = 0;
    s.tombstones = 0;
  }
  size_.store(0);
}

size_t Index::MemoryBytes() const {
  size_t bytes = sizeof(*this) + (shard_mask_ + 1) * sizeof(Shard);
  for (uint64_t i = 0; i <= shard_mask_; i++) {
    ReaderMutexLock lock(&shards_[i].mu);
    bytes += shards_[i].slots.capacity() * sizeof(uint64_t);
  }
  return bytes;
}

uint64_t Index::Scan(uint64_t cursor, size_t count, const std::function<void(uint64_t)>& fn) const {
  size_t visited = 0;
  uint64_t shard = cursor;
  while (shard <= shard_mask_ && visited < count) {
    const Shard& s = shards_[shard];
    std::vector<uint64_t> locs;
    {
      ReaderMutexLock lock(&s.mu);
      for (uint64_t v : s.slots) {
        if (v != 0 && (v & ((1ull << kLocationBits) - 1)) != kTombstone) locs.push_back(Unpack(v));
      }
    }
    for (uint64_t loc : locs) fn(loc);
    visited += locs.size();
    shard++;
  }
  return shard > shard_mask_ ? 0 : shard;
}

}  // namespace faha
