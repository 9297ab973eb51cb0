#include "server/cluster/cluster.h"

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
#include "server/engine/store.h"

namespace faha {

using nlohmann::json;

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
    : options_(options), store_(store), backup_(std::move(backup)), started_ns_(NowNs()) {}

ClusterNode::~ClusterNode() { Stop(); }

std::string ClusterNode::Key(const std::string& suffix) const {
  return "/faha/" + options_.cluster + "/" + suffix;
}

Status ClusterNode::Start() {
  auto connect = [this]() -> StatusOr<std::unique_ptr<coord::Coordinator>> {
    if (options_.make_coordinator) return options_.make_coordinator();
    auto c = coord::EtcdClient::Create(options_.etcd, options_.etcd_timeout_ms);
    if (!c.ok()) return c.status();
    return std::unique_ptr<coord::Coordinator>(std::move(*c));
  };
  auto a = connect();
  if (!a.ok()) return a.status();
  etcd_ = std::move(*a);
  auto b = connect();
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
    // The store's committing threads (its sequencer, I/O threads committing
    // inline) and its committer call the replicator this node owns until they
    // stop (a deposed primary's committer retries its unacknowledged
    // batches): they stop before it can go. Their writes get errors.
    store_->Stop();
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
  // A failed log's end may not be durable: it claims nothing.
  if (store_->failed()) next_lsn = 0;
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
    const int64_t sent = NowNs();
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
      const int64_t until_serve = serve_after_ns_ - NowNs();
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
  if (!serving_ && NowNs() >= serve_after_ns_ && enough) {
    serving_ = true;
    not_serving_.clear();
    FAHA_LOG_INFO("cluster: serving as primary of epoch %llu (%zu backups in sync)",
                  static_cast<unsigned long long>(epoch_), replicator_->in_sync_count());
  }
}

bool ClusterNode::HoldsReadLease() const {
  // A revocation this node has seen ends both leases.
  if (lease_lost_.load()) return false;
  const int64_t now = NowNs();
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

faha::Refusal ClusterNode::Refusal(bool write, bool stale_ok) const {
  MutexLock l(&mu_);
  switch (role_) {
    case Role::kPrimary:
      if (!serving_) return Refusal::TryAgain("this node does not serve yet: " + not_serving_);
      if (!HoldsReadLease()) {
        return Refusal::TryAgain(
            "this primary has neither renewed its etcd lease nor heard every in-sync backup "
            "within --read_lease_ms; it does not serve while a failover may be under way");
      }
      return {};
    case Role::kDeposed:
      return Refusal::TryAgain("this node does not serve: " + not_serving_);
    case Role::kBackup:
      if (!write && stale_ok) return {};
      if (!not_serving_.empty() || primary_client_.empty()) {
        return Refusal::TryAgain(
            "this node is a backup and " +
            (not_serving_.empty() ? std::string("knows no primary yet") : not_serving_));
      }
      return Refusal::Moved(primary_client_);
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
