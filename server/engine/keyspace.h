// Keyspace: the committed state of one node's keys, as readers see it: the
// DRAM index over the log, the hot layer (hot keys' values in DRAM), the
// client table (replies kept for retried writes), the count of keys with an
// expiry and each segment's dead bytes, by which cleaning picks its victims.
//
// Readers hold a ReadGuard (one slot of a big-reader lock) for a whole
// command. One writer at a time changes the keyspace: whoever holds
// writer_mu() (the publisher of batches, a truncation, hot maintenance, a
// cleaning pass). It may read the index without the read slots, and takes
// every slot (AllReaders) only while it changes what readers follow.
//
// Lock order: Cleaner::pass_mu(), then writer_mu(), then AllReaders.
#ifndef FAHA_SERVER_ENGINE_KEYSPACE_H_
#define FAHA_SERVER_ENGINE_KEYSPACE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "nvm/log.h"
#include "server/engine/client_table.h"
#include "server/engine/hot_cache.h"
#include "server/engine/index.h"
#include "server/engine/namespaces.h"
#include "server/engine/write_op.h"
#include "server/metrics/metrics.h"

namespace faha {

class Keyspace final : private KeyReader {
 public:
  // Over `log`, which outlives this.
  Keyspace(nvm::Log* log, Metrics* metrics, size_t hot_cache_bytes);
  Keyspace(const Keyspace&) = delete;
  Keyspace& operator=(const Keyspace&) = delete;

  // ---- Readers ----
  // Held for a whole command: no batch is published meanwhile, so a command
  // sees every batch entirely or not at all (MSET and FLUSHALL are atomic
  // to readers, as in Redis). Each thread uses its own slot, so readers do
  // not contend.
  class ReadGuard {
   public:
    explicit ReadGuard(std::mutex* mu) : lock_(*mu) {}

   private:
    std::unique_lock<std::mutex> lock_;
  };
  [[nodiscard]] ReadGuard LockForRead() const;

  // The reads below REQUIRE a ReadGuard held by the caller (or writer_mu()).
  // Appends the committed value of `key` to *value. False if absent or expired.
  bool Get(std::string_view key, std::string* value) const;
  // As Get, but when `may_hold`, a value of hold_bytes or more read from the
  // log is not copied: *value views it in the log and *hold keeps that
  // readable after the ReadGuard is released (Log::HoldSegment). Other
  // values are copied to *copy, which *value then views.
  bool GetHeld(std::string_view key, size_t hold_bytes, bool may_hold, std::string* copy,
               std::string_view* value, std::shared_ptr<const void>* hold) const;
  bool Exists(std::string_view key) const;
  // The state of `key` (its value only if `want_value`); false, and *out
  // absent, if absent or expired at `now_ms` (the committing thread passes
  // its group's clock).
  bool Read(std::string_view key, bool want_value, int64_t now_ms, KeyState* out) const;
  bool Read(std::string_view key, bool want_value, KeyState* out) const {
    return Read(key, want_value, WallMs(), out);
  }
  // Milliseconds to live: -2 if absent, -1 if no expiry.
  int64_t PttlMs(std::string_view key) const;
  // Iterates keys (cursor semantics of Index::Scan); expired keys are skipped.
  uint64_t Scan(uint64_t cursor, size_t count, std::vector<std::string>* keys) const;
  // As Scan, but the keys whose expiry is at or before now_ms; counts the
  // keys it looked at in *sampled.
  uint64_t ScanExpired(uint64_t cursor, size_t count, int64_t now_ms,
                       std::vector<std::string>* keys, size_t* sampled) const;
  // A digest of the visible data (expired keys left out) and its key count.
  void DigestData(uint64_t* digest, uint64_t* keys) const;

  // A key's committed state with views into the log or the hot layer (valid
  // while the caller's ReadGuard, or writer_mu(), is held).
  struct Resolved {
    std::string_view value;
    int64_t expire_at_ms = 0;
    uint64_t location = 0;  // of the record in the log (a hot value's too)
    bool hot = false;       // value views the hot layer's copy
  };
  bool Resolve(std::string_view key, uint64_t hash, Resolved* out) const;

  // ---- The one writer ----
  Mutex& writer_mu() RETURN_CAPABILITY(writer_mu_) { return writer_mu_; }
  static constexpr int kReadSlots = 16;
  // Holds every read slot for its lifetime: no reader runs meanwhile.
  class AllReaders {
   public:
    explicit AllReaders(const Keyspace* keys) {
      for (int i = 0; i < kReadSlots; i++) {
        held_[i] = std::unique_lock<std::mutex>(keys->read_slots_[i].mu);
      }
    }

   private:
    std::unique_lock<std::mutex> held_[kReadSlots];
  };

  // Applies a just-persisted batch at `base_location` (its records in log
  // order), prefetching first, with every reader held off while the index
  // changes. Takes writer_mu().
  void Publish(uint64_t base_location, size_t bytes);
  // Applies one record at `location`. REQUIRES: writer_mu() and AllReaders,
  // or no other thread yet (recovery).
  void Apply(const nvm::RecordView& rec, uint64_t location, uint64_t hash);
  void Apply(const nvm::RecordView& rec, uint64_t location) {
    Apply(rec, location, HashKey(rec.key));
  }
  // Apply for a record read back from the log (recovery, truncation): a PUT
  // that expired meanwhile is applied as a DELETE.
  void Replay(const nvm::RecordView& rec, uint64_t location, int64_t now_ms);
  // Forgets every key, reply and dead-byte count (before a replay).
  // REQUIRES: writer_mu() and AllReaders.
  void Clear();
  // Moves a hot key back to the base index only. REQUIRES: as Clear.
  void Demote(HotCache::Entry* e);

  // ---- Dead bytes, per segment ----
  void AddDead(uint64_t location, uint64_t bytes);
  void SetDead(uint32_t segment, uint64_t bytes) { dead_bytes_[segment].store(bytes); }
  // Estimated live fraction of a sealed segment.
  double LiveFraction(const nvm::Log::SegmentInfo& seg) const;

  // The parts, for the hot maintainer and the cleaner: the index and the hot
  // layer are changed only by the one writer, under the locks above; the
  // client table locks itself (the committing thread records replies in it
  // without the writer's lock).
  Index& index() { return index_; }
  HotCache& hot() { return hot_; }
  const HotCache& hot() const { return hot_; }
  ClientTable& clients() { return clients_; }
  const ClientTable& clients() const { return clients_; }
  uint64_t KeyCount() const { return index_.size(); }
  // Keys of namespace `n` (server/engine/namespaces.h), expired ones not yet
  // reclaimed included, as Redis's DBSIZE counts them.
  uint64_t KeyCount(int n) const { return ns_keys_[n].load(std::memory_order_relaxed); }
  uint64_t KeysWithExpiry(int n) const { return ns_expiring_[n].load(std::memory_order_relaxed); }
  // The physical database of logical database `db` (the committed database map).
  int PhysicalDb(int db) const {
    return map_identity_.load(std::memory_order_acquire)
               ? db
               : db_map_[db].load(std::memory_order_relaxed);
  }
  size_t IndexMemoryBytes() const { return index_.MemoryBytes(); }
  uint64_t KeysWithExpiry() const { return keys_with_expiry_.load(std::memory_order_relaxed); }
  // A key with an expiry went away outside Apply (cleaning reclaimed it).
  // `n` is its namespace (server/engine/namespaces.h).
  void ForgetExpiring(int n) {
    keys_with_expiry_.fetch_sub(1);
    ns_keys_[n].fetch_sub(1, std::memory_order_relaxed);
    ns_expiring_[n].fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  std::string_view KeyAt(uint64_t location) const override;
  // Keeps the per-namespace counts: `keys` and `expiring` are +1, 0 or -1.
  void CountKey(std::string_view key, int keys, int expiring) {
    const int n = ns::Of(key);
    if (keys != 0) ns_keys_[n].fetch_add(static_cast<uint64_t>(keys), std::memory_order_relaxed);
    if (expiring != 0) {
      ns_expiring_[n].fetch_add(static_cast<uint64_t>(expiring), std::memory_order_relaxed);
    }
  }
  // FLUSHDB of namespace `n`: its keys leave the index and the hot layer.
  void FlushNamespace(int n);
  // The database map's key was written (or deleted: `value` empty).
  void LoadDbMap(std::string_view value);
  void ResetCounts(bool keep_map = false);

  nvm::Log* const log_;
  Metrics* const metrics_;
  Index index_;
  HotCache hot_;
  ClientTable clients_;
  std::atomic<uint64_t> keys_with_expiry_{0};
  std::atomic<uint64_t> ns_keys_[ns::kCount] = {};
  std::atomic<uint64_t> ns_expiring_[ns::kCount] = {};
  // Published with the batch that wrote the map's key; readers translate a
  // session's database with it (the identity until the first SWAPDB).
  std::atomic<uint8_t> db_map_[ns::kMaxDatabases] = {};
  std::atomic<bool> map_identity_{true};
  std::unique_ptr<std::atomic<uint64_t>[]> dead_bytes_;  // per segment id

  Mutex writer_mu_;
  struct Applying {
    nvm::RecordView rec;
    uint64_t location;
    uint64_t hash;
  };
  std::vector<Applying> applying_ GUARDED_BY(writer_mu_);  // Publish's scratch
  // The slots guard no member the thread-safety analysis could name (the
  // index is read without them by its one writer): plain std::mutex.
  struct alignas(64) ReadSlot {
    std::mutex mu;
  };
  mutable ReadSlot read_slots_[kReadSlots];
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_KEYSPACE_H_
