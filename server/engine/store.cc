#include "server/engine/store.h"

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

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

Store::Store(const StoreOptions& options, Metrics* metrics)
    : options_(options),
      metrics_(metrics),
      index_(this),
      hot_(options.hot_cache_bytes),
      dead_bytes_(new std::atomic<uint64_t>[nvm::Log::kMaxSegments]()) {}

Store::~Store() {
  StopHot();
  Stop();
}

StatusOr<std::unique_ptr<Store>> Store::Open(const StoreOptions& options, Metrics* metrics,
                                             nvm::RecoveryReport* report) {
  auto dev = nvm::OpenPmemDevice(options.dir);
  if (!dev.ok()) return dev.status();
  return OpenOnDevice(std::shared_ptr<nvm::LogDevice>(std::move(*dev)), options, metrics, report);
}

StatusOr<std::unique_ptr<Store>> Store::OpenOnDevice(std::shared_ptr<nvm::LogDevice> device,
                                                     const StoreOptions& options, Metrics* metrics,
                                                     nvm::RecoveryReport* report) {
  std::unique_ptr<Store> store(new Store(options, metrics));
  auto log = nvm::Log::Open(std::move(device), options.log);
  if (!log.ok()) return log.status();
  store->log_ = std::move(*log);
  if (options.max_batch_bytes > store->log_->max_payload_bytes()) {
    return Status::InvalidArgument("max batch size " + std::to_string(options.max_batch_bytes) +
                                   " does not fit in a segment");
  }
  Store* s = store.get();
  const int64_t now = WallMs();
  FAHA_RETURN_IF_ERROR(store->log_->Recover(
      [s, now](const RecordView& rec, uint64_t loc, uint64_t) { s->ReplayRecord(rec, loc, now); },
      report));
  store->applied_end_.store(store->log_->next_lsn());
  store->epoch_.store(options.log.epoch);
  if (store->hot_.enabled()) {
    store->hot_thread_ = std::thread([s] {
      pthread_setname_np(pthread_self(), "faha-hot");
      s->HotLoop();
    });
  }
  if (options.clean_threshold > 0) {
    store->clean_thread_ = std::thread([s] {
      pthread_setname_np(pthread_self(), "faha-clean");
      s->CleanLoop();
    });
  }
  return store;
}

bool Store::Resolve(std::string_view key, uint64_t hash, Resolved* out) const {
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

void Store::ReplayRecord(const RecordView& rec, uint64_t location, int64_t now_ms) {
  if (rec.type == RecordType::kPut && rec.expire_at_ms != 0 && rec.expire_at_ms <= now_ms) {
    // Expired while the server was down: reclaim it now.
    RecordView del = rec;
    del.type = RecordType::kDelete;
    ApplyRecord(del, location);
    return;
  }
  ApplyRecord(rec, location);
}

void Store::StampLsns(uint64_t first_lsn, std::vector<WriteResult>* results) {
  for (auto& r : *results) {
    if (r.lsn != 0) r.lsn += first_lsn - 2;  // r.lsn was the record's index + 1
  }
}

void Store::BecomePrimary(ReplicationHook* r, uint64_t epoch) {
  backup_.store(false);
  {
    MutexLock l(&recent_mu_);
    recent_.clear();
  }
  options_.replicator = r;
  options_.log.epoch = epoch;
  log_->set_epoch_wt(epoch);
  epoch_.store(epoch);
  Start();
}

Status Store::TruncateLog(uint64_t lsn) {
  // Not while a cleaning pass holds views into segments this may remove.
  MutexLock pass(&clean_pass_mu_);
  MutexLock writer(&index_writer_mu_);
  AllReadSlots slots(read_slots_);
  FAHA_RETURN_IF_ERROR(log_->TruncateTo_wt(lsn));
  for (uint32_t i = 0; i < nvm::Log::kMaxSegments; i++) dead_bytes_[i].store(0);  // replay recounts
  hot_.Clear();
  index_.Clear();
  keys_with_expiry_.store(0);
  clients_.Clear();
  const int64_t now = WallMs();
  auto replayed = log_->ForEachBatch(1, lsn, UINT64_MAX,
                                     [&](const nvm::BatchHeader&, std::string_view payload) {
                                       // A batch lies in one segment: its records' locations follow
                                       // its payload's.
                                       const uint64_t base = log_->LocationOf(payload.data());
                                       nvm::RecordIterator it(payload);
                                       for (RecordView rec; it.Next(&rec);)
                                         ReplayRecord(rec, base + it.offset(), now);
                                     });
  if (!replayed.ok() && lsn > 1) return replayed.status();
  applied_end_.store(lsn, std::memory_order_release);
  {
    MutexLock l(&recent_mu_);
    while (!recent_.empty() && recent_.back().end_lsn > lsn) recent_.pop_back();
  }
  clean_floor_.store(lsn);
  return Status::OK();
}

void Store::Start() {
  // A replicated node cannot tell which of its records were committed before
  // it (re)started: cleaning waits for a commit beyond them.
  if (options_.replicator) clean_floor_.store(applied_end_.load());
  {
    MutexLock l(&mu_);
    inline_commit_ = options_.replicator == nullptr;
    // A single node may keep two syncs in flight when its log's window
    // allows (--syncs_in_flight; docs/architecture.md has the measurements).
    max_syncing_ = options_.replicator == nullptr
                       ? std::clamp<uint32_t>(options_.log.in_flight_batches, 1, kMaxSyncing)
                       : 1;
    durable_write_ = max_syncing_ == 1;
  }
  sequencer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "faha-sequencer");
    SequencerLoop_st();
  });
  if (options_.replicator) {
    committer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "faha-committer");
      CommitLoop_ct();
    });
  }
}

void Store::Stop() {
  {
    MutexLock l(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (sequencer_.joinable()) sequencer_.join();
  {
    // Groups committed inline may still be syncing.
    MutexLock l(&mu_);
    publish_cv_.Wait(&mu_, [&]() REQUIRES(mu_) { return !committing_ && syncing_ == 0; });
  }
  {
    MutexLock l(&commit_mu_);
    sequencer_done_ = true;
  }
  commit_cv_.SignalAll();
  if (committer_.joinable()) committer_.join();
}

StatusOr<nvm::Log::AppendResult> Store::AppendReplicated(const nvm::BatchHeader& header,
                                                         std::string_view payload) {
  if (!log_->HasRoom_wt(payload.size())) {
    // As the primary does: a batch that only deletes may use the reserve.
    Status room = log_->MakeRoom_wt(payload.size(), OnlyRemovals(payload));
    if (!room.ok()) return room;
  }
  auto r = log_->AppendReplicated_wt(header, payload, /*persist=*/false);
  if (r.ok()) {
    metrics_->batches.fetch_add(1, std::memory_order_relaxed);
    metrics_->batch_records.fetch_add(header.record_count, std::memory_order_relaxed);
    metrics_->batch_bytes.Record(header.payload_bytes);
  } else if (r.status().code() == Status::Code::kIOError && !failed_.exchange(true)) {
    FAHA_LOG_ERROR("log append failed: %s", r.status().ToString().c_str());
  }
  return r;
}

Status Store::PersistReplicated() {
  const int64_t t0 = MonoUs();
  Status s = log_->PersistAppended_wt();
  if (s.ok()) {
    metrics_->persist_us.Record(static_cast<uint64_t>(MonoUs() - t0));
  } else if (!failed_.exchange(true)) {
    FAHA_LOG_ERROR("log persist failed: %s", s.ToString().c_str());
  }
  return s;
}

void Store::PublishReplicated(const nvm::Log::AppendResult& appended) {
  {
    MutexLock l(&recent_mu_);
    const uint64_t hint = commit_hint_.load(std::memory_order_acquire);
    while (!recent_.empty() && recent_.front().end_lsn <= hint + 1) recent_.pop_front();
    recent_.push_back(Recent{nvm::BatchEndLsn(appended.header), appended.base_location,
                             appended.header.payload_bytes});
  }
  PublishBatch(appended.base_location, appended.header.payload_bytes);
  applied_end_.store(nvm::BatchEndLsn(appended.header), std::memory_order_release);
}

StatusOr<Store::Digest> Store::ComputeDigest() const {
  Digest d;
  const uint64_t end = applied_end_.load(std::memory_order_acquire);
  d.lsn = end - 1;
  // Compacted batches are this node's own (each node cleans on its own
  // schedule): the digest chains the batches as the primary framed them.
  auto r = log_->ForEachBatch(1, end, UINT64_MAX, [&](const nvm::BatchHeader& h, std::string_view) {
    if (nvm::IsCompacted(h)) return;
    d.log_digest = Checksum(&h.checksum, sizeof(h.checksum), d.log_digest);
  });
  if (!r.ok()) return r.status();
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
      d.data_digest += Checksum(rec.value.data(), rec.value.size(), h);
      d.keys++;
    });
  } while (cursor != 0);
  return d;
}

std::string_view Store::KeyAt(uint64_t location) const { return log_->ReadRecord(location).key; }

void Store::PublishBatch(uint64_t base_location, size_t bytes) {
  MutexLock writer(&index_writer_mu_);
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
  AllReadSlots slots(read_slots_);
  for (const Applying& a : applying_) ApplyRecord(a.rec, a.location, a.hash);
}

void Store::ApplyRecord(const RecordView& rec, uint64_t location, uint64_t hash) {
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
      if (had && rec.expire_at_ms == 0) keys_with_expiry_.fetch_sub(1);
      if (!had && rec.expire_at_ms != 0) keys_with_expiry_.fetch_add(1);
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
        AddDead(old, nvm::RecordSize(o.key.size(), o.value.size()));
      }
      // A tombstone is dead weight unless older records of its key remain.
      AddDead(location, nvm::RecordSize(rec.key.size(), 0));
      break;
    }
    case RecordType::kFlushAll:
      hot_.Clear();
      index_.Clear();
      keys_with_expiry_.store(0);
      for (uint32_t i = 1; i < nvm::LocationSegment(location); i++) {
        dead_bytes_[i].store(uint64_t{1} << 40, std::memory_order_relaxed);
      }
      AddDead(location, sizeof(nvm::RecordHeader));
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

Store::ReadGuard Store::LockForRead() const {
  static std::atomic<unsigned> next_slot{0};
  thread_local unsigned slot = next_slot.fetch_add(1) % kReadSlots;
  return ReadGuard(&read_slots_[slot].mu);
}

bool Store::Get(std::string_view key, std::string* value) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= WallMs()) return false;
  value->append(r.value);
  return true;
}

bool Store::GetHeld(std::string_view key, std::string* copy, std::string_view* value,
                    std::shared_ptr<const void>* hold) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= WallMs()) return false;
  // Not on a backup: its records past the commit point may be truncated and
  // written over while the reply is still being sent.
  if (r.location != 0 && r.value.size() >= kHoldValueBytes && !backup_.load()) {
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

bool Store::Exists(std::string_view key) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  return r.expire_at_ms == 0 || r.expire_at_ms > WallMs();
}

bool Store::Read(std::string_view key, bool want_value, KeyState* out) const {
  *out = KeyState{};
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return false;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= WallMs()) return false;
  out->exists = true;
  out->expire_at_ms = r.expire_at_ms;
  if (want_value) out->value.assign(r.value);
  return true;
}

int64_t Store::PttlMs(std::string_view key) const {
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return -2;
  if (r.expire_at_ms == 0) return -1;
  int64_t left = r.expire_at_ms - WallMs();
  return left <= 0 ? -2 : left;
}

uint64_t Store::Scan(uint64_t cursor, size_t count, std::vector<std::string>* keys) const {
  int64_t now = WallMs();
  return index_.Scan(cursor, count, [&](uint64_t loc) {
    RecordView r = log_->ReadRecord(loc);
    if (const HotCache::Entry* e = hot_.Find(r.key, HashKey(r.key)))
      r.expire_at_ms = e->expire_at_ms;
    if (r.expire_at_ms == 0 || r.expire_at_ms > now) keys->emplace_back(r.key);
  });
}

}  // namespace faha
