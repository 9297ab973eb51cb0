#include "server/cluster.h"

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
#include "server/store.h"

namespace faha {

using nlohmann::json;

namespace {

constexpr size_t kHistoryKept = 64;
constexpr int64_t kNsPerMs = 1000000;
// A restarted node waits this long for its primary to call before it may
// suspect it: a primary retries a lost backup within a few hundred ms.
constexpr int64_t kStartupGraceMs = 1500;
// Safety margin on top of the old primary's read lease.
constexpr int64_t kLeaseMarginMs = 50;

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

std::string ClusterConfig::ToJson() const {
  json j;
  j["epoch"] = epoch;
  j["primary"] = primary;
  j["in_sync"] = in_sync;
  json h = json::array();
  for (const auto& [e, lsn] : history) h.push_back({e, lsn});
  j["history"] = h;
  return j.dump();
}

StatusOr<ClusterConfig> ClusterConfig::FromJson(const std::string& text) {
  try {
    json j = json::parse(text);
    ClusterConfig c;
    c.epoch = j.at("epoch").get<uint64_t>();
    c.primary = j.at("primary").get<std::string>();
    c.in_sync = j.at("in_sync").get<std::vector<std::string>>();
    for (const auto& e : j.at("history")) {
      c.history.emplace_back(e.at(0).get<uint64_t>(), e.at(1).get<uint64_t>());
    }
    if (c.epoch == 0 || c.primary.empty()) return Status::Corruption("epoch 0 or no primary");
    return c;
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("cluster configuration is not valid: ") + e.what());
  }
}

ClusterNode::ClusterNode(const ClusterOptions& options, Store* store,
                         std::unique_ptr<BackupService> backup)
    : options_(options), store_(store), backup_(std::move(backup)), started_ns_(MonoNs()) {}

ClusterNode::~ClusterNode() { Stop(); }

std::string ClusterNode::Key(const std::string& suffix) const {
  return "/faha/" + options_.cluster + "/" + suffix;
}

Status ClusterNode::Start() {
  auto a = coord::EtcdClient::Create(options_.etcd, options_.etcd_timeout_ms);
  if (!a.ok()) return a.status();
  etcd_ = std::move(*a);
  auto b = coord::EtcdClient::Create(options_.etcd, options_.etcd_timeout_ms);
  if (!b.ok()) return b.status();
  keepalive_ = std::move(*b);
  Status s;
  const int64_t deadline = MonoMs() + options_.join_timeout_ms;
  do {
    s = RenewLease();
    if (s.ok()) s = Register(0);
    if (s.ok()) break;
    FAHA_LOG_WARN("cluster: cannot reach etcd at %s yet: %s", options_.etcd.c_str(),
                  s.ToString().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (MonoMs() < deadline);
  if (!s.ok()) {
    return s.WithPrefix("etcd unreachable for " + std::to_string(options_.join_timeout_ms) +
                        " ms (--etcd_join_timeout_ms)");
  }
  FAHA_LOG_INFO(
      "cluster %s: node %s registered in etcd %s (lease TTL %lld s, read lease %d ms, "
      "failover after %d ms of silence)",
      options_.cluster.c_str(), options_.node_id.c_str(), options_.etcd.c_str(),
      static_cast<long long>(granted_ttl_s_), options_.read_lease_ms, options_.failover_timeout_ms);
  // A broken session is looked at at once, not at the next tick.
  backup_->set_on_session_lost([this] {
    {
      MutexLock l(&mu_);
      tick_now_ = true;
    }
    cv_.SignalAll();
  });
  keeper_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "faha-lease");
    KeepAliveLoop();
  });
  runner_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "faha-cluster");
    Run();
  });
  return Status::OK();
}

void ClusterNode::Stop() {
  {
    MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.SignalAll();
  if (runner_.joinable()) runner_.join();
  if (keeper_.joinable()) keeper_.join();
  if (replicator_) {
    // The cleaner asks the replicator for its horizon: not once it is gone.
    store_->set_clean_horizon(nullptr);
    replicator_->Stop();
  }
  if (backup_) backup_->Stop();
  // Leaving: let the others take over at once instead of after the TTL.
  // Best effort: unrevoked, the lease ends after its TTL.
  if (etcd_ && lease_id_.load() != 0) etcd_->RevokeLease(lease_id_.load()).IgnoreError();
}

Status ClusterNode::RenewLease() {
  int64_t granted = 0;
  auto id = etcd_->GrantLease(options_.lease_ttl_s, &granted);
  if (!id.ok()) return id.status();
  granted_ttl_s_ = granted;
  lease_id_.store(*id);
  lease_lost_.store(false);
  return Status::OK();
}

Status ClusterNode::Register(uint64_t candidate) {
  auto [next_lsn, last_epoch] = backup_ && !replicator_
                                    ? backup_->LogEnd()
                                    : std::pair<uint64_t, uint64_t>{store_->log().next_lsn(), 0};
  json j;
  j["id"] = options_.node_id;
  j["client"] = options_.client_address;
  j["repl"] = options_.repl_address;
  j["next_lsn"] = next_lsn;
  j["last_epoch"] = last_epoch;
  j["candidate"] = candidate;
  return etcd_->Put(Key("nodes/" + options_.node_id), j.dump(), lease_id_.load());
}

StatusOr<std::optional<ClusterConfig>> ClusterNode::ReadConfig() {
  auto kv = etcd_->Get(Key("config"));
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return std::optional<ClusterConfig>();
  auto c = ClusterConfig::FromJson((*kv)->value);
  if (!c.ok()) return c.status();
  c->mod_revision = (*kv)->mod_revision;
  return std::optional<ClusterConfig>(std::move(*c));
}

StatusOr<std::vector<ClusterNode::NodeInfo>> ClusterNode::ReadNodes() {
  auto kvs = etcd_->GetPrefix(Key("nodes/"));
  if (!kvs.ok()) return kvs.status();
  std::vector<NodeInfo> out;
  for (const auto& kv : *kvs) {
    try {
      json j = json::parse(kv.value);
      NodeInfo n;
      n.id = j.at("id").get<std::string>();
      n.client = j.at("client").get<std::string>();
      n.repl = j.at("repl").get<std::string>();
      n.next_lsn = j.value("next_lsn", uint64_t{0});
      n.last_epoch = j.value("last_epoch", uint64_t{0});
      n.candidate = j.value("candidate", uint64_t{0});
      out.push_back(std::move(n));
    } catch (const std::exception& e) {
      FAHA_LOG_WARN("cluster: ignoring malformed node key %s: %s", kv.key.c_str(), e.what());
    }
  }
  MutexLock l(&mu_);
  for (const auto& n : out) repl_to_id_[n.repl] = n.id;
  return out;
}

StatusOr<std::optional<ClusterNode::LeaderKey>> ClusterNode::ReadLeader() {
  auto kv = etcd_->Get(Key("leader"));
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return std::optional<LeaderKey>();
  LeaderKey k;
  k.lease = (*kv)->lease;
  try {
    json j = json::parse((*kv)->value);
    k.epoch = j.at("epoch").get<uint64_t>();
    k.id = j.at("id").get<std::string>();
    k.client = j.at("client").get<std::string>();
    k.valid = true;
  } catch (const std::exception& e) {
    FAHA_LOG_WARN("cluster: malformed leader key: %s", e.what());
  }
  return std::optional<LeaderKey>(std::move(k));
}

void ClusterNode::KeepAliveLoop() {
  const int interval_ms = std::max(20, options_.read_lease_ms / 4);
  while (true) {
    {
      MutexLock l(&mu_);
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
      while (!stopping_ && cv_.WaitUntil(&mu_, deadline)) {
      }
      if (stopping_) return;
    }
    const int64_t lease = lease_id_.load();
    if (lease == 0 || lease_lost_.load()) continue;
    const int64_t sent = MonoNs();
    auto ttl = keepalive_->KeepAliveOnce(lease);
    if (ttl.ok()) {
      // etcd counts its TTL from when it saw this renewal, after we sent it:
      // our read lease from the send time ends first.
      lease_valid_until_ns_.store(sent + int64_t{options_.read_lease_ms} * kNsPerMs);
    } else if (ttl.status().IsNotFound()) {
      if (lease_id_.load() == lease) {
        lease_lost_.store(true);
        lease_valid_until_ns_.store(0);
        cv_.SignalAll();
      }
    }
  }
}

void ClusterNode::Run() {
  while (true) {
    {
      MutexLock l(&mu_);
      int64_t wait_ns = int64_t{options_.heartbeat_ms} * kNsPerMs;
      const int64_t until_serve = serve_after_ns_ - MonoNs();
      if (role_ == Role::kPrimary && !serving_ && until_serve > 0 && until_serve < wait_ns) {
        wait_ns = until_serve;  // serve as soon as the old primary's read lease has passed
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(wait_ns);
      while (!stopping_ && !tick_now_ && cv_.WaitUntil(&mu_, deadline)) {
      }
      if (stopping_) return;
      tick_now_ = false;
      if (role_ == Role::kDeposed) continue;
    }
    Tick();
  }
}

void ClusterNode::Tick() {
  auto cfg = ReadConfig();
  if (!cfg.ok()) {
    MutexLock l(&mu_);
    if (last_error_ != cfg.status().message()) {
      FAHA_LOG_WARN("cluster: %s", cfg.status().ToString().c_str());
    }
    last_error_ = cfg.status().message();
    return;
  }
  bool primary;
  {
    MutexLock l(&mu_);
    last_error_.clear();
    primary = role_ == Role::kPrimary;
    if (cfg->has_value()) {
      epoch_ = (*cfg)->epoch;
      primary_id_ = (*cfg)->primary;
    }
  }
  if (primary) {
    PrimaryTick(*cfg);
  } else {
    if (lease_lost_.load()) {
      // A backup whose lease lapsed (etcd unreachable for a TTL): a new one.
      // Unregistered, it tries again at the next tick with a new lease; the
      // one just granted goes at once rather than after its TTL.
      if (RenewLease().ok() && !Register(0).ok()) {
        etcd_->RevokeLease(lease_id_.load()).IgnoreError();  // else it ends with its TTL
        lease_lost_.store(true);
      }
      return;
    }
    BackupTick(*cfg);
  }
}

void ClusterNode::BackupTick(const std::optional<ClusterConfig>& cfg) {
  const int64_t now = MonoNs();
  if (!cfg) {
    StartCluster();
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
// after 4 x --failover_timeout_ms. False if so.
bool ClusterNode::RecordCandidacy(uint64_t epoch) {
  Status rec = backup_->RecordEpoch(epoch);
  if (!rec.ok()) {
    election_retry_ns_ = MonoNs() + 4 * int64_t{options_.failover_timeout_ms} * kNsPerMs;
    FAHA_LOG_ERROR("cluster: not running for primary of epoch %llu: cannot record it: %s",
                   static_cast<unsigned long long>(epoch), rec.ToString().c_str());
  }
  return rec.ok();
}

void ClusterNode::RunElection(const ClusterConfig& cfg) {
  const uint64_t target = cfg.epoch + 1;
  {
    MutexLock l(&mu_);
    elections_++;
  }
  // From here on this node acknowledges nothing of the old epoch: the old
  // primary cannot commit without removing it from the configuration, and
  // its lease from its backups' heartbeat echoes ends within --read_lease_ms.
  backup_->Fence(target);
  if (!RecordCandidacy(target)) return;
  const int64_t fenced_ns = MonoNs();
  const uint64_t next_lsn = backup_->LogEnd().first;
  if (!Register(target).ok()) return;
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
    revoked_ns = MonoNs();
  }
  std::vector<std::string> eligible = cfg.in_sync;
  eligible.push_back(cfg.primary);
  const int64_t deadline = MonoNs() + int64_t{options_.election_wait_ms} * kNsPerMs;
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
    if (candidates.size() == alive || MonoNs() >= deadline) break;
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
    election_retry_ns_ = MonoNs() + 4 * int64_t{options_.failover_timeout_ms} * kNsPerMs;
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
    election_retry_ns_ = MonoNs() + int64_t{options_.failover_timeout_ms} * kNsPerMs;
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

void ClusterNode::PrimaryTick(const std::optional<ClusterConfig>& cfg) {
  uint64_t my_epoch;
  {
    MutexLock l(&mu_);
    my_epoch = epoch_;
  }
  if (lease_lost_.load()) return Depose("its etcd lease ended (revoked or expired)");
  if (!cfg || cfg->primary != options_.node_id || cfg->epoch != my_epoch) {
    return Depose("the configuration moved on to epoch " + std::to_string(cfg ? cfg->epoch : 0) +
                  " with primary " + (cfg ? cfg->primary : std::string("none")));
  }
  auto nodes = ReadNodes();
  if (nodes.ok()) {
    for (const auto& n : *nodes) {
      if (n.id != options_.node_id) replicator_->AddPeer(n.repl);
    }
  }
  // Backups join the in-sync set here first, then in the configuration
  // (retried each tick until etcd takes it): the set this primary waits for
  // always holds every backup that the configuration makes eligible.
  replicator_->PromoteCaughtUp();
  auto missing_from = [&](const std::vector<std::string>& in_sync) {
    std::vector<std::string> ids;
    for (const auto& a : replicator_->InSyncAddresses()) {
      std::string id = IdOfRepl(a);
      if (!id.empty() && std::find(in_sync.begin(), in_sync.end(), id) == in_sync.end())
        ids.push_back(id);
    }
    return ids;
  };
  if (!missing_from(cfg->in_sync).empty()) {
    // Looked at again under the configuration lock: a backup being dropped
    // meanwhile must not be added back (it would be eligible in etcd while
    // this primary no longer waits for it).
    Status s = UpdateConfig([&](ClusterConfig* c) {
      for (const auto& id : missing_from(c->in_sync)) c->in_sync.push_back(id);
    });
    // If the configuration moved on, the next tick deposes this node.
    if (!s.ok())
      FAHA_LOG_WARN("cluster: cannot add backups to the in-sync set in etcd yet: %s",
                    s.ToString().c_str());
  }
  // Waits for etcd if it is unreachable: configuration changes wait for it.
  Status d = replicator_->DropSilent(options_.replication.timeout_ms);
  if (!d.ok()) FAHA_LOG_WARN("cluster: %s", d.ToString().c_str());
  const bool enough = replicator_->in_sync_count() >= options_.replication.min_sync_backups;
  MutexLock l(&mu_);
  if (!serving_ && MonoNs() >= serve_after_ns_ && enough) {
    serving_ = true;
    not_serving_.clear();
    FAHA_LOG_INFO("cluster: serving as primary of epoch %llu (%zu backups in sync)",
                  static_cast<unsigned long long>(epoch_), replicator_->in_sync_count());
  }
}

bool ClusterNode::HoldsReadLease() const {
  // A revocation this node has seen ends both leases.
  if (lease_lost_.load()) return false;
  const int64_t now = MonoNs();
  if (now <= lease_valid_until_ns_.load()) return true;
  // etcd unreachable (restarting, say): the backups' heartbeat echoes hold
  // the lease as long as every in-sync backup still follows this primary.
  const int64_t echo_us = replicator_ ? replicator_->in_sync_echo_us() : 0;
  return echo_us != 0 && now / 1000 < echo_us + int64_t{options_.read_lease_ms} * 1000;
}

void ClusterNode::Depose(const std::string& why) {
  {
    MutexLock l(&mu_);
    if (role_ == Role::kDeposed) return;
    role_ = Role::kDeposed;
    serving_ = false;
    not_serving_ = "it was primary of epoch " + std::to_string(epoch_) +
                   " and was deposed; it restarts as a backup";
  }
  lease_valid_until_ns_.store(0);
  FAHA_LOG_WARN("cluster: no longer primary: %s; restarting as a backup", why.c_str());
  if (options_.request_restart) options_.request_restart();
}

std::string ClusterNode::IdOfRepl(const std::string& repl) const {
  MutexLock l(&mu_);
  auto it = repl_to_id_.find(repl);
  return it == repl_to_id_.end() ? std::string() : it->second;
}

Status ClusterNode::UpdateConfig(const std::function<void(ClusterConfig*)>& change) {
  MutexLock serial(&config_mu_);
  uint64_t my_epoch;
  {
    MutexLock l(&mu_);
    my_epoch = epoch_;
  }
  for (int attempt = 0; attempt < 5; attempt++) {
    auto cfg = ReadConfig();
    if (!cfg.ok()) return cfg.status();
    if (!cfg->has_value() || (*cfg)->primary != options_.node_id || (*cfg)->epoch != my_epoch) {
      return Status::Unavailable("this node is no longer primary of epoch " +
                                 std::to_string(my_epoch));
    }
    ClusterConfig next = **cfg;
    change(&next);
    auto ok = etcd_->CompareAndSwap(Key("config"), (*cfg)->mod_revision, next.ToJson(), 0, nullptr);
    if (!ok.ok()) return ok.status();
    if (*ok) return Status::OK();
  }
  return Status::Unavailable("the configuration kept changing under this primary");
}

Status ClusterNode::DropFromConfig(const std::vector<std::string>& addresses) {
  std::vector<std::string> ids;
  for (const auto& a : addresses) {
    std::string id = IdOfRepl(a);
    if (!id.empty()) ids.push_back(id);
  }
  Status s = UpdateConfig([&](ClusterConfig* c) {
    for (const auto& id : ids) {
      c->in_sync.erase(std::remove(c->in_sync.begin(), c->in_sync.end(), id), c->in_sync.end());
    }
  });
  if (s.ok()) {
    std::string list;
    for (const auto& id : ids) list += (list.empty() ? "" : ", ") + id;
    FAHA_LOG_WARN("cluster: removed %s from the in-sync set in etcd", list.c_str());
  }
  return s;
}

bool ClusterNode::is_backup() const {
  MutexLock l(&mu_);
  return role_ != Role::kPrimary;
}

std::string ClusterNode::primary_address() const {
  MutexLock l(&mu_);
  return primary_client_;
}

std::string ClusterNode::Refusal(bool write, bool stale_ok) const {
  MutexLock l(&mu_);
  switch (role_) {
    case Role::kPrimary:
      if (!serving_) return "TRYAGAIN this node does not serve yet: " + not_serving_;
      if (!HoldsReadLease()) {
        return "TRYAGAIN this primary has neither renewed its etcd lease nor heard every in-sync "
               "backup within --read_lease_ms; it does not serve while a failover may be under way";
      }
      return {};
    case Role::kDeposed:
      return "TRYAGAIN this node does not serve: " + not_serving_;
    case Role::kBackup:
      if (!write && stale_ok) return {};
      if (!not_serving_.empty() || primary_client_.empty()) {
        return "TRYAGAIN this node is a backup and " +
               (not_serving_.empty() ? std::string("knows no primary yet") : not_serving_);
      }
      return "MOVED 0 " + primary_client_;
  }
  return {};
}

void ClusterNode::AppendInfo(std::string* t) const {
  auto line = [&](const std::string& k, const std::string& v) { *t += k + ":" + v + "\r\n"; };
  Role role;
  {
    MutexLock l(&mu_);
    role = role_;
    line("cluster", options_.cluster);
    line("node_id", options_.node_id);
    line("etcd", options_.etcd);
    line("cluster_role", role == Role::kPrimary   ? "primary"
                         : role == Role::kDeposed ? "deposed"
                                                  : "backup");
    line("cluster_epoch", std::to_string(epoch_));
    line("cluster_primary", primary_id_);
    line("serving", role == Role::kPrimary && serving_ ? "yes" : "no");
    if (!not_serving_.empty()) line("not_serving_because", not_serving_);
    line("elections_run", std::to_string(elections_));
    line("lease_ttl_s", std::to_string(granted_ttl_s_));
    if (!last_error_.empty()) line("etcd_error", last_error_);
  }
  if (role == Role::kPrimary && replicator_) {
    replicator_->AppendInfo(t);
  } else if (backup_) {
    backup_->AppendInfo(t);
  }
}

void ClusterNode::AppendRole(std::string* out) const {
  bool primary;
  {
    MutexLock l(&mu_);
    primary = role_ == Role::kPrimary;
  }
  if (primary && replicator_) {
    replicator_->AppendRole(out);
  } else {
    backup_->AppendRole(out);
  }
}

}  // namespace faha
