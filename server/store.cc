#include "server/store.h"

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
#include "server/replication.h"

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

void Store::BecomePrimary(Replicator* r, uint64_t epoch) {
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
  auto replayed = log_->ForEachBatch(
      1, lsn, UINT64_MAX, [&](const nvm::BatchHeader&, std::string_view payload) {
        // A batch lies in one segment: its records' locations follow its payload's.
        const uint64_t base = log_->LocationOf(payload.data());
        for (size_t off = 0; off < payload.size();) {
          RecordView rec;
          size_t n;
          if (!nvm::DecodeRecord(payload.data() + off, payload.size() - off, &rec, &n)) break;
          ReplayRecord(rec, base + off, now);
          off += n;
        }
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
  PublishBatch_st(appended.base_location, appended.header.payload_bytes);
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

void Store::DeliverAll(Replies* replies) {
  for (auto& [sink, completions] : *replies) sink->Deliver(&completions);
}

void Store::CommitLoop_ct() {
  Replicator* repl = options_.replicator;
  const int64_t timeout_us = static_cast<int64_t>(options_.repl_timeout_ms) * 1000;
  while (true) {
    InFlight* b;
    bool done;
    {
      MutexLock l(&commit_mu_);
      commit_cv_.Wait(&commit_mu_,
                      [&]() REQUIRES(commit_mu_) { return sequencer_done_ || !inflight_.empty(); });
      if (inflight_.empty()) return;
      b = &inflight_.front();  // only this thread pops; push_back keeps it valid
      done = sequencer_done_;
    }
    int64_t deadline = b->replied ? MonoUs() + 100000 : b->shipped_us + timeout_us;
    // A batch without records (writes that changed nothing, or refused ones)
    // only keeps its replies behind the earlier batches.
    Status s = b->bytes == 0 ? Status::OK() : repl->WaitDurable(b->end_lsn, deadline);
    if (s.ok()) {
      if (b->bytes > 0) PublishBatch_st(b->base_location, b->bytes);
      if (b->bytes > 0) {
        applied_end_.store(b->end_lsn, std::memory_order_release);
        repl->Committed(b->end_lsn);
      }
      if (!b->replied) DeliverAll(&b->replies);
    } else {
      if (!b->replied) {
        // The batch is in our log and maybe on some backups: its outcome is
        // unknown. It stays queued and becomes visible if the backups catch up.
        for (auto& [sink, completions] : b->replies) {
          for (auto& c : completions) c.result = WriteResult::Error(s.message());
        }
        DeliverAll(&b->replies);
        b->replied = true;
      }
      if (!done) continue;
      // Shutting down: what was never covered stays in the log; a restart
      // ships it to the backups again.
    }
    MutexLock l(&commit_mu_);
    inflight_.pop_front();
  }
}

void Store::MergeInFlight_st(const SeqInFlight& b) {
  const char* base = log_->RecordPtr(b.base_location);
  for (size_t off = 0; off < b.bytes;) {
    RecordView rec;
    size_t n;
    nvm::DecodeRecord(base + off, b.bytes - off, &rec, &n);
    if (rec.type == RecordType::kPut) {
      inflight_overlay_[std::string(rec.key)] = b.base_location + off;
    } else if (rec.type == RecordType::kDelete) {
      inflight_overlay_[std::string(rec.key)] = kInFlightDeleted;
    } else if (rec.type == RecordType::kFlushAll) {
      inflight_overlay_.clear();
      inflight_flushed_ = true;
    }
    off += n;
  }
}

bool Store::LookupInFlight_st(std::string_view key, bool want_value, int64_t now_ms, Current* out) {
  if (seq_inflight_.empty()) return false;
  if (!inflight_valid_) {
    inflight_overlay_.clear();
    inflight_flushed_ = false;
    for (const auto& b : seq_inflight_) MergeInFlight_st(b);
    inflight_valid_ = true;
  }
  *out = Current{};
  auto it = inflight_overlay_.find(std::string(key));
  if (it == inflight_overlay_.end()) return inflight_flushed_;
  if (it->second == kInFlightDeleted) return true;
  RecordView r = log_->ReadRecord(it->second);
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return true;
  out->exists = true;
  out->expire_at_ms = r.expire_at_ms;
  if (want_value) out->value.assign(r.value);
  return true;
}

StatusOr<nvm::Log::AppendResult> Store::PersistBatch_st(const nvm::BatchHeader* framed,
                                                        const nvm::BatchBuilder& batch, size_t ops,
                                                        std::vector<WriteResult>* results) {
  int64_t t0 = MonoUs();
  auto appended = framed ? log_->AppendFramed_wt(*framed, batch.payload())
                         : log_->AppendBatch_wt(batch.payload(), batch.count());
  if (!appended.ok()) {
    FailWrites(appended.status(), results);
    return appended;
  }
  metrics_->persist_us.Record(static_cast<uint64_t>(MonoUs() - t0));
  RecordBatch(batch, ops);
  return appended;
}

void Store::RecordBatch(const nvm::BatchBuilder& batch, size_t ops) {
  metrics_->batches.fetch_add(1, std::memory_order_relaxed);
  metrics_->batch_records.fetch_add(batch.count(), std::memory_order_relaxed);
  metrics_->batch_bytes.Record(batch.bytes());
  metrics_->batch_ops.Record(ops);
}

void Store::GroupReplies(std::vector<Pending>* taken, std::vector<WriteResult>* results,
                         Replies* replies) {
  replies->clear();
  for (size_t i = 0; i < taken->size(); i++) {
    Pending& p = (*taken)[i];
    // Sinks are the server's I/O threads, a handful: a linear search beats a map.
    auto it = std::find_if(replies->begin(), replies->end(),
                           [&](const auto& r) { return r.first == p.sink; });
    if (it == replies->end())
      it = replies->emplace(replies->end(), p.sink, std::vector<Completion>{});
    it->second.push_back(Completion{p.conn_id, std::move((*results)[i]), p.op.start_us});
  }
}

void Store::ShipAndQueue_st(const nvm::BatchBuilder& batch, std::vector<Pending>* taken,
                            std::vector<WriteResult>* results) {
  InFlight f;
  f.end_lsn = log_->next_lsn();
  f.base_location = 0;
  f.bytes = 0;
  f.shipped_us = MonoUs();
  if (!batch.empty()) {
    nvm::BatchHeader h =
        nvm::Log::FrameBatch(batch.payload(), batch.count(), log_->next_lsn(), options_.log.epoch);
    // Backups start persisting while we do: one round trip after our own persist.
    options_.replicator->Ship(h, batch.payload());
    auto appended = PersistBatch_st(&h, batch, taken->size(), results);
    if (appended.ok()) {
      StampLsns(h.first_lsn, results);
      f.end_lsn = h.first_lsn + h.record_count;
      f.base_location = appended->base_location;
      f.bytes = batch.bytes();
      seq_inflight_.push_back(SeqInFlight{f.end_lsn, f.base_location, f.bytes});
      if (inflight_valid_) MergeInFlight_st(seq_inflight_.back());
    }
  }
  GroupReplies(taken, results, &f.replies);
  {
    MutexLock l(&commit_mu_);
    inflight_.push_back(std::move(f));
  }
  commit_cv_.Signal();
}

std::string_view Store::KeyAt(uint64_t location) const { return log_->ReadRecord(location).key; }

void Store::PublishBatch_st(uint64_t base_location, size_t bytes) {
  MutexLock writer(&index_writer_mu_);
  // Decode and hash every record, then prefetch in two waves (index slots,
  // then the records they point to), so that the key comparisons of the
  // upserts below find the overwritten records in cache: reading them was the
  // sequencer's largest cost (one cache miss per write).
  applying_.clear();
  const char* base = log_->RecordPtr(base_location);
  for (size_t off = 0; off < bytes;) {
    RecordView rec;
    size_t n;
    nvm::DecodeRecord(base + off, bytes - off, &rec, &n);
    applying_.push_back({rec, base_location + off, HashKey(rec.key)});
    off += n;
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

void Store::Submit(WriteOp op, CompletionSink* sink, uint64_t conn_id) {
  {
    MutexLock l(&mu_);
    queue_.push_back(Pending{std::move(op), sink, conn_id});
  }
  cv_.Signal();
}

Store::Current Store::Lookup_st(std::string_view key, bool want_value, int64_t now_ms) {
  Current c;
  if (overlay_flushed_) return c;
  // The hot layer's maintenance may run meanwhile: read as a reader does.
  ReadGuard guard = LockForRead();
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return c;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return c;
  c.exists = true;
  c.expire_at_ms = r.expire_at_ms;
  if (want_value) c.value.assign(r.value);
  return c;
}

void Store::TakeQueued_l(std::vector<Pending>* taken) {
  size_t bytes = 0;
  while (!queue_.empty()) {
    size_t op_bytes = 64;
    for (const auto& a : queue_.front().op.args) op_bytes += a.size() + sizeof(nvm::RecordHeader);
    if (!taken->empty() && bytes + op_bytes > options_.max_batch_bytes) break;
    bytes += op_bytes;
    taken->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

void Store::SubmitAll(std::vector<Write>* writes) {
  if (writes->empty()) return;
  std::vector<Pending> taken;
  {
    MutexLock l(&mu_);
    // After Stop() nothing is queued: such writes are never applied nor answered.
    if (stopping_) {
      writes->clear();
      return;
    }
    for (auto& w : *writes) queue_.push_back(std::move(w));
    writes->clear();
    // Whoever is committing takes these next (the sequencer) or hands them
    // on when done (an inline committer): no wake-up needed meanwhile. The
    // same when as many syncs as the log allows are in flight: the first to
    // finish wakes the sequencer.
    if (committing_ || syncing_ >= max_syncing_) return;
    if (inline_commit_) {
      // Nobody is committing: this thread commits the group itself, as
      // leveldb's first writer does, instead of waking the sequencer and
      // being woken back (two thread hand-offs per write).
      committing_ = true;
      TakeQueued_l(&taken);
    }
  }
  if (taken.empty()) {
    cv_.Signal();
    return;
  }
  metrics_->inline_groups.fetch_add(1, std::memory_order_relaxed);
  CommitGroup_st(&taken);  // gives committing_ back
}

void Store::SequencerLoop_st() {
  std::vector<Pending> taken;
  while (true) {
    taken.clear();
    {
      MutexLock l(&mu_);
      cv_.Wait(&mu_, [&]() REQUIRES(mu_) {
        return !committing_ && syncing_ < max_syncing_ && (stopping_ || !queue_.empty());
      });
      if (queue_.empty()) return;  // stopping, and everything is committed
      committing_ = true;
      TakeQueued_l(&taken);
    }
    CommitGroup_st(&taken);  // gives committing_ back
  }
}

void Store::ReleaseCommitting_st() {
  bool more;
  {
    MutexLock l(&mu_);
    committing_ = false;
    more = !queue_.empty() || stopping_;
  }
  // Writes that arrived meanwhile go to the sequencer: an inline committer
  // returns to send its replies rather than wait for one more sync.
  if (more) cv_.Signal();
}

void Store::CommitGroup_st(std::vector<Pending>* taken_ptr) {
  std::vector<Pending>& taken = *taken_ptr;
  nvm::BatchBuilder& batch = batch_;
  std::vector<WriteResult>& results = results_;
  {
    batch.Clear();
    overlay_.clear();
    overlay_valid_ = false;
    overlay_flushed_ = false;
    results.clear();
    recorded_.clear();
    from_table_.clear();
    // Forget in-flight batches (shipped, or written and syncing) that are
    // published now.
    const uint64_t applied = applied_end_.load(std::memory_order_acquire);
    while (!seq_inflight_.empty() && seq_inflight_.front().end_lsn <= applied) {
      seq_inflight_.pop_front();
      // The overlay may point into a published batch, whose segment cleaning
      // may rewrite: rebuild it from the batches still in flight.
      inflight_valid_ = false;
    }
    if (seq_inflight_.empty() || inflight_overlay_.size() > (1u << 20)) {
      inflight_overlay_.clear();
      inflight_valid_ = false;
      inflight_flushed_ = false;
    }
    if (Replicator* repl = options_.replicator) {
      int64_t oldest = taken[0].op.start_us > 0 ? taken[0].op.start_us : MonoUs();
      Status ready =
          repl->WaitWritable(oldest + static_cast<int64_t>(options_.repl_timeout_ms) * 1000);
      if (!ready.ok()) {
        for (size_t i = 0; i < taken.size(); i++)
          results.push_back(WriteResult::Error(ready.message()));
        ShipAndQueue_st(batch, &taken, &results);
        ReleaseCommitting_st();
        return;
      }
    }
    const int64_t now = WallMs();
    for (size_t i = 0; i < taken.size(); i++) {
      const size_t mark_bytes = batch.bytes();
      const uint32_t mark_count = batch.count();
      const bool mark_flushed = overlay_flushed_;
      const WriteOp& op = taken[i].op;
      WriteResult r;
      if (op.client_id != 0) {
        switch (clients_.Lookup(op.client_id, op.client_seq, &r)) {
          case ClientTable::Seen::kDuplicate:
            metrics_->duplicate_writes.fetch_add(1, std::memory_order_relaxed);
            from_table_.push_back(results.size());
            results.push_back(std::move(r));
            continue;
          case ClientTable::Seen::kForgotten:
            metrics_->duplicate_writes.fetch_add(1, std::memory_order_relaxed);
            from_table_.push_back(results.size());
            results.push_back(WriteResult::Error(
                "ERR this write (client " + std::to_string(op.client_id) + ", sequence " +
                std::to_string(op.client_seq) +
                ") is older than the replies kept for retries; it is not applied again"));
            continue;
          case ClientTable::Seen::kNew:
            break;
        }
      }
      r = Evaluate_st(op, &batch, now);
      if (op.client_id != 0) {
        r.lsn = batch.count() + 1;  // made absolute once the batch has its first LSN
        batch.Add(RecordType::kClientReply, {}, ClientTable::EncodeReply(r), 0, op.client_id,
                  op.client_seq);
      }
      const bool too_big_for_batch = batch.bytes() > options_.max_batch_bytes;
      if (too_big_for_batch || batch.bytes() > log_->max_payload_bytes()) {
        // The estimate at dequeue time missed (EXPIRE and INCR rewrite the
        // current value): undo this op and leave it and the rest for the next
        // batch. Alone in a batch, an op that does not fit is refused.
        batch.Truncate(mark_bytes, mark_count);
        overlay_.clear();
        overlay_valid_ = false;
        overlay_flushed_ = mark_flushed;
        if (i > 0) {
          MutexLock l(&mu_);
          for (size_t j = taken.size(); j > i; j--) queue_.push_front(std::move(taken[j - 1]));
          taken.resize(i);
          break;
        }
        r = WriteResult::Error("ERR this write needs more than one log batch (--max_batch_kb)");
      } else if (op.client_id != 0) {
        clients_.Record(op.client_id, op.client_seq, r);
        recorded_.emplace_back(op.client_id, op.client_seq);
      }
      results.push_back(std::move(r));
    }
    if (!batch.empty() && !log_->HasRoom_wt(batch.bytes())) {
      // A new segment first, if the batch needs one: on a full disk the group
      // is answered with the error and nothing of it is written or shipped,
      // and a later group tries again (writes resume once space is freed).
      Status room = log_->MakeRoom_wt(batch.bytes(), OnlyRemovals(batch.payload()));
      if (!room.ok()) {
        // Neither written nor shipped. Replies of retried writes answered
        // from the client table stand; every other result is the error (a
        // later op's result may depend on an earlier one's refused write).
        for (const auto& [client, seq] : recorded_) clients_.Forget(client, seq);
        std::vector<bool> keep(results.size(), false);
        for (size_t i : from_table_) keep[i] = true;
        if (room.code() == Status::Code::kBusy) {
          metrics_->log_full_refusals.fetch_add(1, std::memory_order_relaxed);
        } else if (room.code() == Status::Code::kIOError && !failed_.exchange(true)) {
          FAHA_LOG_ERROR("log append failed, refusing writes from now on: %s",
                         room.ToString().c_str());
        }
        const std::string why = room.code() == Status::Code::kBusy
                                    ? "IOERR " + room.message()
                                    : "IOERR write not durable: " + room.ToString();
        for (size_t i = 0; i < results.size(); i++) {
          if (!keep[i]) results[i] = WriteResult::Error(why);
        }
        batch.Clear();
        overlay_.clear();
        overlay_valid_ = false;
        overlay_flushed_ = false;
      }
    }

    if (options_.replicator) {
      ShipAndQueue_st(batch, &taken, &results);
      ReleaseCommitting_st();
      return;
    }
  }
  SyncPublishAndReply(&taken, &results);
}

void Store::SyncPublishAndReply(std::vector<Pending>* taken_in,
                                std::vector<WriteResult>* results_in) {
  // Single node. Written but not durable: the next group may be evaluated
  // (against this one through the in-flight overlay) and written while this
  // one syncs, so up to max_syncing_ syncs are in flight. Batches are
  // published, and their replies delivered, strictly in the order they were
  // written (tickets), and only once durable: the later of two batches is
  // never visible before the earlier one.
  std::vector<Pending> taken = std::move(*taken_in);
  std::vector<WriteResult> results = std::move(*results_in);
  const nvm::BatchBuilder& batch = batch_;
  std::optional<nvm::Log::AppendResult> written;
  const int64_t t0 = MonoUs();
  size_t batch_bytes = 0;
  bool answered_error = false;  // every result is an -IOERR already
  if (failed_.load()) {
    FailWrites(Status::IOError("the log failed earlier; restart the server"), &results);
    answered_error = true;
  } else if (!batch.empty()) {
    batch_bytes = batch.bytes();
    // One batch syncing at a time: written and made durable in one go (one
    // system call on a file). Else the sync happens below, token given back.
    auto appended = log_->AppendBatch_wt(batch.payload(), batch.count(), durable_write_);
    if (appended.ok()) {
      written = *appended;
      StampLsns(appended->first_lsn, &results);
      seq_inflight_.push_back(
          SeqInFlight{nvm::BatchEndLsn(appended->header), appended->base_location, batch_bytes});
      if (inflight_valid_) MergeInFlight_st(seq_inflight_.back());
      RecordBatch(batch, taken.size());
    } else {
      FailWrites(appended.status(), &results);
      answered_error = true;
    }
  }
  uint64_t ticket;
  bool waiting;
  {
    MutexLock l(&mu_);
    ticket = next_ticket_++;
    syncing_++;
    committing_ = false;
    waiting = !queue_.empty() && syncing_ < max_syncing_;
  }
  if (waiting) cv_.Signal();  // the sequencer may take the next group meanwhile

  Status synced = written && !durable_write_ ? log_->Sync_any(*written) : Status::OK();
  {
    MutexLock l(&mu_);
    if (published_ticket_ != ticket) {
      publish_cv_.Wait(&mu_, [&]() REQUIRES(mu_) { return published_ticket_ == ticket; });
    }
  }
  if (!answered_error && (!synced.ok() || failed_.load())) {
    // An earlier batch failed to become durable, or this one did: nothing
    // from here on is published, nor answered as if it were (a group that
    // wrote nothing may have been evaluated against the failed batch).
    FailWrites(synced.ok() ? Status::IOError("an earlier batch failed to persist") : synced,
               &results);
  } else if (written) {
    metrics_->persist_us.Record(static_cast<uint64_t>(MonoUs() - t0));
    log_->NoteDurable_any(nvm::BatchEndLsn(written->header));
    PublishBatch_st(written->base_location, batch_bytes);
    applied_end_.store(nvm::BatchEndLsn(written->header), std::memory_order_release);
  }
  Replies replies;
  GroupReplies(&taken, &results, &replies);
  DeliverAll(&replies);
  {
    // Notified under the lock: once Stop() sees syncing_ reach 0 the store
    // may be destroyed, condition variables included.
    MutexLock l(&mu_);
    published_ticket_++;
    syncing_--;
    if (syncing_ > 0 || stopping_) publish_cv_.SignalAll();  // a later batch, or Stop()
    if ((!queue_.empty() && !committing_) || stopping_) cv_.Signal();
  }
}

// A batch that writes no value (DEL, FLUSHALL, and their client replies):
// on a full disk it may use the log's reserve, since it frees space once
// cleaned (Redis's deny-oom: refuse what grows, allow what shrinks).
bool Store::OnlyRemovals(std::string_view payload) {
  for (size_t off = 0; off < payload.size();) {
    RecordView r;
    size_t n;
    if (!nvm::DecodeRecord(payload.data() + off, payload.size() - off, &r, &n)) return false;
    if (r.type == RecordType::kPut) return false;
    off += n;
  }
  return true;
}

void Store::FailWrites(const Status& why, std::vector<WriteResult>* results) {
  // Only an I/O error leaves the log in doubt; anything else is this batch's fault.
  if (why.code() == Status::Code::kIOError && !failed_.exchange(true)) {
    FAHA_LOG_ERROR("log append failed, refusing writes from now on: %s", why.ToString().c_str());
  }
  for (auto& r : *results) r = WriteResult::Error("IOERR write not durable: " + why.ToString());
}

void Store::Put_st(nvm::BatchBuilder* batch, std::string_view key, std::string_view value,
                   int64_t expire_at_ms) {
  size_t off = batch->Add(RecordType::kPut, key, value, expire_at_ms);
  if (overlay_valid_) overlay_[std::string(key)] = off;
}

void Store::Delete_st(nvm::BatchBuilder* batch, std::string_view key) {
  batch->Add(RecordType::kDelete, key, {}, 0);
  if (overlay_valid_) overlay_[std::string(key)] = kDeleted;
}

void Store::BuildOverlay_st(const nvm::BatchBuilder& batch) {
  overlay_.clear();
  size_t off = 0;
  while (off < batch.bytes()) {
    RecordView r;
    size_t n;
    nvm::DecodeRecord(batch.payload().data() + off, batch.bytes() - off, &r, &n);
    if (r.type == RecordType::kPut) {
      overlay_[std::string(r.key)] = off;
    } else if (r.type == RecordType::kDelete) {
      overlay_[std::string(r.key)] = kDeleted;
    } else if (r.type == RecordType::kFlushAll) {
      overlay_.clear();  // overlay_flushed_ is already set
    }
    off += n;
  }
  overlay_valid_ = true;
}

namespace {
bool ParseInt64(std::string_view s, int64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

WriteResult Store::Evaluate_st(const WriteOp& op, nvm::BatchBuilder* batch, int64_t now_ms) {
  if (failed_.load(std::memory_order_relaxed)) {
    return WriteResult::Error(
        "IOERR the log failed earlier; this node refuses writes until restart");
  }
  // Current state of a key: the batch's own earlier writes win over the index.
  auto current = [&](std::string_view key, bool want_value) {
    if (!overlay_valid_) BuildOverlay_st(*batch);
    auto it = overlay_.find(std::string(key));
    if (it == overlay_.end()) {
      Current c;
      if (!overlay_flushed_ && LookupInFlight_st(key, want_value, now_ms, &c)) return c;
      return Lookup_st(key, want_value, now_ms);
    }
    Current c;
    if (it->second == kDeleted) return c;
    RecordView r;
    size_t n;
    nvm::DecodeRecord(batch->payload().data() + it->second, batch->bytes() - it->second, &r, &n);
    if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return c;
    c.exists = true;
    c.expire_at_ms = r.expire_at_ms;
    if (want_value) c.value.assign(r.value);
    return c;
  };

  switch (op.kind) {
    case WriteOp::Kind::kSet: {
      std::string_view key = op.args[0];
      bool need_state = op.nx || op.xx || op.keep_ttl || op.get_old;
      Current cur;
      if (need_state) cur = current(key, op.get_old);
      if ((op.nx && cur.exists) || (op.xx && !cur.exists)) {
        if (op.get_old) return cur.exists ? WriteResult::Bulk(cur.value) : WriteResult::Nil();
        return WriteResult::Nil();
      }
      Put_st(batch, key, op.args[1], op.keep_ttl ? cur.expire_at_ms : op.expire_at_ms);
      if (op.get_old)
        return cur.exists ? WriteResult::Bulk(std::move(cur.value)) : WriteResult::Nil();
      return WriteResult::Ok();
    }
    case WriteOp::Kind::kMSet:
      for (size_t i = 0; i + 1 < op.args.size(); i += 2)
        Put_st(batch, op.args[i], op.args[i + 1], 0);
      return WriteResult::Ok();
    case WriteOp::Kind::kDelete: {
      int64_t n = 0;
      for (const auto& key : op.args) {
        if (current(key, false).exists) {
          Delete_st(batch, key);
          n++;
        }
      }
      return WriteResult::Int(n);
    }
    case WriteOp::Kind::kIncrBy: {
      std::string_view key = op.args[0];
      Current cur = current(key, true);
      int64_t v = 0;
      if (cur.exists && !ParseInt64(cur.value, &v)) {
        return WriteResult::Error("ERR value is not an integer or out of range");
      }
      if ((op.delta > 0 && v > INT64_MAX - op.delta) ||
          (op.delta < 0 && v < INT64_MIN - op.delta)) {
        return WriteResult::Error("ERR increment or decrement would overflow");
      }
      v += op.delta;
      Put_st(batch, key, std::to_string(v), cur.expire_at_ms);
      return WriteResult::Int(v);
    }
    case WriteOp::Kind::kExpire: {
      std::string_view key = op.args[0];
      Current cur = current(key, true);
      if (!cur.exists) return WriteResult::Int(0);
      const bool has = cur.expire_at_ms != 0;
      bool allowed = true;
      switch (op.expire_if) {
        case WriteOp::ExpireIf::kAlways:
          break;
        case WriteOp::ExpireIf::kNoExpiry:
          allowed = !has;
          break;
        case WriteOp::ExpireIf::kHasExpiry:
          allowed = has;
          break;
        case WriteOp::ExpireIf::kGreater:
          allowed = has && op.expire_at_ms > cur.expire_at_ms;
          break;
        case WriteOp::ExpireIf::kLess:
          allowed = !has || op.expire_at_ms < cur.expire_at_ms;
          break;
      }
      if (!allowed) return WriteResult::Int(0);
      if (op.expire_at_ms <= now_ms) {
        Delete_st(batch, key);
      } else {
        Put_st(batch, key, cur.value, op.expire_at_ms);
      }
      return WriteResult::Int(1);
    }
    case WriteOp::Kind::kPersist: {
      std::string_view key = op.args[0];
      Current cur = current(key, true);
      if (!cur.exists || cur.expire_at_ms == 0) return WriteResult::Int(0);
      Put_st(batch, key, cur.value, 0);
      return WriteResult::Int(1);
    }
    case WriteOp::Kind::kFlushAll:
      batch->Add(RecordType::kFlushAll, {}, {}, 0);
      overlay_.clear();
      overlay_valid_ = true;
      overlay_flushed_ = true;
      return WriteResult::Ok();
  }
  return WriteResult::Error("ERR internal: unknown write");
}

// ---- Log cleaning ----

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

StatusOr<Store::CleanOutcome> Store::CleanVictim() {
  if (options_.clean_threshold <= 0 || failed_.load()) return CleanOutcome::kNone;
  const uint64_t safe = CleanSafeLsn();
  if (safe == 0) return CleanOutcome::kNone;
  uint64_t horizon = UINT64_MAX;
  {
    MutexLock l(&horizon_mu_);
    if (clean_horizon_) horizon = clean_horizon_();
  }
  // The victim: the sealed segment with the least live data, below the
  // threshold, worth a pass, and wholly committed for good.
  const std::vector<nvm::Log::SegmentInfo> segs = log_->SealedSegments();
  // Below the threshold a pass gains at least (1 - threshold) of the data;
  // this only keeps passes from chasing crumbs (a cleaned file whose few
  // records all died). Not a fraction of the segment size: cleaned files are
  // smaller, and their dead bytes must be reclaimable too.
  const uint64_t min_gain = std::min<uint64_t>(64 << 10, log_->segment_bytes() / 16);
  // A backup cleans less eagerly, unless its disk is short of space.
  const double threshold = backup_.load() && !log_->short_of_space()
                               ? std::min(options_.clean_threshold, options_.backup_clean_threshold)
                               : options_.clean_threshold;
  const nvm::Log::SegmentInfo* victim = nullptr;
  double victim_live = 2;
  uint64_t older_cleaned = UINT64_MAX;  // min cleaned_lsn of the segments before the victim
  uint64_t running = UINT64_MAX;
  for (const auto& seg : segs) {
    if (seg.end_lsn - 1 > safe || seg.end_lsn > horizon) break;
    const double live = LiveFraction(seg);
    const double dead = (1 - live) * static_cast<double>(seg.data_bytes);
    if (live < threshold && dead >= static_cast<double>(min_gain) && live < victim_live) {
      victim = &seg;
      victim_live = live;
      older_cleaned = running;
    }
    running = std::min(running, seg.cleaned ? seg.cleaned_lsn : 0);
  }
  if (victim == nullptr) return CleanOutcome::kNone;
  const uint32_t id = victim->id;

  // Every record of the victim. The views stay valid for the whole pass: only
  // a pass or a truncation (which waits for clean_pass_mu_) unmaps a segment.
  struct Rec {
    nvm::RecordView rec;
    uint64_t location;
    uint64_t lsn;
    uint64_t hash;
    size_t bytes;
  };
  // The pass's working arrays keep their memory from pass to pass (a few MiB
  // per cleaning thread): allocated afresh, a 64 MiB victim's cost this VM
  // about 1,300 page faults a pass.
  static thread_local std::vector<Rec> recs;
  recs.clear();
  FAHA_RETURN_IF_ERROR(log_->ForEachRecord(id, [&](const RecordView& r, uint64_t loc,
                                                   uint64_t lsn) {
    recs.push_back(Rec{r, loc, lsn, HashKey(r.key), nvm::RecordSize(r.key.size(), r.value.size())});
  }));

  // Judge each record against the committed state, a chunk at a time under
  // the index writer's lock (publishing waits meanwhile, readers do not).
  enum class Verdict : uint8_t { kDrop, kKeep, kMove, kExpire };
  static thread_local std::vector<Verdict> verdict;
  verdict.assign(recs.size(), Verdict::kDrop);
  uint64_t cleaned_lsn = safe;
  const int64_t now = WallMs();
  constexpr size_t kChunk = 4096;
  for (size_t begin = 0; begin < recs.size(); begin += kChunk) {
    MutexLock writer(&index_writer_mu_);
    // A backup's keys written by batches its primary has not committed yet:
    // their index entries may not last; judge them conservatively.
    std::unordered_set<std::string_view> uncommitted;
    if (backup_.load()) {
      const uint64_t hint = commit_hint_.load(std::memory_order_acquire);
      MutexLock l(&recent_mu_);
      for (const Recent& b : recent_) {
        if (b.end_lsn <= hint + 1) continue;
        const char* base = log_->RecordPtr(b.base_location);
        for (size_t off = 0; off < b.bytes;) {
          RecordView r;
          size_t n;
          if (!nvm::DecodeRecord(base + off, b.bytes - off, &r, &n)) break;
          if (r.type == RecordType::kFlushAll)
            return CleanOutcome::kNone;  // everything is in doubt
          uncommitted.insert(r.key);
          off += n;
        }
      }
    }
    for (size_t i = begin; i < std::min(recs.size(), begin + kChunk); i++) {
      const Rec& r = recs[i];
      const bool doubt = !uncommitted.empty() && uncommitted.count(r.rec.key) != 0;
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
            verdict[i] = expired && !doubt ? Verdict::kExpire : Verdict::kMove;
          } else if (doubt) {
            // Maybe made obsolete only by a write that may yet be truncated.
            verdict[i] = Verdict::kKeep;
            cleaned_lsn = std::min(cleaned_lsn, r.lsn);
          }
          break;
        }
        case RecordType::kDelete:
        case RecordType::kFlushAll: {
          // Needed while an older record of the key may remain: unless every
          // segment before this one was cleaned after the deletion committed.
          // A tombstone of a key written again since (committed) is obsolete.
          const bool rewritten =
              r.rec.type == RecordType::kDelete && !doubt && (index_.Find(r.rec.key, r.hash) != 0);
          if (!rewritten && r.lsn > older_cleaned) verdict[i] = Verdict::kKeep;
          break;
        }
        case RecordType::kClientReply:
          if (clients_.Holds(r.rec.client_id, r.rec.client_seq)) verdict[i] = Verdict::kKeep;
          break;
      }
    }
  }

  // The replacement: kept records as they are, expired ones as deletions.
  static thread_local std::vector<nvm::Log::KeptRecord> kept;
  static thread_local std::vector<size_t> kept_from;  // index into recs
  kept.clear();
  kept_from.clear();
  std::deque<std::string> encoded;
  uint64_t kept_bytes = 0, expired = 0;
  for (size_t i = 0; i < recs.size(); i++) {
    if (verdict[i] == Verdict::kDrop) continue;
    const Rec& r = recs[i];
    std::string_view bytes(log_->RecordPtr(r.location), r.bytes);
    if (verdict[i] == Verdict::kExpire) {
      nvm::BatchBuilder b;
      b.Add(RecordType::kDelete, r.rec.key, {}, 0);
      encoded.emplace_back(b.payload());
      bytes = encoded.back();
      expired++;
    }
    kept.push_back({bytes, r.lsn});
    kept_from.push_back(i);
    kept_bytes += bytes.size();
  }
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

  std::unordered_map<uint64_t, uint64_t> moved;  // old location -> new (0: expired)
  for (size_t k = 0; k < kept.size(); k++) {
    const Rec& r = recs[kept_from[k]];
    const Verdict v = verdict[kept_from[k]];
    if (v == Verdict::kMove) moved[r.location] = moved_to[k];
    if (v == Verdict::kExpire) moved[r.location] = 0;
  }
  // On the media first (readers go on with the old mapping meanwhile), then
  // in memory, moving every location that named the old records, with
  // readers held off (they would follow a location into the wrong mapping).
  {
    Status committed = log_->CommitReplacement(prepared->get());
    if (!committed.ok()) {
      log_->DiscardReplacement(std::move(*prepared));
      return committed;
    }
  }
  MutexLock writer(&index_writer_mu_);
  AllReadSlots slots(read_slots_);
  const uint64_t old_file = victim->file_bytes;
  log_->SwapReplacement(std::move(*prepared));
  // From here the victim's old locations name nothing: no key may be read
  // through one (Relocate compares locations only).
  for (size_t k = 0; k < kept.size(); k++) {
    const Rec& r = recs[kept_from[k]];
    const Verdict v = verdict[kept_from[k]];
    if (v == Verdict::kMove) {
      index_.Relocate(r.hash, r.location, moved_to[k]);
    } else if (v == Verdict::kExpire && index_.Relocate(r.hash, r.location, 0)) {
      keys_with_expiry_.fetch_sub(1);
    }
  }
  if (hot_.enabled()) {
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
      } else if (nvm::LocationSegment(e->base_location) == id) {
        // The base named an older record of the key, dropped: write the
        // current one back (the differential part ends early).
        index_.Relocate(e->hash, e->base_location, e->location);
        e->base_location = e->location;
      }
    });
    for (HotCache::Entry* e : gone) hot_.Remove(e);
  }
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
