// native_load: write load through libfaha's native protocol, for the
// RDMA client tests and the guest suite. Each connection runs on its own
// thread and sends bursts of `depth` pipelined PUTs of `value_bytes` to random
// keys of a `keyspace`, waiting for all replies before the next burst, for
// --seconds or until --ops writes were sent. Every
// write's latency (queued -> acknowledged, durable on every in-sync node) is
// recorded; one line reports ops/s and p50/p99 in microseconds.
//
//   build/faha_native_load --address=127.0.0.1:7379 --seconds=5
#include <gflags/gflags.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/histogram.h"
#include "faha/client.h"

DEFINE_string(address, "127.0.0.1:7379", "Server address HOST:PORT.");
DEFINE_int32(connections, 8, "Connections, one thread each.");
DEFINE_int32(depth, 16, "Writes pipelined per burst on each connection.");
DEFINE_int32(value_bytes, 1000, "Value size.");
DEFINE_int32(keyspace, 100000, "Distinct keys written.");
DEFINE_double(seconds, 5, "How long to run (unless --ops is set).");
DEFINE_int64(ops, 0, "Stop after this many writes in all (0: run for --seconds).");
DEFINE_int32(connect_timeout_ms, 2000,
             "How long each connection may take to set up (rdma_cm is slow under emulation).");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("write load over the native protocol (pipelined PUTs)");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_connections < 1 || FLAGS_depth < 1 || FLAGS_value_bytes < 0 || FLAGS_keyspace < 1 ||
      FLAGS_seconds <= 0 || FLAGS_connect_timeout_ms < 1) {
    fprintf(stderr,
            "faha_native_load: --connections, --depth, --keyspace, --seconds and "
            "--connect_timeout_ms must be positive\n");
    return 2;
  }
  faha::Histogram latency_us;
  std::atomic<uint64_t> ops{0}, errors{0};
  std::atomic<int64_t> issued{0};
  std::atomic<bool> stop{false}, failed{false};
  const std::string value(static_cast<size_t>(FLAGS_value_bytes), 'v');
  std::vector<std::thread> threads;
  const int64_t t0 = faha::MonoUs();
  for (int t = 0; t < FLAGS_connections; t++) {
    threads.emplace_back([&, t] {
      faha::ClientOptions o;
      o.address = FLAGS_address;
      o.connect_timeout_ms = FLAGS_connect_timeout_ms;
      auto c = faha::Client::Connect(o);
      if (!c.ok()) {
        fprintf(stderr, "faha_native_load: %s\n", c.status().ToString().c_str());
        failed = true;
        return;
      }
      std::mt19937_64 rng(t + 1);
      std::vector<int64_t> started(static_cast<size_t>(FLAGS_depth));
      while (!stop.load(std::memory_order_relaxed)) {
        if (FLAGS_ops > 0 && issued.fetch_add(FLAGS_depth) >= FLAGS_ops) break;
        for (int i = 0; i < FLAGS_depth; i++) {
          std::string key = "key:" + std::to_string(rng() % static_cast<uint64_t>(FLAGS_keyspace));
          int64_t start = faha::MonoUs();
          (*c)->PutAsync(key, value, [&, start](const faha::Status& s) {
            if (!s.ok()) {
              errors.fetch_add(1, std::memory_order_relaxed);
              return;
            }
            latency_us.Record(static_cast<uint64_t>(faha::MonoUs() - start));
            ops.fetch_add(1, std::memory_order_relaxed);
          });
        }
        if (!(*c)->Flush().ok()) {
          failed = true;
          return;
        }
      }
    });
  }
  if (FLAGS_ops <= 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(FLAGS_seconds));
    stop = true;
  }
  for (auto& th : threads) th.join();
  double secs = static_cast<double>(faha::MonoUs() - t0) / 1e6;
  printf("ops_per_sec=%.0f p50_us=%llu p99_us=%llu ops=%llu errors=%llu\n",
         static_cast<double>(ops.load()) / secs,
         static_cast<unsigned long long>(latency_us.Percentile(0.5)),
         static_cast<unsigned long long>(latency_us.Percentile(0.99)),
         static_cast<unsigned long long>(ops.load()),
         static_cast<unsigned long long>(errors.load()));
  return failed.load() || errors.load() > 0 ? 1 : 0;
}
