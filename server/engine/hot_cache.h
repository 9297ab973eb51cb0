// HotCache: the differential, hotness-aware layer in front of the base Index.
//
// It holds the hottest keys with their values inline in DRAM (with their expiry
// and the location of their current record), within a byte budget, so reads of
// them never touch the log. Hotness comes from sampled accesses (HotRing's
// idea): one access in kSampleEvery per reader thread is counted, in the
// entry's own counter for a key held here, else in a two-row count-min sketch
// keyed by the key's hash. A key whose estimate reaches kPromoteAt becomes a
// promotion candidate; the store's maintenance pass promotes candidates while
// there is room, and beyond that swaps out the coldest of a few sampled entries
// when a candidate is hotter. Every count halves once per aging period, so
// hotness follows a shifting workload.
//
// Differential: an update of a held key changes only its entry (value, expiry,
// location), never the base index, which keeps naming the record it named when
// the key was promoted (the same key, an older value). When the entry is
// demoted the store writes the current location back into the base. So every
// lookup asks this layer first, and the base stays authoritative for which keys
// exist (a held key always has a base entry).
//
// Thread-safety: the structure and the entries' contents change only under the
// store's exclusive publish lock (its index-writer mutex plus every read slot):
// Insert, Update, Erase, Clear, Remove, Age. Find, RecordAccess and
// TakeCandidates may run concurrently from any thread that holds a read slot
// (RecordAccess and TakeCandidates also without one); the sampled counters are
// relaxed atomics and the candidate list has its own mutex.
#ifndef FAHA_SERVER_ENGINE_HOT_CACHE_H_
#define FAHA_SERVER_ENGINE_HOT_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/checksum.h"
#include "common/mutex.h"

namespace faha {

class HotCache {
 public:
  static constexpr uint32_t kSampleEvery = 8;  // power of two
  static constexpr uint32_t kPromoteAt = 2;    // sampled accesses since the last aging
  static constexpr size_t kMaxCandidates = 1024;
  static constexpr int kVictimSamples = 8;

  struct Entry {
    std::string key;
    std::string value;
    int64_t expire_at_ms = 0;
    uint64_t location = 0;       // the key's current record
    uint64_t base_location = 0;  // what the base index names for it
    uint64_t hash = 0;
    mutable std::atomic<uint32_t> hits{0};  // sampled accesses since the last aging
    size_t slot = 0;                        // position in entries_
    bool dirty() const { return location != base_location; }
  };

  // budget_bytes 0 disables the layer: Find always misses, nothing is promoted.
  explicit HotCache(size_t budget_bytes);
  HotCache(const HotCache&) = delete;
  HotCache& operator=(const HotCache&) = delete;

  bool enabled() const { return budget_ > 0; }
  size_t budget() const { return budget_; }
  // DRAM held by the entries (keys, values, bookkeeping), and their number.
  size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  size_t size() const { return count_.load(std::memory_order_relaxed); }
  // What an entry for this key and value costs against the budget.
  static size_t Cost(size_t key_bytes, size_t value_bytes) {
    return sizeof(Entry) + key_bytes + value_bytes + kNodeOverhead;
  }

  // The entry for `key`, or null. `hash` must be HashKey(key).
  // REQUIRES: a read slot or the exclusive lock.
  const Entry* Find(std::string_view key, uint64_t hash) const;
  // Counts one access to `key` (one in kSampleEvery is sampled). `held` is its
  // entry, or null if it is not held; a key not held whose estimate reaches
  // kPromoteAt is queued as a candidate.
  void RecordAccess(const Entry* held, std::string_view key, uint64_t hash) const;
  // The sampled access estimate of a key not held (count-min over two rows).
  uint32_t Estimate(uint64_t hash) const;
  // Candidates queued since the last call, with their hashes.
  std::vector<std::pair<std::string, uint64_t>> TakeCandidates();

  // REQUIRES for the rest: the exclusive lock.
  //
  // A new entry (the caller made room); returns it. The value is moved in
  // (the caller copies it out of the log before taking the exclusive lock).
  Entry* Insert(std::string_view key, uint64_t hash, std::string value, int64_t expire_at_ms,
                uint64_t location, uint32_t hits);
  // A held key was overwritten by the record at `location`: returns the
  // location it had, or 0 if the key is not held (nothing changes then).
  uint64_t Update(std::string_view key, uint64_t hash, std::string_view value, int64_t expire_at_ms,
                  uint64_t location);
  // Removes `e` (a deleted key, or a demoted one after its write-back).
  void Remove(Entry* e);
  Entry* FindMutable(std::string_view key, uint64_t hash);
  // The coldest of a few sampled entries, if colder than `hits`; else null.
  Entry* Victim(uint32_t hits);
  // Any entry (for shrinking below the budget), or null when empty.
  Entry* Any();
  void Clear();
  // Calls fn on every entry (log cleaning moves their locations).
  template <typename Fn>
  void ForEach(Fn fn) {
    for (Entry* e : entries_) fn(e);
  }
  // Halves every count (entries and sketch), `halvings` times over.
  void Age(int halvings = 1);

 private:
  static constexpr size_t kNodeOverhead = 48;  // hash-map node and bucket, roughly
  static constexpr size_t kSketchBits = 16;
  // Keyed by the key's hash, which every caller has computed already (no
  // second hash on the read path); keys are compared within a hash's range.
  struct Identity {
    size_t operator()(uint64_t h) const { return static_cast<size_t>(h); }
  };
  size_t Row0(uint64_t hash) const { return hash & ((1u << kSketchBits) - 1); }
  size_t Row1(uint64_t hash) const { return (hash >> 32) & ((1u << kSketchBits) - 1); }

  const size_t budget_;
  std::unordered_multimap<uint64_t, std::unique_ptr<Entry>, Identity> map_;
  std::vector<Entry*> entries_;  // for sampling victims
  std::atomic<size_t> bytes_{0};
  std::atomic<size_t> count_{0};
  uint64_t victim_rng_ = 0x9e3779b97f4a7c15ull;
  std::unique_ptr<std::atomic<uint16_t>[]> sketch_;  // 2 rows of 2^kSketchBits

  mutable Mutex candidates_mu_;
  mutable std::vector<std::pair<std::string, uint64_t>> candidates_ GUARDED_BY(candidates_mu_);
  mutable std::unordered_set<uint64_t> candidate_hashes_ GUARDED_BY(candidates_mu_);
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_HOT_CACHE_H_
