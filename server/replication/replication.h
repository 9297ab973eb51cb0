// Replication: a primary ships every batch of its log to its backups and
// commits a batch only when each in-sync backup holds it durably; a backup
// stores the primary's batches byte for byte in its own log, acknowledges,
// then applies them to its index. Both sides speak rdma/repl_frame.h over a
// Transport chosen at run time (docs/architecture.md, "Replication").
//
// Session, after the transport's mutual authentication:
//   primary -> HELLO  epoch, lsn = the primary's next LSN, body = its client address
//   backup  -> HELLO  epoch, lsn = the backup's next LSN,
//                     body = first LSN and checksum of the backup's last batch
//              (or ERROR: stale epoch, and the session ends)
//   primary -> BATCH ... from the backup's next LSN: first from the primary's
//              log (catch-up), then the live stream of new batches
//   backup  -> ACK    lsn = last LSN durable in the backup's log
// A backup joins the in-sync set once it has acknowledged every committed batch.
#ifndef FAHA_SERVER_REPLICATION_REPLICATION_H_
#define FAHA_SERVER_REPLICATION_REPLICATION_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "faha/status.h"
#include "nvm/epoch_file.h"
#include "nvm/log.h"
#include "rdma/transport.h"
#include "server/commands/role.h"
#include "server/engine/replication_hook.h"

namespace faha {

// How long a replication thread's blocking wait lasts before it looks at
// stopping_ (or a newer session) again.
inline constexpr int kReplPollMs = 100;

class ReplicaLog;

struct ReplicatorOptions {
  std::vector<std::string> backups;  // HOST:PORT of each backup's replication port
  size_t window = 16;                // batches shipped but not yet committed
  int timeout_ms = 1000;             // an in-sync backup that does not ack in time is dropped
  size_t min_sync_backups = 0;       // writes fail while fewer backups are in sync
  uint64_t epoch = 1;
  std::string advertise;  // this primary's client address, told to backups
  uint64_t catchup_chunk_bytes = 4 << 20;
  int connect_timeout_ms = 1000;
  // Every session sends a HEARTBEAT this often (0: never), also while
  // batches flow; backups echo its send time in their ACK.
  int heartbeat_ms = 0;
  // Cluster mode (set by the etcd coordinator): the in-sync set lives in the
  // cluster configuration. A backup enters it only through PromoteCaughtUp
  // (the caller then records it there) and leaves it only once this callback
  // has removed it there: until then every commit waits for it, also while
  // it is disconnected. The callback returns an error if the configuration
  // moved on (this primary was deposed); nothing then commits without it.
  std::function<Status(const std::vector<std::string>& addresses)> drop_backups;
  // Epoch history {epoch, first LSN of that epoch}, oldest first: tells a
  // returning backup whose log diverges where to truncate it.
  std::vector<std::pair<uint64_t, uint64_t>> history;
};

// The primary's side. Threads: the store's committing thread (its sequencer,
// or an I/O thread committing inline) calls WaitWritable, Ship and
// SpareBuffer (Ship sends a new batch itself to each backup that has nothing
// else in progress); its committer calls WaitDurable and Committed; each backup
// has a sender thread (connection, catch-up, heartbeats, the batches and rests
// of batches Ship did not send) and, while connected, a receiver thread (acks).
class Replicator final : public ReplicationRole, public ReplicationHook {
 public:
  Replicator(const ReplicatorOptions& options, std::unique_ptr<rdma::Transport> transport,
             const nvm::Log* log);
  ~Replicator() override;

  // next_lsn: the log's next LSN, where the live stream starts.
  void Start(uint64_t next_lsn);
  void Stop();

  // Waits until a batch may be shipped: fewer than `window` in flight and at
  // least min_sync_backups in sync. Unavailable at the deadline (MonoUs),
  // naming each backup that is not in sync and why.
  Status WaitWritable(int64_t deadline_us) override;
  // Hands one batch, framed with its header, to every backup's stream.
  std::shared_ptr<const std::string> Ship(const nvm::BatchHeader& header,
                                          std::string frame) override;
  std::string SpareBuffer() override;
  // Waits until every in-sync backup holds LSNs below `end_lsn` durably and at
  // least min_sync_backups are in sync. At the deadline, in-sync backups that
  // have not acknowledged are dropped from the set (they reconnect and catch
  // up); if the rest still suffice the batch is durable, else Unavailable.
  // A deadline of 0 waits until Stop().
  Status WaitDurable(uint64_t end_lsn, int64_t deadline_us) override;
  // The first LSN some connected backup still needs from our log (catch-up):
  // log cleaning leaves it and what follows alone. UINT64_MAX if none.
  uint64_t CleanHorizon() const;
  // The committer made LSNs below end_lsn visible: their frames are dropped.
  void Committed(uint64_t end_lsn) override;

  bool is_backup() const override { return false; }
  void AppendInfo(std::string* text) const override;
  void AppendRole(std::string* out) const override;
  std::string primary_address() const override { return options_.advertise; }
  size_t in_sync_count() const;

  // Cluster mode: starts shipping to one more backup (no-op if known).
  void AddPeer(const std::string& address);
  // Cluster mode: marks in sync every connected backup that holds every
  // committed batch and is not in sync yet, and returns their addresses.
  std::vector<std::string> PromoteCaughtUp();
  // Cluster mode: removes from the in-sync set (through drop_backups) the
  // backups that have not acknowledged anything for `silent_ms`.
  Status DropSilent(int silent_ms);
  // Addresses of the backups in the in-sync set, except those being removed
  // from the configuration right now (they stay required until that is done).
  std::vector<std::string> InSyncAddresses() const;
  // The oldest, over the in-sync backups, of the send time (MonoUs) of the
  // newest heartbeat each acknowledged; 0 if none is in sync or one has not
  // acknowledged a heartbeat yet. A backup that runs for primary stops
  // acknowledging first, so this primary heard every in-sync backup agree
  // that it still leads at that time. Lock-free: read per command.
  int64_t in_sync_echo_us() const { return in_sync_echo_us_.load(std::memory_order_acquire); }
  const ReplicatorOptions& options() const { return options_; }

 private:
  struct Shipped {
    uint64_t first_lsn;
    uint64_t end_lsn;
    std::shared_ptr<const std::string> frame;
  };
  struct Peer {
    std::string address;
    std::thread thread;
    // Guarded by mu_.
    bool connected = false;
    bool in_sync = false;
    bool kick = false;          // the committer dropped it: end the session
    bool session_dead = false;  // the receiver saw the session end
    uint64_t acked_end = 0;     // the backup holds every LSN below this durably
    uint64_t send_next = 0;     // next LSN to send
    int64_t last_ack_us = 0;    // when its last ACK arrived (MonoUs)
    int64_t joined_us = 0;      // when it last joined the in-sync set (MonoUs)
    int64_t echo_us = 0;        // send time of the newest heartbeat it acknowledged
    bool leaving = false;       // being removed from the configuration's in_sync
    // Direct sends (Ship): the session's channel while the committing thread
    // may send a new batch on it itself, when the sender thread has nothing
    // else to send (SendsWithoutWaiting; not over verbs).
    rdma::Channel* live = nullptr;
    bool sending = false;     // a thread is sending on the channel (the sender or Ship)
    bool wants_slot = false;  // the sender waits for Ship's send to end (Ship then leaves it be)
    // What the socket did not take of a frame Ship sent: the sender sends it
    // before anything else.
    std::shared_ptr<const std::string> rest;
    size_t rest_from = 0;
    std::string state = "connecting";
    std::string last_error;
    uint64_t sessions = 0;
  };

  // How long one send or receive of a session may take: the replication
  // timeout, but never under a second.
  int SendTimeoutMs() const { return std::max(options_.timeout_ms, 1000); }
  void PeerLoop(Peer* peer);
  Status RunSession(Peer* peer, rdma::Channel* ch);
  enum class Work { kEnded, kHeartbeat, kSend };
  // Waits until there is something to send to `peer` and nobody else sends
  // to it, or a heartbeat is due (then encoded in *out, stamped in
  // *last_heartbeat_us), or the session ends. For kHeartbeat and kSend the
  // caller holds the channel (peer->sending) and gives it back.
  Work WaitForWork(Peer* peer, int64_t* last_heartbeat_us, std::string* out) EXCLUDES(mu_);
  // Sends what `peer` needs next, holding its channel: the rest of a frame
  // Ship began, frames from the ring, or a chunk of catch-up from our log.
  Status SendNext(Peer* peer, rdma::Channel* ch, bool full_copy,
                  std::vector<std::shared_ptr<const std::string>>* frames, std::string* buf)
      EXCLUDES(mu_);
  // Ship's own send of a new frame to peers that had nothing else to send.
  void SendDirect(const std::shared_ptr<const std::string>& frame) EXCLUDES(mu_);
  // HELLO both ways and the join point checked: the LSN the backup needs
  // next, in *backup_next. An error ends the session (a backup that must
  // truncate was told to).
  Status OpenSession(Peer* peer, rdma::Channel* ch, uint64_t ship_end, uint64_t* backup_next)
      EXCLUDES(mu_);
  // Sends the batches [from, limit) from our log (one chunk) and moves the
  // peer's send_next past them. Unavailable if cleaning compacted what the
  // backup needs (it was told to start over).
  Status SendCatchUp(Peer* peer, rdma::Channel* ch, uint64_t from, uint64_t limit, bool full_copy,
                     std::string* buf) EXCLUDES(mu_);
  // Sends frames from the ring in one write (`buf` joins several).
  Status SendFrames(rdma::Channel* ch,
                    const std::vector<std::shared_ptr<const std::string>>& frames,
                    std::string* buf);
  void ReceiveAcks(Peer* peer, rdma::Channel* ch);
  // Checks that the backup's last batch is ours (same LSN and checksum). If
  // it is not and the epoch history tells where the backup's log left ours,
  // sets *truncate_to to the LSN the backup must truncate its log to.
  Status CheckJoinPoint(uint64_t backup_next, uint64_t last_first, uint64_t last_checksum,
                        uint64_t last_epoch, uint64_t* truncate_to);
  // Whether the backup's log is a prefix of ours (its last batch is ours).
  // *cleaned: the backup's log ends inside a part of ours that log cleaning
  // compacted (it must start over).
  Status CheckPrefix(uint64_t backup_next, uint64_t last_first, uint64_t last_checksum,
                     bool* cleaned);
  // Drops `laggards` from the in-sync set; in cluster mode through
  // drop_backups first; mu_ is released while calling out.
  Status DropLocked(const std::vector<Peer*>& laggards, const std::string& why) REQUIRES(mu_);
  void StartPeerLocked(Peer* peer) REQUIRES(mu_);
  bool cluster_mode() const { return static_cast<bool>(options_.drop_backups); }
  bool CoveredLocked(uint64_t end_lsn) const REQUIRES(mu_);
  // The lowest acknowledged end among in-sync backups (UINT64_MAX if none).
  uint64_t InSyncAckedLocked() const REQUIRES(mu_);
  size_t InSyncLocked() const REQUIRES(mu_);
  void MaybeJoinLocked(Peer* peer) REQUIRES(mu_);
  std::string WhyNotReadyLocked() const REQUIRES(mu_);
  void UpdateEchoLocked() REQUIRES(mu_);

  const ReplicatorOptions options_;
  std::unique_ptr<rdma::Transport> transport_;
  const nvm::Log* log_;
  std::vector<std::unique_ptr<Peer>> peers_;

  mutable Mutex mu_;
  // Waiters on acknowledgements, commits and peer states (the committer,
  // WaitWritable, back-off); the senders wait on send_cv_ for new batches, so
  // a batch shipped or acknowledged wakes only the threads it concerns.
  CondVar cv_;
  CondVar send_cv_;
  std::deque<Shipped> ring_ GUARDED_BY(mu_);  // shipped, not committed, in LSN order
  // The peers Ship sends the new frame to itself (only the committing thread).
  std::vector<std::pair<Peer*, rdma::Channel*>> direct_;
  // Buffers of frames let go of (Ship), for the next batches to be built in.
  struct SpareBuffers {
    Mutex mu;
    std::vector<std::string> buffers GUARDED_BY(mu);
  };
  static constexpr size_t kSpareBuffers = 4;
  const std::shared_ptr<SpareBuffers> spares_ = std::make_shared<SpareBuffers>();
  uint64_t ship_end_ GUARDED_BY(mu_) = 1;  // LSN after the last shipped batch
  uint64_t committed_end_ GUARDED_BY(mu_) = 1;
  bool stopping_ GUARDED_BY(mu_) = false;
  bool started_ GUARDED_BY(mu_) = false;
  std::atomic<int64_t> in_sync_echo_us_{0};
  // Frames the committing thread sent itself (Ship), and of those, frames the
  // socket took in part or not at all, whose rest a sender thread sent.
  std::atomic<uint64_t> direct_sends_{0};
  std::atomic<uint64_t> direct_rests_{0};
};

struct BackupOptions {
  std::string bind = "127.0.0.1";
  int port = 0;
  std::string data_dir;  // holds the EPOCH file
};

// The backup's side: listens on the replication port, serves one primary
// session at a time (a newer session with an epoch at least as high replaces
// an older one), and applies batches to `store`.
class BackupService final : public ReplicationRole {
 public:
  BackupService(const BackupOptions& options, std::unique_ptr<rdma::Transport> transport,
                ReplicaLog* store);
  ~BackupService() override;
  Status Start();
  void Stop();
  int port() const { return port_; }

  // Refuses every frame and session of an epoch below `epoch` from now on
  // (a backup running for primary of `epoch`). When it returns, the log
  // takes no more batches of older epochs.
  void Fence(uint64_t epoch);
  // Records `epoch` in the epoch file (fsynced) before this node runs for
  // primary of it: once it may lead it, a restart must not forget it. From
  // then on sessions of older epochs are refused, across restarts too.
  Status RecordEpoch(uint64_t epoch);
  // The log's next LSN and the epoch of its last batch (after Fence: final).
  std::pair<uint64_t, uint64_t> LogEnd() const;
  // When a frame of the current primary last arrived (MonoUs; 0: never) and
  // that session's epoch.
  int64_t last_heard_us() const { return last_heard_us_.load(); }
  uint64_t session_epoch() const { return session_epoch_.load(); }
  // When (MonoUs) the newest session's connection broke (closed or reset by
  // the primary's side, not a timeout), or 0: a primary whose process died
  // leaves this behind at once.
  int64_t session_lost_us() const { return session_lost_us_.load(); }
  // Called (from the session's thread) right after session_lost_us changed.
  void set_on_session_lost(std::function<void()> hook) {
    MutexLock l(&mu_);
    on_session_lost_ = std::move(hook);
  }
  uint64_t epoch() const;

  bool is_backup() const override { return true; }
  void AppendInfo(std::string* text) const override;
  void AppendRole(std::string* out) const override;
  std::string primary_address() const override;

 private:
  void AcceptLoop();
  // Runs the acceptor's handshake; false (counted, logged) if the peer failed it.
  bool Handshake(rdma::Channel* ch);
  // Starts a thread that serves channel c (session: handshake, then session)
  // and then closes it; threads that ended are joined first.
  void StartThread(std::shared_ptr<rdma::Channel> c, bool session) REQUIRES(mu_);
  // Drops a session thread's channel, the last reference, timing the close.
  static void CloseChannel(std::shared_ptr<rdma::Channel> ch);
  // Counts a refused peer and logs it, at most one line a second (with how
  // many more were refused meanwhile).
  void CountRefusal(const Status& s) REQUIRES(mu_);
  void Session(std::shared_ptr<rdma::Channel> ch);
  // Why a primary of `epoch` is refused as stale ("" if it is not).
  std::string StaleEpoch(uint64_t epoch) EXCLUDES(mu_, log_mu_);
  // Refuses a session: counted and kept for INFO before the peer hears why.
  void Refuse(rdma::Channel* ch, uint64_t epoch, const std::string& why) EXCLUDES(mu_);
  Status ServeSession(rdma::Channel* ch, uint64_t epoch, uint64_t generation);
  class SessionRun;  // one session's batches between frames (backup_service.cc)
  // A session ended by a broken connection: the cluster node is told at once.
  void NoteSessionLost(uint64_t generation) EXCLUDES(mu_);
  static void SendError(rdma::Channel* ch, uint64_t epoch, const std::string& why);

  const BackupOptions options_;
  std::unique_ptr<rdma::Transport> transport_;
  std::unique_ptr<rdma::Listener> listener_;
  ReplicaLog* store_;
  int port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> generation_{0};  // the newest session; older ones end

  Mutex apply_mu_;  // held by the session that applies batches
  mutable Mutex mu_;
  struct SessionThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<SessionThread> sessions_ GUARDED_BY(mu_);
  // Peers accepted whose handshake has not finished, oldest first. At most
  // kMaxHandshakes at once and kMaxHandshakesPerSource from one address: a
  // newcomer over either bound aborts the oldest, so strangers that connect
  // and stay silent cannot keep the primary out (on one machine it and they
  // may share 127.0.0.1), and each is dropped after preauth_timeout_ms anyway.
  struct Handshaking {
    std::shared_ptr<rdma::Channel> channel;
    std::string source;  // the peer's address without its port
  };
  static constexpr size_t kMaxHandshakes = 32;
  static constexpr size_t kMaxHandshakesPerSource = 8;
  std::list<Handshaking> handshaking_ GUARDED_BY(mu_);
  uint64_t handshakes_aborted_ GUARDED_BY(mu_) = 0;
  // Refusals are logged at most once a second, with how many were not.
  int64_t refusal_logged_us_ GUARDED_BY(mu_) = 0;
  uint64_t refusals_unlogged_ GUARDED_BY(mu_) = 0;
  std::unique_ptr<nvm::EpochFile> epoch_file_ GUARDED_BY(mu_);
  std::string primary_ GUARDED_BY(mu_);
  std::string state_ GUARDED_BY(mu_) = "waiting for a primary";
  std::string last_error_ GUARDED_BY(mu_);
  uint64_t refused_ GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> durable_end_{1};
  std::atomic<uint64_t> batches_received_{0};
  // Held while a batch is checked against the fence and appended, and while
  // the log is truncated: Fence() and LogEnd() then see a settled log.
  mutable Mutex log_mu_;
  uint64_t fence_epoch_ GUARDED_BY(log_mu_) = 0;
  std::atomic<int64_t> last_heard_us_{0};
  std::atomic<uint64_t> session_epoch_{0};
  std::atomic<int64_t> session_lost_us_{0};
  std::function<void()> on_session_lost_ GUARDED_BY(mu_);
  std::atomic<uint64_t> truncations_{0};
};

}  // namespace faha

#endif  // FAHA_SERVER_REPLICATION_REPLICATION_H_
