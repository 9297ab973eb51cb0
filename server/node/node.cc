// Node: faha-server's composition root (see node.h).
#include "server/node/node.h"

#include <execinfo.h>
#include <gflags/gflags.h>
#include <openssl/crypto.h>
#include <prometheus/exposer.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/clock.h"
#include "common/logging.h"
#include "nvm/epoch_file.h"
#include "nvm/log_device.h"
#include "rdma/transport.h"
#include "rdma/verbs.h"
#include "server/cluster/cluster.h"
#include "server/engine/store.h"
#include "server/net/rdma_gateway.h"
#include "server/net/server.h"
#include "server/node/flags.h"
#include "server/replication/replication.h"

namespace faha {

namespace {
// Set once the server exists; read by the signal handler and by the
// cluster thread (a deposed primary asks for a restart), which start earlier.
std::atomic<Server*> g_server{nullptr};
std::atomic<bool> g_restart{false};
void OnSignal(int) {
  if (Server* s = g_server.load()) s->RequestShutdown();
}

// A crash says so in the log, with the stack of the thread that crashed, and
// then dies of the same signal (so a supervisor sees the real cause). Only
// async-signal-safe calls, and backtrace() was warmed up at start-up so that
// it does not load libgcc inside the handler. Sanitizer builds keep their own
// handlers, which report more.
#if !defined(FAHA_ASAN)
void OnFatalSignal(int sig) {
  char buf[96];
  int n =
      std::snprintf(buf, sizeof(buf), "\nfaha-server: fatal signal %d (%s) in thread %ld; stack:\n",
                    sig, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", static_cast<long>(gettid()));
  if (n > 0) (void)!write(STDERR_FILENO, buf, static_cast<size_t>(n));
  void* frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}
#endif

void InstallFatalSignalReport() {
#if !defined(FAHA_ASAN)
  void* warm[1];
  backtrace(warm, 1);
  struct sigaction sa {};
  sa.sa_handler = OnFatalSignal;
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(sig, &sa, nullptr);
#endif
}
int ThreadCount() {
  std::error_code ec;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    n++;
  }
  return n;
}

// Every client needs a descriptor, and so do log segments, replication and
// metrics: raise the soft open-files limit to fit --max_clients, or say why
// it cannot be (accept then pauses at the limit instead of spinning).
void RaiseOpenFilesLimit(uint32_t max_clients) {
  constexpr rlim_t kReserved = 256;
  const rlim_t want = static_cast<rlim_t>(max_clients) + kReserved;
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
  rlimit raised = rl;
  raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  if (rl.rlim_cur < want) {
    FAHA_LOG_WARN(
        "open-files limit is %llu (hard limit %llu): room for about %llu clients, not "
        "--max_clients=%u; raise it (ulimit -n, LimitNOFILE=) or lower --max_clients",
        static_cast<unsigned long long>(rl.rlim_cur), static_cast<unsigned long long>(rl.rlim_max),
        static_cast<unsigned long long>(rl.rlim_cur > kReserved ? rl.rlim_cur - kReserved : 0),
        max_clients);
  }
}

// The gauges INFO and /metrics read from the store (server/metrics/metrics.cc).
void ProvideGauges(Metrics* metrics, Store* st) {
  metrics->log_bytes = [st] { return st->log().bytes_written(); };
  metrics->log_segments = [st] { return st->log().segment_count(); };
  metrics->index_keys = [st] { return st->KeyCount(); };
  metrics->index_memory_bytes = [st] { return st->IndexMemoryBytes(); };
  metrics->log_file_bytes = [st] { return st->log().file_bytes(); };
  metrics->log_segments_cleaned = [st] { return st->log().segments_cleaned(); };
  metrics->log_segment_files_reused = [st] { return st->log().segment_files_reused(); };
  metrics->log_spare_segments = [st] { return st->log().spare_segments(); };
  metrics->hot_cache_bytes = [st] { return st->hot().bytes(); };
  metrics->hot_cache_keys = [st] { return st->hot().size(); };
  metrics->committed_lsn = [st] { return st->committed_lsn(); };
}

}  // namespace

Node::Node(std::vector<char*> argv) : argv_(std::move(argv)) {}
Node::~Node() {
  if (data_dir_lock_ >= 0) close(data_dir_lock_);
}

int Node::Run() {
  RaiseOpenFilesLimit(FLAGS_max_clients);
  signal(SIGPIPE, SIG_IGN);
  InstallFatalSignalReport();
  for (int (Node::*step)() :
       {&Node::Configure, &Node::LockDataDir, &Node::RecordEpoch, &Node::OpenStore,
        &Node::Preallocate, &Node::BuildServerOptions, &Node::StartReplication, &Node::OpenPorts,
        &Node::ServeMetrics, &Node::Start}) {
    if (int code = (this->*step)()) return code;
  }
  server_->Wait();
  Shutdown();
  return 0;
}

int Node::Configure() {
  clustered_ = !FLAGS_etcd.empty();
  backup_ = FLAGS_role == "backup" || clustered_;
  backups_ = SplitList(FLAGS_backups);
  replicated_ = backup_ || !backups_.empty();
  // First, before anything that could wait (the RDMA transport, the log):
  // a restart (execv) that hangs then shows where.
  FAHA_LOG_INFO("faha-server 0.1.0 starting (pid %d): role=%s data_dir=%s",
                static_cast<int>(getpid()),
                clustered_ ? "chosen through etcd"
                : backup_  ? "backup"
                           : (backups_.empty() ? "single node" : "primary"),
                FLAGS_data_dir.c_str());
  if (backups_.size() > 3) {
    FAHA_LOG_ERROR("--backups lists %zu backups; at most 3 are supported", backups_.size());
    return 2;
  }
  if (!clustered_ &&
      (FLAGS_min_sync_backups > static_cast<int>(backups_.size()) || FLAGS_min_sync_backups < -1)) {
    FAHA_LOG_ERROR("--min_sync_backups must be -1..%zu (the number of --backups)", backups_.size());
    return 2;
  }
  if (FLAGS_rdma != "auto" && FLAGS_rdma != "on" && FLAGS_rdma != "off") {
    FAHA_LOG_ERROR("--rdma must be auto, on or off (not '%s')", FLAGS_rdma.c_str());
    return 2;
  }
  if (replicated_ && !LoadSecret(&secret_)) return 2;
  topt_.secret = secret_;
  topt_.max_frame_body = static_cast<uint32_t>((FLAGS_max_batch_kb << 10) + 4096);
  if (replicated_) {
    auto t = rdma::MakeTransport(FLAGS_repl_transport, topt_);
    if (!t.ok()) {
      FAHA_LOG_ERROR("--repl_transport: %s", t.status().ToString().c_str());
      return 2;
    }
    transport_ = std::move(*t);
    FAHA_LOG_INFO("replication transport %s ready", FLAGS_repl_transport.c_str());
  }
  return 0;
}

int Node::LockDataDir() {
  if (mkdir(FLAGS_data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    FAHA_LOG_ERROR("cannot create %s: %s", FLAGS_data_dir.c_str(), strerror(errno));
    return 1;
  }
  auto lock = nvm::LockDataDir(FLAGS_data_dir);
  if (!lock.ok()) {
    FAHA_LOG_ERROR("%s", lock.status().message().c_str());
    return 1;
  }
  data_dir_lock_ = *lock;
  return 0;
}

int Node::RecordEpoch() {
  if (backups_.empty()) return 0;
  // A primary's epoch is persisted so that a restart cannot go back (the
  // directory exists: LockDataDir made it).
  auto ef = nvm::EpochFile::Open(FLAGS_data_dir);
  if (!ef.ok()) {
    FAHA_LOG_ERROR("cannot read the epoch: %s", ef.status().ToString().c_str());
    return 1;
  }
  epoch_ = FLAGS_epoch != 0 ? FLAGS_epoch : std::max<uint64_t>(1, ef->epoch());
  Status s = ef->Advance(epoch_);
  if (!s.ok()) {
    FAHA_LOG_ERROR("--epoch=%llu: %s", static_cast<unsigned long long>(epoch_),
                   s.ToString().c_str());
    return 1;
  }
  return 0;
}

int Node::OpenStore() {
  sopt_.dir = FLAGS_data_dir;
  sopt_.log.segment_bytes = FLAGS_segment_mb << 20;
  sopt_.zero_fill = FLAGS_segment_zero_fill == "always"  ? nvm::ZeroFill::kAlways
                    : FLAGS_segment_zero_fill == "never" ? nvm::ZeroFill::kNever
                                                         : nvm::ZeroFill::kAuto;
  sopt_.log.drop_corrupt = FLAGS_recovery_drop_corrupt;
  // A backup (or a node that may become one) takes its primary's batches in
  // bursts, persisted together: its log has an in-flight window. A single
  // node may keep --syncs_in_flight batches syncing; a primary with backups
  // persists each batch before writing the next.
  sopt_.log.in_flight_batches =
      backup_ ? nvm::kTornWindowBatches : (FLAGS_backups.empty() ? FLAGS_syncs_in_flight : 1);
  sopt_.max_batch_bytes = FLAGS_max_batch_kb << 10;
  sopt_.log.epoch = epoch_;
  sopt_.repl_timeout_ms = FLAGS_repl_timeout_ms;
  sopt_.hot_cache_bytes = FLAGS_hot_cache_bytes;
  sopt_.cleaning.threshold = FLAGS_clean_threshold;
  sopt_.cleaning.backup_threshold = FLAGS_backup_clean_threshold;
  sopt_.cleaning.interval_ms = FLAGS_clean_interval_ms;
  auto store = Store::Open(sopt_, &metrics_, &report_);
  if (!store.ok()) {
    FAHA_LOG_ERROR("cannot open the log: %s", store.status().ToString().c_str());
    return 1;
  }
  store_ = std::move(*store);
  st_ = store_.get();
  FAHA_LOG_INFO("log: persist granularity %s (%s)", st_->log().Granularity().c_str(),
                st_->log().Granularity() == "PAGE"
                    ? "ordinary file: pwritev + fdatasync, read through a read-only mapping"
                    : "DAX: cache-line flush + fence");
  double kps = report_.seconds > 0 ? static_cast<double>(st_->KeyCount()) / report_.seconds : 0;
  FAHA_LOG_INFO(
      "recovery: %llu segments, %llu batches, %llu records, %llu keys in %.3f s "
      "(%.0f keys/s)%s",
      static_cast<unsigned long long>(report_.segments),
      static_cast<unsigned long long>(report_.batches),
      static_cast<unsigned long long>(report_.records),
      static_cast<unsigned long long>(st_->KeyCount()), report_.seconds, kps,
      report_.torn_tail ? "; torn tail dropped" : "");
  return 0;
}

int Node::Preallocate() {
  if (FLAGS_log_preallocate_mb > 0) {
    uint64_t segments = (FLAGS_log_preallocate_mb + FLAGS_segment_mb - 1) / FLAGS_segment_mb;
    int64_t t0 = MonoUs();
    Status pre = st_->mutable_log()->Preallocate(segments);
    if (!pre.ok()) {
      FAHA_LOG_ERROR("cannot preallocate %llu log segments: %s",
                     static_cast<unsigned long long>(segments), pre.ToString().c_str());
      return 1;
    }
    FAHA_LOG_INFO("preallocated %llu log segments (%llu MiB) in %.2f s",
                  static_cast<unsigned long long>(segments),
                  static_cast<unsigned long long>(segments * FLAGS_segment_mb),
                  static_cast<double>(MonoUs() - t0) / 1e6);
  }
  ProvideGauges(&metrics_, st_);
  return 0;
}

int Node::BuildServerOptions() {
  opt_.bind = FLAGS_bind;
  opt_.port = FLAGS_port;
  opt_.requirepass = FLAGS_requirepass;
  if (!FLAGS_requirepass_file.empty() &&
      !ReadSecretFile(FLAGS_requirepass_file, "--requirepass_file", &opt_.requirepass)) {
    return 2;
  }
  if (!FLAGS_metrics_password_file.empty() &&
      !ReadSecretFile(FLAGS_metrics_password_file, "--metrics_password_file", &metrics_password_)) {
    return 2;
  }
  opt_.limits.maxmemory_clients = FLAGS_maxmemory_clients_mb << 20;
  opt_.limits.output_hard_bytes = FLAGS_client_output_hard_mb << 20;
  opt_.limits.output_soft_bytes = FLAGS_client_output_soft_mb << 20;
  opt_.limits.output_soft_seconds = FLAGS_client_output_soft_seconds;
  opt_.limits.timeout_s = FLAGS_timeout;
  opt_.preauth_timeout_ms = FLAGS_preauth_timeout_ms;
  opt_.body_timeout_ms = FLAGS_body_timeout_ms;
  opt_.max_key_bytes = FLAGS_max_key_bytes;
  opt_.max_value_bytes = FLAGS_max_value_bytes;
  opt_.max_clients = FLAGS_max_clients;
  opt_.max_pipeline = FLAGS_max_pipeline;
  opt_.script_memory_bytes = uint64_t{FLAGS_script_memory_mb} << 20;
  opt_.busy_reply_threshold_ms = FLAGS_busy_reply_threshold_ms;
  opt_.databases = FLAGS_databases;
  opt_.max_batch_bytes = sopt_.max_batch_bytes;
  opt_.io_threads = FLAGS_io_threads;
  opt_.data_dir = FLAGS_data_dir;
  opt_.recovery = report_;
  opt_.recovered_keys = st_->KeyCount();
  metrics_port_ = FLAGS_metrics_port == 0 ? FLAGS_port + 2000 : FLAGS_metrics_port;
  if (FLAGS_metrics_port == 0 && FLAGS_port == 0) metrics_port_ = -1;
  opt_.metrics_port = metrics_port_;
  return 0;
}

int Node::StartReplication() {
  // What a primary ships with: now (--backups), or once elected (--etcd).
  ropt_.window = FLAGS_repl_window;
  ropt_.timeout_ms = FLAGS_repl_timeout_ms;
  ropt_.advertise =
      !FLAGS_advertise.empty() ? FLAGS_advertise : FLAGS_bind + ":" + std::to_string(FLAGS_port);
  if (!backups_.empty()) StartPrimary();
  if (backup_) {
    if (int code = StartBackup()) return code;
    if (clustered_) MakeClusterNode();
  } else {
    st_->Start();
  }
  return cluster_ ? JoinCluster() : 0;
}

void Node::StartPrimary() {
  ropt_.backups = backups_;
  ropt_.min_sync_backups =
      FLAGS_min_sync_backups < 0 ? backups_.size() : static_cast<size_t>(FLAGS_min_sync_backups);
  ropt_.epoch = epoch_;
  // Heartbeats tell the backups what is committed (their log cleaning needs it).
  ropt_.heartbeat_ms = FLAGS_heartbeat_ms;
  replicator_ = std::make_unique<Replicator>(ropt_, std::move(transport_), &st_->log());
  Replicator* r = replicator_.get();
  st_->set_clean_horizon([r] { return r->CleanHorizon(); });
  opt_.replication = replicator_.get();
  // The store was opened before the replicator existed; it needs it from Start on.
  st_->set_replicator(replicator_.get());
  replicator_->Start(st_->log().next_lsn());
  FAHA_LOG_INFO(
      "primary in epoch %llu: %zu backups (%s), %zu must be in sync, window %u "
      "batches, timeout %d ms, transport %s",
      static_cast<unsigned long long>(epoch_), backups_.size(), FLAGS_backups.c_str(),
      ropt_.min_sync_backups, FLAGS_repl_window, FLAGS_repl_timeout_ms,
      FLAGS_repl_transport.c_str());
}

int Node::StartBackup() {
  BackupOptions bopt;
  bopt.bind = FLAGS_repl_bind.empty() ? FLAGS_bind : FLAGS_repl_bind;
  bopt.port = FLAGS_repl_port >= 0 ? FLAGS_repl_port : FLAGS_port + 100;
  bopt.data_dir = FLAGS_data_dir;
  backup_service_ = std::make_unique<BackupService>(bopt, std::move(transport_), st_);
  Status bs = backup_service_->Start();
  if (!bs.ok()) {
    FAHA_LOG_ERROR("cannot start the replication port: %s", bs.ToString().c_str());
    return 1;
  }
  opt_.replication = backup_service_.get();
  opt_.stale_reads = FLAGS_stale_reads;
  FAHA_LOG_INFO("replication port %s:%d (transport %s), log at LSN %llu", bopt.bind.c_str(),
                backup_service_->port(), FLAGS_repl_transport.c_str(),
                static_cast<unsigned long long>(st_->log().next_lsn() - 1));
  repl_address_ = bopt.bind + ":" + std::to_string(backup_service_->port());
  return 0;
}

void Node::MakeClusterNode() {
  ClusterOptions copt;
  copt.etcd = FLAGS_etcd;
  copt.cluster = FLAGS_cluster;
  copt.node_id = FLAGS_node_id;
  copt.client_address = ropt_.advertise;
  copt.repl_address = repl_address_;
  copt.data_dir = FLAGS_data_dir;
  copt.lease_ttl_s = FLAGS_lease_ttl_s;
  copt.read_lease_ms = FLAGS_read_lease_ms;
  copt.heartbeat_ms = FLAGS_heartbeat_ms;
  copt.failover_timeout_ms = FLAGS_failover_timeout_ms;
  copt.election_wait_ms = FLAGS_election_wait_ms;
  copt.join_timeout_ms = FLAGS_etcd_join_timeout_ms;
  copt.replication = ropt_;
  copt.replication.min_sync_backups =
      FLAGS_min_sync_backups < 0 ? 1 : static_cast<size_t>(FLAGS_min_sync_backups);
  copt.make_transport = [topt = topt_] {
    auto t = rdma::MakeTransport(FLAGS_repl_transport, topt);
    return t.ok() ? std::move(*t) : nullptr;
  };
  copt.request_restart = [] {
    g_restart.store(true);
    if (Server* s = g_server.load()) s->RequestShutdown();
  };
  cluster_ = std::make_unique<ClusterNode>(copt, st_, std::move(backup_service_));
  opt_.replication = cluster_.get();
}

int Node::JoinCluster() {
  if (FLAGS_port == 0) {
    FAHA_LOG_ERROR("--etcd needs a fixed --port (clients are told this address)");
    return 2;
  }
  Status cs = cluster_->Start();
  if (!cs.ok()) {
    FAHA_LOG_ERROR("cannot join the cluster: %s", cs.ToString().c_str());
    return 1;
  }
  return 0;
}

int Node::OpenPorts() {
  server_ = std::make_unique<Server>(opt_, st_, &metrics_);
  // rdma:// clients: the listener first (so INFO knows), the accept loop once
  // the server runs. rdma_cm has its own port space: the same number as TCP.
  rdma::SetRemoteAccessGuard(&nvm::OverlapsLogMapping);
  if (FLAGS_rdma != "off") {
    std::string why;
    for (const auto& d : rdma::ProbeVerbsDevices(&why)) {
      FAHA_LOG_INFO("RDMA device %s", d.summary.c_str());
    }
    gateway_ = std::make_unique<RdmaGateway>(server_.get(), FLAGS_bind, FLAGS_port);
    Status gs = gateway_->Listen();
    if (gs.ok()) {
      FAHA_LOG_INFO("RDMA: serving rdma:// clients on %s:%d", FLAGS_bind.c_str(), gateway_->port());
      server_->set_rdma_info("rdma://" + FLAGS_bind + ":" + std::to_string(gateway_->port()));
    } else {
      gateway_.reset();
      if (FLAGS_rdma == "on") {
        FAHA_LOG_ERROR("--rdma=on: %s", gs.ToString().c_str());
        return 1;
      }
      FAHA_LOG_INFO("RDMA: not serving rdma:// clients (%s): TCP only", gs.message().c_str());
      server_->set_rdma_info("off (" + gs.message() + ")");
    }
  }
  return 0;
}

int Node::ServeMetrics() {
  // /metrics is served, with its password, before the client port opens: a
  // client's PING answered means every port is ready.
  collectable_ = std::make_shared<MetricsCollectable>(&metrics_);
  if (metrics_port_ > 0) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(FLAGS_metrics_bind + ":" +
                                                       std::to_string(metrics_port_));
      if (!metrics_password_.empty()) {
        exposer_->RegisterAuth(
            [password = metrics_password_](const std::string&, const std::string& given) {
              return given.size() == password.size() &&
                     CRYPTO_memcmp(given.data(), password.data(), given.size()) == 0;
            },
            "faha");
      }
      exposer_->RegisterCollectable(collectable_);
    } catch (const std::exception& e) {
      FAHA_LOG_ERROR("cannot serve /metrics on %s:%d: %s", FLAGS_metrics_bind.c_str(),
                     metrics_port_, e.what());
      return 1;
    }
  }
  return 0;
}

int Node::Start() {
  Status s = server_->Start();
  if (!s.ok()) {
    FAHA_LOG_ERROR("cannot start: %s", s.ToString().c_str());
    return 1;
  }
  if (gateway_) gateway_->Run();
  g_server.store(server_.get());
  if (g_restart.load()) server_->RequestShutdown();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  FAHA_LOG_INFO("ready: listening on %s:%d (RESP and native), metrics %s, %d I/O threads",
                FLAGS_bind.c_str(), server_->bound_port(),
                metrics_port_ > 0 ? ("on port " + std::to_string(metrics_port_)).c_str() : "off",
                opt_.io_threads);
  return 0;
}

void Node::Shutdown() {
  FAHA_LOG_INFO("shutting down: committing queued writes");
  if (gateway_) gateway_->Stop();
  server_->Stop();
  if (cluster_) cluster_->Stop();
  if (backup_service_) backup_service_->Stop();
  if (replicator_) {
    st_->set_clean_horizon(nullptr);  // the cleaner runs on until the store goes
    replicator_->Stop();
    // The store's write threads call the replicator, which goes first.
    st_->Stop();
  }
  g_server.store(nullptr);
  FAHA_LOG_INFO("shutdown complete: committed LSN %llu",
                static_cast<unsigned long long>(st_->committed_lsn()));
  if (g_restart.load()) {
    // Everything torn down first, in order: exec then has no other thread to
    // kill and no RDMA or log resource to release, and a restart that hangs
    // shows in which step.
    exposer_.reset();
    gateway_.reset();
    cluster_.reset();
    backup_service_.reset();
    replicator_.reset();
    store_.reset();
    FAHA_LOG_INFO("restarting as a backup of the new primary (%d threads left)", ThreadCount());
    fflush(nullptr);
    close_range(3, ~0u, 0);
    FAHA_LOG_INFO("restart: descriptors closed; exec");
    fflush(nullptr);
    execv("/proc/self/exe", argv_.data());
    FAHA_LOG_ERROR("cannot restart: execv: %s", strerror(errno));
    fflush(nullptr);
    _exit(1);  // the store is gone: no destructor may run
  }
}

}  // namespace faha
