// faha_memory_bench: how much DRAM FaHA's index spends per key, and how fast a
// store recovers. It inserts --keys keys ("key:%012d", 16 bytes) with values of
// --value_bytes bytes through a real faha::Store (MSET of 1000 keys per
// Submit, a bounded number in flight), then reports the index's memory per key
// next to a std::unordered_map<std::string, uint64_t> holding the same keys
// (measured by glibc mallinfo2() before and after building it, so malloc's own
// overhead counts), closes the store, reopens it and reports how long recovery
// (Log::Recover replaying every record into the index) took.
//
// Run:   build/faha_memory_bench [--keys N] [--value_bytes B] [--dir D] [--keep]
// --dir (default /dev/shm/faha-membench-<pid>) must not exist; it is removed at
// the end unless --keep. Output is one `name: value` line per figure.
// rss_anon_growth_bytes is the growth of anonymous resident memory (heap and
// index, not the mapped log) over the insert phase, allocator slack included.
// Single-threaded apart from the store's own sequencer thread.
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/logging.h"
#include "server/engine/store.h"
#include "server/metrics/metrics.h"

namespace faha {
namespace {

constexpr size_t kKeysPerMSet = 1000;
constexpr uint64_t kMSetsInFlight = 16;

struct Args {
  uint64_t keys = 1'000'000;
  size_t value_bytes = 100;
  std::string dir;
  bool keep = false;
};

void Usage() {
  fprintf(stderr,
          "usage: faha_memory_bench [--keys N] [--value_bytes B] [--dir D] [--keep]\n"
          "  --keys N         keys to insert (default 1000000)\n"
          "  --value_bytes B  bytes per value (default 100)\n"
          "  --dir D          store directory, must not exist (default "
          "/dev/shm/faha-membench-<pid>)\n"
          "  --keep           leave the directory in place\n");
}

// Parses "--name value" and "--name=value". Returns false on a bad command line.
bool ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (a == "--keep") {
      if (has_value) return false;
      args->keep = true;
      continue;
    }
    if (a != "--keys" && a != "--value_bytes" && a != "--dir") return false;
    if (!has_value) {
      if (i + 1 >= argc) return false;
      value = argv[++i];
    }
    if (a == "--dir") {
      args->dir = value;
      continue;
    }
    char* end = nullptr;
    unsigned long long n = std::strtoull(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || value[0] == '-') return false;
    if (a == "--keys") {
      if (n == 0 || n > 1'000'000'000'000ull) return false;
      args->keys = n;
    } else {
      if (n > (1u << 20)) return false;  // the server's default --max_value_bytes
      args->value_bytes = static_cast<size_t>(n);
    }
  }
  return true;
}

std::string Key(uint64_t i) {
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "key:%012llu", static_cast<unsigned long long>(i));
  return std::string(buf, static_cast<size_t>(n));
}

// Value of /proc/self/status field `name` ("RssAnon"), in bytes; 0 if absent.
uint64_t ProcStatusBytes(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      return std::strtoull(line.c_str() + name.size() + 1, nullptr, 10) * 1024;
    }
  }
  return 0;
}

// Bytes handed out by malloc, small (arena) and large (mmap) blocks together.
uint64_t MallocBytes() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Counts the completions of submitted writes; remembers the first error.
class CountingSink final : public CompletionSink {
 public:
  void Deliver(std::vector<Completion>* completions) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Completion& c : *completions) {
      if (c.result.kind == WriteResult::Kind::kError && first_error_.empty()) {
        first_error_ = c.result.str;
      }
    }
    done_ += completions->size();
    cv_.notify_all();
  }

  // Blocks until at least `n` completions arrived.
  void WaitFor(uint64_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ >= n; });
  }

  std::string first_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t done_ = 0;        // GUARDED_BY(mu_)
  std::string first_error_;  // GUARDED_BY(mu_)
};

int Run(const Args& args) {
  std::error_code ec;
  if (!std::filesystem::create_directory(args.dir, ec)) {
    fprintf(stderr, "faha_memory_bench: cannot create %s (%s); --dir must not exist yet\n",
            args.dir.c_str(), ec ? ec.message().c_str() : "it exists");
    return 2;
  }
  // Declared before the store, so the store is closed before its files go.
  struct RemoveAtExit {
    const Args& args;
    ~RemoveAtExit() {
      std::error_code ignored;
      if (!args.keep) std::filesystem::remove_all(args.dir, ignored);
    }
  } remove_at_exit{args};
  StoreOptions options;
  options.dir = args.dir;
  printf("keys: %llu\n", static_cast<unsigned long long>(args.keys));
  printf("value_bytes: %zu\n", args.value_bytes);
  printf("dir: %s\n", args.dir.c_str());
  printf("log_segment_bytes: %llu\n", static_cast<unsigned long long>(options.log.segment_bytes));

  const uint64_t rss_anon_before = ProcStatusBytes("RssAnon");
  Metrics metrics;
  auto opened = Store::Open(options, &metrics, nullptr);
  if (!opened.ok()) {
    fprintf(stderr, "faha_memory_bench: open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<Store> store = std::move(*opened);
  printf("log_granularity: %s\n", store->log().Granularity().c_str());
  store->Start();

  CountingSink sink;
  const std::string value(args.value_bytes, 'v');
  const uint64_t chunks = (args.keys + kKeysPerMSet - 1) / kKeysPerMSet;
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t c = 0; c < chunks; c++) {
    if (c >= kMSetsInFlight) sink.WaitFor(c - kMSetsInFlight + 1);
    WriteOp op;
    op.kind = WriteOp::Kind::kMSet;
    const uint64_t end = std::min(args.keys, (c + 1) * kKeysPerMSet);
    for (uint64_t i = c * kKeysPerMSet; i < end; i++) {
      op.args.push_back(Key(i));
      op.args.push_back(value);
    }
    store->Submit(std::move(op), &sink, 0);
  }
  sink.WaitFor(chunks);
  const double insert_seconds = Seconds(t0);
  if (std::string err = sink.first_error(); !err.empty()) {
    fprintf(stderr, "faha_memory_bench: a write failed: %s\n", err.c_str());
    return 1;
  }
  const uint64_t rss_anon_growth = ProcStatusBytes("RssAnon") - rss_anon_before;
  const uint64_t keys = store->KeyCount();
  const uint64_t index_bytes = store->IndexMemoryBytes();
  printf("insert_seconds: %.3f\n", insert_seconds);
  printf("insert_keys_per_s: %.0f\n", static_cast<double>(args.keys) / insert_seconds);
  printf("index_keys: %llu\n", static_cast<unsigned long long>(keys));
  printf("index_memory_bytes: %zu\n", static_cast<size_t>(index_bytes));
  printf("index_bytes_per_key: %.2f\n", static_cast<double>(index_bytes) / keys);
  printf("rss_anon_growth_bytes: %llu\n", static_cast<unsigned long long>(rss_anon_growth));
  printf("rss_anon_growth_bytes_per_key: %.2f\n", static_cast<double>(rss_anon_growth) / keys);
  printf("log_bytes: %llu\n", static_cast<unsigned long long>(store->log().bytes_written()));
  printf("log_segments: %llu\n", static_cast<unsigned long long>(store->log().segment_count()));

  {
    // The sequencer is idle now, so malloc's counters move only for this map.
    const uint64_t before = MallocBytes();
    auto map = std::make_unique<std::unordered_map<std::string, uint64_t>>();
    for (uint64_t i = 0; i < args.keys; i++) map->emplace(Key(i), i + 1);
    const uint64_t map_bytes = MallocBytes() - before;
    printf("unordered_map_memory_bytes: %llu\n", static_cast<unsigned long long>(map_bytes));
    printf("unordered_map_bytes_per_key: %.2f\n", static_cast<double>(map_bytes) / map->size());
    printf("index_to_unordered_map_memory_ratio: %.3f\n",
           static_cast<double>(index_bytes) / static_cast<double>(map_bytes));
  }

  store->Stop();
  store.reset();

  nvm::RecoveryReport report;
  Metrics metrics2;
  t0 = std::chrono::steady_clock::now();
  opened = Store::Open(options, &metrics2, &report);
  const double open_seconds = Seconds(t0);
  if (!opened.ok()) {
    fprintf(stderr, "faha_memory_bench: reopen: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  store = std::move(*opened);
  const uint64_t recovered = store->KeyCount();
  printf("recovery_seconds: %.3f\n", report.seconds);
  printf("recovery_open_seconds: %.3f\n", open_seconds);
  printf("recovery_batches: %llu\n", static_cast<unsigned long long>(report.batches));
  printf("recovery_records: %llu\n", static_cast<unsigned long long>(report.records));
  printf("recovery_keys: %llu\n", static_cast<unsigned long long>(recovered));
  printf("recovery_keys_per_s: %.0f\n",
         report.seconds > 0 ? static_cast<double>(recovered) / report.seconds : 0.0);
  printf("recovery_log_bytes_per_s: %.0f\n",
         report.seconds > 0 ? static_cast<double>(report.log_bytes) / report.seconds : 0.0);

  bool verified = recovered == keys && keys == args.keys;
  for (uint64_t i = 0; verified && i < args.keys; i += std::max<uint64_t>(1, args.keys / 1000)) {
    std::string got;
    verified = store->Get(Key(i), &got) && got == value;
  }
  printf("verify: %s\n", verified ? "ok" : "FAILED");
  return verified ? 0 : 1;
}

}  // namespace
}  // namespace faha

int main(int argc, char** argv) {
  faha::Args args;
  args.dir = "/dev/shm/faha-membench-" + std::to_string(getpid());
  if (!faha::ParseArgs(argc, argv, &args)) {
    faha::Usage();
    return 2;
  }
  faha::SetLogLevel(faha::LogLevel::kWarn);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  return faha::Run(args);
}
