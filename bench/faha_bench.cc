// faha-bench: a YCSB-compatible driver (YCSB itself cannot be installed here).
//
//   faha-bench load|run -P WORKLOADFILE [-P ...] [-p name=value ...]
//              [-threads N] [-target OPS] [-s]
//
// Reads YCSB property files (bench/workloads/workloada..f) with YCSB's core
// properties, runs the load phase (insert recordcount records) or the run
// phase (operationcount operations of the mix), and prints YCSB's report on
// stdout ([OVERALL] RunTime/Throughput; per operation Operations, latencies,
// percentiles, Return counts), plus JSON with -p exportfile=PATH. A status
// line goes to stderr every status.interval seconds (10), and the load
// phase draws a progress bar on a terminal. Back-ends: bench/ycsb/db.h.
// Exit status: 0 ok, 1 failure (connect, or errors with -p failonerror=true),
// 2 bad usage, 3 the workload needs scans, which faha does not have.
// docs/faha-bench.md lists every property.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "bench/ycsb/db.h"
#include "bench/ycsb/workload.h"

namespace {

int Usage(const char* why) {
  fprintf(stderr,
          "faha-bench: %s\n"
          "usage: faha-bench load|run -P WORKLOADFILE [-P FILE...] [-p name=value...]\n"
          "                  [-threads N] [-target OPS_PER_SEC] [-s]\n"
          "  -p target=native://HOST:PORT | rdma://HOST:PORT | resp://HOST:PORT (required)\n"
          "  see docs/faha-bench.md for every property\n",
          why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using faha::ycsb::Properties;
  if (argc < 2) return Usage("no phase given");
  const std::string phase = argv[1];
  if (phase != "load" && phase != "run") return Usage(("unknown phase '" + phase + "'").c_str());
  Properties props;
  bool any_file = false;
  for (int i = 2; i < argc; i++) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "-P") {
      const char* f = next();
      if (!f) return Usage("-P needs a file");
      faha::Status s = props.LoadFile(f);
      if (!s.ok()) return Usage(s.message().c_str());
      any_file = true;
    } else if (a == "-p") {
      const char* kv = next();
      if (!kv) return Usage("-p needs name=value");
      faha::Status s = props.SetPair(kv);
      if (!s.ok()) return Usage(s.message().c_str());
    } else if (a == "-threads") {
      const char* v = next();
      if (!v) return Usage("-threads needs a number");
      props.Set("threadcount", v);
    } else if (a == "-target") {
      const char* v = next();
      if (!v) return Usage("-target needs ops/sec");
      props.Set("target.ops", v);
    } else if (a == "-s") {
      // Status lines are always on (status.interval); accepted for YCSB's command line.
    } else {
      return Usage(("unknown argument '" + a + "'").c_str());
    }
  }
  if (!any_file) return Usage("no workload file (-P bench/workloads/workloada)");
  auto w = faha::ycsb::WorkloadConfig::From(props);
  if (!w.ok()) return Usage(w.status().message().c_str());
  if (phase == "run" && w->scan > 0) {
    fprintf(stderr,
            "faha-bench: this workload has scanproportion=%g, but faha has no ordered scans "
            "(its index is a hash table): skipped, nothing measured\n",
            w->scan);
    return 3;
  }
  auto threads = props.GetInt("threadcount", 1);
  auto target = props.GetDouble("target.ops", 0);
  auto warmup = props.GetDouble("warmup.seconds", 0);
  auto interval = props.GetDouble("status.interval", 10);
  auto seed = props.GetInt("seed", 1);
  for (const faha::Status& s :
       {threads.status(), target.status(), warmup.status(), interval.status(), seed.status()}) {
    if (!s.ok()) return Usage(s.message().c_str());
  }
  if (*threads < 1 || *threads > 4096) return Usage("threadcount must be 1..4096");
  if (*target < 0 || *warmup < 0 || *interval < 0) {
    return Usage("target.ops, warmup.seconds and status.interval must not be negative");
  }
  auto factory = faha::ycsb::MakeDBFactory(props);
  if (!factory.ok()) return Usage(factory.status().message().c_str());

  faha::ycsb::RunOptions o;
  o.load = phase == "load";
  o.threads = static_cast<int>(*threads);
  o.target_ops = *target;
  o.warmup_s = *warmup;
  o.status_interval_s = *interval;
  o.progress_bar = o.load;
  o.seed = static_cast<uint64_t>(*seed);
  faha::ycsb::Measurements m;
  auto r = faha::ycsb::RunWorkload(*w, o, *factory, &m);
  if (!r.setup.ok()) {
    fprintf(stderr, "faha-bench: cannot connect to %s: %s\n", props.Get("target", "").c_str(),
            r.setup.ToString().c_str());
    return 1;
  }
  fputs(faha::ycsb::FormatReport(r, m).c_str(), stdout);
  const std::string json_path = props.Get("exportfile", "");
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << faha::ycsb::FormatJson(r, m, props, phase);
    if (!out) {
      fprintf(stderr, "faha-bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  if (m.Errors() > 0) {
    fprintf(stderr, "faha-bench: %llu operations failed (see Return= lines)\n",
            static_cast<unsigned long long>(m.Errors()));
    if (props.Get("failonerror", "false") == "true") return 1;
  }
  return 0;
}
