// Clusters coordinated through a real etcd (started by the test on free
// loopback ports): the first node becomes primary and the others backups;
// backups redirect clients (MOVED, followed by redis-cli -c and by libfaha);
// a write re-sent with the same client id and sequence is applied once, also
// on another connection; after kill -9 of the primary an in-sync backup takes
// over, every acknowledged write is there, and the old primary comes back as
// a backup holding the same data. The fault schedule of faha-drill runs as
// its own ctest (failover_drill).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "common/clock.h"
#include "common/native_protocol.h"
#include "coord/etcd_client.h"
#include "coord/etcd_testing.h"
#include "tests/etcd_cluster.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

std::string IncrRequest(uint64_t id, const std::string& key) {
  std::string args, req;
  native::EncodeArgs(&args, {"INCR", key});
  native::EncodeRequest(&req, native::Op::kCommand, id, {}, args);
  return req;
}

TEST(FailoverTest, FirstNodeIsPrimaryBackupsRedirectAndARetriedWriteIsAppliedOnce) {
  EtcdCluster c;
  for (int i = 0; i < 3; i++) c.node(i).Start();
  int p = c.WaitPrimary(2);
  ASSERT_GE(p, 0) << c.node(0).Log();
  int b = (p + 1) % 3;

  // The configuration in etcd names the primary and both backups in sync.
  auto etcd = coord::EtcdClient::Create(c.etcd().endpoint(), 2000);
  ASSERT_TRUE(etcd.ok());
  auto cfg = (*etcd)->Get("/faha/t/config");
  ASSERT_TRUE(cfg.ok() && cfg->has_value());
  EXPECT_NE((*cfg)->value.find("\"primary\":\"n" + std::to_string(p + 1) + "\""), std::string::npos)
      << (*cfg)->value;
  EXPECT_NE((*cfg)->value.find("\"epoch\":1"), std::string::npos) << (*cfg)->value;

  // RESP: a backup answers MOVED with the primary's address; redis-cli -c follows it.
  RunResult moved = RunTool(
      {"redis-cli", "-h", TestHost(), "-p", std::to_string(c.node(b).port()), "SET", "k", "v1"});
  EXPECT_NE(moved.out.find("MOVED 0 " + c.node(p).address()), std::string::npos) << moved.out;
  RunResult follow = RunTool({"redis-cli", "-c", "-h", TestHost(), "-p",
                              std::to_string(c.node(b).port()), "SET", "k", "v2"});
  EXPECT_EQ(follow.out, "OK\n") << follow.out << follow.err;
  RunResult role =
      RunTool({"redis-cli", "-h", TestHost(), "-p", std::to_string(c.node(b).port()), "ROLE"});
  EXPECT_EQ(role.out.rfind("backup\n", 0), 0u) << role.out;

  // Native: INCR with client id 77 and sequence 5, sent twice on one
  // connection and once more on another: applied once, same reply each time.
  std::string hello;
  native::EncodeRequest(&hello, native::Op::kClientId, 1, {}, {}, 77);
  std::vector<uint64_t> stamps;
  auto r1 = NativeExchange(c.node(p).port(), hello + IncrRequest(5, "ctr") + IncrRequest(5, "ctr"),
                           3, &stamps);
  ASSERT_EQ(r1.size(), 3u);
  EXPECT_EQ(r1[1].second, ":1\r\n");
  EXPECT_EQ(r1[2].second, ":1\r\n");
  EXPECT_EQ(native::StampEpoch(stamps[1]), 1u);
  EXPECT_GT(native::StampLsn(stamps[1]), 0u);
  EXPECT_EQ(stamps[2], 0u) << "an answer from the client table carries no commit stamp";
  auto r2 = NativeExchange(c.node(p).port(), hello + IncrRequest(5, "ctr") + IncrRequest(6, "ctr"),
                           3, nullptr);
  ASSERT_EQ(r2.size(), 3u);
  EXPECT_EQ(r2[1].second, ":1\r\n");
  EXPECT_EQ(r2[2].second, ":2\r\n");
  auto client = ConnectClient(c.node(p).address());
  ASSERT_NE(client, nullptr);
  std::string v;
  ASSERT_TRUE(client->Get("ctr", &v).ok());
  EXPECT_EQ(v, "2");
  // A backup sends native clients to the primary too.
  std::string get;
  native::EncodeRequest(&get, native::Op::kGet, 9, "ctr", {});
  auto r3 = NativeExchange(c.node(b).port(), get, 1, nullptr);
  ASSERT_EQ(r3.size(), 1u);
  EXPECT_EQ(r3[0].first, native::Code::kMoved);
  EXPECT_EQ(r3[0].second, c.node(p).address());
  // A COMMAND refused there carries the code too, not a RESP error to parse.
  auto r4 = NativeExchange(c.node(b).port(), IncrRequest(10, "ctr"), 1, nullptr);
  ASSERT_EQ(r4.size(), 1u);
  EXPECT_EQ(r4[0].first, native::Code::kMoved);
  EXPECT_EQ(r4[0].second, c.node(p).address());
  // libfaha's Command() still answers it as Redis's error reply.
  auto at_backup = ConnectClient(c.node(b).address());
  ASSERT_NE(at_backup, nullptr);
  auto refused = at_backup->Command({"INCR", "ctr"});
  ASSERT_TRUE(refused.ok()) << refused.status().ToString();
  EXPECT_EQ(refused->type, Reply::Type::kError);
  EXPECT_EQ(refused->str, "MOVED 0 " + c.node(p).address());
}

// A node that cannot record the epoch it would lead (its epoch file cannot be
// written) does not take the cluster: the others do, and it joins once its
// disk lets it.
TEST(FailoverTest, ANodeThatCannotRecordItsEpochDoesNotLeadIt) {
  EtcdCluster c;
  // The epoch file is replaced through EPOCH.tmp: a directory there fails it.
  const std::string blocker = c.data_dir(0) + "/EPOCH.tmp";
  std::filesystem::create_directories(blocker);
  c.node(0).Start();
  ASSERT_TRUE(c.node(0).WaitReady()) << c.node(0).Log();
  const int64_t deadline = MonoMs() + 10000;
  while (c.node(0).Log().find("cannot record it") == std::string::npos && MonoMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(c.node(0).Log().find("not running for primary of epoch 1"), std::string::npos)
      << c.node(0).Log();
  auto etcd = coord::EtcdClient::Create(c.etcd().endpoint(), 2000);
  ASSERT_TRUE(etcd.ok());
  auto cfg = (*etcd)->Get("/faha/t/config");
  ASSERT_TRUE(cfg.ok());
  EXPECT_FALSE(cfg->has_value()) << "n1 wrote a configuration: " << (*cfg)->value;
  c.node(1).Start();
  c.node(2).Start();
  const int p = c.WaitPrimary(1);
  ASSERT_GE(p, 1) << c.node(1).Log() << c.node(2).Log();
  std::filesystem::remove(blocker);
  EXPECT_EQ(c.WaitPrimary(2), p) << c.node(0).Log();
}

TEST(FailoverTest, KillNinePrimaryLosesNoAcknowledgedWriteAndTheOldPrimaryRejoins) {
  EtcdCluster c;
  for (int i = 0; i < 3; i++) c.node(i).Start();
  int p = c.WaitPrimary(2);
  ASSERT_GE(p, 0) << c.node(0).Log();

  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  std::map<int, bool> unknown;  // writer thread only until joined
  std::thread writer([&] {
    ClientOptions o;
    o.address = c.all_addresses();
    o.follow_primary = true;
    o.op_timeout_ms = 1000;
    o.failover_timeout_ms = 20000;
    auto cl = Client::Connect(o);
    ASSERT_TRUE(cl.ok()) << cl.status().ToString();
    for (int i = 0; !stop.load(); i++) {
      Status s = (*cl)->Put("key" + std::to_string(i), "value" + std::to_string(i));
      if (s.ok()) {
        acked.store(i + 1);
      } else {
        unknown[i] = true;
        break;
      }
    }
  });
  while (acked.load() < 2000) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const int64_t killed = MonoMs();
  const int before = acked.load();
  c.node(p).Kill(SIGKILL);
  int64_t resumed = 0;
  while (MonoMs() - killed < 15000) {
    if (acked.load() > before + 100) {
      resumed = MonoMs();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop.store(true);
  writer.join();
  ASSERT_NE(resumed, 0) << "writes did not resume after the primary was killed";
  EXPECT_TRUE(unknown.empty()) << "a write failed for good although a backup could take over";
  EXPECT_LT(resumed - killed, 5000) << "failover took too long";
  int q = c.WaitPrimary(1);
  ASSERT_GE(q, 0);
  ASSERT_NE(q, p);

  // Every acknowledged write is on the new primary.
  const int total = acked.load();
  auto client = ConnectClient(c.node(q).address());
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < total; i++) {
    std::string v;
    Status s = client->Get("key" + std::to_string(i), &v);
    ASSERT_TRUE(s.ok()) << "acknowledged key" << i << " lost: " << s.ToString();
    ASSERT_EQ(v, "value" + std::to_string(i));
  }
  // The old primary returns as a backup, catches up and is back in sync.
  c.node(p).Start();
  ASSERT_EQ(c.WaitPrimary(2), q) << c.node(p).Log();
  // Asked again until it answers: a loaded machine may still be starting it
  // (a node that has not read the configuration reports epoch 0).
  std::unique_ptr<Client> old;
  std::string role, epoch;
  int64_t deadline = MonoMs() + 10000;
  while (role != "backup" || epoch != "2") {
    ASSERT_LT(MonoMs(), deadline) << "role " << role << ", epoch " << epoch << "\n"
                                  << c.node(p).Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ClientOptions o;
    o.address = c.node(p).address();
    o.op_timeout_ms = 1000;
    auto cl = Client::Connect(o);
    if (!cl.ok()) continue;
    old = std::move(*cl);
    role = InfoField(old.get(), "cluster_role", "replication");
    epoch = InfoField(old.get(), "cluster_epoch", "replication");
  }
  auto d1 = client->Command({"FAHA.DIGEST"});
  deadline = MonoMs() + 10000;
  while (true) {
    auto d2 = old->Command({"FAHA.DIGEST"});
    ASSERT_TRUE(d1.ok() && d2.ok());
    if (d1->ToString() == d2->ToString()) break;
    ASSERT_LT(MonoMs(), deadline) << d1->ToString() << " vs " << d2->ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace
}  // namespace faha::test
