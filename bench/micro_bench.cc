// faha_micro_bench: Google Benchmark micro-benchmarks of FaHA's two hot
// structures, each next to a baseline measured in the same process, so that the
// ratio holds even when absolute figures drift between runs and machines.
//
//   LogAppend/<bytes>  nvm::Log::AppendBatch_wt of one batch whose payload is
//                      <bytes> long (16-byte keys, 1000-byte values, the last
//                      record's value shortened to fill the size exactly).
//   RawPersist/<bytes> the same payload bytes memcpy'd into a segment of the
//                      same LogDevice kind (Segment::Write) and persisted with
//                      the same Segment::Persist, at the same 64-byte stride.
//                      LogAppend / RawPersist is the cost of the framing: batch
//                      header, XXH3 checksum over the payload, bookkeeping.
//   Checksum/<bytes>   faha::Checksum (XXH3 through libxxhash's run-time dispatch
//                      where the build found one) against PlainXXH3/<bytes>, the
//                      library's plain XXH3_64bits_withSeed, over the same bytes.
//   IndexPut, IndexGet vs UnorderedMapPut, UnorderedMapGet: faha::Index against
//                      std::unordered_map<std::string, uint64_t> over 1M keys
//                      of 16 bytes; Put inserts all of them into an empty table
//                      (time_per_put is per key), Get looks up present keys in a
//                      fixed-seed random order (the iteration time is per key).
//
// Run:   build/faha_micro_bench [--benchmark_filter=Log] [--benchmark_min_time=1]
// Log segments (64 MiB each, as the server's default) go to $FAHA_BENCH_DIR, default
// /dev/shm/faha-bench-<pid>; the directory must not exist beforehand and is
// removed at the end. On tmpfs libpmem2 reports PAGE granularity, a segment is
// a file written with pwritev2(RWF_DSYNC) that has nothing to write back, so the
// figures show the CPU work of an append (checksum, copy, one system call), a
// stand-in for PMem, not the speed of a disk. The device prepares the next segment file on a thread
// of its own; timing starts only after it finishes, and a log is re-created (timer paused) before
// it would switch segments, so the timed loops do not share the 2 cores with file preparation. The
// benchmarks are single-threaded.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/checksum.h"
#include "common/logging.h"
#include "nvm/log.h"
#include "nvm/log_device.h"
#include "nvm/log_format.h"
#include "server/engine/index.h"

namespace faha {
namespace {

constexpr uint64_t kSegmentBytes = 64ull << 20;  // the server's default --segment_mb
constexpr size_t kKeyBytes = 16;
constexpr size_t kValueBytes = 1000;
constexpr size_t kIndexKeys = 1'000'000;

std::string g_bench_dir;  // set by main() before any benchmark runs
int g_idle_threads = 1;   // threads of this process when nothing runs in the background

// Threads of this process, from /proc/self/status; -1 if unreadable.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// Waits until the device's background thread (which allocates and faults in the
// next segment file) has exited, so that it does not steal a core from
// the timed loop. Gives up after 60 s: the figures are then merely noisier.
void WaitForDeviceThreads() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (ThreadCount() > g_idle_threads && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Payload of exactly `bytes` bytes (a multiple of 8, at least one record):
// records of 16-byte keys and 1000-byte values while they fit, then one record
// whose value is shortened to fill the rest.
std::string BuildPayload(size_t bytes, uint32_t* record_count) {
  nvm::BatchBuilder batch;
  std::string value(kValueBytes, 'v');
  for (size_t i = 0; i < value.size(); i++) value[i] = static_cast<char>('a' + i % 26);
  char key[kKeyBytes + 1];
  int n = 0;
  auto next_key = [&] {
    snprintf(key, sizeof(key), "key:%012d", n++);
    return std::string_view(key, kKeyBytes);
  };
  const size_t full = nvm::RecordSize(kKeyBytes, kValueBytes);
  while (batch.bytes() + full <= bytes) batch.Add(nvm::RecordType::kPut, next_key(), value, 0);
  const size_t left = bytes - batch.bytes();
  if (left >= nvm::RecordSize(kKeyBytes, 0)) {
    size_t short_value = left - nvm::RecordSize(kKeyBytes, 0);
    batch.Add(nvm::RecordType::kPut, next_key(), std::string_view(value).substr(0, short_value), 0);
  }
  *record_count = batch.count();
  return std::string(batch.payload());
}

// A Log on a PMem device of its own directory, recovered (empty) and ready
// for appends. Before the log would switch segments it is closed, its segment
// removed and a new log opened on the same device, which then takes the spare
// segment the device prepared in the background, as a segment switch would.
class LogUnderTest {
 public:
  explicit LogUnderTest(std::string dir) : dir_(std::move(dir)) {}
  ~LogUnderTest() { Close(); }
  LogUnderTest(const LogUnderTest&) = delete;
  LogUnderTest& operator=(const LogUnderTest&) = delete;

  // Returns with the log empty and no background work in progress.
  Status Reopen() {
    if (!device_) {
      auto device = nvm::OpenPmemDevice(dir_);
      if (!device.ok()) return device.status();
      device_ = std::move(*device);
    }
    if (log_) {
      log_.reset();
      FAHA_RETURN_IF_ERROR(device_->RemoveSegment(1));
    }
    nvm::LogOptions options;
    options.segment_bytes = kSegmentBytes;
    auto log = nvm::Log::Open(device_, options);
    if (!log.ok()) return log.status();
    log_ = std::move(*log);
    FAHA_RETURN_IF_ERROR(log_->Recover(nullptr, nullptr));
    used_ = sizeof(nvm::SegmentHeader);
    WaitForDeviceThreads();
    return Status::OK();
  }

  // True if a batch of `batch_bytes` (header and padding included) still fits
  // the log's only segment.
  bool Fits(uint64_t batch_bytes) const { return used_ + batch_bytes <= kSegmentBytes; }
  nvm::Log* log() { return log_.get(); }
  void Used(uint64_t bytes) { used_ += bytes; }

  void Close() {
    log_.reset();
    device_.reset();  // joins the device's thread, deletes its spare
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  std::string dir_;
  std::shared_ptr<nvm::LogDevice> device_;
  std::unique_ptr<nvm::Log> log_;
  uint64_t used_ = 0;
};

void BM_LogAppend(benchmark::State& state) {
  uint32_t count = 0;
  const std::string payload = BuildPayload(static_cast<size_t>(state.range(0)), &count);
  LogUnderTest lut(g_bench_dir + "/log-" + std::to_string(state.range(0)));
  Status s = lut.Reopen();
  if (!s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  const uint64_t batch_bytes = nvm::BatchSize(payload.size());
  for (auto _ : state) {
    if (!lut.Fits(batch_bytes)) {
      state.PauseTiming();
      s = lut.Reopen();
      state.ResumeTiming();
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        break;
      }
    }
    auto appended = lut.log()->AppendBatch_wt(payload, count);
    if (!appended.ok()) {
      state.SkipWithError(appended.status().ToString().c_str());
      break;
    }
    lut.Used(appended->bytes);
  }
  if (lut.log() && lut.log()->segment_count() != 1) {
    state.SkipWithError("the log switched segments inside the timed loop");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["records_per_batch"] = count;
  if (lut.log()) state.SetLabel("granularity " + lut.log()->Granularity());
}

// One segment of a PMem device of its own directory, used the way the log
// uses its segments: when full it is removed and replaced by the device's next
// segment (the spare the device prepared in the background), so the baseline
// writes into as fresh memory as the log does.
class SegmentUnderTest {
 public:
  explicit SegmentUnderTest(std::string dir) : dir_(std::move(dir)) {}
  ~SegmentUnderTest() { Close(); }
  SegmentUnderTest(const SegmentUnderTest&) = delete;
  SegmentUnderTest& operator=(const SegmentUnderTest&) = delete;

  // Returns with a new empty segment and no background work in progress.
  Status Next() {
    if (!device_) {
      auto device = nvm::OpenPmemDevice(dir_);
      if (!device.ok()) return device.status();
      device_ = std::move(*device);
    }
    if (segment_) {
      segment_.reset();
      FAHA_RETURN_IF_ERROR(device_->RemoveSegment(id_));
    }
    auto made = device_->CreateSegment(++id_, kSegmentBytes);
    if (!made.ok()) return made.status();
    segment_ = std::move(*made);
    segment_->Prefault(0, segment_->size());  // as Log::Recover does for its tail
    WaitForDeviceThreads();
    return Status::OK();
  }

  nvm::Segment* segment() { return segment_.get(); }
  std::string Granularity() const { return device_ ? device_->Granularity() : "?"; }

  void Close() {
    segment_.reset();
    device_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  std::string dir_;
  std::unique_ptr<nvm::LogDevice> device_;
  std::unique_ptr<nvm::Segment> segment_;
  uint32_t id_ = 0;
};

void BM_RawPersist(benchmark::State& state) {
  uint32_t count = 0;
  const std::string payload = BuildPayload(static_cast<size_t>(state.range(0)), &count);
  SegmentUnderTest sut(g_bench_dir + "/raw-" + std::to_string(state.range(0)));
  Status s = sut.Next();
  if (!s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  // The log's stride and start, so both touch the same lines and pages; the
  // log persists its 48-byte batch header on top of these bytes.
  const uint64_t stride = nvm::BatchSize(payload.size());
  const uint64_t start = sizeof(nvm::SegmentHeader);
  uint64_t off = start;
  for (auto _ : state) {
    if (off + stride > kSegmentBytes) {
      state.PauseTiming();
      s = sut.Next();
      state.ResumeTiming();
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        break;
      }
      off = start;
    }
    nvm::Segment* seg = sut.segment();
    seg->Write(off, payload.data(), payload.size());
    s = seg->Persist(off, payload.size());
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    off += stride;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["records_per_batch"] = count;
  state.SetLabel("granularity " + sut.Granularity());
}

// Key i lives at location (1 << 32) | (64 + 8 i): segment 1, nonzero, < 2^48.
uint64_t LocationOf(size_t i) { return nvm::MakeLocation(1, static_cast<uint32_t>(64 + 8 * i)); }

// The index's view of the "log": keys in a vector, addressed as LocationOf(i).
class VectorKeyReader final : public KeyReader {
 public:
  explicit VectorKeyReader(const std::vector<std::string>* keys) : keys_(keys) {}
  std::string_view KeyAt(uint64_t location) const override {
    return (*keys_)[(nvm::LocationOffset(location) - 64) / 8];
  }

 private:
  const std::vector<std::string>* keys_;
};

const std::vector<std::string>& Keys() {
  static const std::vector<std::string>* keys = [] {
    auto* k = new std::vector<std::string>();
    k->reserve(kIndexKeys);
    char buf[kKeyBytes + 1];
    for (size_t i = 0; i < kIndexKeys; i++) {
      snprintf(buf, sizeof(buf), "key:%012zu", i);
      k->emplace_back(buf, kKeyBytes);
    }
    return k;
  }();
  return *keys;
}

// Positions into Keys() in a fixed pseudo-random order.
const std::vector<uint32_t>& LookupOrder() {
  static const std::vector<uint32_t>* order = [] {
    auto* o = new std::vector<uint32_t>(kIndexKeys);
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<uint32_t> pick(0, kIndexKeys - 1);
    for (auto& v : *o) v = pick(rng);
    return o;
  }();
  return *order;
}

void SetPerPutCounters(benchmark::State& state) {
  const double puts = static_cast<double>(state.iterations()) * kIndexKeys;
  state.SetItemsProcessed(static_cast<int64_t>(puts));
  state.counters["time_per_put"] =
      benchmark::Counter(puts, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_IndexPut(benchmark::State& state) {
  const auto& keys = Keys();
  VectorKeyReader reader(&keys);
  size_t memory = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto index = std::make_unique<Index>(&reader);
    state.ResumeTiming();
    for (size_t i = 0; i < kIndexKeys; i++) index->Upsert(keys[i], HashKey(keys[i]), LocationOf(i));
    state.PauseTiming();
    if (index->size() != kIndexKeys) state.SkipWithError("index lost keys");
    memory = index->MemoryBytes();
    index.reset();
    state.ResumeTiming();
  }
  SetPerPutCounters(state);
  state.counters["bytes_per_key"] = static_cast<double>(memory) / kIndexKeys;
}

void BM_UnorderedMapPut(benchmark::State& state) {
  const auto& keys = Keys();
  for (auto _ : state) {
    state.PauseTiming();
    auto map = std::make_unique<std::unordered_map<std::string, uint64_t>>();
    state.ResumeTiming();
    for (size_t i = 0; i < kIndexKeys; i++) map->emplace(keys[i], LocationOf(i));
    state.PauseTiming();
    if (map->size() != kIndexKeys) state.SkipWithError("map lost keys");
    map.reset();
    state.ResumeTiming();
  }
  SetPerPutCounters(state);
}

void BM_IndexGet(benchmark::State& state) {
  const auto& keys = Keys();
  const auto& order = LookupOrder();
  VectorKeyReader reader(&keys);
  Index index(&reader);
  for (size_t i = 0; i < kIndexKeys; i++) index.Upsert(keys[i], HashKey(keys[i]), LocationOf(i));
  for (size_t i = 0; i < kIndexKeys; i += 997) {
    if (index.Find(keys[i], HashKey(keys[i])) != LocationOf(i)) {
      state.SkipWithError("index returned a wrong location");
      return;
    }
  }
  size_t j = 0;
  for (auto _ : state) {
    const std::string& key = keys[order[j]];
    benchmark::DoNotOptimize(index.Find(key, HashKey(key)));
    if (++j == order.size()) j = 0;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_UnorderedMapGet(benchmark::State& state) {
  const auto& keys = Keys();
  const auto& order = LookupOrder();
  std::unordered_map<std::string, uint64_t> map;
  for (size_t i = 0; i < kIndexKeys; i++) map.emplace(keys[i], LocationOf(i));
  size_t j = 0;
  for (auto _ : state) {
    auto it = map.find(keys[order[j]]);
    benchmark::DoNotOptimize(it);
    if (++j == order.size()) j = 0;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// Both checksum rows: `hash` over state.range(0) bytes, each result seeding the
// next (as a batch's header hash seeds its payload's).
void HashLoop(benchmark::State& state, uint64_t (*hash)(const void*, size_t, uint64_t)) {
  const std::string buf(static_cast<size_t>(state.range(0)), 'x');
  uint64_t seed = 1;
  for (auto _ : state) {
    seed = hash(buf.data(), buf.size(), seed);
    benchmark::DoNotOptimize(seed);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
void BM_Checksum(benchmark::State& state) { HashLoop(state, &Checksum); }
void BM_PlainXXH3(benchmark::State& state) { HashLoop(state, &XXH3_64bits_withSeed); }

void LogSizes(benchmark::internal::Benchmark* b) {
  for (int64_t kib : {1, 4, 16, 64}) b->Arg(kib << 10);
}

BENCHMARK(BM_PlainXXH3)->Apply(LogSizes)->MinTime(0.2);
BENCHMARK(BM_Checksum)->Apply(LogSizes)->MinTime(0.2);
BENCHMARK(BM_RawPersist)->Apply(LogSizes)->MinTime(0.2);
BENCHMARK(BM_LogAppend)->Apply(LogSizes)->MinTime(0.2);
BENCHMARK(BM_UnorderedMapPut)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_IndexPut)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_UnorderedMapGet)->MinTime(0.3);
BENCHMARK(BM_IndexGet)->MinTime(0.3);

}  // namespace
}  // namespace faha

int main(int argc, char** argv) {
  const char* env = std::getenv("FAHA_BENCH_DIR");
  faha::g_bench_dir = env && *env ? env : "/dev/shm/faha-bench-" + std::to_string(getpid());
  // Created here and removed at the end, so refuse a directory that exists:
  // removing it would delete someone else's files.
  std::error_code ec;
  if (!std::filesystem::create_directory(faha::g_bench_dir, ec)) {
    fprintf(stderr,
            "faha_micro_bench: cannot create %s (%s); FAHA_BENCH_DIR must name a "
            "directory that does not exist yet\n",
            faha::g_bench_dir.c_str(), ec ? ec.message().c_str() : "it exists");
    return 2;
  }
  faha::SetLogLevel(faha::LogLevel::kWarn);
  faha::g_idle_threads = faha::ThreadCount();
  benchmark::AddCustomContext("faha_bench_dir", faha::g_bench_dir);
  benchmark::AddCustomContext("log_segment_bytes", std::to_string(faha::kSegmentBytes));
  benchmark::Initialize(&argc, argv);
  int rc = 0;
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    rc = 1;
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  std::filesystem::remove_all(faha::g_bench_dir, ec);
  return rc;
}
