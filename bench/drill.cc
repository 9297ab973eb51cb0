// faha-drill: a failover drill. Starts etcd and three faha-server nodes with
// --etcd on 127.0.0.1 (its own data directories and free ports), runs a
// write-heavy workload through several failover-following clients that record
// every operation's invocation, response and commit stamp, and injects faults
// on a schedule: kill -9 of the primary, kill -9 of a backup, SIGSTOP of the
// primary for longer than its lease, and a kill of the new primary while it
// brings its backups up to date. Killed nodes are restarted. Afterwards it
// reads every key and counter back and checks the whole history
// (bench/history_check.h): per-key linearizability, every acknowledged write
// present, no write acknowledged by a deposed primary after the next epoch
// began, no retried INCR applied twice. It prints each fault's unavailability
// window (fault -> first acknowledged write after it). Exit status 0 only if
// every check passed. Flags: --help; docs/flags.md.
#include <gflags/gflags.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/history_check.h"
#include "common/clock.h"
#include "coord/etcd_client.h"
#include "coord/etcd_testing.h"
#include "faha/client.h"

DEFINE_string(faults, "kill-primary,kill-backup,stop-primary,kill-new-primary",
              "Comma-separated fault schedule: kill-primary, kill-backup, stop-primary (SIGSTOP "
              "for --stop_ms, longer than the lease), kill-new-primary (kill the primary, then "
              "the node that takes over while it catches up its backups).");
DEFINE_int32(clients, 4, "Client connections running the workload.");
DEFINE_int32(keys, 200, "Registers (keys) the workload writes and reads.");
DEFINE_int32(counters, 4, "Counters the workload INCRs.");
DEFINE_int32(value_bytes, 100, "Bytes per written value.");
DEFINE_int32(settle_ms, 3000, "Workload time before the first fault and after each recovery.");
DEFINE_int32(stop_ms, 3000, "How long stop-primary keeps the primary stopped.");
DEFINE_int32(restart_after_ms, 1500, "How long a killed node stays down.");
DEFINE_string(dir, "", "Working directory (default: a new one under /tmp, removed on success).");
DEFINE_bool(keep, false, "Keep the working directory (logs, data) even on success.");
DEFINE_string(server, "", "faha-server binary (default: next to faha-drill).");
DEFINE_string(repl_transport, "tcp", "Replication transport of the nodes: tcp or rdma.");
DEFINE_string(host, "127.0.0.1", "Address the nodes bind (an RDMA device's address for rdma).");
DEFINE_uint64(seed, 1, "Workload random seed.");

namespace {

using faha::drill::Op;

struct Node {
  std::string id;
  int port = 0, repl_port = 0;
  std::string data_dir, log;
  pid_t pid = -1;
  bool stopped = false;
  std::string address() const { return FLAGS_host + ":" + std::to_string(port); }
};

class Cluster {
 public:
  Cluster(std::string dir, std::string server, std::string etcd)
      : dir_(std::move(dir)), server_(std::move(server)), etcd_(std::move(etcd)) {
    std::ofstream(dir_ + "/secret") << "drill-secret-0123456789abcdef\n";
    chmod((dir_ + "/secret").c_str(), 0600);
    for (int i = 1; i <= 3; i++) {
      Node n;
      n.id = "n" + std::to_string(i);
      faha::Status ps = faha::coord::PickFreePorts(&n.port, &n.repl_port);
      if (!ps.ok()) {
        fprintf(stderr, "faha-drill: no free ports: %s\n", ps.ToString().c_str());
        exit(1);
      }
      n.data_dir = dir_ + "/" + n.id;
      n.log = dir_ + "/" + n.id + ".log";
      nodes_.push_back(n);
    }
  }
  ~Cluster() {
    for (auto& n : nodes_) Kill(&n, SIGKILL);
  }
  std::vector<Node>& nodes() { return nodes_; }

  void Start(Node* n) {
    std::vector<std::string> args = {
        server_, "--etcd=" + etcd_, "--cluster=drill", "--node_id=" + n->id,
        "--bind=" + FLAGS_host, "--port=" + std::to_string(n->port),
        "--repl_port=" + std::to_string(n->repl_port), "--data_dir=" + n->data_dir,
        "--cluster_secret_file=" + dir_ + "/secret", "--segment_mb=16", "--metrics_port=-1",
        "--rdma=off", "--repl_transport=" + FLAGS_repl_transport, "--repl_timeout_ms=1000"};
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = open(n->log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    n->pid = pid;
    n->stopped = false;
  }
  void Kill(Node* n, int sig) {
    if (n->pid <= 0) return;
    if (n->stopped && sig == SIGKILL) kill(n->pid, SIGCONT);
    kill(n->pid, sig);
    if (sig == SIGKILL) {
      waitpid(n->pid, nullptr, 0);
      n->pid = -1;
    }
    if (sig == SIGSTOP) n->stopped = true;
    if (sig == SIGCONT) n->stopped = false;
  }

  // INFO replication fields of a running node ({} if it does not answer).
  std::map<std::string, std::string> Info(const Node& n) {
    std::map<std::string, std::string> out;
    if (n.pid <= 0 || n.stopped) return out;
    faha::ClientOptions o;
    o.address = n.address();
    o.connect_timeout_ms = 300;
    o.op_timeout_ms = 500;
    auto c = faha::Client::Connect(o);
    if (!c.ok()) return out;
    auto r = (*c)->Command({"INFO", "replication"});
    if (!r.ok()) return out;
    std::stringstream in(r->str);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 1);
    }
    return out;
  }
  // The node serving as primary, or null.
  Node* ServingPrimary() {
    for (auto& n : nodes_) {
      auto info = Info(n);
      if (info["cluster_role"] == "primary" && info["serving"] == "yes") return &n;
    }
    return nullptr;
  }
  // Any node that calls itself primary (serving or not), other than `not_this`.
  Node* AnyPrimary(const Node* not_this) {
    for (auto& n : nodes_) {
      if (&n == not_this) continue;
      if (Info(n)["cluster_role"] == "primary") return &n;
    }
    return nullptr;
  }
  // Waits until a primary serves with both backups in sync.
  bool WaitHealthy(int timeout_ms) {
    int64_t deadline = faha::MonoMs() + timeout_ms;
    while (faha::MonoMs() < deadline) {
      if (Node* p = ServingPrimary()) {
        if (Info(*p)["in_sync_backups"] == "2") return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string dir_, server_, etcd_;
  std::vector<Node> nodes_;
};

// The workload: each client does SET (unique values), GET and INCR in a loop.
class Workload {
 public:
  Workload(std::vector<std::string> addresses) : addresses_(std::move(addresses)) {}

  void Start() {
    for (int c = 0; c < FLAGS_clients; c++) {
      threads_.emplace_back([this, c] { Run(c); });
    }
  }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
  }
  std::vector<Op> TakeOps() {
    std::lock_guard<std::mutex> l(mu_);
    return std::move(ops_);
  }
  std::string errors() {
    std::lock_guard<std::mutex> l(mu_);
    return first_error_;
  }

 private:
  void Record(Op op, const faha::Status& s) {
    std::lock_guard<std::mutex> l(mu_);
    if (!s.ok() && first_error_.empty()) first_error_ = s.ToString();
    ops_.push_back(std::move(op));
  }
  void Run(int c) {
    faha::ClientOptions o;
    std::string all;
    for (const auto& a : addresses_) all += (all.empty() ? "" : ",") + a;
    o.address = all;
    o.follow_primary = true;
    // A stopped primary is noticed by this timeout; retries are de-duplicated.
    o.op_timeout_ms = 400;
    o.failover_timeout_ms = 30000;
    std::unique_ptr<faha::Client> client;
    std::mt19937_64 rng(FLAGS_seed * 1000 + static_cast<uint64_t>(c));
    uint64_t n = 0;
    while (!stop_.load()) {
      if (!client) {
        auto cl = faha::Client::Connect(o);
        if (!cl.ok()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          continue;
        }
        client = std::move(*cl);
      }
      Op op;
      op.client = c;
      int dice = static_cast<int>(rng() % 100);
      op.invoke_us = faha::MonoUs();
      faha::Status s;
      if (dice < 65) {
        op.kind = Op::Kind::kWrite;
        op.key = "k" + std::to_string(rng() % static_cast<uint64_t>(FLAGS_keys));
        op.value = "c" + std::to_string(c) + "-" + std::to_string(n++) + "-";
        op.value.resize(std::max<size_t>(op.value.size(), static_cast<size_t>(FLAGS_value_bytes)),
                        'v');
        s = client->Put(op.key, op.value);
      } else if (dice < 85) {
        op.kind = Op::Kind::kRead;
        op.key = "k" + std::to_string(rng() % static_cast<uint64_t>(FLAGS_keys));
        std::string v;
        s = client->Get(op.key, &v);
        if (s.ok()) {
          op.found = true;
          op.value = v;
        } else if (s.IsNotFound()) {
          s = faha::Status::OK();
        }
      } else {
        op.kind = Op::Kind::kIncr;
        op.key = "ctr" + std::to_string(rng() % static_cast<uint64_t>(FLAGS_counters));
        auto r = client->Command({"INCR", op.key});
        s = r.ok() ? (r->type == faha::Reply::Type::kInt
                          ? faha::Status::OK()
                          : faha::Status::ServerError(r->str))
                   : r.status();
        if (s.ok()) op.incr_result = r->integer;
      }
      op.response_us = faha::MonoUs();
      if (s.ok()) {
        op.outcome = Op::Outcome::kOk;
        if (op.kind != Op::Kind::kRead) {
          op.epoch = client->last_commit_epoch();
          op.lsn = client->last_commit_lsn();
        }
      } else {
        // Any failure of a write after it was sent: it may or may not have
        // taken effect. Reads that failed say nothing.
        op.outcome = Op::Outcome::kUnknown;
        client.reset();  // a new connection (new client id) from here
      }
      Record(std::move(op), s);
    }
  }

  std::vector<std::string> addresses_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<Op> ops_;
  std::string first_error_;
};

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("failover drill for a 3-node FaHA cluster with etcd; see docs/flags.md");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  signal(SIGPIPE, SIG_IGN);
  std::string server = FLAGS_server.empty() ? SelfDir() + "/faha-server" : FLAGS_server;
  if (access(server.c_str(), X_OK) != 0) {
    fprintf(stderr, "faha-drill: cannot run %s (build it, or give --server)\n", server.c_str());
    return 2;
  }
  std::vector<std::string> faults;
  {
    std::stringstream in(FLAGS_faults);
    std::string f;
    while (std::getline(in, f, ',')) {
      if (f.empty()) continue;
      if (f != "kill-primary" && f != "kill-backup" && f != "stop-primary" &&
          f != "kill-new-primary") {
        fprintf(stderr, "faha-drill: unknown fault '%s' in --faults\n", f.c_str());
        return 2;
      }
      faults.push_back(f);
    }
  }
  std::string dir = FLAGS_dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/faha-drill.XXXXXX";
    if (!mkdtemp(tmpl)) {
      perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  } else {
    mkdir(dir.c_str(), 0755);
  }
  printf("faha-drill: working directory %s\n", dir.c_str());
  faha::coord::EtcdProcess etcd;
  faha::Status es = etcd.Start();
  if (!es.ok()) {
    fprintf(stderr, "faha-drill: cannot start etcd: %s\n", es.ToString().c_str());
    return 1;
  }
  printf("etcd at %s (pid %d)\n", etcd.endpoint().c_str(), etcd.pid());
  Cluster cluster(dir, server, etcd.endpoint());
  std::vector<std::string> addresses;
  for (auto& n : cluster.nodes()) {
    cluster.Start(&n);
    addresses.push_back(n.address());
  }
  if (!cluster.WaitHealthy(30000)) {
    fprintf(stderr, "faha-drill: the cluster did not become healthy within 30 s; logs in %s\n",
            dir.c_str());
    return 1;
  }
  Node* first = cluster.ServingPrimary();
  printf("cluster up: primary %s; nodes %s %s %s\n", first ? first->id.c_str() : "?",
         addresses[0].c_str(), addresses[1].c_str(), addresses[2].c_str());

  Workload load(addresses);
  load.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_settle_ms));
  struct Fault {
    std::string name, detail;
    int64_t at_us = 0;
    bool recovered = false;
  };
  std::vector<Fault> done;
  bool all_recovered = true;
  for (const auto& f : faults) {
    Fault fault;
    fault.name = f;
    Node* primary = cluster.ServingPrimary();
    if (!primary) {
      fprintf(stderr, "faha-drill: no serving primary before %s\n", f.c_str());
      all_recovered = false;
      break;
    }
    std::vector<Node*> to_restart;
    if (f == "kill-primary") {
      fault.detail = "SIGKILL primary " + primary->id;
      fault.at_us = faha::MonoUs();
      cluster.Kill(primary, SIGKILL);
      to_restart.push_back(primary);
    } else if (f == "kill-backup") {
      Node* b = nullptr;
      for (auto& n : cluster.nodes()) {
        if (&n != primary) b = &n;
      }
      fault.detail = "SIGKILL backup " + b->id;
      fault.at_us = faha::MonoUs();
      cluster.Kill(b, SIGKILL);
      to_restart.push_back(b);
    } else if (f == "stop-primary") {
      fault.detail = "SIGSTOP primary " + primary->id + " for " + std::to_string(FLAGS_stop_ms) +
                     " ms, then SIGCONT (it must step down and rejoin)";
      fault.at_us = faha::MonoUs();
      cluster.Kill(primary, SIGSTOP);
      std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_stop_ms));
      cluster.Kill(primary, SIGCONT);
    } else {  // kill-new-primary
      fault.at_us = faha::MonoUs();
      cluster.Kill(primary, SIGKILL);
      to_restart.push_back(primary);
      Node* next = nullptr;
      int64_t deadline = faha::MonoMs() + 10000;
      while (!next && faha::MonoMs() < deadline) {
        next = cluster.AnyPrimary(primary);
        if (!next) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (next) {
        cluster.Kill(next, SIGKILL);
        to_restart.push_back(next);
        fault.detail = "SIGKILL primary " + primary->id + ", then new primary " + next->id +
                       " as soon as it took over";
      } else {
        fault.detail = "SIGKILL primary " + primary->id + " (no new primary appeared to kill)";
      }
    }
    printf("fault: %s\n", fault.detail.c_str());
    fflush(stdout);
    if (!to_restart.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_restart_after_ms));
      for (Node* n : to_restart) cluster.Start(n);
    }
    fault.recovered = cluster.WaitHealthy(60000);
    if (!fault.recovered) all_recovered = false;
    done.push_back(fault);
    std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_settle_ms));
    if (!fault.recovered) break;
  }
  load.Stop();
  std::vector<Op> ops = load.TakeOps();
  // A fault's unavailability: until the first acknowledgement of a write
  // sent after it (writes in flight at the fault may still be acknowledged).
  auto first_ack_after = [&](int64_t t) -> int64_t {
    int64_t best = INT64_MAX;
    for (const auto& op : ops) {
      if (op.kind != Op::Kind::kRead && op.outcome == Op::Outcome::kOk && op.invoke_us >= t)
        best = std::min(best, op.response_us);
    }
    return best;
  };

  // Final state: every key and counter, read from the primary.
  bool final_ok = cluster.WaitHealthy(30000);
  {
    faha::ClientOptions o;
    std::string all;
    for (const auto& a : addresses) all += (all.empty() ? "" : ",") + a;
    o.address = all;
    o.follow_primary = true;
    auto c = faha::Client::Connect(o);
    if (!c.ok()) {
      final_ok = false;
    } else {
      auto read = [&](const std::string& key) {
        Op op;
        op.kind = Op::Kind::kRead;
        op.key = key;
        op.client = -1;
        op.invoke_us = faha::MonoUs();
        std::string v;
        faha::Status s = (*c)->Get(key, &v);
        op.response_us = faha::MonoUs();
        if (s.ok()) {
          op.found = true;
          op.value = v;
        } else if (!s.IsNotFound()) {
          final_ok = false;
          fprintf(stderr, "final read of %s: %s\n", key.c_str(), s.ToString().c_str());
          return;
        }
        ops.push_back(op);
      };
      for (int k = 0; k < FLAGS_keys; k++) read("k" + std::to_string(k));
      for (int k = 0; k < FLAGS_counters; k++) read("ctr" + std::to_string(k));
    }
  }
  std::vector<faha::drill::EpochStart> epochs;
  {
    auto e = faha::coord::EtcdClient::Create(etcd.endpoint(), 2000);
    if (e.ok()) {
      auto kv = (*e)->Get("/faha/drill/config");
      if (kv.ok() && kv->has_value()) {
        try {
          auto j = nlohmann::json::parse((*kv)->value);
          for (const auto& h : j.at("history")) {
            epochs.push_back({h.at(0).get<uint64_t>(), h.at(1).get<uint64_t>()});
          }
        } catch (const std::exception&) {
        }
      }
    }
  }
  faha::drill::CheckResult check = faha::drill::CheckHistory(ops, epochs);

  printf("\n== faha-drill results (3 nodes + etcd on %s, %d clients, %d keys, %d counters, "
         "transport %s)\n",
         FLAGS_host.c_str(), FLAGS_clients, FLAGS_keys, FLAGS_counters,
         FLAGS_repl_transport.c_str());
  printf("operations: %zu recorded; writes acknowledged %llu, outcome unknown %llu; reads %llu; "
         "INCRs acknowledged %llu; keys %llu\n",
         ops.size(), static_cast<unsigned long long>(check.writes_acked),
         static_cast<unsigned long long>(check.writes_unknown),
         static_cast<unsigned long long>(check.reads),
         static_cast<unsigned long long>(check.incrs_acked),
         static_cast<unsigned long long>(check.keys));
  printf("epochs:");
  for (const auto& e : epochs) {
    printf(" %llu@LSN%llu", static_cast<unsigned long long>(e.epoch),
           static_cast<unsigned long long>(e.start_lsn));
  }
  printf("\n");
  for (const auto& f : done) {
    const int64_t ack = first_ack_after(f.at_us);
    if (ack == INT64_MAX) {
      printf("  %-17s %-70s no acknowledged write after it%s\n", f.name.c_str(), f.detail.c_str(),
             f.recovered ? "" : " (did not recover)");
    } else {
      printf("  %-17s %-70s unavailable for %.0f ms%s\n", f.name.c_str(), f.detail.c_str(),
             static_cast<double>(ack - f.at_us) / 1000.0,
             f.recovered ? "" : " (did not recover)");
    }
  }
  for (const auto& p : check.problems) printf("PROBLEM: %s\n", p.c_str());
  const bool ok = check.ok() && all_recovered && final_ok;
  printf("verdict: %s\n", ok ? "PASS (every acknowledged write present, history linearizable, "
                               "no deposed-primary acknowledgement, no duplicated retry)"
                             : "FAIL");
  if (!ok || FLAGS_keep) {
    printf("logs and data kept in %s\n", dir.c_str());
  } else {
    for (auto& n : cluster.nodes()) cluster.Kill(&n, SIGKILL);
    std::string cmd = "rm -rf '" + dir + "'";
    if (system(cmd.c_str()) != 0) fprintf(stderr, "cannot remove %s\n", dir.c_str());
  }
  return ok ? 0 : 1;
}
