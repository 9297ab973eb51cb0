// Index: the DRAM hash index from key to the log location of its latest record.
//
// Each slot is one 64-bit word: a 16-bit tag from the key's hash and a 48-bit
// log location (16-bit segment, 32-bit offset); the key itself stays in the log
// and is compared on every tag match, so a tag collision costs one extra log
// read, never a wrong answer. Open addressing with linear probing, kept at most
// 3/4 full, so the table costs 8 / load bytes per key (11-21 B). The table is
// split into 2^shard_bits shards, each with its own reader-writer lock and its
// own growth, so a resize only stops one shard.
//
// Thread-safety: Find/Scan from any thread; Upsert/Erase/Clear from one writer
// thread at a time (the store's commit path), concurrently with readers.
//
// Seam for the hot layer (a later issue): Store consults a hot cache before this
// base index; nothing here assumes it is the only layer.
#ifndef FAHA_SERVER_ENGINE_INDEX_H_
#define FAHA_SERVER_ENGINE_INDEX_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/thread_role.h"

namespace faha {

// Resolves a location to the key stored there. Must be safe from any thread.
class KeyReader {
 public:
  virtual ~KeyReader() = default;
  virtual std::string_view KeyAt(uint64_t location) const = 0;
};

class Index {
 public:
  // (Fills the shards before any other thread can see them.)
  explicit Index(const KeyReader* reader, int shard_bits = 10) NO_THREAD_SAFETY_ANALYSIS;
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // Location of `key`'s record, or 0. `hash` must be HashKey(key).
  uint64_t Find(std::string_view key, uint64_t hash) const;
  // Whether some key of `hash` is at `location`, i.e. whether the record there
  // is its key's current one. Compares locations only: no key is read from
  // the log (log cleaning judges every record of a segment with it).
  bool HoldsLocation(uint64_t hash, uint64_t location) const;
  // Points `key` at `location`; returns the previous location or 0.
  uint64_t Upsert(std::string_view key, uint64_t hash, uint64_t location);
  // Latency hiding for the writer, which applies a batch of records at once:
  // PrefetchSlots starts loading the home slots of a hash; Candidate then
  // returns the location of the first slot whose tag matches (0 if none) so
  // the caller can prefetch that record before Upsert compares its key.
  // REQUIRES: called by the writer thread only (it reads slots without locks,
  // which is safe because no other thread modifies them; the analysis cannot
  // see that, hence NO_THREAD_SAFETY_ANALYSIS).
  void PrefetchSlots_wt(uint64_t hash) const NO_THREAD_SAFETY_ANALYSIS;
  uint64_t Candidate_wt(uint64_t hash) const NO_THREAD_SAFETY_ANALYSIS;
  // Removes `key`; returns its location or 0 if absent.
  uint64_t Erase(std::string_view key, uint64_t hash);
  void Clear();
  // Log cleaning moved a record: if the key of `hash` is at `from`, points it
  // at `to` (or removes it if `to` is 0) and returns true. Compares locations
  // only, never keys: it runs while `from` and `to` name the same segment in
  // two different mappings. Writer only, like Upsert.
  bool Relocate(uint64_t hash, uint64_t from, uint64_t to);

  size_t size() const { return size_.load(std::memory_order_relaxed); }
  // DRAM held by the index: slot arrays plus per-shard bookkeeping.
  size_t MemoryBytes() const;

  // Visits every live entry of whole shards starting at shard `cursor`, until at
  // least `count` entries were visited or the last shard is done. Returns the
  // next cursor, 0 when the iteration is complete. An entry present for a whole
  // iteration is visited exactly once (entries never move between shards).
  uint64_t Scan(uint64_t cursor, size_t count, const std::function<void(uint64_t)>& fn) const;

  static constexpr uint64_t kLocationBits = 48;

 private:
  // Held by the thread inside a function that changes slots or reads them
  // without locks (the _wt ones): two at once abort (builds without NDEBUG).
  mutable ThreadRole writer_{"the index's writer"};
  struct Shard {
    mutable SharedMutex mu;
    std::vector<uint64_t> slots GUARDED_BY(mu);
    size_t used GUARDED_BY(mu) = 0;  // live entries
    size_t tombstones GUARDED_BY(mu) = 0;
  };
  static constexpr uint64_t kTombstone = 1;  // a location that never names a record
  static uint64_t Pack(uint64_t hash, uint64_t loc) {
    return (hash & 0xFFFF000000000000ull) | (loc & ((1ull << kLocationBits) - 1));
  }
  // Locations have a 16-bit segment id (Log::kMaxSegments), so they fit in 48 bits as they are.
  static uint64_t Unpack(uint64_t slot) { return slot & ((1ull << kLocationBits) - 1); }
  Shard& ShardOf(uint64_t hash) const { return shards_[hash & shard_mask_]; }
  size_t HomeOf(const Shard& s, uint64_t hash) const REQUIRES_SHARED(s.mu) {
    return (hash >> shard_bits_) & (s.slots.size() - 1);
  }
  void Grow(Shard& s) REQUIRES(s.mu);
  // Empties live slot i (a tombstone unless it ends its probe run).
  void RemoveSlot(Shard& s, size_t i) REQUIRES(s.mu);
  // Index of the slot holding key in s, or SIZE_MAX.
  size_t Locate(const Shard& s, std::string_view key, uint64_t hash) const REQUIRES_SHARED(s.mu);
  // Index of the slot holding `location` for `hash`, or SIZE_MAX; reads no
  // key.
  size_t SlotOfLocation(const Shard& s, uint64_t hash, uint64_t location) const
      REQUIRES_SHARED(s.mu);

  const KeyReader* reader_;
  int shard_bits_;
  uint64_t shard_mask_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<size_t> size_{0};
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_INDEX_H_
