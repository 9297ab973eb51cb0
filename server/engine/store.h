// Store: the key-value state of one node, a facade over the engine's parts:
// the log (nvm/log.h), the Keyspace readers see (index, hot layer, client
// table), the WriteQueue, the HotMaintainer (thread faha-hot), the Cleaner
// (faha-clean) and, on a replicated primary, the Committer (faha-committer).
// It opens and recovers them, runs the group commit, applies a backup's
// stream and truncates it, and answers the cleaner's safety questions.
//
// Writes: any thread calls Submit(); the committing thread (suffix _st: the
// sequencer, or the submitting thread itself when no group is being committed
// and, on a replicated primary, the batch may be shipped at once; see
// SubmitAll) takes a group from the queue, evaluates each write against the
// committed state plus the writes before it (so SET NX, INCR and DEL counts
// are exact), appends the batch to the log with one persist (pipelined group
// commit: while one batch persists, the next one fills), publishes it to the
// keyspace and only then hands the replies to their CompletionSinks. No
// reader sees an uncommitted value.
//
// Reads: Get/Exists/Ttl/Scan from any thread; they see committed data only.
#ifndef FAHA_SERVER_ENGINE_STORE_H_
#define FAHA_SERVER_ENGINE_STORE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/checksum.h"
#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "common/thread_role.h"
#include "faha/status.h"
#include "nvm/log.h"
#include "server/engine/cleaner.h"
#include "server/engine/client_table.h"
#include "server/engine/committer.h"
#include "server/engine/hot_cache.h"
#include "server/engine/hot_maintainer.h"
#include "server/engine/index.h"
#include "server/engine/key_overlay.h"
#include "server/engine/keyspace.h"
#include "server/engine/replica_log.h"
#include "server/engine/replication_hook.h"
#include "server/engine/write_op.h"
#include "server/engine/write_queue.h"
#include "server/metrics/metrics.h"

namespace faha {

struct StoreOptions {
  std::string dir;
  nvm::LogOptions log;
  nvm::ZeroFill zero_fill = nvm::ZeroFill::kAuto;  // Open's file device (--segment_zero_fill)
  size_t max_batch_bytes = 8 << 20;
  // Primary of a replicated cluster: batches are shipped through this and
  // committed (made visible, acknowledged) by a committer thread once the
  // in-sync backups hold them. Null on a single node and on a backup.
  ReplicationHook* replicator = nullptr;
  int repl_timeout_ms = 1000;
  // DRAM for the hot layer (HotCache): hot keys' values held inline. 0: off.
  size_t hot_cache_bytes = 0;
  // How often the hot layer's counts halve.
  int hot_age_ms = 1000;
  // Log cleaning: thresholds and interval (CleanerOptions, server/engine/cleaner.h).
  CleanerOptions cleaning;
};

class Store final : public ReplicaLog, private CleanSafety {
 public:
  // Opens (recovering) the store in options.dir.
  static StatusOr<std::unique_ptr<Store>> Open(const StoreOptions& options, Metrics* metrics,
                                               nvm::RecoveryReport* report);
  // Same, on an explicit device (tests).
  static StatusOr<std::unique_ptr<Store>> OpenOnDevice(std::shared_ptr<nvm::LogDevice> device,
                                                       const StoreOptions& options,
                                                       Metrics* metrics,
                                                       nvm::RecoveryReport* report);
  ~Store() override;

  // Primary of a cluster: ship batches through `r` (before Start).
  void set_replicator(ReplicationHook* r) { options_.replicator = r; }
  // A backup promoted to primary of `epoch`: later batches carry that epoch
  // and ship through `r`; starts the sequencer. REQUIRES: the backup stopped
  // applying its old primary's stream.
  void BecomePrimary(ReplicationHook* r, uint64_t epoch);
  uint64_t epoch() const { return epoch_.load(std::memory_order_relaxed); }
  void Start();
  // Commits everything submitted so far, then stops the sequencer.
  void Stop();

  using Write = QueuedWrite;
  // Queues a write; its reply reaches `sink` after the write is durable.
  void Submit(WriteOp op, CompletionSink* sink, uint64_t conn_id);
  // Queues all of *writes in order (one lock and one wake-up) and clears it.
  void SubmitAll(std::vector<Write>* writes);

  // Readers hold a ReadGuard for a whole command (Keyspace::ReadGuard): a
  // command sees every batch entirely or not at all.
  using ReadGuard = Keyspace::ReadGuard;
  [[nodiscard]] ReadGuard LockForRead() const { return keys_.LockForRead(); }

  // The reads of Keyspace (keyspace.h). REQUIRE: a ReadGuard held by the
  // caller (for multi-key consistency).
  bool Get(std::string_view key, std::string* value) const { return keys_.Get(key, value); }
  // As Get, but a value of kHoldValueBytes or more read from the log is not
  // copied: *value views it in the log and *hold keeps that readable after
  // the ReadGuard is released (Log::HoldSegment). Smaller values (and those
  // of the hot layer) are copied to *copy, which *value then views.
  static constexpr size_t kHoldValueBytes = 64 << 10;
  bool GetHeld(std::string_view key, std::string* copy, std::string_view* value,
               std::shared_ptr<const void>* hold) const;
  bool Exists(std::string_view key) const { return keys_.Exists(key); }
  bool Read(std::string_view key, bool want_value, KeyState* out) const {
    return keys_.Read(key, want_value, out);
  }
  int64_t PttlMs(std::string_view key) const { return keys_.PttlMs(key); }
  uint64_t ScanExpired(uint64_t cursor, size_t count, int64_t now_ms,
                       std::vector<std::string>* keys, size_t* sampled) const {
    ReadGuard guard = LockForRead();
    return keys_.ScanExpired(cursor, count, now_ms, keys, sampled);
  }
  uint64_t Scan(uint64_t cursor, size_t count, std::vector<std::string>* keys) const {
    return keys_.Scan(cursor, count, keys);
  }

  // Backup: appends a batch received from the primary, byte for byte; it is
  // durable once PersistReplicated returns. PublishReplicated then makes it
  // visible to readers. All from the one thread that applies the primary's
  // stream (or under the lock that serialises it).
  StatusOr<nvm::Log::AppendResult> AppendReplicated(const nvm::BatchHeader& header,
                                                    std::string_view payload) final;
  Status PersistReplicated() final;
  void PublishReplicated(const nvm::Log::AppendResult& appended) final;
  // Backup: drops the log from the batch at `lsn` on (an unacknowledged
  // suffix its new primary does not have) and rebuilds the index and the
  // client table from what remains. Readers wait meanwhile. From the thread
  // that applies the primary's stream.
  Status TruncateLog(uint64_t lsn) final;

  // What FAHA.DIGEST reports: the committed LSN, a digest of the committed
  // batches (chained batch checksums) and of the visible data.
  struct Digest {
    uint64_t lsn = 0;
    uint64_t log_digest = 0;
    uint64_t data_digest = 0;
    uint64_t keys = 0;
  };
  // REQUIRES: a ReadGuard held by the caller.
  StatusOr<Digest> ComputeDigest() const;

  uint64_t KeyCount() const { return keys_.KeyCount(); }
  size_t ClientCount() const { return keys_.clients().size(); }
  uint64_t KeysWithExpiry() const { return keys_.KeysWithExpiry(); }
  // Per namespace (server/engine/namespaces.h): a database's DBSIZE.
  uint64_t KeyCount(int n) const { return keys_.KeyCount(n); }
  uint64_t KeysWithExpiry(int n) const { return keys_.KeysWithExpiry(n); }
  // The physical database that logical database `db` names now.
  int PhysicalDb(int db) const { return keys_.PhysicalDb(db); }
  size_t IndexMemoryBytes() const { return keys_.IndexMemoryBytes(); }
  const HotCache& hot() const { return keys_.hot(); }
  // One pass of the hot layer's maintenance (the faha-hot thread runs it every
  // 10 ms, backing off to 640 ms while idle): promotes candidates, demotes to
  // stay within the budget, and ages the counts if `age`. Public for tests.
  void MaintainHot(bool age) { hot_maintainer_.Pass(age ? 1 : 0); }
  // ---- Log cleaning (docs/architecture.md, "Log cleaning") ----
  // One pass: compacts the emptiest sealed segment below the threshold, if
  // any may be cleaned. Returns whether a segment was replaced. Public for
  // tests; the faha-clean thread runs it every clean_interval_ms.
  StatusOr<bool> CleanOnce() { return cleaner_.CleanOnce(); }
  // This node is a backup: its index may hold records its primary has not
  // committed yet (they could be truncated), so cleaning judges with what the
  // primary said is committed (SetCommitHint, from its heartbeats).
  void SetBackup() final;
  void SetCommitHint(uint64_t committed_lsn) final {
    commit_hint_.store(committed_lsn, std::memory_order_release);
  }
  // Primary: no LSN at or after horizon() may be cleaned (a backup is still
  // catching up from there).
  void set_clean_horizon(std::function<uint64_t()> horizon);
  // Estimated live fraction of a sealed segment (tests, INFO).
  double LiveFraction(const nvm::Log::SegmentInfo& seg) const { return keys_.LiveFraction(seg); }

  const nvm::Log& log() const final { return *log_; }
  nvm::Log* mutable_log() { return log_.get(); }
  // The last LSN visible to readers (committed on a primary, applied on a backup).
  uint64_t committed_lsn() const final { return applied_end_.load(std::memory_order_acquire) - 1; }
  bool failed() const final { return failed_.load(); }

 private:
  Store(const StoreOptions& options, Metrics* metrics, std::unique_ptr<nvm::Log> log);
  void SequencerLoop_st();
  // Turns the record indexes in results' lsn fields into LSNs.
  static void StampLsns(uint64_t first_lsn, std::vector<WriteResult>* results);

  using Pending = Write;
  // Evaluates, persists and publishes one group of writes and delivers their
  // replies (single node), or ships and queues it for the committer
  // (replicated primary). REQUIRES: this thread is committing (the
  // sequencer, or a thread committing inline in SubmitAll).
  // on_io_thread: committing inline (SubmitAll), which never waits for the
  // replication window.
  void CommitGroup_st(std::vector<Pending>* taken, bool on_io_thread) RELEASE(commit_role_);
  // Replicated primary: whether the group may be shipped now (waiting for
  // room and backups, up to the timeout, unless on an I/O thread). If not,
  // the group went back to the queue (I/O thread) or was answered NOREPLICAS.
  bool MayShip_st(std::vector<Pending>* taken, bool on_io_thread) REQUIRES(commit_role_);
  // Single node, after a group is evaluated into batch_: writes it, gives
  // committing back, syncs it, and publishes it and delivers its replies in
  // write order.
  void SyncPublishAndReply(std::vector<Pending>* taken, std::vector<WriteResult>* results)
      RELEASE(commit_role_);
  // Gives committing back (replicated primary) and wakes the sequencer if
  // writes wait.
  void ReleaseCommitting_st() RELEASE(commit_role_);
  // Counts a committed batch of `ops` client writes in the metrics.
  void RecordBatch(uint32_t records, size_t bytes, size_t ops);
  // Turns every result into -IOERR; an I/O error fails the store for good.
  void FailWrites(const Status& why, std::vector<WriteResult>* results);
  // Replicated primary: ships batch_, writes it and queues it for the
  // committer. The sequencer then syncs it itself; an I/O thread leaves the
  // sync to the committer, or to the sequencer if the committer is busy.
  void ShipAndQueue_st(std::vector<Pending>* taken, std::vector<WriteResult>* results,
                       bool on_io_thread) REQUIRES(commit_role_);
  // Writes a batch framed by `header` (not yet durable: the committer, or the
  // sequencer before the next group, syncs it) and records its metrics; on
  // failure turns every result into an error.
  StatusOr<nvm::Log::AppendResult> WriteFramed_st(const nvm::BatchHeader& header,
                                                  std::string_view payload, size_t ops,
                                                  std::vector<WriteResult>* results)
      REQUIRES(commit_role_);
  // Each write's result, grouped by sink in submission order (one Deliver per sink).
  static void GroupReplies(std::vector<Pending>* taken, std::vector<WriteResult>* results,
                           Replies* replies);
  // The in-flight overlay: state of a key after the batches shipped but not
  // yet committed. Returns false if no in-flight batch touches the key.
  bool LookupInFlight_st(std::string_view key, bool want_value, int64_t now_ms, KeyState* out)
      REQUIRES(commit_role_);
  // Committed state of key (ignoring the batch being built).
  KeyState Lookup_st(std::string_view key, bool want_value, int64_t now_ms) REQUIRES(commit_role_);
  void StartGroup_st() REQUIRES(commit_role_);
  bool AnsweredFromTable_st(const WriteOp& op, std::vector<WriteResult>* results)
      REQUIRES(commit_role_);
  void RefuseGroup_st(const Status& room) REQUIRES(commit_role_);
  WriteResult Evaluate_st(const WriteOp& op, nvm::BatchBuilder* batch, int64_t now_ms)
      REQUIRES(commit_role_);
  // State of key for a write being evaluated: the batch's own earlier writes
  // win over the in-flight batches, which win over the index.
  KeyState Current_st(std::string_view key, bool want_value, const nvm::BatchBuilder& batch,
                      int64_t now_ms) REQUIRES(commit_role_);
  // The WriteContext a command's WriteEval gets: the batch being built.
  class BatchContext;
  void Put_st(nvm::BatchBuilder* batch, std::string_view key, std::string_view value,
              int64_t expire_at_ms) REQUIRES(commit_role_);
  void Delete_st(nvm::BatchBuilder* batch, std::string_view key) REQUIRES(commit_role_);
  // Builds overlay_ from the records already in `batch` (it is built lazily:
  // batches of plain SETs never need it).
  void BuildOverlay_st(const nvm::BatchBuilder& batch) REQUIRES(commit_role_);
  // CleanSafety (what cleaning may treat as committed for good).
  uint64_t SafeLsn() const override;
  uint64_t Horizon() override;
  bool IsBackup() const override { return backup_.load(); }
  bool UncommittedKeys(uint64_t* covered_end, std::vector<uint64_t>* hashes) override;

  StoreOptions options_;
  Metrics* metrics_;
  std::unique_ptr<nvm::Log> log_;
  Keyspace keys_;
  HotMaintainer hot_maintainer_;
  Cleaner cleaner_;
  std::atomic<bool> backup_{false};
  std::atomic<uint64_t> commit_hint_{UINT64_MAX};
  // Nothing below this LSN is known committed after a (re)start, a
  // promotion or a truncation until a commit at or beyond it.
  std::atomic<uint64_t> clean_floor_{0};
  Mutex horizon_mu_;
  std::function<uint64_t()> clean_horizon_ GUARDED_BY(horizon_mu_);
  // Backup: batches applied that the primary may not have committed yet.
  struct Recent {
    uint64_t end_lsn;
    uint64_t base_location;
    size_t bytes;
  };
  Mutex recent_mu_;
  std::deque<Recent> recent_ GUARDED_BY(recent_mu_);
  std::atomic<uint64_t> epoch_{0};
  std::atomic<bool> failed_{false};

  // One group commits at a time, on the sequencer or, when nobody else is
  // committing, inline on the thread that submits (SubmitAll; a replicated
  // primary's only if the batch may be shipped at once): the queue says who.
  // The _st members below belong to the thread that is committing: it takes
  // commit_role_ (and gives it back before it tells the queue it is done).
  WriteQueue queue_;
  ThreadRole commit_role_{"the store's committing thread"};
  // Single node: at most this many groups written and syncing at once.
  static constexpr uint32_t kMaxSyncing = 2;
  // One group syncing at a time: a batch is written and synced in one call.
  // Set by Start() before any thread commits; read by committers.
  bool durable_write_ = true;
  // A replicated primary: the committing thread writes a batch and ships it,
  // the committer syncs it.
  Status PersistForCommitter(const Committer::Batch& b);
  // A replicated primary: whether every batch written is durable here (or the
  // log failed). At most one batch is written and not yet durable, so that
  // the next group forms while it syncs, as it did while the committing
  // thread synced; the sequencer syncs it itself rather than wait for the
  // committer, which may be waiting for the backups of an earlier batch.
  bool LocalSyncDone();
  // Makes the last batch written durable (SyncThrough) unless it is already.
  void SyncLastWritten();
  // Syncs `r` (the last batch written, ending at end_lsn), records it
  // durable, or fails the log.
  Status SyncThrough(const nvm::Log::AppendResult& r, uint64_t end_lsn);
  Mutex sync_run_mu_;  // one SyncThrough at a time; taken before synced_mu_
  Mutex synced_mu_;
  uint64_t synced_end_ GUARDED_BY(synced_mu_) = 0;  // LSNs below it are durable here
  nvm::Log::AppendResult last_written_ GUARDED_BY(synced_mu_){};
  nvm::BatchBuilder batch_ GUARDED_BY(commit_role_){ReplicationHook::kShipHeadRoom};
  std::vector<WriteResult> results_ GUARDED_BY(commit_role_);
  // (client id, sequence) of the writes this group recorded in clients_.
  std::vector<std::pair<uint64_t, uint64_t>> recorded_ GUARDED_BY(commit_role_);
  // Indexes of this group's results answered from the client table.
  std::vector<size_t> from_table_ GUARDED_BY(commit_role_);
  static bool OnlyRemovals(std::string_view payload);
  std::thread sequencer_;

  // The newest record of each key written by the batch being built (payload
  // offsets), and whether it flushed everything; the map is built lazily
  // (batches of plain SETs never need it): valid once it reflects the batch.
  KeyOverlay overlay_ GUARDED_BY(commit_role_);
  bool overlay_valid_ GUARDED_BY(commit_role_) = false;
  std::atomic<uint64_t> applied_end_{1};  // LSN after the last batch visible to readers

  // Replicated primary: publishes and answers the batches shipped.
  std::unique_ptr<Committer> committer_;
  // The committing thread's view of the same batches, for evaluating later
  // writes: where each is, and an overlay of their newest record per key (log
  // locations), rebuilt once one of them is published.
  struct SeqInFlight {
    uint64_t end_lsn;
    uint64_t base_location;
    size_t bytes;
  };
  std::deque<SeqInFlight> seq_inflight_ GUARDED_BY(commit_role_);
  KeyOverlay inflight_overlay_ GUARDED_BY(commit_role_);
  bool inflight_valid_ GUARDED_BY(commit_role_) = false;
  void MergeInFlight_st(const SeqInFlight& b) REQUIRES(commit_role_);
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_STORE_H_
