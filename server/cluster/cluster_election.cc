// A ClusterNode's elections: a backup's tick (watching its primary and the
// failure detector's evidence), standing as a candidate (its epoch recorded
// first), taking over the configuration in etcd and becoming primary.
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/net.h"
#include "common/resp.h"
#include "server/cluster/cluster.h"
#include "server/engine/store.h"

namespace faha {

using nlohmann::json;

namespace {

// Whether HOST:PORT actively refuses a TCP connection (nothing listens: the
// process that served it is gone), within timeout_ms. False if it accepts,
// stays silent, or cannot be resolved.
bool RefusesConnections(const std::string& address, int timeout_ms) {
  std::string host;
  int port = 0;
  if (!net::ParseHostPort(address, &host, &port).ok()) return false;
  net::ConnectOptions o;
  o.timeout_ms = timeout_ms;
  o.numeric_host = true;
  bool refused = false;
  auto fd = net::ConnectTcp(host, port, o, &refused);
  if (fd.ok()) close(*fd);
  return refused;
}

}  // namespace

void ClusterNode::BackupTick(const std::optional<ClusterConfig>& cfg) {
  const int64_t now = NowNs();
  if (!cfg) {
    if (now >= election_retry_ns_) StartCluster();
    return;
  }
  auto leader = ReadLeader();
  if (!leader.ok()) return;
  const bool leader_present = leader->has_value() && (*leader)->valid;
  const uint64_t leader_epoch = leader_present ? (*leader)->epoch : 0;
  if (leader_present) {
    MutexLock l(&mu_);
    primary_client_ = (*leader)->client;
  }
  {
    MutexLock l(&mu_);
    if (leader_present && leader_epoch == cfg->epoch) {
      not_serving_.clear();
    } else {
      not_serving_ = "the cluster has no serving primary (failover in progress)";
    }
  }
  if (cfg->epoch != watched_epoch_) {
    watched_epoch_ = cfg->epoch;
    watched_since_ns_ = now;
    suspect_since_ns_ = 0;
  }
  const bool eligible =
      cfg->primary == options_.node_id ||
      std::find(cfg->in_sync.begin(), cfg->in_sync.end(), options_.node_id) != cfg->in_sync.end();
  if (!eligible) return;
  // Someone else is between taking the leader key and writing the new
  // configuration: wait for it (its lease ends the wait if it died).
  if (leader_present && leader_epoch > cfg->epoch) return;
  bool gone;
  const char* why = "no heartbeat";
  if (cfg->primary == options_.node_id) {
    gone = true;  // our own previous incarnation: it is not running
    why = "it was this node, restarted";
  } else if (!leader_present) {
    gone = true;  // its lease ended in etcd
    why = "its lease ended";
  } else {
    const bool current = backup_->session_epoch() == cfg->epoch;
    const int64_t heard_ns = current ? backup_->last_heard_us() * 1000 : 0;
    const int64_t since =
        std::max({heard_ns, watched_since_ns_,
                  started_ns_ + (kStartupGraceMs - options_.failover_timeout_ms) * kNsPerMs});
    gone = now - since > int64_t{options_.failover_timeout_ms} * kNsPerMs;
    // A primary process that died closed our session at once: if its client
    // port refuses connections too, nobody serves there; no need to wait
    // out the silence. (Only the start is earlier: the election still waits
    // out the old primary's read lease.) Probed once per broken session.
    const int64_t lost_us = current ? backup_->session_lost_us() : 0;
    if (!gone && lost_us != 0 && lost_us * 1000 >= heard_ns && lost_us != probed_loss_us_) {
      probed_loss_us_ = lost_us;
      std::string client;
      {
        MutexLock l(&mu_);
        client = primary_client_;
      }
      if (!client.empty() && RefusesConnections(client, 100)) {
        gone = true;
        why = "its connection closed and its client port refuses connections";
      }
    }
  }
  if (!gone) {
    suspect_since_ns_ = 0;
    return;
  }
  if (suspect_since_ns_ == 0) {
    suspect_since_ns_ = now;
    FAHA_LOG_WARN("cluster: primary %s of epoch %llu looks gone (%s); running for primary",
                  cfg->primary.c_str(), static_cast<unsigned long long>(cfg->epoch), why);
  }
  if (now < election_retry_ns_) return;
  RunElection(*cfg);
}

// A new cluster: the first node to write the configuration is primary.
void ClusterNode::StartCluster() {
  auto [next_lsn, last_epoch] = backup_->LogEnd();
  ClusterConfig next;
  next.epoch = std::max(backup_->epoch(), last_epoch) + 1;
  next.primary = options_.node_id;
  next.history = {{next.epoch, next_lsn}};
  if (RecordCandidacy(next.epoch)) TryTakeOver(std::nullopt, next, 0);
}

// Records `epoch` in the epoch file before anything in etcd can name this
// node primary of it, as a Raft candidate persists its term: a node that
// cannot record it does not run (and the others still can); it tries again
// after 4 x --failover_timeout_ms. False if so, and for a node whose log failed.
bool ClusterNode::LogFailed(uint64_t epoch) {
  if (!store_->failed()) return false;
  election_retry_ns_ = NowNs() + 4 * int64_t{options_.failover_timeout_ms} * kNsPerMs;
  FAHA_LOG_ERROR("cluster: not running for primary of epoch %llu: this node's log failed",
                 static_cast<unsigned long long>(epoch));
  return true;
}

bool ClusterNode::RecordCandidacy(uint64_t epoch) {
  if (LogFailed(epoch)) return false;
  Status rec = backup_->RecordEpoch(epoch);
  if (!rec.ok()) {
    election_retry_ns_ = NowNs() + 4 * int64_t{options_.failover_timeout_ms} * kNsPerMs;
    FAHA_LOG_ERROR("cluster: not running for primary of epoch %llu: cannot record it: %s",
                   static_cast<unsigned long long>(epoch), rec.ToString().c_str());
  }
  return rec.ok();
}

void ClusterNode::RunElection(const ClusterConfig& cfg) {
  const uint64_t target = cfg.epoch + 1;
  if (LogFailed(target)) return;
  {
    MutexLock l(&mu_);
    elections_++;
  }
  // From here on this node acknowledges nothing of the old epoch: the old
  // primary cannot commit without removing it from the configuration, and
  // its lease from its backups' heartbeat echoes ends within --read_lease_ms.
  backup_->Fence(target);
  if (!RecordCandidacy(target)) return;
  const int64_t fenced_ns = NowNs();
  const uint64_t next_lsn = backup_->LogEnd().first;  // persists what waits: may fail
  if (LogFailed(target) || !Register(target).ok()) return;
  // Fence the old primary by time: revoke its etcd lease (its leader key
  // goes with it); it stops serving within its read lease of the revocation.
  // Done before the candidates are counted, so that wait and the read lease
  // overlap; whoever wins, the suspect is deposed.
  int64_t revoked_ns = 0;
  {
    auto leader = ReadLeader();
    if (!leader.ok()) return;
    if (leader->has_value()) {
      if ((*leader)->epoch > cfg.epoch) return;  // someone already took over
      if (!etcd_->RevokeLease((*leader)->lease).ok()) return;
    }
    // Revoked now, or gone before this read (expired, or another candidate
    // revoked it): either way the old lease was renewed last before now.
    revoked_ns = NowNs();
  }
  std::vector<std::string> eligible = cfg.in_sync;
  eligible.push_back(cfg.primary);
  const int64_t deadline = NowNs() + int64_t{options_.election_wait_ms} * kNsPerMs;
  std::vector<NodeInfo> candidates;
  while (true) {
    auto nodes = ReadNodes();
    if (!nodes.ok()) return;
    candidates.clear();
    size_t alive = 0;
    for (const auto& n : *nodes) {
      if (std::find(eligible.begin(), eligible.end(), n.id) == eligible.end()) continue;
      if (n.id != cfg.primary) alive++;  // the suspect is not waited for
      if (n.candidate == target) candidates.push_back(n);
    }
    if (candidates.size() == alive || NowNs() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The longest log wins (ties: the larger id): every committed batch is on
  // every candidate; the longest keeps the most, and the others' logs are
  // prefixes of it or get truncated to one.
  const NodeInfo* best = nullptr;
  for (const auto& n : candidates) {
    if (!best || n.next_lsn > best->next_lsn || (n.next_lsn == best->next_lsn && n.id > best->id)) {
      best = &n;
    }
  }
  if (best == nullptr || best->id != options_.node_id) {
    FAHA_LOG_INFO("cluster: epoch %llu: %s has the longest log (%llu; ours %llu); waiting for it",
                  static_cast<unsigned long long>(target), best ? best->id.c_str() : "nobody",
                  static_cast<unsigned long long>(best ? best->next_lsn - 1 : 0),
                  static_cast<unsigned long long>(next_lsn - 1));
    election_retry_ns_ = NowNs() + 4 * int64_t{options_.failover_timeout_ms} * kNsPerMs;
    return;
  }
  ClusterConfig next;
  next.epoch = target;
  next.primary = options_.node_id;
  next.history = cfg.history;
  next.history.emplace_back(target, next_lsn);
  if (next.history.size() > kHistoryKept) {
    next.history.erase(
        next.history.begin(),
        next.history.begin() + static_cast<ptrdiff_t>(next.history.size() - kHistoryKept));
  }
  if (!TryTakeOver(cfg, next, std::max(fenced_ns, revoked_ns))) {
    election_retry_ns_ = NowNs() + int64_t{options_.failover_timeout_ms} * kNsPerMs;
  }
}

bool ClusterNode::TryTakeOver(const std::optional<ClusterConfig>& expected, ClusterConfig next,
                              int64_t old_lease_start_ns) {
  json leader;
  leader["id"] = options_.node_id;
  leader["epoch"] = next.epoch;
  leader["client"] = options_.client_address;
  const int64_t lease = lease_id_.load();
  auto took = etcd_->CompareAndSwap(Key("leader"), 0, leader.dump(), lease, nullptr);
  if (!took.ok() || !*took) return false;
  auto wrote = etcd_->CompareAndSwap(Key("config"), expected ? expected->mod_revision : 0,
                                     next.ToJson(), 0, nullptr);
  if (!wrote.ok() || !*wrote) {
    // Left in place, the key goes with our lease; the next election waits for it.
    etcd_->Delete(Key("leader")).IgnoreError();
    return false;
  }
  Promote(next, old_lease_start_ns);
  return true;
}

void ClusterNode::Promote(const ClusterConfig& cfg, int64_t old_lease_start_ns) {
  FAHA_LOG_INFO("cluster: this node is primary of epoch %llu from LSN %llu%s",
                static_cast<unsigned long long>(cfg.epoch),
                static_cast<unsigned long long>(cfg.history.back().second - 1),
                old_lease_start_ns ? "; serving once the old primary's read lease has passed" : "");
  // The epoch is in the epoch file already (RecordEpoch, before the takeover).
  backup_->Stop();  // applies what it received, then ends its sessions
  ReplicatorOptions ropt = options_.replication;
  auto nodes = ReadNodes();
  if (nodes.ok()) {
    for (const auto& n : *nodes) {
      if (n.id != options_.node_id) ropt.backups.push_back(n.repl);
    }
  }
  ropt.epoch = cfg.epoch;
  ropt.advertise = options_.client_address;
  ropt.heartbeat_ms = options_.heartbeat_ms;
  ropt.history = cfg.history;
  ropt.drop_backups = [this](const std::vector<std::string>& a) { return DropFromConfig(a); };
  store_->set_clean_horizon(nullptr);  // before an earlier replicator goes
  replicator_ = std::make_unique<Replicator>(ropt, options_.make_transport(), &store_->log());
  Replicator* r = replicator_.get();
  store_->set_clean_horizon([r] { return r->CleanHorizon(); });
  replicator_->Start(store_->log().next_lsn());
  store_->BecomePrimary(replicator_.get(), cfg.epoch);
  MutexLock l(&mu_);
  role_ = Role::kPrimary;
  epoch_ = cfg.epoch;
  primary_id_ = options_.node_id;
  primary_client_ = options_.client_address;
  serving_ = false;
  serve_after_ns_ = old_lease_start_ns
                        ? old_lease_start_ns + (options_.read_lease_ms + kLeaseMarginMs) * kNsPerMs
                        : 0;
  not_serving_ = "it was just promoted and brings its backups to its log end";
}

}  // namespace faha
