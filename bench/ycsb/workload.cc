#include "bench/ycsb/workload.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench/ycsb/generators.h"
#include "common/clock.h"

namespace faha::ycsb {

namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

constexpr size_t kOps = static_cast<size_t>(Op::kCount);
constexpr size_t kReturns = static_cast<size_t>(Return::kCount);

}  // namespace

Status Properties::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot read workload file " + path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    Status s = SetPair(line);
    if (!s.ok()) return s.WithPrefix(path + ":" + std::to_string(n) + ": ");
  }
  return Status::OK();
}

Status Properties::SetPair(const std::string& pair) {
  size_t eq = pair.find('=');
  if (eq == std::string::npos || Trim(pair.substr(0, eq)).empty()) {
    return Status::InvalidArgument("'" + pair + "' is not name=value");
  }
  values_[Trim(pair.substr(0, eq))] = Trim(pair.substr(eq + 1));
  return Status::OK();
}

std::string Properties::Get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

StatusOr<int64_t> Properties::GetInt(const std::string& name, int64_t def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  try {
    size_t used = 0;
    int64_t v = std::stoll(it->second, &used);
    if (used != it->second.size()) throw std::exception();
    return v;
  } catch (const std::exception&) {
    return Status::InvalidArgument("property " + name + "=" + it->second + " is not an integer");
  }
}

StatusOr<double> Properties::GetDouble(const std::string& name, double def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  try {
    size_t used = 0;
    double v = std::stod(it->second, &used);
    if (used != it->second.size() || !std::isfinite(v)) throw std::exception();
    return v;
  } catch (const std::exception&) {
    return Status::InvalidArgument("property " + name + "=" + it->second + " is not a number");
  }
}

const char* OpName(Op op) {
  switch (op) {
    case Op::kRead:
      return "READ";
    case Op::kUpdate:
      return "UPDATE";
    case Op::kInsert:
      return "INSERT";
    case Op::kScan:
      return "SCAN";
    case Op::kReadModifyWrite:
      return "READ-MODIFY-WRITE";
    case Op::kCount:
      break;
  }
  return "?";
}

const char* ReturnName(Return r) {
  switch (r) {
    case Return::kOk:
      return "OK";
    case Return::kNotFound:
      return "NOT_FOUND";
    case Return::kUnexpectedState:
      return "UNEXPECTED_STATE";
    case Return::kError:
      return "ERROR";
    case Return::kCount:
      break;
  }
  return "?";
}

StatusOr<WorkloadConfig> WorkloadConfig::From(const Properties& p) {
  WorkloadConfig w;
  auto count = [&](const char* name, int64_t def, int64_t min, uint64_t* out) -> Status {
    auto v = p.GetInt(name, def);
    if (!v.ok()) return v.status();
    if (*v < min) {
      return Status::InvalidArgument(std::string("property ") + name + " must be at least " +
                                     std::to_string(min));
    }
    *out = static_cast<uint64_t>(*v);
    return Status::OK();
  };
  FAHA_RETURN_IF_ERROR(count("recordcount", 1000, 1, &w.recordcount));
  FAHA_RETURN_IF_ERROR(count("operationcount", 1000, 0, &w.operationcount));
  FAHA_RETURN_IF_ERROR(count("insertstart", 0, 0, &w.insertstart));
  if (w.insertstart >= w.recordcount) {
    return Status::InvalidArgument("insertstart must be below recordcount");
  }
  FAHA_RETURN_IF_ERROR(
      count("insertcount", static_cast<int64_t>(w.recordcount - w.insertstart), 0, &w.insertcount));
  struct {
    const char* name;
    double def;
    double* out;
  } props[] = {{"readproportion", 0.95, &w.read},
               {"updateproportion", 0.05, &w.update},
               {"insertproportion", 0, &w.insert},
               {"scanproportion", 0, &w.scan},
               {"readmodifywriteproportion", 0, &w.readmodifywrite},
               {"zipfianconstant", 0.99, &w.zipfian_constant}};
  for (auto& pr : props) {
    auto v = p.GetDouble(pr.name, pr.def);
    if (!v.ok()) return v.status();
    if (*v < 0 || *v > 1.0 + 1e-9) {
      return Status::InvalidArgument(std::string("property ") + pr.name + " must be in [0, 1]");
    }
    *pr.out = *v;
  }
  if (w.zipfian_constant >= 1.0 || w.zipfian_constant <= 0) {
    return Status::InvalidArgument("zipfianconstant must be in (0, 1)");
  }
  const double sum = w.read + w.update + w.insert + w.scan + w.readmodifywrite;
  if (sum <= 0) return Status::InvalidArgument("every operation proportion is 0");
  w.requestdistribution = p.Get("requestdistribution", "uniform");
  if (w.requestdistribution != "uniform" && w.requestdistribution != "zipfian" &&
      w.requestdistribution != "latest") {
    return Status::InvalidArgument("requestdistribution=" + w.requestdistribution +
                                   " is not supported (uniform, zipfian, latest)");
  }
  uint64_t fc = 0, fl = 0;
  FAHA_RETURN_IF_ERROR(count("fieldcount", 10, 1, &fc));
  FAHA_RETURN_IF_ERROR(count("fieldlength", 100, 1, &fl));
  if (fc * fl > (64u << 20))
    return Status::InvalidArgument("fieldcount x fieldlength above 64 MiB");
  w.fieldcount = static_cast<int>(fc);
  w.fieldlength = static_cast<int>(fl);
  const std::string order = p.Get("insertorder", "hashed");
  if (order != "hashed" && order != "ordered") {
    return Status::InvalidArgument("insertorder must be hashed or ordered");
  }
  w.hashed_keys = order == "hashed";
  w.keyprefix = p.Get("keyprefix", "user");
  return w;
}

std::string WorkloadConfig::Key(uint64_t keynum) const {
  return keyprefix + std::to_string(hashed_keys ? FnvHash64(keynum) : keynum);
}

void Measurements::Record(Op op, Return r, uint64_t latency_us) {
  PerOp& p = ops_[static_cast<size_t>(op)];
  all_.Record(latency_us);
  p.all.Record(latency_us);
  p.interval.Record(latency_us);
  p.returns[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  uint64_t cur = p.min.load(std::memory_order_relaxed);
  while (latency_us < cur && !p.min.compare_exchange_weak(cur, latency_us)) {
  }
  cur = p.max.load(std::memory_order_relaxed);
  while (latency_us > cur && !p.max.compare_exchange_weak(cur, latency_us)) {
  }
}

Measurements::OpStats Measurements::Stats(Op op) const {
  const PerOp& p = ops_[static_cast<size_t>(op)];
  OpStats s;
  s.operations = p.all.Count();
  if (s.operations == 0) return s;
  s.average_us = p.all.Mean();
  s.min_us = p.min.load();
  s.max_us = p.max.load();
  s.p50 = p.all.Percentile(0.50);
  s.p95 = p.all.Percentile(0.95);
  s.p99 = p.all.Percentile(0.99);
  s.p999 = p.all.Percentile(0.999);
  for (size_t i = 0; i < kReturns; i++) s.returns[i] = p.returns[i].load();
  return s;
}

Measurements::OpStats Measurements::AllStats() const {
  OpStats s;
  s.operations = all_.Count();
  if (s.operations == 0) return s;
  s.average_us = all_.Mean();
  s.min_us = UINT64_MAX;
  for (size_t i = 0; i < kOps; i++) {
    const OpStats o = Stats(static_cast<Op>(i));
    if (o.operations == 0) continue;
    s.min_us = std::min(s.min_us, o.min_us);
    s.max_us = std::max(s.max_us, o.max_us);
    for (size_t k = 0; k < kReturns; k++) s.returns[k] += o.returns[k];
  }
  s.p50 = all_.Percentile(0.50);
  s.p95 = all_.Percentile(0.95);
  s.p99 = all_.Percentile(0.99);
  s.p999 = all_.Percentile(0.999);
  return s;
}

uint64_t Measurements::Operations() const {
  uint64_t n = 0;
  for (const auto& p : ops_) n += p.all.Count();
  return n;
}

uint64_t Measurements::Errors() const {
  uint64_t n = 0;
  for (const auto& p : ops_) {
    for (size_t i = 1; i < kReturns; i++) n += p.returns[i].load();
  }
  return n;
}

std::string Measurements::TakeInterval(double seconds) {
  std::string out;
  uint64_t total = 0;
  for (size_t i = 0; i < kOps; i++) {
    PerOp& p = ops_[i];
    const uint64_t n = p.interval.Count();
    if (n == 0) continue;
    total += n;
    char buf[160];
    snprintf(buf, sizeof(buf), " [%s p50=%lluus p99=%lluus]", OpName(static_cast<Op>(i)),
             static_cast<unsigned long long>(p.interval.Percentile(0.5)),
             static_cast<unsigned long long>(p.interval.Percentile(0.99)));
    out += buf;
    p.interval.Reset();
  }
  char head[96];
  snprintf(head, sizeof(head), "%.1f current ops/sec;", seconds > 0 ? total / seconds : 0.0);
  return head + out;
}

RunResult RunWorkload(const WorkloadConfig& w, const RunOptions& o, const DBFactory& factory,
                      Measurements* m) {
  RunResult result;
  const int threads = std::max(1, o.threads);
  std::vector<std::unique_ptr<DB>> dbs;
  for (int t = 0; t < threads; t++) {
    auto db = factory();
    if (!db.ok()) {
      result.setup = db.status();
      return result;
    }
    dbs.push_back(std::move(*db));
  }
  // Load inserts [insertstart, insertstart + insertcount); run inserts after recordcount.
  AcknowledgedCounter inserts(o.load ? w.insertstart : w.recordcount);
  const uint64_t total = o.load ? w.insertcount : w.operationcount;
  std::atomic<uint64_t> taken{0}, done{0};
  Discrete mix;
  mix.Add(w.read, static_cast<int>(Op::kRead));
  mix.Add(w.update, static_cast<int>(Op::kUpdate));
  mix.Add(w.insert, static_cast<int>(Op::kInsert));
  mix.Add(w.readmodifywrite, static_cast<int>(Op::kReadModifyWrite));
  const int64_t start_us = MonoUs();
  const int64_t measure_from_us =
      o.load ? start_us : start_us + static_cast<int64_t>(o.warmup_s * 1e6);
  std::atomic<int64_t> measured_start{0};
  std::atomic<bool> finished{false};

  auto worker = [&](int t) {
    DB* db = dbs[static_cast<size_t>(t)].get();
    Rng rng(o.seed * 7919 + static_cast<uint64_t>(t) * 104729 + 1);
    // Record bytes: slices of a per-thread random buffer.
    std::string pool(w.record_bytes() + 4096, ' ');
    for (auto& c : pool) c = static_cast<char>('a' + rng() % 26);
    // A view into the pool: no copy per write.
    auto value = [&] { return std::string_view(pool).substr(rng() % 4096, w.record_bytes()); };
    const uint64_t expected_keys =
        w.recordcount + static_cast<uint64_t>(static_cast<double>(w.operationcount) * w.insert * 2);
    KeyChooser chooser(w.requestdistribution, w.recordcount, expected_keys, w.zipfian_constant);
    auto choose = [&] { return chooser.Next(rng, inserts.Limit()); };
    const double per_thread_rate = o.target_ops > 0 ? o.target_ops / threads : 0;
    uint64_t mine = 0;
    while (true) {
      const bool warming = MonoUs() < measure_from_us;
      if (!warming && taken.fetch_add(1) >= total) break;
      if (!warming && measured_start.load() == 0) {
        int64_t zero = 0;
        measured_start.compare_exchange_strong(zero, MonoUs());
      }
      if (per_thread_rate > 0) {
        const int64_t due =
            start_us + static_cast<int64_t>(static_cast<double>(mine) / per_thread_rate * 1e6);
        const int64_t now = MonoUs();
        if (due > now) std::this_thread::sleep_for(std::chrono::microseconds(due - now));
      }
      mine++;
      Op op = o.load ? Op::kInsert : static_cast<Op>(mix.Next(rng));
      const int64_t t0 = MonoUs();
      Status s;
      Return r = Return::kOk;
      if (op == Op::kInsert) {
        const uint64_t k = inserts.Next();
        s = db->Insert(w.Key(k), value());
        if (s.ok()) inserts.Acknowledge(k);
      } else if (op == Op::kUpdate) {
        s = db->Update(w.Key(choose()), value());
      } else {
        std::string got;
        const std::string key = w.Key(choose());
        s = db->Read(key, &got);
        if (s.ok() && got.size() != w.record_bytes()) r = Return::kUnexpectedState;
        if (s.ok() && r == Return::kOk && op == Op::kReadModifyWrite) s = db->Update(key, value());
      }
      if (!s.ok()) r = s.IsNotFound() ? Return::kNotFound : Return::kError;
      const int64_t t1 = MonoUs();
      if (!warming) {
        m->Record(op, r, static_cast<uint64_t>(t1 - t0));
        done.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };

  std::thread status([&] {
    int64_t last = MonoUs();
    const bool tty = o.progress_bar && isatty(STDERR_FILENO);
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 250 : 100));
      const int64_t now = MonoUs();
      if (tty && total > 0) {
        const uint64_t d = std::min(done.load(), total);
        const int width = 40;
        const int fill =
            static_cast<int>(static_cast<double>(d) / static_cast<double>(total) * width);
        fprintf(stderr, "\r[%s%s] %3d%% %llu/%llu records", std::string(fill, '#').c_str(),
                std::string(width - fill, ' ').c_str(), static_cast<int>(d * 100 / total),
                static_cast<unsigned long long>(d), static_cast<unsigned long long>(total));
      }
      if (o.status_interval_s > 0 &&
          now - last >= static_cast<int64_t>(o.status_interval_s * 1e6)) {
        const double secs = static_cast<double>(now - last) / 1e6;
        if (tty) fprintf(stderr, "\n");
        fprintf(stderr, "[STATUS] %.0f sec: %llu operations; %s\n",
                static_cast<double>(now - start_us) / 1e6,
                static_cast<unsigned long long>(done.load()), m->TakeInterval(secs).c_str());
        last = now;
      }
    }
    if (tty && total > 0) fprintf(stderr, "\n");
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();
  const int64_t end_us = MonoUs();
  finished.store(true);
  status.join();
  const int64_t from = measured_start.load() ? measured_start.load() : end_us;
  result.runtime_ms = static_cast<double>(end_us - from) / 1000.0;
  result.measured_ops = done.load();
  return result;
}

std::string FormatReport(const RunResult& r, const Measurements& m) {
  std::ostringstream out;
  char buf[128];
  out << "[OVERALL], RunTime(ms), " << static_cast<uint64_t>(r.runtime_ms) << "\n";
  snprintf(buf, sizeof(buf), "%.1f",
           r.runtime_ms > 0 ? static_cast<double>(r.measured_ops) / (r.runtime_ms / 1000.0) : 0.0);
  out << "[OVERALL], Throughput(ops/sec), " << buf << "\n";
  for (size_t i = 0; i <= kOps; i++) {
    const Op op = static_cast<Op>(i);
    const auto s = i == kOps ? m.AllStats() : m.Stats(op);
    if (s.operations == 0) continue;
    const std::string n = std::string("[") + (i == kOps ? "ALL" : OpName(op)) + "], ";
    snprintf(buf, sizeof(buf), "%.2f", s.average_us);
    out << n << "Operations, " << s.operations << "\n";
    out << n << "AverageLatency(us), " << buf << "\n";
    out << n << "MinLatency(us), " << s.min_us << "\n";
    out << n << "MaxLatency(us), " << s.max_us << "\n";
    out << n << "50thPercentileLatency(us), " << s.p50 << "\n";
    out << n << "95thPercentileLatency(us), " << s.p95 << "\n";
    out << n << "99thPercentileLatency(us), " << s.p99 << "\n";
    out << n << "99.9thPercentileLatency(us), " << s.p999 << "\n";
    for (size_t k = 0; k < kReturns; k++) {
      if (s.returns[k] == 0) continue;
      out << n << "Return=" << ReturnName(static_cast<Return>(k)) << ", " << s.returns[k] << "\n";
    }
  }
  return out.str();
}

std::string FormatJson(const RunResult& r, const Measurements& m, const Properties& props,
                       const std::string& phase) {
  nlohmann::json j;
  j["phase"] = phase;
  j["runtime_ms"] = r.runtime_ms;
  j["operations"] = r.measured_ops;
  j["throughput_ops_per_sec"] =
      r.runtime_ms > 0 ? static_cast<double>(r.measured_ops) / (r.runtime_ms / 1000.0) : 0.0;
  j["errors"] = m.Errors();
  j["properties"] = props.all();
  nlohmann::json ops = nlohmann::json::object();
  for (size_t i = 0; i < kOps; i++) {
    const Op op = static_cast<Op>(i);
    const auto s = m.Stats(op);
    if (s.operations == 0) continue;
    nlohmann::json o;
    o["operations"] = s.operations;
    o["average_us"] = s.average_us;
    o["min_us"] = s.min_us;
    o["max_us"] = s.max_us;
    o["p50_us"] = s.p50;
    o["p95_us"] = s.p95;
    o["p99_us"] = s.p99;
    o["p999_us"] = s.p999;
    nlohmann::json ret = nlohmann::json::object();
    for (size_t k = 0; k < kReturns; k++) {
      if (s.returns[k]) ret[ReturnName(static_cast<Return>(k))] = s.returns[k];
    }
    o["returns"] = ret;
    ops[OpName(op)] = o;
  }
  const auto all = m.AllStats();
  j["all"] = {{"operations", all.operations},
              {"average_us", all.average_us},
              {"p50_us", all.p50},
              {"p95_us", all.p95},
              {"p99_us", all.p99},
              {"p999_us", all.p999}};
  j["ops"] = ops;
  return j.dump(2) + "\n";
}

}  // namespace faha::ycsb
