// faha-server: a durable key-value server: a single node, or the primary or a
// backup of a replicated cluster. Flags are documented in docs/flags.md and by --help.
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

using faha::LoadSecret;
using faha::ReadSecretFile;
using faha::SplitList;
using faha::ValidateFlags;

namespace {
// Set by main once the server exists; read by the signal handler and by the
// cluster thread (a deposed primary asks for a restart), which start earlier.
std::atomic<faha::Server*> g_server{nullptr};
std::atomic<bool> g_restart{false};
void OnSignal(int) {
  if (faha::Server* s = g_server.load()) s->RequestShutdown();
}

// A crash says so in the log, with the stack of the thread that crashed, and
// then dies of the same signal (so a supervisor sees the real cause). Only
// async-signal-safe calls, and backtrace() was warmed up at start-up so that
// it does not load libgcc inside the handler. Sanitizer builds keep their own
// handlers, which report more.
#if !defined(__SANITIZE_ADDRESS__)
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
#if !defined(__SANITIZE_ADDRESS__)
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
void ProvideGauges(faha::Metrics* metrics, faha::Store* st) {
  metrics->log_bytes = [st] { return st->log().bytes_written(); };
  metrics->log_segments = [st] { return st->log().segment_count(); };
  metrics->index_keys = [st] { return st->KeyCount(); };
  metrics->index_memory_bytes = [st] { return st->IndexMemoryBytes(); };
  metrics->log_file_bytes = [st] { return st->log().file_bytes(); };
  metrics->log_segments_cleaned = [st] { return st->log().segments_cleaned(); };
  metrics->hot_cache_bytes = [st] { return st->hot().bytes(); };
  metrics->hot_cache_keys = [st] { return st->hot().size(); };
  metrics->committed_lsn = [st] { return st->committed_lsn(); };
}

}  // namespace

int main(int argc, char** argv) {
  // A deposed primary re-executes itself with the same arguments.
  std::vector<char*> original_argv(argv, argv + argc);
  original_argv.push_back(nullptr);
  gflags::SetUsageMessage("durable key-value server; see docs/flags.md");
  gflags::SetVersionString("0.1.0");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1) {
    fprintf(stderr, "faha-server: unexpected argument '%s' (flags start with --)\n", argv[1]);
    return 2;
  }
  if (FLAGS_log_level == "debug")
    faha::SetLogLevel(faha::LogLevel::kDebug);
  else if (FLAGS_log_level == "warn")
    faha::SetLogLevel(faha::LogLevel::kWarn);
  else if (FLAGS_log_level == "error")
    faha::SetLogLevel(faha::LogLevel::kError);
  else if (FLAGS_log_level != "info") {
    fprintf(stderr, "faha-server: --log_level must be debug, info, warn or error\n");
    return 2;
  }
  if (!ValidateFlags()) return 2;

  // Room for max_clients sockets plus log segments and internals.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < FLAGS_max_clients + 128ull) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, FLAGS_max_clients + 128ull);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  InstallFatalSignalReport();

  const bool clustered = !FLAGS_etcd.empty();
  const bool backup = FLAGS_role == "backup" || clustered;
  const std::vector<std::string> backups = SplitList(FLAGS_backups);
  const bool replicated = backup || !backups.empty();
  // First, before anything that could wait (the RDMA transport, the log):
  // a restart (execv) that hangs then shows where.
  FAHA_LOG_INFO("faha-server 0.1.0 starting (pid %d): role=%s data_dir=%s",
                static_cast<int>(getpid()),
                clustered ? "chosen through etcd"
                : backup  ? "backup"
                          : (backups.empty() ? "single node" : "primary"),
                FLAGS_data_dir.c_str());
  if (backups.size() > 3) {
    FAHA_LOG_ERROR("--backups lists %zu backups; at most 3 are supported", backups.size());
    return 2;
  }
  if (!clustered &&
      (FLAGS_min_sync_backups > static_cast<int>(backups.size()) || FLAGS_min_sync_backups < -1)) {
    FAHA_LOG_ERROR("--min_sync_backups must be -1..%zu (the number of --backups)", backups.size());
    return 2;
  }
  if (FLAGS_rdma != "auto" && FLAGS_rdma != "on" && FLAGS_rdma != "off") {
    FAHA_LOG_ERROR("--rdma must be auto, on or off (not '%s')", FLAGS_rdma.c_str());
    return 2;
  }
  std::string secret;
  if (replicated && !LoadSecret(&secret)) return 2;
  std::unique_ptr<faha::rdma::Transport> transport;
  faha::rdma::TransportOptions topt;
  topt.secret = secret;
  topt.max_frame_body = static_cast<uint32_t>((FLAGS_max_batch_kb << 10) + 4096);
  if (replicated) {
    auto t = faha::rdma::MakeTransport(FLAGS_repl_transport, topt);
    if (!t.ok()) {
      FAHA_LOG_ERROR("--repl_transport: %s", t.status().ToString().c_str());
      return 2;
    }
    transport = std::move(*t);
    FAHA_LOG_INFO("replication transport %s ready", FLAGS_repl_transport.c_str());
  }
  uint64_t epoch = 0;
  if (!backups.empty()) {
    // A primary's epoch is persisted so that a restart cannot go back.
    if (mkdir(FLAGS_data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      FAHA_LOG_ERROR("cannot create %s: %s", FLAGS_data_dir.c_str(), strerror(errno));
      return 1;
    }
    auto ef = faha::nvm::EpochFile::Open(FLAGS_data_dir);
    if (!ef.ok()) {
      FAHA_LOG_ERROR("cannot read the epoch: %s", ef.status().ToString().c_str());
      return 1;
    }
    epoch = FLAGS_epoch != 0 ? FLAGS_epoch : std::max<uint64_t>(1, ef->epoch());
    faha::Status s = ef->Advance(epoch);
    if (!s.ok()) {
      FAHA_LOG_ERROR("--epoch=%llu: %s", static_cast<unsigned long long>(epoch),
                     s.ToString().c_str());
      return 1;
    }
  }

  faha::Metrics metrics;
  faha::StoreOptions sopt;
  sopt.dir = FLAGS_data_dir;
  sopt.log.segment_bytes = FLAGS_segment_mb << 20;
  sopt.log.drop_corrupt = FLAGS_recovery_drop_corrupt;
  // A backup (or a node that may become one) takes its primary's batches in
  // bursts, persisted together: its log has an in-flight window. A single
  // node may keep --syncs_in_flight batches syncing; a primary with backups
  // persists each batch before writing the next.
  sopt.log.in_flight_batches =
      backup ? faha::nvm::kTornWindowBatches : (FLAGS_backups.empty() ? FLAGS_syncs_in_flight : 1);
  sopt.max_batch_bytes = FLAGS_max_batch_kb << 10;
  sopt.log.epoch = epoch;
  sopt.repl_timeout_ms = FLAGS_repl_timeout_ms;
  sopt.hot_cache_bytes = FLAGS_hot_cache_bytes;
  sopt.clean_threshold = FLAGS_clean_threshold;
  sopt.backup_clean_threshold = FLAGS_backup_clean_threshold;
  sopt.clean_interval_ms = FLAGS_clean_interval_ms;
  faha::nvm::RecoveryReport report;
  auto store = faha::Store::Open(sopt, &metrics, &report);
  if (!store.ok()) {
    FAHA_LOG_ERROR("cannot open the log: %s", store.status().ToString().c_str());
    return 1;
  }
  faha::Store* st = store->get();
  FAHA_LOG_INFO("log: persist granularity %s (%s)", st->log().Granularity().c_str(),
                st->log().Granularity() == "PAGE"
                    ? "ordinary file: pwritev + fdatasync, read through a read-only mapping"
                    : "DAX: cache-line flush + fence");
  double kps = report.seconds > 0 ? static_cast<double>(st->KeyCount()) / report.seconds : 0;
  FAHA_LOG_INFO(
      "recovery: %llu segments, %llu batches, %llu records, %llu keys in %.3f s "
      "(%.0f keys/s)%s",
      static_cast<unsigned long long>(report.segments),
      static_cast<unsigned long long>(report.batches),
      static_cast<unsigned long long>(report.records),
      static_cast<unsigned long long>(st->KeyCount()), report.seconds, kps,
      report.torn_tail ? "; torn tail dropped" : "");

  if (FLAGS_log_preallocate_mb > 0) {
    uint64_t segments = (FLAGS_log_preallocate_mb + FLAGS_segment_mb - 1) / FLAGS_segment_mb;
    int64_t t0 = faha::MonoUs();
    faha::Status pre = st->mutable_log()->Preallocate(segments);
    if (!pre.ok()) {
      FAHA_LOG_ERROR("cannot preallocate %llu log segments: %s",
                     static_cast<unsigned long long>(segments), pre.ToString().c_str());
      return 1;
    }
    FAHA_LOG_INFO("preallocated %llu log segments (%llu MiB) in %.2f s",
                  static_cast<unsigned long long>(segments),
                  static_cast<unsigned long long>(segments * FLAGS_segment_mb),
                  static_cast<double>(faha::MonoUs() - t0) / 1e6);
  }
  ProvideGauges(&metrics, st);

  faha::ServerOptions opt;
  opt.bind = FLAGS_bind;
  opt.port = FLAGS_port;
  opt.requirepass = FLAGS_requirepass;
  if (!FLAGS_requirepass_file.empty() &&
      !ReadSecretFile(FLAGS_requirepass_file, "--requirepass_file", &opt.requirepass)) {
    return 2;
  }
  std::string metrics_password;
  if (!FLAGS_metrics_password_file.empty() &&
      !ReadSecretFile(FLAGS_metrics_password_file, "--metrics_password_file", &metrics_password)) {
    return 2;
  }
  opt.limits.maxmemory_clients = FLAGS_maxmemory_clients_mb << 20;
  opt.limits.output_hard_bytes = FLAGS_client_output_hard_mb << 20;
  opt.limits.output_soft_bytes = FLAGS_client_output_soft_mb << 20;
  opt.limits.output_soft_seconds = FLAGS_client_output_soft_seconds;
  opt.limits.timeout_s = FLAGS_timeout;
  opt.preauth_timeout_ms = FLAGS_preauth_timeout_ms;
  opt.body_timeout_ms = FLAGS_body_timeout_ms;
  RaiseOpenFilesLimit(FLAGS_max_clients);
  opt.max_key_bytes = FLAGS_max_key_bytes;
  opt.max_value_bytes = FLAGS_max_value_bytes;
  opt.max_clients = FLAGS_max_clients;
  opt.max_pipeline = FLAGS_max_pipeline;
  opt.max_batch_bytes = sopt.max_batch_bytes;
  opt.io_threads = FLAGS_io_threads;
  opt.data_dir = FLAGS_data_dir;
  opt.recovery = report;
  opt.recovered_keys = st->KeyCount();
  int metrics_port = FLAGS_metrics_port == 0 ? FLAGS_port + 2000 : FLAGS_metrics_port;
  if (FLAGS_metrics_port == 0 && FLAGS_port == 0) metrics_port = -1;
  opt.metrics_port = metrics_port;

  std::unique_ptr<faha::Replicator> replicator;
  std::unique_ptr<faha::BackupService> backup_service;
  std::unique_ptr<faha::ClusterNode> cluster;
  // What a primary ships with: now (--backups), or once elected (--etcd).
  faha::ReplicatorOptions ropt;
  ropt.window = FLAGS_repl_window;
  ropt.timeout_ms = FLAGS_repl_timeout_ms;
  ropt.advertise =
      !FLAGS_advertise.empty() ? FLAGS_advertise : FLAGS_bind + ":" + std::to_string(FLAGS_port);
  if (!backups.empty()) {
    ropt.backups = backups;
    ropt.min_sync_backups =
        FLAGS_min_sync_backups < 0 ? backups.size() : static_cast<size_t>(FLAGS_min_sync_backups);
    ropt.epoch = epoch;
    // Heartbeats tell the backups what is committed (their log cleaning needs it).
    ropt.heartbeat_ms = FLAGS_heartbeat_ms;
    replicator = std::make_unique<faha::Replicator>(ropt, std::move(transport), &st->log());
    faha::Replicator* r = replicator.get();
    st->set_clean_horizon([r] { return r->CleanHorizon(); });
    opt.replication = replicator.get();
    // The store was opened before the replicator existed; it needs it from Start on.
    st->set_replicator(replicator.get());
    replicator->Start(st->log().next_lsn());
    FAHA_LOG_INFO(
        "primary in epoch %llu: %zu backups (%s), %zu must be in sync, window %u "
        "batches, timeout %d ms, transport %s",
        static_cast<unsigned long long>(epoch), backups.size(), FLAGS_backups.c_str(),
        ropt.min_sync_backups, FLAGS_repl_window, FLAGS_repl_timeout_ms,
        FLAGS_repl_transport.c_str());
  }
  if (backup) {
    faha::BackupOptions bopt;
    bopt.bind = FLAGS_repl_bind.empty() ? FLAGS_bind : FLAGS_repl_bind;
    bopt.port = FLAGS_repl_port >= 0 ? FLAGS_repl_port : FLAGS_port + 100;
    bopt.data_dir = FLAGS_data_dir;
    backup_service = std::make_unique<faha::BackupService>(bopt, std::move(transport), st);
    faha::Status bs = backup_service->Start();
    if (!bs.ok()) {
      FAHA_LOG_ERROR("cannot start the replication port: %s", bs.ToString().c_str());
      return 1;
    }
    opt.replication = backup_service.get();
    opt.stale_reads = FLAGS_stale_reads;
    FAHA_LOG_INFO("replication port %s:%d (transport %s), log at LSN %llu", bopt.bind.c_str(),
                  backup_service->port(), FLAGS_repl_transport.c_str(),
                  static_cast<unsigned long long>(st->log().next_lsn() - 1));
    if (clustered) {
      faha::ClusterOptions copt;
      copt.etcd = FLAGS_etcd;
      copt.cluster = FLAGS_cluster;
      copt.node_id = FLAGS_node_id;
      copt.client_address = ropt.advertise;
      copt.repl_address = bopt.bind + ":" + std::to_string(backup_service->port());
      copt.data_dir = FLAGS_data_dir;
      copt.lease_ttl_s = FLAGS_lease_ttl_s;
      copt.read_lease_ms = FLAGS_read_lease_ms;
      copt.heartbeat_ms = FLAGS_heartbeat_ms;
      copt.failover_timeout_ms = FLAGS_failover_timeout_ms;
      copt.election_wait_ms = FLAGS_election_wait_ms;
      copt.join_timeout_ms = FLAGS_etcd_join_timeout_ms;
      copt.replication = ropt;
      copt.replication.min_sync_backups =
          FLAGS_min_sync_backups < 0 ? 1 : static_cast<size_t>(FLAGS_min_sync_backups);
      copt.make_transport = [topt] {
        auto t = faha::rdma::MakeTransport(FLAGS_repl_transport, topt);
        return t.ok() ? std::move(*t) : nullptr;
      };
      copt.request_restart = [] {
        g_restart.store(true);
        if (faha::Server* s = g_server.load()) s->RequestShutdown();
      };
      cluster = std::make_unique<faha::ClusterNode>(copt, st, std::move(backup_service));
      opt.replication = cluster.get();
    }
  } else {
    st->Start();
  }
  if (cluster) {
    if (FLAGS_port == 0) {
      FAHA_LOG_ERROR("--etcd needs a fixed --port (clients are told this address)");
      return 2;
    }
    faha::Status cs = cluster->Start();
    if (!cs.ok()) {
      FAHA_LOG_ERROR("cannot join the cluster: %s", cs.ToString().c_str());
      return 1;
    }
  }
  faha::Server server(opt, st, &metrics);
  // rdma:// clients: the listener first (so INFO knows), the accept loop once
  // the server runs. rdma_cm has its own port space: the same number as TCP.
  std::unique_ptr<faha::RdmaGateway> gateway;
  faha::rdma::SetRemoteAccessGuard(&faha::nvm::OverlapsLogMapping);
  if (FLAGS_rdma != "off") {
    std::string why;
    for (const auto& d : faha::rdma::ProbeVerbsDevices(&why)) {
      FAHA_LOG_INFO("RDMA device %s", d.summary.c_str());
    }
    gateway = std::make_unique<faha::RdmaGateway>(&server, FLAGS_bind, FLAGS_port);
    faha::Status gs = gateway->Listen();
    if (gs.ok()) {
      FAHA_LOG_INFO("RDMA: serving rdma:// clients on %s:%d", FLAGS_bind.c_str(), gateway->port());
      server.set_rdma_info("rdma://" + FLAGS_bind + ":" + std::to_string(gateway->port()));
    } else {
      gateway.reset();
      if (FLAGS_rdma == "on") {
        FAHA_LOG_ERROR("--rdma=on: %s", gs.ToString().c_str());
        return 1;
      }
      FAHA_LOG_INFO("RDMA: not serving rdma:// clients (%s): TCP only", gs.message().c_str());
      server.set_rdma_info("off (" + gs.message() + ")");
    }
  }
  // /metrics is served, with its password, before the client port opens: a
  // client's PING answered means every port is ready.
  std::unique_ptr<prometheus::Exposer> exposer;
  auto collectable = std::make_shared<faha::MetricsCollectable>(&metrics);
  if (metrics_port > 0) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(FLAGS_metrics_bind + ":" +
                                                      std::to_string(metrics_port));
      if (!metrics_password.empty()) {
        exposer->RegisterAuth(
            [metrics_password](const std::string&, const std::string& password) {
              return password.size() == metrics_password.size() &&
                     CRYPTO_memcmp(password.data(), metrics_password.data(), password.size()) == 0;
            },
            "faha");
      }
      exposer->RegisterCollectable(collectable);
    } catch (const std::exception& e) {
      FAHA_LOG_ERROR("cannot serve /metrics on %s:%d: %s", FLAGS_metrics_bind.c_str(), metrics_port,
                     e.what());
      return 1;
    }
  }
  faha::Status s = server.Start();
  if (!s.ok()) {
    FAHA_LOG_ERROR("cannot start: %s", s.ToString().c_str());
    return 1;
  }
  if (gateway) gateway->Run();
  g_server.store(&server);
  if (g_restart.load()) server.RequestShutdown();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  FAHA_LOG_INFO("ready: listening on %s:%d (RESP and native), metrics %s, %d I/O threads",
                FLAGS_bind.c_str(), server.bound_port(),
                metrics_port > 0 ? ("on port " + std::to_string(metrics_port)).c_str() : "off",
                FLAGS_io_threads);
  server.Wait();
  FAHA_LOG_INFO("shutting down: committing queued writes");
  if (gateway) gateway->Stop();
  server.Stop();
  if (cluster) cluster->Stop();
  if (backup_service) backup_service->Stop();
  if (replicator) {
    st->set_clean_horizon(nullptr);  // the cleaner runs on until the store goes
    replicator->Stop();
  }
  g_server.store(nullptr);
  FAHA_LOG_INFO("shutdown complete: committed LSN %llu",
                static_cast<unsigned long long>(st->committed_lsn()));
  if (g_restart.load()) {
    // Everything torn down first, in order: exec then has no other thread to
    // kill and no RDMA or log resource to release, and a restart that hangs
    // shows in which step.
    exposer.reset();
    gateway.reset();
    cluster.reset();
    backup_service.reset();
    replicator.reset();
    store->reset();
    FAHA_LOG_INFO("restarting as a backup of the new primary (%d threads left)", ThreadCount());
    fflush(nullptr);
    close_range(3, ~0u, 0);
    FAHA_LOG_INFO("restart: descriptors closed; exec");
    fflush(nullptr);
    execv("/proc/self/exe", original_argv.data());
    FAHA_LOG_ERROR("cannot restart: execv: %s", strerror(errno));
    fflush(nullptr);
    _exit(1);  // the store is gone: no destructor may run
  }
  return 0;
}
