// Transactions and scripts through crashes: clients run transactions of 1
// to 1,000 keys (RESP MULTI ... EXEC pipelines, libfaha's one-request
// Transaction, and EVAL of a script that writes them)
// while the server is killed with SIGKILL, several times; and, in a cluster
// of three coordinated by a real etcd, while the primary is killed and a
// backup takes over. After each restart or failover every transaction and script is
// there entirely or not at all, and every acknowledged one is there.
// (The power cut of the in-memory device is store_test's
// ATransactionSurvivesAPowerCutEntirelyOrNotAtAll.)
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "common/clock.h"
#include "coord/etcd_testing.h"
#include "tests/etcd_cluster.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

// One transaction: keys prefix + 0 .. keys-1, each set to prefix.
struct Txn {
  std::string prefix;
  int keys = 0;
  bool acked = false;
};

class TxnLog {
 public:
  // Records a transaction before it is sent: its outcome is unknown until
  // Ack. Returns its index.
  size_t Add(Txn t) {
    std::lock_guard<std::mutex> l(mu_);
    txns_.push_back(std::move(t));
    return txns_.size() - 1;
  }
  void Ack(size_t i) {
    std::lock_guard<std::mutex> l(mu_);
    txns_[i].acked = true;
  }
  // Checks every transaction on the server at `address`: all of its keys or
  // none, all if acknowledged. Counts what it found.
  void Verify(const std::string& address, int* whole, int* none, int* acked) {
    std::lock_guard<std::mutex> l(mu_);
    RespConnection c(std::stoi(address.substr(address.rfind(':') + 1)));
    for (const Txn& t : txns_) {
      std::vector<std::string> exists = {"EXISTS"};
      for (int k = 0; k < t.keys; k++) exists.push_back(t.prefix + std::to_string(k));
      const std::string reply = c.Call(exists);
      ASSERT_EQ(reply[0], ':') << reply;
      const int present = std::stoi(reply.substr(1));
      ASSERT_TRUE(present == 0 || present == t.keys)
          << t.prefix << ": " << present << " of its " << t.keys << " keys are there";
      if (t.acked) {
        ASSERT_EQ(present, t.keys) << t.prefix << " was acknowledged but is not there";
        (*acked)++;
      }
      (present == t.keys ? *whole : *none)++;
    }
  }

 private:
  std::mutex mu_;
  std::vector<Txn> txns_;
};

int KeysFor(std::mt19937& rng) {
  const uint32_t r = rng() % 20;
  return r == 0 ? 1000 : r < 4 ? 1 : 1 + static_cast<int>(rng() % 300);
}

// RESP: MULTI, the SETs, EXEC in one pipeline, until `stop` or an error.
void RespWriter(int port, const std::string& tag, TxnLog* log, std::atomic<bool>* stop) {
  RespConnection c(port, 3000);
  std::mt19937 rng(std::hash<std::string>()(tag));
  for (int i = 0; !stop->load(); i++) {
    Txn t{tag + "-x" + std::to_string(i) + "-", KeysFor(rng)};
    std::vector<std::vector<std::string>> cmds = {{"MULTI"}};
    for (int k = 0; k < t.keys; k++)
      cmds.push_back({"SET", t.prefix + std::to_string(k), t.prefix});
    cmds.push_back({"EXEC"});
    const size_t at = log->Add(t);
    const std::vector<std::string> replies = c.Pipeline(cmds);
    std::string want = "*" + std::to_string(t.keys) + "\r\n";
    for (int k = 0; k < t.keys; k++) want += "+OK\r\n";
    if (replies.back() != want) return;  // the server died
    log->Ack(at);
  }
}

constexpr const char* kWriteScript =
    "for i = 1, tonumber(ARGV[1]) do redis.call('set', ARGV[2] .. (i - 1), ARGV[2]) end "
    "return ARGV[1]";

// A script that writes the transaction's keys, through Command: true if
// acknowledged.
bool SendScript(Client* c, const Txn& t) {
  auto r = c->Command({"EVAL", kWriteScript, "0", std::to_string(t.keys), t.prefix});
  return r.ok() && r->type == Reply::Type::kBulk && r->str == std::to_string(t.keys);
}

// The transaction as one native request: true if acknowledged whole.
bool SendTransaction(Client* c, const Txn& t) {
  std::vector<std::vector<std::string>> cmds;
  for (int k = 0; k < t.keys; k++) cmds.push_back({"SET", t.prefix + std::to_string(k), t.prefix});
  auto r = c->Transaction(cmds);
  return r.ok() && r->type == Reply::Type::kArray &&
         r->elements.size() == static_cast<size_t>(t.keys);
}

// libfaha, sending transactions with `send` until `stop` or a failure
// (follow_primary: a request is re-sent with its id across a failover and
// applied once).
void ClientWriter(const std::string& addresses, bool follow, const std::string& tag, TxnLog* log,
                  std::atomic<bool>* stop, bool (*send)(Client*, const Txn&)) {
  ClientOptions o;
  o.address = addresses;
  o.follow_primary = follow;
  o.op_timeout_ms = 3000;
  o.failover_timeout_ms = 20000;
  auto c = Client::Connect(o);
  if (!c.ok()) return;
  std::mt19937 rng(std::hash<std::string>()(tag));
  for (int i = 0; !stop->load(); i++) {
    Txn t{tag + "-x" + std::to_string(i) + "-", KeysFor(rng)};
    const size_t at = log->Add(t);
    if (!send(c->get(), t)) return;
    log->Ack(at);
  }
}

TEST(TxnCrashTest, KillNineDuringTransactionsLeavesEachWholeOrAbsent) {
  TempDir dir;
  ServerProcess server(dir.path() + "/data", {"--segment_mb=16"});
  TxnLog log;
  std::mt19937 rng(7);
  int acked = 0, whole = 0, none = 0;
  for (int round = 0; round < 5; round++) {
    server.Start();
    ASSERT_TRUE(server.WaitReady()) << server.Log();
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 2; t++) {
      const std::string tag = "r" + std::to_string(round) + "-t" + std::to_string(t);
      writers.emplace_back(RespWriter, server.port(), tag + "resp", &log, &stop);
      writers.emplace_back(ClientWriter, server.address(), false, tag + "native", &log, &stop,
                           SendTransaction);
      writers.emplace_back(ClientWriter, server.address(), false, tag + "script", &log, &stop,
                           SendScript);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 700));
    server.Kill(SIGKILL);
    stop.store(true);
    for (auto& w : writers) w.join();
    server.Start();
    ASSERT_TRUE(server.WaitReady()) << server.Log();
    whole = none = acked = 0;
    log.Verify(server.address(), &whole, &none, &acked);
    if (HasFatalFailure()) return;
    server.Kill(SIGTERM);
  }
  std::printf("after 5 kills: %d transactions acknowledged, %d whole, %d absent\n", acked, whole,
              none);
  EXPECT_GT(acked, 20);
}

TEST(TxnCrashTest, AFailoverDuringTransactionsLeavesEachWholeOrAbsent) {
  EtcdCluster cluster;
  cluster.StartAll();
  const std::string addresses = cluster.all_addresses();
  const int p = cluster.WaitServingPrimary();
  ASSERT_GE(p, 0) << cluster.node(0).Log();
  TxnLog log;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; t++) {
    writers.emplace_back(ClientWriter, addresses, true, "t" + std::to_string(t), &log, &stop,
                         SendTransaction);
    writers.emplace_back(ClientWriter, addresses, true, "s" + std::to_string(t), &log, &stop,
                         SendScript);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  cluster.node(p).Kill(SIGKILL);
  const int q = cluster.WaitServingPrimary(p);
  ASSERT_GE(q, 0) << "no backup took over";
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // writes go on at the new primary
  stop.store(true);
  for (auto& w : writers) w.join();
  int whole = 0, none = 0, acked = 0;
  log.Verify(cluster.node(q).address(), &whole, &none, &acked);
  std::printf("failover: %d transactions acknowledged, %d whole, %d absent\n", acked, whole, none);
  EXPECT_GT(acked, 5);
}

}  // namespace
}  // namespace faha::test
