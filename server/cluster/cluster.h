// ClusterNode: a node of a cluster coordinated through etcd. It has no fixed
// role: the first node to write the cluster configuration is primary, the
// others are backups; when the primary fails, an in-sync backup with the
// longest log takes over in a new epoch. docs/architecture.md, "Failover".
//
// etcd keys under /faha/CLUSTER/:
//   config      {epoch, primary, in_sync: [ids], history: [[epoch, first LSN]]}
//               changed only by compare-and-swap on its mod_revision
//   leader      {id, epoch, client, lease}: held by the serving primary, on
//               its lease; created only while absent
//   nodes/ID    {client, repl, next_lsn, last_epoch, candidate}, on the
//               node's lease: who is up, and where
// The primary serves only while it holds a read lease: --read_lease_ms from
// the send time of its last etcd lease renewal (shorter than etcd's TTL), or,
// while etcd is unreachable, from the oldest heartbeat that every in-sync
// backup echoed. A backup that stops hearing its primary for
// --failover_timeout_ms, sees the leader key gone, or finds its session
// closed and the primary's client port refusing connections (a dead process)
// fences its log against the old epoch (so it echoes and acknowledges nothing
// more of it), publishes its log end, and revokes the old primary's lease.
// The eligible candidate with the longest log takes the leader key and CASes
// the configuration to epoch+1. It then waits out the old primary's read
// lease (from its fence or the revocation, whichever came later) and brings
// --min_sync_backups backups to its log end before it serves. Configuration
// changes wait while etcd is unreachable; serving goes on.
//
// A deposed primary stops serving and asks to be restarted (main re-executes
// the server), so it comes back as a backup that truncates its unacknowledged
// suffix and catches up.
//
// Thread-safety: Start/Stop from the main thread; the ReplicationRole methods
// from any thread. Two internal threads: the coordinator loop and the lease
// keepalive.
#ifndef FAHA_SERVER_CLUSTER_CLUSTER_H_
#define FAHA_SERVER_CLUSTER_CLUSTER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "coord/etcd_client.h"
#include "faha/status.h"
#include "rdma/transport.h"
#include "server/replication/replication.h"

namespace faha {

class Store;

struct ClusterOptions {
  std::string etcd;            // endpoints, "http://127.0.0.1:2379[,...]"
  std::string cluster;         // cluster name: the etcd key prefix
  std::string node_id;         // unique in the cluster
  std::string client_address;  // HOST:PORT clients reach this node at
  std::string repl_address;    // HOST:PORT of this node's replication port
  std::string data_dir;        // holds the EPOCH file
  int lease_ttl_s = 2;
  int read_lease_ms = 400;
  int heartbeat_ms = 50;
  int failover_timeout_ms = 400;
  int election_wait_ms = 200;
  int etcd_timeout_ms = 1000;
  // Start() keeps trying to reach etcd (lease + registration) this long before it
  // gives up: a node restarted while etcd itself restarts must wait it out.
  int join_timeout_ms = 60000;
  // The primary's replication settings (window, timeout, min_sync_backups);
  // backups, epoch, heartbeat, history and drop_backups are filled in on
  // promotion. The advertised client address is client_address.
  ReplicatorOptions replication;
  std::function<std::unique_ptr<rdma::Transport>()> make_transport;
  // A client of the coordinator (called twice: one for the coordinator
  // thread, one for lease keepalives). Null: an EtcdClient of `etcd`.
  std::function<StatusOr<std::unique_ptr<coord::Coordinator>>()> make_coordinator;
  // Called once when this node was deposed and must restart as a backup.
  std::function<void()> request_restart;
  // The clock of the failure detector, the read lease and the election's
  // waits, in ns: MonoNs() if null. Tests pass MonoNs() plus an offset that only
  // grows, to make time pass at once (the replication heartbeats it is
  // compared with are MonoUs()).
  std::function<int64_t()> clock_ns;
};

struct ClusterConfig {
  uint64_t epoch = 0;
  std::string primary;
  std::vector<std::string> in_sync;
  std::vector<std::pair<uint64_t, uint64_t>> history;  // {epoch, first LSN}
  int64_t mod_revision = 0;
  std::string ToJson() const;
  static StatusOr<ClusterConfig> FromJson(const std::string& json);
};

class ClusterNode final : public ReplicationRole {
 public:
  // `backup` is started (listening) and owned from here on.
  ClusterNode(const ClusterOptions& options, Store* store, std::unique_ptr<BackupService> backup);
  ~ClusterNode() override;

  // Connects to etcd (retrying for up to 10 s), grants the lease, registers
  // this node and starts the threads.
  Status Start();
  // Stops the threads, the backup service and, on a node that was promoted,
  // the replicator and the store's write threads (which call it).
  void Stop();

  bool is_backup() const override;
  void AppendInfo(std::string* text) const override;
  void AppendRole(std::string* out) const override;
  std::string primary_address() const override;
  faha::Refusal Refusal(bool write, bool stale_ok) const override;

 private:
  static constexpr size_t kHistoryKept = 64;
  static constexpr int64_t kNsPerMs = 1000000;
  // A restarted node waits this long for its primary to call before it may
  // suspect it: a primary retries a lost backup within a few hundred ms.
  static constexpr int64_t kStartupGraceMs = 1500;
  // Safety margin on top of the old primary's read lease.
  static constexpr int64_t kLeaseMarginMs = 50;
  enum class Role { kBackup, kPrimary, kDeposed };
  struct NodeInfo {
    std::string id, client, repl;
    uint64_t next_lsn = 0, last_epoch = 0, candidate = 0;
  };

  int64_t NowNs() const { return options_.clock_ns ? options_.clock_ns() : MonoNs(); }
  void Run();
  void KeepAliveLoop();
  void Tick();
  void BackupTick(const std::optional<ClusterConfig>& cfg);
  void PrimaryTick(const std::optional<ClusterConfig>& cfg);
  void RunElection(const ClusterConfig& cfg);
  void StartCluster();
  bool RecordCandidacy(uint64_t epoch);
  // True (and logged, and the next try put off) if this node's log failed:
  // its end may hold batches that never became durable, so it does not run.
  bool LogFailed(uint64_t epoch);
  // Takes the leader key and writes `next` over `expected` (nullopt: no
  // configuration yet); then promotes. False if another node got there first.
  // old_lease_start_ns: the latest time the old primary could have renewed
  // either of its read leases (0: there was no old primary); it serves for at
  // most --read_lease_ms after it, so this node serves only after that.
  bool TryTakeOver(const std::optional<ClusterConfig>& expected, ClusterConfig next,
                   int64_t old_lease_start_ns);
  void Promote(const ClusterConfig& cfg, int64_t old_lease_start_ns);
  void Depose(const std::string& why);
  // Primary: whether it may still serve, by its etcd lease or, while etcd is
  // unreachable, by every in-sync backup's heartbeat echo.
  bool HoldsReadLease() const REQUIRES(mu_);
  Status Register(uint64_t candidate);
  Status RenewLease();
  StatusOr<std::optional<ClusterConfig>> ReadConfig();
  StatusOr<std::vector<NodeInfo>> ReadNodes();
  // The leader key: nullopt if absent; `valid` false if its value is malformed
  // (its lease is still there to revoke).
  struct LeaderKey {
    bool valid = false;
    std::string id, client;
    uint64_t epoch = 0;
    int64_t lease = 0;
  };
  StatusOr<std::optional<LeaderKey>> ReadLeader();
  // Primary: applies `change` to the configuration by CAS, retrying on
  // concurrent changes; fails if this node is no longer its primary.
  Status UpdateConfig(const std::function<void(ClusterConfig*)>& change);
  Status DropFromConfig(const std::vector<std::string>& addresses);
  std::string IdOfRepl(const std::string& repl_address) const;
  std::string Key(const std::string& suffix) const;

  const ClusterOptions options_;
  Store* store_;
  std::unique_ptr<BackupService> backup_;
  std::unique_ptr<Replicator> replicator_;         // set once, on promotion
  std::unique_ptr<coord::Coordinator> etcd_;       // coordinator thread
  std::unique_ptr<coord::Coordinator> keepalive_;  // keepalive thread
  std::thread runner_, keeper_;
  const int64_t started_ns_;

  std::atomic<int64_t> lease_id_{0};
  std::atomic<bool> lease_lost_{false};
  std::atomic<int64_t> lease_valid_until_ns_{0};  // primary's read lease (NowNs)
  int64_t granted_ttl_s_ = 0;

  mutable Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  Role role_ GUARDED_BY(mu_) = Role::kBackup;
  uint64_t epoch_ GUARDED_BY(mu_) = 0;  // the configuration's epoch as last read
  std::string primary_id_ GUARDED_BY(mu_);
  std::string primary_client_ GUARDED_BY(mu_);
  std::string not_serving_ GUARDED_BY(mu_) = "it has not joined the cluster yet";
  bool serving_ GUARDED_BY(mu_) = false;
  int64_t serve_after_ns_ GUARDED_BY(mu_) = 0;
  bool tick_now_ GUARDED_BY(mu_) = false;  // look at the cluster before the next tick
  std::map<std::string, std::string> repl_to_id_ GUARDED_BY(mu_);
  uint64_t elections_ GUARDED_BY(mu_) = 0;
  std::string last_error_ GUARDED_BY(mu_);

  // Coordinator thread only.
  int64_t suspect_since_ns_ = 0;  // when the primary first looked gone
  uint64_t watched_epoch_ = 0;
  int64_t watched_since_ns_ = 0;
  int64_t election_retry_ns_ = 0;
  int64_t probed_loss_us_ = 0;  // the broken session whose primary was probed
  Mutex config_mu_;             // one configuration update at a time
};

}  // namespace faha

#endif  // FAHA_SERVER_CLUSTER_CLUSTER_H_
