#include "server/engine/store.h"

#include <pthread.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <optional>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "nvm/record_iterator.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

Store::Store(const StoreOptions& options, Metrics* metrics, std::unique_ptr<nvm::Log> log)
    : options_(options),
      metrics_(metrics),
      log_(std::move(log)),
      keys_(log_.get(), metrics, options.hot_cache_bytes),
      hot_maintainer_(log_.get(), &keys_, metrics, options.hot_age_ms),
      cleaner_(log_.get(), &keys_, metrics, this, options.cleaning),
      queue_(options.max_batch_bytes) {}

Store::~Store() {
  hot_maintainer_.Stop();
  cleaner_.Stop();
  Stop();
}

StatusOr<std::unique_ptr<Store>> Store::Open(const StoreOptions& options, Metrics* metrics,
                                             nvm::RecoveryReport* report) {
  auto dev = nvm::OpenPmemDevice(options.dir, options.zero_fill);
  if (!dev.ok()) return dev.status();
  return OpenOnDevice(std::shared_ptr<nvm::LogDevice>(std::move(*dev)), options, metrics, report);
}

StatusOr<std::unique_ptr<Store>> Store::OpenOnDevice(std::shared_ptr<nvm::LogDevice> device,
                                                     const StoreOptions& options, Metrics* metrics,
                                                     nvm::RecoveryReport* report) {
  auto log = nvm::Log::Open(std::move(device), options.log);
  if (!log.ok()) return log.status();
  std::unique_ptr<Store> store(new Store(options, metrics, std::move(*log)));
  if (options.max_batch_bytes > store->log_->max_payload_bytes()) {
    return Status::InvalidArgument("max batch size " + std::to_string(options.max_batch_bytes) +
                                   " does not fit in a segment");
  }
  Store* s = store.get();
  const int64_t now = WallMs();
  FAHA_RETURN_IF_ERROR(store->log_->Recover(
      [s, now](const RecordView& rec, uint64_t loc, uint64_t) { s->keys_.Replay(rec, loc, now); },
      report));
  store->applied_end_.store(store->log_->next_lsn());
  store->epoch_.store(options.log.epoch);
  store->hot_maintainer_.Start();
  store->cleaner_.Start();
  return store;
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
  // A backup persists what it took before it acknowledges it, so nothing
  // should wait here; if something did, Start() would count it durable.
  if (Status p = log_->PersistAppended_wt(); !p.ok() && !failed_.exchange(true)) {
    FAHA_LOG_ERROR("log persist failed, refusing writes from now on: %s", p.ToString().c_str());
  }
  options_.replicator = r;
  options_.log.epoch = epoch;
  log_->set_epoch_wt(epoch);
  epoch_.store(epoch);
  Start();
}

Status Store::TruncateLog(uint64_t lsn) {
  // Not while a cleaning pass holds views into segments this may remove.
  MutexLock pass(&cleaner_.pass_mu());
  MutexLock writer(&keys_.writer_mu());
  Keyspace::AllReaders readers(&keys_);
  FAHA_RETURN_IF_ERROR(log_->TruncateTo_wt(lsn));
  keys_.Clear();  // the replay below counts everything again
  const int64_t now = WallMs();
  auto replayed = log_->ForEachBatch(1, lsn, UINT64_MAX,
                                     [&](const nvm::BatchHeader&, std::string_view payload) {
                                       // A batch lies in one segment: its records' locations follow
                                       // its payload's.
                                       const uint64_t base = log_->LocationOf(payload.data());
                                       nvm::RecordIterator it(payload);
                                       for (RecordView rec; it.Next(&rec);)
                                         keys_.Replay(rec, base + it.offset(), now);
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
  // The thread that submits commits inline when nobody else is committing (a
  // replicated primary's only if the batch may be shipped at once), and a
  // single node may keep two syncs in flight when its log's window allows
  // (--syncs_in_flight; docs/architecture.md has the measurements).
  const bool single = options_.replicator == nullptr;
  const uint32_t max_syncing =
      single ? std::clamp<uint32_t>(options_.log.in_flight_batches, 1, kMaxSyncing) : 1;
  durable_write_ = max_syncing == 1;
  // A replicated primary's committing thread (often an I/O thread, inline)
  // does not wait for its own sync: it writes and ships, and the committer
  // syncs while the backups do. The next group is written only once that
  // batch is durable (MayShip_st), so at most one batch is written and not
  // durable, as before: recovery's rules are unchanged
  // (docs/architecture.md, "Write path: group commit").
  {
    MutexLock l(&synced_mu_);
    synced_end_ = log_->next_lsn();
  }
  // The committer exists before anyone may commit a batch (writes may be
  // queued already; a submitting thread commits inline once configured).
  if (options_.replicator) {
    committer_ = std::make_unique<Committer>(
        options_.replicator, options_.repl_timeout_ms,
        [this](const Committer::Batch& b) {
          keys_.Publish(b.base_location, b.bytes);
          applied_end_.store(b.end_lsn, std::memory_order_release);
        },
        [this](const Committer::Batch& b) { return PersistForCommitter(b); });
    committer_->Start();
  }
  queue_.Configure(/*inline_commit=*/true, max_syncing);
  sequencer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "faha-sequencer");
    SequencerLoop_st();
  });
}

Status Store::PersistForCommitter(const Committer::Batch& b) {
  if (b.unsynced_bytes > 0) {
    MutexLock l(&synced_mu_);
    if (synced_end_ >= b.end_lsn) return Status::OK();  // the sequencer synced it
  }
  // A failed sync may not fail again though its pages were lost (fsyncgate):
  // once one failed, nothing later is acknowledged, a batch without records
  // included (its replies may rest on the failed one).
  if (failed_.load()) return Status::IOError("an earlier batch failed to persist");
  if (b.unsynced_bytes == 0) return Status::OK();
  nvm::Log::AppendResult r{};
  r.base_location = b.base_location;
  r.first_lsn = b.first_lsn;
  r.bytes = b.unsynced_bytes;
  return SyncThrough(r, b.end_lsn);
}

Status Store::SyncThrough(const nvm::Log::AppendResult& r, uint64_t end_lsn) {
  // One at a time: a second caller finds the batch synced by the first (the
  // committer's and the sequencer's may meet) instead of syncing it again.
  MutexLock run(&sync_run_mu_);
  {
    MutexLock l(&synced_mu_);
    if (synced_end_ >= end_lsn) return Status::OK();
  }
  // A failed sync may not fail again though its pages were lost: after one,
  // nothing is durable (failed_ is set before the error is returned).
  const int64_t t0 = MonoUs();
  Status s =
      failed_.load() ? Status::IOError("an earlier batch failed to persist") : log_->Sync_any(r);
  if (!s.ok()) {
    if (!failed_.exchange(true)) {
      FAHA_LOG_ERROR("log persist failed, refusing writes from now on: %s", s.ToString().c_str());
    }
    return s;
  }
  metrics_->persist_us.Record(static_cast<uint64_t>(MonoUs() - t0));
  log_->NoteDurable_any(end_lsn);
  MutexLock l(&synced_mu_);
  synced_end_ = std::max(synced_end_, end_lsn);
  return Status::OK();
}

bool Store::LocalSyncDone() {
  MutexLock l(&synced_mu_);
  return failed_.load() || synced_end_ >= log_->next_lsn();
}

void Store::SyncLastWritten() {
  nvm::Log::AppendResult r;
  {
    MutexLock l(&synced_mu_);
    if (synced_end_ >= log_->next_lsn()) return;
    r = last_written_;
  }
  // A failure sets failed_: every later reply says so.
  (void)SyncThrough(r, nvm::BatchEndLsn(r.header));
}

void Store::Stop() {
  queue_.Stop();
  if (sequencer_.joinable()) sequencer_.join();
  queue_.WaitIdle();  // groups committed inline may still be syncing
  if (committer_) committer_->Finish();
}

StatusOr<nvm::Log::AppendResult> Store::AppendReplicated(const nvm::BatchHeader& header,
                                                         std::string_view payload) {
  if (!log_->HasRoom_wt(payload.size())) {
    // As the primary does: a batch that only deletes may use the reserve.
    // Its records decide that, so they are checked first (the frame's
    // checksum does not cover them; AppendReplicated_wt checks them again on
    // this rare path only).
    FAHA_RETURN_IF_ERROR(nvm::Log::CheckBatch(header, payload));
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
  keys_.Publish(appended.base_location, appended.header.payload_bytes);
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
  keys_.DigestData(&d.data_digest, &d.keys);
  return d;
}

bool Store::GetHeld(std::string_view key, std::string* copy, std::string_view* value,
                    std::shared_ptr<const void>* hold) const {
  // Not on a backup: its records past the commit point may be truncated and
  // written over while the reply is still being sent.
  return keys_.GetHeld(key, kHoldValueBytes, !backup_.load(), copy, value, hold);
}

// ---- What cleaning may treat as committed for good (CleanSafety) ----

void Store::SetBackup() {
  backup_.store(true);
  commit_hint_.store(0);
  clean_floor_.store(applied_end_.load());
}

void Store::set_clean_horizon(std::function<uint64_t()> horizon) {
  MutexLock l(&horizon_mu_);
  clean_horizon_ = std::move(horizon);
}

uint64_t Store::SafeLsn() const {
  if (failed_.load()) return 0;
  uint64_t safe = applied_end_.load(std::memory_order_acquire) - 1;
  if (backup_.load()) safe = std::min(safe, commit_hint_.load(std::memory_order_acquire));
  return safe >= clean_floor_.load() ? safe : 0;
}

bool Store::UncommittedKeys(uint64_t* covered_end, std::vector<uint64_t>* hashes) {
  if (!backup_.load()) return true;
  const uint64_t hint = commit_hint_.load(std::memory_order_acquire);
  MutexLock l(&recent_mu_);
  for (const Recent& b : recent_) {
    if (b.end_lsn <= hint + 1 || b.end_lsn <= *covered_end) continue;
    const char* base = log_->RecordPtr(b.base_location);
    nvm::RecordIterator it(base, b.bytes);
    for (RecordView r; it.Next(&r);) {
      if (r.type == RecordType::kFlushAll || r.type == RecordType::kFlushDb) return false;
      hashes->push_back(HashKey(r.key));
    }
  }
  if (!recent_.empty()) *covered_end = std::max(*covered_end, recent_.back().end_lsn);
  return true;
}

uint64_t Store::Horizon() {
  MutexLock l(&horizon_mu_);
  return clean_horizon_ ? clean_horizon_() : UINT64_MAX;
}

}  // namespace faha
