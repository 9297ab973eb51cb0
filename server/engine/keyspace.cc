// Keyspace (keyspace.h): the index, hot layer and client table readers see,
// and how a batch's records change them.
#include "server/engine/keyspace.h"

#include "common/checksum.h"
#include "common/clock.h"
#include "nvm/record_iterator.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

Keyspace::Keyspace(nvm::Log* log, Metrics* metrics, size_t hot_cache_bytes)
    : log_(log),
      metrics_(metrics),
      index_(this),
      hot_(hot_cache_bytes),
      dead_bytes_(new std::atomic<uint64_t>[nvm::Log::kMaxSegments]()) {
  LoadDbMap({});
}

bool Keyspace::Resolve(std::string_view key, uint64_t hash, Resolved* out) const {
  if (hot_.enabled()) {
    const HotCache::Entry* e = hot_.Find(key, hash);
    hot_.RecordAccess(e, key, hash);
    if (e != nullptr) {
      metrics_->key_hot_hits.fetch_add(1, std::memory_order_relaxed);
      out->value = e->value;
      out->expire_at_ms = e->expire_at_ms;
      out->location = e->location;  // the same value, in the log
      out->hot = true;
      return true;
    }
  }
  const uint64_t loc = index_.Find(key, hash);
  if (loc == 0) return false;
  metrics_->key_log_reads.fetch_add(1, std::memory_order_relaxed);
  RecordView r = log_->ReadRecord(loc);
  out->value = r.value;
  out->expire_at_ms = r.expire_at_ms;
  out->location = loc;
  return true;
}

void Keyspace::Replay(const RecordView& rec, uint64_t location, int64_t now_ms) {
  if (rec.type == RecordType::kPut && rec.expire_at_ms != 0 && rec.expire_at_ms <= now_ms) {
    // Expired while the server was down: reclaim it now.
    RecordView del = rec;
    del.type = RecordType::kDelete;
    Apply(del, location);
    return;
  }
  Apply(rec, location);
}

void Keyspace::Publish(uint64_t base_location, size_t bytes) {
  MutexLock writer(&writer_mu_);
  // Decode and hash every record, then prefetch in two waves (index slots,
  // then the records they point to), so that the key comparisons of the
  // upserts below find the overwritten records in cache: reading them was the
  // sequencer's largest cost (one cache miss per write).
  applying_.clear();
  const char* base = log_->RecordPtr(base_location);
  nvm::RecordIterator it(base, bytes);
  for (RecordView rec; it.Next(&rec);) {
    applying_.push_back({rec, base_location + it.offset(), HashKey(rec.key)});
  }
  for (const Applying& a : applying_) index_.PrefetchSlots_wt(a.hash);
  for (const Applying& a : applying_) {
    if (uint64_t loc = index_.Candidate_wt(a.hash)) __builtin_prefetch(log_->RecordPtr(loc));
  }
  // Publish in log order, with every reader slot held so that no command sees
  // half a batch: the index now names the new records.
  AllReaders readers(this);
  for (const Applying& a : applying_) Apply(a.rec, a.location, a.hash);
}

void Keyspace::Apply(const RecordView& rec, uint64_t location, uint64_t hash) {
  switch (rec.type) {
    case RecordType::kPut: {
      // A held key: only its hot entry changes (the differential layer).
      uint64_t old =
          hot_.enabled() ? hot_.Update(rec.key, hash, rec.value, rec.expire_at_ms, location) : 0;
      if (old != 0) {
        metrics_->hot_updates.fetch_add(1, std::memory_order_relaxed);
      } else {
        old = index_.Upsert(rec.key, hash, location);
      }
      bool had = false;
      if (old != 0) {
        RecordView o = log_->ReadRecord(old);
        had = o.expire_at_ms != 0;
        AddDead(old, nvm::RecordSize(o.key.size(), o.value.size()));
      }
      const int expiring = (rec.expire_at_ms != 0 ? 1 : 0) - (had ? 1 : 0);
      if (expiring != 0) keys_with_expiry_.fetch_add(static_cast<uint64_t>(expiring));
      CountKey(rec.key, old == 0 ? 1 : 0, expiring);
      if (rec.key == ns::kDbMapKey) LoadDbMap(rec.value);
      break;
    }
    case RecordType::kDelete: {
      uint64_t old = 0;
      if (HotCache::Entry* e = hot_.enabled() ? hot_.FindMutable(rec.key, hash) : nullptr) {
        old = e->location;
        hot_.Remove(e);
        index_.Erase(rec.key, hash);
      } else {
        old = index_.Erase(rec.key, hash);
      }
      if (old != 0) {
        RecordView o = log_->ReadRecord(old);
        if (o.expire_at_ms != 0) keys_with_expiry_.fetch_sub(1);
        CountKey(rec.key, -1, o.expire_at_ms != 0 ? -1 : 0);
        AddDead(old, nvm::RecordSize(o.key.size(), o.value.size()));
      }
      if (rec.key == ns::kDbMapKey) LoadDbMap({});
      // A tombstone is dead weight unless older records of its key remain.
      AddDead(location, nvm::RecordSize(rec.key.size(), 0));
      break;
    }
    case RecordType::kFlushAll:
      hot_.Clear();
      index_.Clear();
      // The map stays: FLUSHALL writes its key again in the same batch.
      ResetCounts(/*keep_map=*/true);
      for (uint32_t i = 1; i < nvm::LocationSegment(location); i++) {
        dead_bytes_[i].store(uint64_t{1} << 40, std::memory_order_relaxed);
      }
      AddDead(location, sizeof(nvm::RecordHeader));
      break;
    case RecordType::kFlushDb:
      FlushNamespace(ns::Of(rec.key));
      AddDead(location, nvm::RecordSize(rec.key.size(), 0));
      break;
    case RecordType::kClientReply: {
      // Counted dead at once: most are superseded soon; cleaning keeps those
      // the client table still holds.
      AddDead(location, nvm::RecordSize(0, rec.value.size()));
      WriteResult reply;
      if (ClientTable::DecodeReply(rec.value, &reply)) {
        clients_.Record(rec.client_id, rec.client_seq, reply);
      }
      break;
    }
  }
}

void Keyspace::FlushNamespace(int n) {
  // An empty database costs nothing (a recovery replays every FLUSHDB the
  // log still holds); else the whole index is scanned, every database's keys.
  if (ns_keys_[n].load() == 0) return;
  // The keys first (erasing while the index is scanned could skip some).
  std::vector<std::pair<std::string, uint64_t>> gone;
  uint64_t cursor = 0;
  do {
    cursor = index_.Scan(cursor, 4096, [&](uint64_t loc) {
      const std::string_view key = KeyAt(loc);
      if (ns::Of(key) == n) gone.emplace_back(key, loc);
    });
  } while (cursor != 0);
  for (const auto& [key, base] : gone) {
    const uint64_t hash = HashKey(key);
    uint64_t old = base;
    if (HotCache::Entry* e = hot_.enabled() ? hot_.FindMutable(key, hash) : nullptr) {
      old = e->location;
      hot_.Remove(e);
    }
    index_.Erase(key, hash);
    RecordView o = log_->ReadRecord(old);
    if (o.expire_at_ms != 0) keys_with_expiry_.fetch_sub(1);
    AddDead(old, nvm::RecordSize(o.key.size(), o.value.size()));
  }
  ns_keys_[n].store(0);
  ns_expiring_[n].store(0);
}

void Keyspace::LoadDbMap(std::string_view value) {
  bool identity = true;
  const bool valid = ns::IsDbMap(value);  // else (absent) the identity
  for (int i = 0; i < ns::kMaxDatabases; i++) {
    const int to = valid ? static_cast<unsigned char>(value[static_cast<size_t>(i)]) : i;
    db_map_[i].store(static_cast<uint8_t>(to), std::memory_order_relaxed);
    identity = identity && to == i;
  }
  map_identity_.store(identity, std::memory_order_release);
}

void Keyspace::ResetCounts(bool keep_map) {
  keys_with_expiry_.store(0);
  for (int i = 0; i < ns::kCount; i++) {
    ns_keys_[i].store(0);
    ns_expiring_[i].store(0);
  }
  if (!keep_map) LoadDbMap({});
}

Keyspace::ReadGuard Keyspace::LockForRead() const {
  static std::atomic<unsigned> next_slot{0};
  thread_local unsigned slot = next_slot.fetch_add(1) % kReadSlots;
  return ReadGuard(&read_slots_[slot].mu);
}

bool Keyspace::Get(std::string_view key, std::string* value) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= WallMs()) return false;
  value->append(r.value);
  return true;
}

bool Keyspace::GetHeld(std::string_view key, size_t hold_bytes, bool may_hold, std::string* copy,
                       std::string_view* value, std::shared_ptr<const void>* hold) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= WallMs()) return false;
  if (may_hold && r.location != 0 && r.value.size() >= hold_bytes) {
    *hold = log_->HoldSegment(r.location);
    if (*hold != nullptr) {
      // The log's copy (a hot value's DRAM copy goes when it is demoted).
      *value = r.hot ? log_->ReadRecord(r.location).value : r.value;
      return true;
    }
  }
  copy->assign(r.value);
  *value = *copy;
  return true;
}

bool Keyspace::Exists(std::string_view key) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  return r.expire_at_ms == 0 || r.expire_at_ms > WallMs();
}

bool Keyspace::Read(std::string_view key, bool want_value, int64_t now_ms, KeyState* out) const {
  *out = KeyState{};
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return false;
  out->exists = true;
  out->expire_at_ms = r.expire_at_ms;
  out->location = r.location;
  if (want_value) out->value.assign(r.value);
  return true;
}

int64_t Keyspace::PttlMs(std::string_view key) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return -2;
  if (r.expire_at_ms == 0) return -1;
  int64_t left = r.expire_at_ms - WallMs();
  return left <= 0 ? -2 : left;
}

uint64_t Keyspace::Scan(uint64_t cursor, size_t count, std::vector<std::string>* keys) const {
  int64_t now = WallMs();
  return index_.Scan(cursor, count, [&](uint64_t loc) {
    RecordView r = log_->ReadRecord(loc);
    if (const HotCache::Entry* e = hot_.Find(r.key, HashKey(r.key)))
      r.expire_at_ms = e->expire_at_ms;
    if (r.expire_at_ms == 0 || r.expire_at_ms > now) keys->emplace_back(r.key);
  });
}

uint64_t Keyspace::ScanExpired(uint64_t cursor, size_t count, int64_t now_ms,
                               std::vector<std::string>* keys, size_t* sampled) const {
  return index_.Scan(cursor, count, [&](uint64_t loc) {
    RecordView r = log_->ReadRecord(loc);
    if (const HotCache::Entry* e = hot_.Find(r.key, HashKey(r.key)))
      r.expire_at_ms = e->expire_at_ms;
    (*sampled)++;
    if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) keys->emplace_back(r.key);
  });
}

std::string_view Keyspace::KeyAt(uint64_t location) const { return log_->ReadRecord(location).key; }

void Keyspace::Demote(HotCache::Entry* e) {
  // The base index still names the record it named at promotion: write the
  // current one back (the differential part ends here).
  if (e->dirty()) index_.Upsert(e->key, e->hash, e->location);
  hot_.Remove(e);
  metrics_->hot_demotions.fetch_add(1, std::memory_order_relaxed);
}

void Keyspace::AddDead(uint64_t location, uint64_t bytes) {
  const uint32_t seg = nvm::LocationSegment(location);
  if (seg < nvm::Log::kMaxSegments) dead_bytes_[seg].fetch_add(bytes, std::memory_order_relaxed);
}

double Keyspace::LiveFraction(const nvm::Log::SegmentInfo& seg) const {
  if (seg.data_bytes == 0) return 1.0;
  const uint64_t dead = dead_bytes_[seg.id].load(std::memory_order_relaxed);
  return dead >= seg.data_bytes
             ? 0.0
             : static_cast<double>(seg.data_bytes - dead) / static_cast<double>(seg.data_bytes);
}

void Keyspace::DigestData(uint64_t* digest, uint64_t* keys) const {
  const int64_t now = WallMs();
  uint64_t cursor = 0;
  do {
    cursor = index_.Scan(cursor, 1024, [&](uint64_t loc) {
      RecordView rec = log_->ReadRecord(loc);
      // A key held in the hot layer: its entry is current, the base's record may be older.
      if (const HotCache::Entry* e = hot_.Find(rec.key, HashKey(rec.key))) {
        rec.value = e->value;
        rec.expire_at_ms = e->expire_at_ms;
      }
      // Expired keys: gone for readers, and cleaning may or may not have
      // reclaimed them yet on this node.
      if (rec.expire_at_ms != 0 && rec.expire_at_ms <= now) return;
      uint64_t h =
          Checksum(rec.key.data(), rec.key.size(), static_cast<uint64_t>(rec.expire_at_ms));
      *digest += Checksum(rec.value.data(), rec.value.size(), h);
      (*keys)++;
    });
  } while (cursor != 0);
}

void Keyspace::Clear() {
  for (uint32_t i = 0; i < nvm::Log::kMaxSegments; i++) dead_bytes_[i].store(0);
  hot_.Clear();
  index_.Clear();
  ResetCounts();
  clients_.Clear();
}

}  // namespace faha
