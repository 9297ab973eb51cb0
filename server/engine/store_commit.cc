// The Store's write path: group commit (inline or by the sequencer, taking
// groups from the WriteQueue), persisting, shipping to backups (then the
// Committer publishes and replies), or publishing and replying on a single node.
// See docs/architecture.md, "Write path: group commit".
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
#include "server/engine/store.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

StatusOr<nvm::Log::AppendResult> Store::WriteFramed_st(const nvm::BatchHeader& header,
                                                       std::string_view payload, size_t ops,
                                                       std::vector<WriteResult>* results) {
  auto appended = log_->AppendFramed_wt(header, payload, /*persist=*/false);
  if (!appended.ok()) {
    // Nothing of the group is durable here: a retry must not find its reply.
    for (const auto& [client, seq] : recorded_) keys_.clients().Forget(client, seq);
    FailWrites(appended.status(), results);
    return appended;
  }
  RecordBatch(header.record_count, payload.size(), ops);
  return appended;
}

void Store::RecordBatch(uint32_t records, size_t bytes, size_t ops) {
  metrics_->batches.fetch_add(1, std::memory_order_relaxed);
  metrics_->batch_records.fetch_add(records, std::memory_order_relaxed);
  metrics_->batch_bytes.Record(bytes);
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

void Store::ShipAndQueue_st(std::vector<Pending>* taken, std::vector<WriteResult>* results,
                            bool on_io_thread) {
  Committer::Batch f;
  f.end_lsn = log_->next_lsn();
  f.base_location = 0;
  f.bytes = 0;
  f.shipped_us = MonoUs();
  if (failed_.load()) {
    // The log failed in an earlier group: nothing is shipped, and a write
    // answered from the client table is answered the error too (its batch
    // may be the one that failed; the single node does the same).
    // (A group the log refused just now keeps its own error.)
    for (WriteResult& r : *results) {
      if (r.code != WriteResult::ErrorCode::kIoError) {
        r = WriteResult::IoError("the log failed earlier; this node refuses writes until restart");
      }
    }
  } else if (!batch_.empty()) {
    nvm::BatchHeader h = nvm::Log::FrameBatch(batch_.payload(), batch_.count(), log_->next_lsn(),
                                              options_.log.epoch);
    // The batch's buffer becomes the backups' frame (its headers go into the
    // builder's head room), and our own write takes the payload from it.
    // Backups start persisting while we do: one round trip after our own persist.
    ReplicationHook* repl = options_.replicator;
    auto frame = repl->Ship(h, batch_.Release(repl->SpareBuffer()));
    const std::string_view payload =
        std::string_view(*frame).substr(ReplicationHook::kShipHeadRoom);
    auto appended = WriteFramed_st(h, payload, taken->size(), results);
    if (appended.ok()) {
      StampLsns(h.first_lsn, results);
      f.end_lsn = h.first_lsn + h.record_count;
      f.base_location = appended->base_location;
      f.bytes = payload.size();
      f.first_lsn = h.first_lsn;
      f.unsynced_bytes = appended->bytes;
      {
        MutexLock l(&synced_mu_);
        last_written_ = *appended;
      }
      seq_inflight_.push_back(SeqInFlight{f.end_lsn, f.base_location, f.bytes});
      if (inflight_valid_) MergeInFlight_st(seq_inflight_.back());
    }
  }
  GroupReplies(taken, results, &f.replies);
  const bool written = f.unsynced_bytes > 0;
  // The sequencer syncs what it wrote (the next group forms meanwhile); an
  // I/O thread goes back to its connections.
  if (written && !on_io_thread) SyncLastWritten();
  const bool committer_next = committer_->Queue(std::move(f));
  if (written && on_io_thread && !committer_next) queue_.RequestSync();
}

void Store::Submit(WriteOp op, CompletionSink* sink, uint64_t conn_id) {
  queue_.Push(Write{std::move(op), sink, conn_id});
}

void Store::SubmitAll(std::vector<Write>* writes) {
  std::vector<Pending> taken;
  if (!queue_.PushAll(writes, &taken)) return;
  commit_role_.Take();                            // this thread is committing: the queue said so
  CommitGroup_st(&taken, /*on_io_thread=*/true);  // gives committing back
}

void Store::SequencerLoop_st() {
  std::vector<Pending> taken;
  while (true) {
    taken.clear();
    if (!queue_.TakeGroup(&taken)) return;  // stopping, and everything is committed
    if (taken.empty()) {
      SyncLastWritten();  // asked for: the committer is busy (RequestSync)
      continue;
    }
    commit_role_.Take();
    CommitGroup_st(&taken, /*on_io_thread=*/false);  // gives committing back
  }
}

void Store::ReleaseCommitting_st() {
  commit_role_.Give();
  queue_.ReleaseCommitting();
}

// A new group: an empty batch and overlay, and the in-flight batches that
// are published forgotten.
void Store::StartGroup_st() {
  batch_.Clear();
  overlay_.Reset();
  overlay_valid_ = false;
  results_.clear();
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
    inflight_overlay_.Reset();
    inflight_valid_ = false;
  }
}

// A retried write the client table answers (its reply kept, or too old to
// be kept): the answer is added to `results`. False for a new write.
bool Store::AnsweredFromTable_st(const WriteOp& op, std::vector<WriteResult>* results) {
  WriteResult r;
  switch (keys_.clients().Lookup(op.client_id, op.client_seq, &r)) {
    case ClientTable::Seen::kDuplicate:
      metrics_->duplicate_writes.fetch_add(1, std::memory_order_relaxed);
      from_table_.push_back(results->size());
      results->push_back(std::move(r));
      return true;
    case ClientTable::Seen::kForgotten:
      metrics_->duplicate_writes.fetch_add(1, std::memory_order_relaxed);
      from_table_.push_back(results->size());
      results->push_back(WriteResult::Error(
          "ERR this write (client " + std::to_string(op.client_id) + ", sequence " +
          std::to_string(op.client_seq) +
          ") is older than the replies kept for retries; it is not applied again"));
      return true;
    case ClientTable::Seen::kNew:
      break;
  }
  return false;
}

// The group's batch gets no room in the log (a full disk, a failed device):
// it is neither written nor shipped.
void Store::RefuseGroup_st(const Status& room) {
  // Replies of retried writes answered from the client table stand; every
  // other result is the error (a later op's result may depend on an earlier
  // one's refused write).
  for (const auto& [client, seq] : recorded_) keys_.clients().Forget(client, seq);
  std::vector<bool> keep(results_.size(), false);
  for (size_t i : from_table_) keep[i] = true;
  if (room.code() == Status::Code::kBusy) {
    metrics_->log_full_refusals.fetch_add(1, std::memory_order_relaxed);
  } else if (room.code() == Status::Code::kIOError && !failed_.exchange(true)) {
    FAHA_LOG_ERROR("log append failed, refusing writes from now on: %s", room.ToString().c_str());
  }
  const WriteResult refused = WriteResult::IoError(room.code() == Status::Code::kBusy
                                                       ? room.message()
                                                       : "write not durable: " + room.ToString());
  for (size_t i = 0; i < results_.size(); i++) {
    if (!keep[i]) results_[i] = refused;
  }
  batch_.Clear();
  overlay_.Reset();
  overlay_valid_ = false;
}

namespace {
// What the client table keeps of a reply, and logs: a big one (an EXEC or a
// script that read much) becomes an error that says so, as the log batch
// and the table are no place for megabytes of reads; a retry then learns
// that its write was applied, not its reply.
// The usual reply is kept as it is, not copied (*big is used only for a big one).
constexpr size_t kMaxKeptReply = 64 << 10;
const WriteResult& KeptForRetry(const WriteResult& r, WriteResult* big) {
  if (r.str.size() <= kMaxKeptReply) return r;
  *big =
      WriteResult::Error("ERR this write was applied; its reply (" + std::to_string(r.str.size()) +
                         " bytes) was too large to keep for a retry");
  big->lsn = r.lsn;
  return *big;
}
}  // namespace

bool Store::MayShip_st(std::vector<Pending>* taken, bool on_io_thread) {
  if (!LocalSyncDone()) {
    // The committer still syncs our last batch: this group waits, and grows,
    // on the sequencer (an I/O thread puts it back and goes on).
    queue_.PutBack(taken);
    if (!on_io_thread) SyncLastWritten();
    return false;
  }
  const int64_t oldest = (*taken)[0].op.start_us > 0 ? (*taken)[0].op.start_us : MonoUs();
  // An I/O thread commits a replicated group only if it may be shipped at
  // once: waiting for room in the window, or for backups, is the
  // sequencer's (the I/O thread goes back to its other connections).
  Status ready = options_.replicator->WaitWritable(
      on_io_thread ? 0 : oldest + static_cast<int64_t>(options_.repl_timeout_ms) * 1000);
  if (ready.ok()) return true;
  if (on_io_thread) {
    queue_.PutBack(taken);
  } else {
    for (size_t i = 0; i < taken->size(); i++)
      results_.push_back(WriteResult::NoReplicas(ready.message()));
    ShipAndQueue_st(taken, &results_, on_io_thread);
  }
  return false;
}

void Store::CommitGroup_st(std::vector<Pending>* taken_ptr, bool on_io_thread) {
  std::vector<Pending>& taken = *taken_ptr;
  nvm::BatchBuilder& batch = batch_;
  std::vector<WriteResult>& results = results_;
  {
    StartGroup_st();
    if (options_.replicator && !MayShip_st(&taken, on_io_thread)) {
      ReleaseCommitting_st();
      return;
    }
    if (on_io_thread) metrics_->inline_groups.fetch_add(1, std::memory_order_relaxed);
    const int64_t now = WallMs();
    for (size_t i = 0; i < taken.size(); i++) {
      const size_t mark_bytes = batch.bytes();
      const uint32_t mark_count = batch.count();
      const KeyOverlay::Flushes mark_flushed = overlay_.flushes();
      const WriteOp& op = taken[i].op;
      if (op.client_id != 0 && AnsweredFromTable_st(op, &results)) continue;
      WriteResult r = Evaluate_st(op, &batch, now);
      if (r.undo) {
        batch.Truncate(mark_bytes, mark_count);
        overlay_.Reset(mark_flushed);
        overlay_valid_ = false;
      }
      if (op.client_id != 0) {
        r.lsn = batch.count() + 1;  // made absolute once the batch has its first LSN
        WriteResult big;
        batch.Add(RecordType::kClientReply, {}, ClientTable::EncodeReply(KeptForRetry(r, &big)), 0,
                  op.client_id, op.client_seq);
      }
      const bool too_big_for_batch = batch.bytes() > options_.max_batch_bytes;
      if (too_big_for_batch || batch.bytes() > log_->max_payload_bytes()) {
        // The estimate at dequeue time missed (EXPIRE and INCR rewrite the
        // current value): undo this op and leave it and the rest for the next
        // batch. Alone in a batch, an op that does not fit is refused.
        batch.Truncate(mark_bytes, mark_count);
        overlay_.Reset(mark_flushed);
        overlay_valid_ = false;
        if (i > 0) {
          std::vector<Pending> rest(std::make_move_iterator(taken.begin() + i),
                                    std::make_move_iterator(taken.end()));
          taken.resize(i);
          queue_.PutBack(&rest);
          break;
        }
        r = WriteResult::Error("ERR this write needs more than one log batch (--max_batch_kb)");
      } else if (op.client_id != 0) {
        WriteResult big;
        keys_.clients().Record(op.client_id, op.client_seq, KeptForRetry(r, &big));
        recorded_.emplace_back(op.client_id, op.client_seq);
      }
      results.push_back(std::move(r));
    }
    if (!batch.empty() && !log_->HasRoom_wt(batch.bytes())) {
      // A new segment first, if the batch needs one: on a full disk the group
      // is answered with the error and nothing of it is written or shipped,
      // and a later group tries again (writes resume once space is freed).
      Status room = log_->MakeRoom_wt(batch.bytes(), OnlyRemovals(batch.payload()));
      if (!room.ok()) RefuseGroup_st(room);
    }

    if (options_.replicator) {
      ShipAndQueue_st(&taken, &results, on_io_thread);
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
  // one syncs, so up to kMaxSyncing syncs are in flight (the queue's tickets). Batches are
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
      RecordBatch(batch.count(), batch.bytes(), taken.size());
    } else {
      FailWrites(appended.status(), &results);
      answered_error = true;
    }
  }
  commit_role_.Give();
  const uint64_t ticket = queue_.BeginSync();

  Status synced = written && !durable_write_ ? log_->Sync_any(*written) : Status::OK();
  queue_.WaitTurn(ticket);
  if (!answered_error && (!synced.ok() || failed_.load())) {
    // An earlier batch failed to become durable, or this one did: nothing
    // from here on is published, nor answered as if it were (a group that
    // wrote nothing may have been evaluated against the failed batch).
    FailWrites(synced.ok() ? Status::IOError("an earlier batch failed to persist") : synced,
               &results);
  } else if (written) {
    metrics_->persist_us.Record(static_cast<uint64_t>(MonoUs() - t0));
    log_->NoteDurable_any(nvm::BatchEndLsn(written->header));
    keys_.Publish(written->base_location, batch_bytes);
    applied_end_.store(nvm::BatchEndLsn(written->header), std::memory_order_release);
  }
  Replies replies;
  GroupReplies(&taken, &results, &replies);
  DeliverAll(&replies);
  queue_.EndSync();
}

// A batch that writes no value (DEL, FLUSHALL, and their client replies):
// on a full disk it may use the log's reserve, since it frees space once
// cleaned (Redis's deny-oom: refuse what grows, allow what shrinks).
bool Store::OnlyRemovals(std::string_view payload) {
  nvm::RecordIterator it(payload);
  for (RecordView r; it.Next(&r);) {
    if (r.type == RecordType::kPut) return false;
  }
  return !it.malformed();
}

void Store::FailWrites(const Status& why, std::vector<WriteResult>* results) {
  // Only an I/O error leaves the log in doubt; anything else is this batch's fault.
  if (why.code() == Status::Code::kIOError && !failed_.exchange(true)) {
    FAHA_LOG_ERROR("log append failed, refusing writes from now on: %s", why.ToString().c_str());
  }
  // The batch may still be whole on the disk, or on a backup it was shipped
  // to: a restart or a failover may show it. It is in no reply and no read.
  for (auto& r : *results) {
    r = WriteResult::IoError("write not acknowledged, it may or may not survive a restart: " +
                             why.ToString());
  }
}

}  // namespace faha
