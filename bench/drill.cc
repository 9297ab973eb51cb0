// faha-drill: a failover drill. Starts etcd and three faha-server nodes with
// --etcd on 127.0.0.1 (its own data directories and free ports), runs a
// write-heavy workload through several failover-following clients that record
// every operation's invocation, response and commit stamp, and injects faults
// on a schedule: kill -9 of the primary, kill -9 of a backup, SIGSTOP of the
// primary for longer than its lease, a kill of the new primary while it
// brings its backups up to date, kill -9 and restart of etcd, and (with
// network namespaces, bench/netns.h) a cut of the primary's link. Killed
// nodes are restarted. Afterwards it
// reads every key and counter back and checks the whole history
// (bench/history_check.h): per-key linearizability, every acknowledged write
// present, no write acknowledged by a deposed primary after the next epoch
// began, no retried INCR applied twice. It prints each fault's unavailability
// window (fault -> first acknowledged write after it), the longest gap
// between acknowledged writes until the cluster was whole again, and the
// median, p99 and maximum per fault kind. Exit status 0 only if every check
// passed. Flags: --help; docs/flags.md.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
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
#include "bench/netns.h"
#include "common/clock.h"
#include "common/process.h"
#include "coord/etcd_client.h"
#include "coord/etcd_testing.h"
#include "faha/client.h"

DEFINE_string(faults, "",
              "Comma-separated fault schedule; NAME*N repeats a fault N times. Faults: "
              "kill-primary, kill-backup (down for --restart_after_ms + 1500 ms), stop-primary "
              "(SIGSTOP for --stop_ms, longer than the lease), kill-new-primary (kill the "
              "primary, then the node that takes over while it catches up its backups), "
              "restart-etcd (kill -9 etcd, restart it after --etcd_down_ms), cut-link (the "
              "primary's link down for --cut_ms; needs network namespaces). Empty: each once, "
              "cut-link only with namespaces.");
DEFINE_int32(etcd_down_ms, 3000, "How long restart-etcd keeps etcd down.");
DEFINE_int32(etcd_start_timeout_ms, 15000,
             "How long etcd may take to answer after it is started or restarted (under "
             "emulation, such as the TCG guest, it can take tens of seconds).");
DEFINE_int32(cut_ms, 3000, "How long cut-link keeps the primary's link down.");
DEFINE_string(netns, "auto",
              "Run each node in its own network namespace (ip netns + veth + bridge) so links "
              "can be cut: on, off, or auto (on when root with a working `ip`, tcp transport).");
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
DEFINE_string(host, "127.0.0.1",
              "Address the nodes bind without namespaces (an RDMA device's address for rdma).");
DEFINE_uint64(seed, 1, "Workload random seed.");
DEFINE_string(server_flags, "",
              "Extra faha-server flags for every node, space-separated (e.g. slower timers "
              "under emulation: --failover_timeout_ms=1000).");

namespace {

using faha::drill::Op;

struct Node {
  std::string id;
  std::string host;  // the address it binds
  std::string ns;    // its network namespace, if any
  int port = 0, repl_port = 0;
  std::string data_dir, log;
  pid_t pid = -1;
  bool stopped = false;
  std::string address() const { return host + ":" + std::to_string(port); }
};

// What a node's process is doing, from /proc: for each thread its name,
// state, wait channel and (as root) kernel stack. Printed when the drill
// fails, so a node that hangs (in the kernel or before it logs) shows where.
std::string DescribeProcess(pid_t pid) {
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string base = "/proc/" + std::to_string(pid);
  std::error_code ec;
  if (!std::filesystem::exists(base, ec)) return "  no such process\n";
  std::string out = "  exe: " + std::filesystem::read_symlink(base + "/exe", ec).string() + "\n";
  for (const auto& t : std::filesystem::directory_iterator(base + "/task", ec)) {
    const std::string dir = t.path().string();
    std::string comm = slurp(dir + "/comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    const std::string stat = slurp(dir + "/stat");
    const size_t close = stat.rfind(')');
    const char state =
        close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
    out += "  thread " + t.path().filename().string() + " " + comm + " state " + state + " wchan " +
           slurp(dir + "/wchan") + "\n";
    std::string stack = slurp(dir + "/stack");
    std::istringstream lines(stack);
    for (std::string line; std::getline(lines, line);) out += "    " + line + "\n";
  }
  return out;
}

class Cluster {
 public:
  // net: the nodes' namespaces, or null (all on FLAGS_host).
  Cluster(std::string dir, std::string server, std::string etcd,
          const faha::drill::NetnsNetwork* net)
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
      n.host = net ? net->address(i - 1) : FLAGS_host;
      n.ns = net ? net->ns(i - 1) : "";
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
    std::vector<std::string> args;
    if (!n->ns.empty()) args = {"ip", "netns", "exec", n->ns};  // execs the server, same pid
    std::vector<std::string> server = {server_,
                                       "--etcd=" + etcd_,
                                       "--cluster=drill",
                                       "--node_id=" + n->id,
                                       "--bind=" + n->host,
                                       "--port=" + std::to_string(n->port),
                                       "--repl_port=" + std::to_string(n->repl_port),
                                       "--data_dir=" + n->data_dir,
                                       "--cluster_secret_file=" + dir_ + "/secret",
                                       "--segment_mb=16",
                                       "--metrics_port=-1",
                                       "--rdma=off",
                                       "--repl_transport=" + FLAGS_repl_transport,
                                       "--repl_timeout_ms=1000"};
    std::stringstream extra(FLAGS_server_flags);
    for (std::string f; extra >> f;) server.push_back(f);
    args.insert(args.end(), server.begin(), server.end());
    faha::SpawnOptions o;
    o.log_path = n->log;
    auto pid = faha::Spawn(args, o);
    if (!pid.ok()) {
      fprintf(stderr, "faha-drill: start %s: %s\n", n->id.c_str(), pid.status().ToString().c_str());
      return;
    }
    n->pid = *pid;
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
  // Waits until the cluster is whole: every node answers in one epoch, and
  // the one primary among them serves with both backups in sync. (A primary
  // resumed after SIGSTOP still calls itself serving with two backups until
  // it sees the newer epoch; that is not whole.)
  bool WaitHealthy(int timeout_ms) {
    int64_t deadline = faha::MonoMs() + timeout_ms;
    while (faha::MonoMs() < deadline) {
      int primaries = 0;
      bool whole = true;
      std::string epoch;
      for (const auto& n : nodes_) {
        auto info = Info(n);
        if (info.empty() || (!epoch.empty() && info["cluster_epoch"] != epoch)) whole = false;
        epoch = info["cluster_epoch"];
        if (info["cluster_role"] != "primary") continue;
        primaries++;
        if (info["serving"] != "yes" || info["in_sync_backups"] != "2") whole = false;
      }
      if (whole && primaries == 1) return true;
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
        s = r.ok() ? (r->type == faha::Reply::Type::kInt ? faha::Status::OK()
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

const char* const kFaultNames[] = {"kill-primary",     "kill-backup",  "stop-primary",
                                   "kill-new-primary", "restart-etcd", "cut-link"};

// The fault schedule from --faults ("NAME" or "NAME*N", comma-separated).
bool ParseFaults(const std::string& text, bool with_netns, std::vector<std::string>* out) {
  std::string spec = text;
  if (spec.empty()) {
    spec = "kill-primary,kill-backup,stop-primary,kill-new-primary,restart-etcd";
    if (with_netns) spec += ",cut-link";
  }
  std::stringstream in(spec);
  std::string f;
  while (std::getline(in, f, ',')) {
    if (f.empty()) continue;
    int times = 1;
    if (size_t star = f.find('*'); star != std::string::npos) {
      try {
        size_t used = 0;
        times = std::stoi(f.substr(star + 1), &used);
        if (used != f.size() - star - 1 || times < 1 || times > 10000) throw std::exception();
      } catch (const std::exception&) {
        fprintf(stderr, "faha-drill: bad repeat count in '%s' (NAME*N, N from 1 to 10000)\n",
                f.c_str());
        return false;
      }
      f = f.substr(0, star);
    }
    if (std::find(std::begin(kFaultNames), std::end(kFaultNames), f) == std::end(kFaultNames)) {
      fprintf(stderr, "faha-drill: unknown fault '%s' in --faults\n", f.c_str());
      return false;
    }
    if (f == "cut-link" && !with_netns) {
      fprintf(stderr, "faha-drill: cut-link needs network namespaces (--netns=on, as root)\n");
      return false;
    }
    for (int i = 0; i < times; i++) out->push_back(f);
  }
  return true;
}

// Nearest-rank percentile of `v`, p in (0, 100].
double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

struct Fault {
  std::string name, detail;
  int64_t at_us = 0;       // injected
  int64_t over_us = 0;     // the process, link or etcd is back
  int64_t healthy_us = 0;  // a primary serves with both backups in sync again
  bool recovered = false;
};

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
  if (FLAGS_netns != "auto" && FLAGS_netns != "on" && FLAGS_netns != "off") {
    fprintf(stderr, "faha-drill: --netns must be on, off or auto\n");
    return 2;
  }
  bool use_netns = false;
  std::string netns_why = "--netns=off";
  if (FLAGS_netns != "off") {
    if (FLAGS_repl_transport != "tcp") {
      netns_why = "the " + FLAGS_repl_transport + " transport needs its device's network";
    } else if (faha::drill::NetnsNetwork::Available(&netns_why)) {
      use_netns = true;
    }
    if (!use_netns && FLAGS_netns == "on") {
      fprintf(stderr, "faha-drill: --netns=on but namespaces cannot be used: %s\n",
              netns_why.c_str());
      return 2;
    }
  }
  std::vector<std::string> faults;
  if (!ParseFaults(FLAGS_faults, use_netns, &faults)) return 2;
  std::string dir = FLAGS_dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/faha-drill.XXXXXX";
    if (!mkdtemp(tmpl)) {
      perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  } else if (mkdir(dir.c_str(), 0755) != 0) {
    // Old logs and data would make the history check meaningless.
    if (errno != EEXIST || !std::filesystem::is_empty(dir)) {
      fprintf(stderr, "faha-drill: --dir %s must not exist or be empty\n", dir.c_str());
      return 2;
    }
  }
  printf("faha-drill: working directory %s\n", dir.c_str());
  faha::drill::NetnsNetwork net;
  if (use_netns) {
    faha::drill::NetnsNetwork::CleanStale();
    faha::Status ns = net.Create(3);
    if (!ns.ok()) {
      fprintf(stderr, "faha-drill: cannot make network namespaces: %s\n", ns.ToString().c_str());
      return 1;
    }
    printf("network namespaces %s %s %s on bridge %s\n", net.ns(0).c_str(), net.ns(1).c_str(),
           net.ns(2).c_str(), net.bridge_address().c_str());
  } else {
    printf("no network namespaces (%s): no cut-link fault\n", netns_why.c_str());
  }
  faha::coord::EtcdProcess etcd;
  etcd.set_start_timeout_ms(FLAGS_etcd_start_timeout_ms);
  if (use_netns) etcd.AlsoListenOn(net.bridge_address());
  faha::Status es = etcd.Start();
  if (!es.ok()) {
    fprintf(stderr, "faha-drill: cannot start etcd: %s\n", es.ToString().c_str());
    return 1;
  }
  const std::string node_etcd = use_netns ? etcd.endpoint_on_extra_host() : etcd.endpoint();
  printf("etcd at %s (pid %d)\n", node_etcd.c_str(), etcd.pid());
  Cluster cluster(dir, server, node_etcd, use_netns ? &net : nullptr);
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
  printf("cluster up: primary %s; nodes %s %s %s; %zu faults scheduled\n",
         first ? first->id.c_str() : "?", addresses[0].c_str(), addresses[1].c_str(),
         addresses[2].c_str(), faults.size());

  Workload load(addresses);
  load.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_settle_ms));
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
    int down_ms = FLAGS_restart_after_ms;
    faha::Status injected;
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
      // Down long enough to see writes go on with the other backup alone.
      down_ms += 1500;
      fault.detail = "SIGKILL backup " + b->id + " for " + std::to_string(down_ms) + " ms";
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
    } else if (f == "restart-etcd") {
      fault.detail = "SIGKILL etcd, restarted after " + std::to_string(FLAGS_etcd_down_ms) +
                     " ms (the cluster must keep serving)";
      fault.at_us = faha::MonoUs();
      etcd.Kill(SIGKILL).IgnoreError();  // the restart below fails if it is still there
      std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_etcd_down_ms));
      const int64_t restart_us = faha::MonoUs();
      injected = etcd.Start();
      if (injected.ok()) {
        fault.detail += "; etcd answered " + std::to_string((faha::MonoUs() - restart_us) / 1000) +
                        " ms after its restart";
      }
    } else if (f == "cut-link") {
      const int idx = static_cast<int>(primary - &cluster.nodes()[0]);
      fault.detail = "link of primary " + primary->id + " down for " +
                     std::to_string(FLAGS_cut_ms) + " ms (it must step down and rejoin)";
      injected = net.Cut(idx);
      fault.at_us = faha::MonoUs();  // once the link is down (ip takes a few ms)
      std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_cut_ms));
      if (injected.ok()) injected = net.Heal(idx);
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
    printf("fault %zu/%zu: %s\n", done.size() + 1, faults.size(), fault.detail.c_str());
    fflush(stdout);
    if (!injected.ok()) {
      fprintf(stderr, "faha-drill: %s: %s\n", f.c_str(), injected.ToString().c_str());
      all_recovered = false;
      break;
    }
    if (!to_restart.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(down_ms));
      for (Node* n : to_restart) cluster.Start(n);
    }
    fault.over_us = faha::MonoUs();
    fault.recovered = cluster.WaitHealthy(60000);
    fault.healthy_us = faha::MonoUs();
    if (!fault.recovered) all_recovered = false;
    done.push_back(fault);
    std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_settle_ms));
    if (!fault.recovered) break;
  }
  load.Stop();
  std::vector<Op> ops = load.TakeOps();
  // Acknowledged writes (and INCRs) as {response, invoke}, by response time.
  std::vector<std::pair<int64_t, int64_t>> acks;
  for (const auto& op : ops) {
    if (op.kind != Op::Kind::kRead && op.outcome == Op::Outcome::kOk)
      acks.emplace_back(op.response_us, op.invoke_us);
  }
  std::sort(acks.begin(), acks.end());
  // A fault's unavailability: until the first acknowledgement of a write
  // sent after it (writes in flight at the fault may still be acknowledged).
  auto first_ack_after = [&](int64_t t) -> int64_t {
    for (const auto& [response, invoke] : acks) {
      if (invoke >= t) return response;
    }
    return INT64_MAX;
  };
  // The longest time without an acknowledged write within [from, to].
  auto longest_gap = [&](int64_t from, int64_t to) -> int64_t {
    int64_t last = from, gap = 0;
    for (const auto& a : acks) {
      if (a.first < from) continue;
      if (a.first > to) break;
      gap = std::max(gap, a.first - last);
      last = a.first;
    }
    return std::max(gap, to - last);
  };
  auto acked_between = [&](int64_t from, int64_t to) {
    size_t n = 0;
    for (const auto& [response, invoke] : acks) n += invoke >= from && response <= to ? 1 : 0;
    return n;
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

  const std::string where =
      use_netns ? "network namespaces on bridge " + net.bridge_address() : FLAGS_host;
  printf(
      "\n== faha-drill results (3 nodes + etcd, %s, %d clients, %d keys, %d counters, "
      "transport %s)\n",
      where.c_str(), FLAGS_clients, FLAGS_keys, FLAGS_counters, FLAGS_repl_transport.c_str());
  printf(
      "operations: %zu recorded; writes acknowledged %llu, outcome unknown %llu; reads %llu; "
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
  std::map<std::string, std::vector<double>> windows;
  std::vector<std::string> problems = check.problems;
  for (const auto& f : done) {
    const int64_t ack = first_ack_after(f.at_us);
    const double gap_ms = static_cast<double>(longest_gap(f.at_us, f.healthy_us)) / 1000.0;
    std::string extra;
    if (f.name == "kill-backup") {
      // After --repl_timeout_ms (1000) the primary drops the dead backup and
      // commits with the other one alone until the killed one is back.
      size_t n = acked_between(f.at_us + 1500 * 1000, f.over_us);
      extra = "; writes acked with one backup: " + std::to_string(n);
      if (n == 0) problems.push_back("no write was acknowledged while one backup was down");
    } else if (f.name == "restart-etcd") {
      size_t n = acked_between(f.at_us, f.over_us);
      extra = "; writes acked while etcd was down: " + std::to_string(n);
      if (n == 0) problems.push_back("no write was acknowledged while etcd was down");
    }
    if (!f.recovered) extra += " (did not recover)";
    if (ack == INT64_MAX) {
      printf("  %-16s %s: no acknowledged write after it%s\n", f.name.c_str(), f.detail.c_str(),
             extra.c_str());
      continue;
    }
    const double window_ms = static_cast<double>(ack - f.at_us) / 1000.0;
    windows[f.name].push_back(window_ms);
    printf(
        "  %-16s %s: unavailable %.0f ms; longest gap between acked writes until whole "
        "again %.0f ms%s\n",
        f.name.c_str(), f.detail.c_str(), window_ms, gap_ms, extra.c_str());
  }
  printf("unavailability (fault -> first acknowledged write sent after it), per fault kind:\n");
  for (const auto& [name, v] : windows) {
    printf("  %-16s n=%zu median %.0f ms, p99 %.0f ms, max %.0f ms\n", name.c_str(), v.size(),
           Percentile(v, 50), Percentile(v, 99), Percentile(v, 100));
  }
  for (const auto& p : problems) printf("PROBLEM: %s\n", p.c_str());
  const bool ok = problems.empty() && all_recovered && final_ok;
  printf("verdict: %s\n", ok ? "PASS (every acknowledged write present, history linearizable, "
                               "no deposed-primary acknowledgement, no duplicated retry)"
                             : "FAIL");
  if (!ok) {
    for (const auto& n : cluster.nodes()) {
      if (n.pid <= 0) continue;
      printf("node %s (pid %d)%s:\n%s", n.id.c_str(), static_cast<int>(n.pid),
             n.stopped ? " stopped" : "", DescribeProcess(n.pid).c_str());
    }
  }
  if (!ok || FLAGS_keep) {
    printf("logs and data kept in %s\n", dir.c_str());
  } else {
    for (auto& n : cluster.nodes()) cluster.Kill(&n, SIGKILL);
    std::string cmd = "rm -rf '" + dir + "'";
    if (system(cmd.c_str()) != 0) fprintf(stderr, "cannot remove %s\n", dir.c_str());
  }
  return ok ? 0 : 1;
}
