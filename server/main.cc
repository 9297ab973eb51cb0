// faha-server: a durable key-value server (single node). Flags are documented
// in docs/flags.md and by --help.
#include <gflags/gflags.h>
#include <prometheus/exposer.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <memory>

#include "common/clock.h"
#include "common/logging.h"
#include "server/server.h"
#include "server/store.h"

DEFINE_string(data_dir, "./faha-data",
              "Directory of the log segments (created if missing). "
              "Put it on a DAX mount (mount -o dax) for cache-line persistence.");
DEFINE_string(bind, "127.0.0.1", "IPv4 address to listen on (client and metrics ports).");
DEFINE_int32(port, 7379, "Client port: RESP and the native protocol. 0 picks a free port.");
DEFINE_int32(metrics_port, 0, "Prometheus /metrics port: 0 means --port + 2000, -1 disables.");
DEFINE_string(requirepass, "",
              "Password clients must give with AUTH (empty: no auth). Prefer "
              "--flagfile with a 0600 file over the command line, which others can read in ps.");
DEFINE_uint32(max_key_bytes, 16 << 10, "Longest key accepted, in bytes.");
DEFINE_uint32(max_value_bytes, 1 << 20, "Longest value accepted, in bytes.");
DEFINE_uint32(max_clients, 10000, "Most client connections at once; more are refused.");
DEFINE_uint32(max_pipeline, 4096, "Most writes one connection may have in flight.");
DEFINE_int32(io_threads, 2, "Threads serving client connections.");
DEFINE_uint64(segment_mb, 64, "Size of each log segment file, in MiB (1..4095).");
DEFINE_uint64(max_batch_kb, 8192, "Largest group-commit batch, in KiB.");
DEFINE_bool(recovery_drop_corrupt, false,
            "If recovery finds a damaged batch with valid batches "
            "after it (lost media), drop the log from the damaged batch on instead of refusing to "
            "start. What was dropped is logged. Never needed for a torn tail.");
DEFINE_string(log_level, "info", "debug, info, warn or error.");
DEFINE_uint64(log_preallocate_mb, 0, "Log space to allocate and fault in at start, in MiB "
              "(rounded up to whole segments), so the write path does not wait for the kernel "
              "to allocate memory until it is used up. 0: one spare segment, prepared in the "
              "background.");

namespace {
faha::Server* g_server = nullptr;
void OnSignal(int) {
  if (g_server) g_server->RequestShutdown();
}

bool Fail(const std::string& msg) {
  FAHA_LOG_ERROR("%s", msg.c_str());
  return false;
}

bool ValidateFlags() {
  if (FLAGS_port < 0 || FLAGS_port > 65535) return Fail("--port must be in 0..65535");
  if (FLAGS_metrics_port < -1 || FLAGS_metrics_port > 65535)
    return Fail("--metrics_port must be -1..65535");
  if (FLAGS_segment_mb < 1 || FLAGS_segment_mb > 4095)
    return Fail("--segment_mb must be in 1..4095");
  if (FLAGS_io_threads < 1 || FLAGS_io_threads > 64) return Fail("--io_threads must be in 1..64");
  if (FLAGS_max_key_bytes < 1) return Fail("--max_key_bytes must be at least 1");
  if (FLAGS_max_clients < 1) return Fail("--max_clients must be at least 1");
  if (FLAGS_max_pipeline < 1) return Fail("--max_pipeline must be at least 1");
  uint64_t record = 64 + static_cast<uint64_t>(FLAGS_max_key_bytes) + FLAGS_max_value_bytes;
  uint64_t batch = FLAGS_max_batch_kb << 10;
  if (batch < record) {
    return Fail("--max_batch_kb (" + std::to_string(FLAGS_max_batch_kb) +
                ") must hold one record of --max_key_bytes + --max_value_bytes");
  }
  if (batch + 4096 > (FLAGS_segment_mb << 20)) {
    return Fail("--max_batch_kb must be smaller than --segment_mb");
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
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

  faha::Metrics metrics;
  faha::StoreOptions sopt;
  sopt.dir = FLAGS_data_dir;
  sopt.log.segment_bytes = FLAGS_segment_mb << 20;
  sopt.log.drop_corrupt = FLAGS_recovery_drop_corrupt;
  sopt.max_batch_bytes = FLAGS_max_batch_kb << 10;
  FAHA_LOG_INFO("faha-server 0.1.0 starting: data_dir=%s", FLAGS_data_dir.c_str());
  faha::nvm::RecoveryReport report;
  auto store = faha::Store::Open(sopt, &metrics, &report);
  if (!store.ok()) {
    FAHA_LOG_ERROR("cannot open the log: %s", store.status().ToString().c_str());
    return 1;
  }
  faha::Store* st = store->get();
  FAHA_LOG_INFO(
      "log: persist granularity %s (%s)", st->log().Granularity().c_str(),
      st->log().Granularity() == "PAGE" ? "ordinary file: msync" : "DAX: cache-line flush + fence");
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
  metrics.log_bytes = [st] { return st->log().bytes_written(); };
  metrics.log_segments = [st] { return st->log().segment_count(); };
  metrics.index_keys = [st] { return st->KeyCount(); };
  metrics.index_memory_bytes = [st] { return st->IndexMemoryBytes(); };

  faha::ServerOptions opt;
  opt.bind = FLAGS_bind;
  opt.port = FLAGS_port;
  opt.requirepass = FLAGS_requirepass;
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

  st->Start();
  faha::Server server(opt, st, &metrics);
  faha::Status s = server.Start();
  if (!s.ok()) {
    FAHA_LOG_ERROR("cannot start: %s", s.ToString().c_str());
    return 1;
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  auto collectable = std::make_shared<faha::MetricsCollectable>(&metrics);
  if (metrics_port > 0) {
    try {
      exposer =
          std::make_unique<prometheus::Exposer>(FLAGS_bind + ":" + std::to_string(metrics_port));
      exposer->RegisterCollectable(collectable);
    } catch (const std::exception& e) {
      FAHA_LOG_ERROR("cannot serve /metrics on %s:%d: %s", FLAGS_bind.c_str(), metrics_port,
                     e.what());
      server.Stop();
      return 1;
    }
  }
  g_server = &server;
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
  server.Stop();
  g_server = nullptr;
  FAHA_LOG_INFO("shutdown complete: committed LSN %llu",
                static_cast<unsigned long long>(st->committed_lsn()));
  return 0;
}
