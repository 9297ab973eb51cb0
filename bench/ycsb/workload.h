// faha-bench's YCSB core workload: properties (YCSB's names and defaults),
// the database interface its back-ends implement, and the runner that drives
// load and run phases over threads with measurements. docs/faha-bench.md.
#ifndef FAHA_BENCH_YCSB_WORKLOAD_H_
#define FAHA_BENCH_YCSB_WORKLOAD_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/histogram.h"
#include "faha/status.h"

namespace faha::ycsb {

// name=value lines (# comments), as YCSB's -P files; later Set()s win.
class Properties {
 public:
  Status LoadFile(const std::string& path);
  // "name=value" (a -p argument).
  Status SetPair(const std::string& pair);
  void Set(const std::string& name, const std::string& value) { values_[name] = value; }
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  std::string Get(const std::string& name, const std::string& def) const;
  // InvalidArgument naming the property if the value is not a number.
  StatusOr<int64_t> GetInt(const std::string& name, int64_t def) const;
  StatusOr<double> GetDouble(const std::string& name, double def) const;
  const std::map<std::string, std::string>& all() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

enum class Op { kRead = 0, kUpdate, kInsert, kScan, kReadModifyWrite, kCount };
const char* OpName(Op op);

struct WorkloadConfig {
  uint64_t recordcount = 1000;
  uint64_t operationcount = 1000;
  uint64_t insertstart = 0;
  uint64_t insertcount = 0;  // load phase: records to insert (default recordcount - insertstart)
  double read = 0.95, update = 0.05, insert = 0, scan = 0, readmodifywrite = 0;
  std::string requestdistribution = "uniform";  // uniform | zipfian | latest
  double zipfian_constant = 0.99;
  int fieldcount = 10;
  int fieldlength = 100;
  bool hashed_keys = true;  // insertorder=hashed (YCSB's default)
  std::string keyprefix = "user";

  static StatusOr<WorkloadConfig> From(const Properties& p);
  size_t record_bytes() const { return static_cast<size_t>(fieldcount) * fieldlength; }
  std::string Key(uint64_t keynum) const;
};

// One connection's worth of a database. Read of a missing key: NotFound.
class DB {
 public:
  virtual ~DB() = default;
  virtual Status Read(const std::string& key, std::string* value) = 0;
  virtual Status Update(const std::string& key, std::string_view value) = 0;
  virtual Status Insert(const std::string& key, std::string_view value) = 0;
};
using DBFactory = std::function<StatusOr<std::unique_ptr<DB>>()>;

// Return codes as YCSB prints them.
enum class Return { kOk = 0, kNotFound, kUnexpectedState, kError, kCount };
const char* ReturnName(Return r);

class Measurements {
 public:
  void Record(Op op, Return r, uint64_t latency_us);
  struct OpStats {
    uint64_t operations = 0;
    double average_us = 0;
    uint64_t min_us = 0, max_us = 0, p50 = 0, p95 = 0, p99 = 0, p999 = 0;
    std::array<uint64_t, static_cast<size_t>(Return::kCount)> returns{};
  };
  OpStats Stats(Op op) const;
  // Every operation together (faha-bench's [ALL] lines; not in YCSB).
  OpStats AllStats() const;
  uint64_t Operations() const;
  uint64_t Errors() const;  // every return other than OK
  // Current interval (since the last TakeInterval): ops, and per-op p50/p99.
  std::string TakeInterval(double seconds);

 private:
  struct PerOp {
    Histogram all, interval;
    std::atomic<uint64_t> min{UINT64_MAX}, max{0};
    std::array<std::atomic<uint64_t>, static_cast<size_t>(Return::kCount)> returns{};
  };
  std::array<PerOp, static_cast<size_t>(Op::kCount)> ops_;
  Histogram all_;
};

struct RunOptions {
  bool load = false;  // load phase (inserts) or run phase (the mix)
  int threads = 1;
  double target_ops = 0;  // all threads together; 0: as fast as possible
  double warmup_s = 0;    // run phase: operations in the first this-many seconds are not measured
  double status_interval_s = 10;
  bool progress_bar = false;  // load phase, on a terminal
  uint64_t seed = 1;
};

struct RunResult {
  double runtime_ms = 0;  // measured part
  uint64_t measured_ops = 0;
  Status setup;  // a thread could not connect
};

// Drives the workload; measurements go to *m. Status lines go to stderr.
RunResult RunWorkload(const WorkloadConfig& w, const RunOptions& o, const DBFactory& db,
                      Measurements* m);

// The YCSB text report, and the same as JSON.
std::string FormatReport(const RunResult& r, const Measurements& m);
std::string FormatJson(const RunResult& r, const Measurements& m, const Properties& props,
                       const std::string& phase);

}  // namespace faha::ycsb

#endif  // FAHA_BENCH_YCSB_WORKLOAD_H_
