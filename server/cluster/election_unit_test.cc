// Elections in one process: three ClusterNodes, each with its store on an
// in-memory device and its replication port on the loopback transport,
// coordinated through a MemoryCoordinator instead of etcd. The real election,
// promotion, failure detection and catch-up code runs without etcd, sockets
// or processes; tests/failover_test.cc and the drill keep testing it with them.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/net.h"
#include "coord/memory_coordinator.h"
#include "nvm/memory_device.h"
#include "rdma/loopback_transport.h"
#include "server/cluster/cluster.h"
#include "server/engine/store.h"
#include "server/engine/store_testing.h"
#include "server/replication/replication.h"

namespace faha {
namespace {

using testing::Collect;
using testing::SetOp;

struct Member {
  std::string id, dir, client;
  std::shared_ptr<nvm::MemoryDevice> dev = std::make_shared<nvm::MemoryDevice>();
  Metrics metrics;
  nvm::RecoveryReport report;
  std::unique_ptr<Store> store;
  std::unique_ptr<ClusterNode> node;
};

class ElectionUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/faha-election-unit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    topt_.secret = "election-unit-test-secret";
    for (int i = 0; i < 3; i++) {
      Member& m = members_[i];
      m.id = "n" + std::to_string(i + 1);
      m.dir = root_ + "/" + m.id;
      std::filesystem::create_directories(m.dir);
      // Nothing listens on a member's client address: a member that stops
      // answering on its replication stream is taken for gone at once.
      auto port = net::FreeLoopbackPort();
      ASSERT_TRUE(port.ok());
      m.client = "127.0.0.1:" + std::to_string(*port);
    }
    for (Member& m : members_) StartMember(&m);
  }
  void TearDown() override {
    for (Member& m : members_) StopMember(&m);
    std::filesystem::remove_all(root_);
  }

  void StartMember(Member* m) {
    StoreOptions so;
    so.log.segment_bytes = 1 << 20;
    so.log.in_flight_batches = nvm::kTornWindowBatches;
    so.max_batch_bytes = 256 << 10;
    auto s = Store::OpenOnDevice(m->dev, so, &m->metrics, &m->report);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    m->store = std::move(*s);
    BackupOptions bo;
    bo.data_dir = m->dir;
    auto backup = std::make_unique<BackupService>(bo, rdma::MakeLoopbackTransport(net_, topt_),
                                                  m->store.get());
    Status bs = backup->Start();
    ASSERT_TRUE(bs.ok()) << bs.ToString();
    ClusterOptions co;
    co.cluster = "unit";
    co.node_id = m->id;
    co.client_address = m->client;
    co.repl_address = "127.0.0.1:" + std::to_string(backup->port());
    co.data_dir = m->dir;
    co.replication.min_sync_backups = 1;
    co.replication.timeout_ms = 1000;
    co.make_transport = [this] { return rdma::MakeLoopbackTransport(net_, topt_); };
    co.make_coordinator = [this]() -> StatusOr<std::unique_ptr<coord::Coordinator>> {
      return coord_.Connect();
    };
    co.request_restart = [] {};
    m->node = std::make_unique<ClusterNode>(co, m->store.get(), std::move(backup));
    Status cs = m->node->Start();
    ASSERT_TRUE(cs.ok()) << cs.ToString();
  }
  void StopMember(Member* m) {
    if (m->node) m->node->Stop();
    m->node.reset();
    if (m->store) m->store->Stop();
    m->store.reset();
  }

  // The one member serving as primary, once there is exactly one.
  Member* WaitForPrimary(const Member* not_this, int timeout_ms) {
    const int64_t deadline = MonoMs() + timeout_ms;
    while (MonoMs() < deadline) {
      Member* found = nullptr;
      int serving = 0;
      for (Member& m : members_) {
        if (!m.node || &m == not_this) continue;
        if (!m.node->is_backup() && !m.node->Refusal(true, false).refused()) {
          found = &m;
          serving++;
        }
      }
      if (serving == 1) return found;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return nullptr;
  }

  // Writes through the primary's store; every reply must be a success.
  void Write(Member* p, int from, int to) {
    Collect sink;
    for (int i = from; i < to; i++) {
      std::string k = "k" + std::to_string(i);
      acked_[k] = "v" + std::to_string(i);
      p->store->Submit(SetOp(k, acked_[k]), &sink, 1);
    }
    for (const Completion& c : sink.WaitFor(static_cast<size_t>(to - from))) {
      ASSERT_NE(c.result.kind, WriteResult::Kind::kError) << c.result.str;
    }
  }

  // Every write acknowledged so far reads back from m's store.
  void ExpectEveryAcknowledgedWrite(Member* m) {
    Store::ReadGuard guard = m->store->LockForRead();
    for (const auto& [k, v] : acked_) {
      std::string got;
      ASSERT_TRUE(m->store->Get(k, &got)) << k << " was acknowledged and is lost";
      EXPECT_EQ(got, v);
    }
  }

  std::string root_;
  rdma::TransportOptions topt_;
  std::shared_ptr<rdma::LoopbackNetwork> net_ = rdma::MakeLoopbackNetwork();
  coord::MemoryCoordinator coord_;
  Member members_[3];
  std::map<std::string, std::string> acked_;
};

TEST_F(ElectionUnitTest, OnePrimaryIsElectedAndANewOneTakesOverWithEveryAcknowledgedWrite) {
  Member* first = WaitForPrimary(nullptr, 15000);
  ASSERT_NE(first, nullptr) << "no single primary was elected";
  Write(first, 0, 300);
  // The primary's node goes away (its lease is revoked, its streams close):
  // another member must take over and hold every acknowledged write.
  StopMember(first);
  Member* second = WaitForPrimary(first, 15000);
  ASSERT_NE(second, nullptr) << "no member took over";
  ASSERT_NE(second, first);
  Write(second, 300, 400);
  ExpectEveryAcknowledgedWrite(second);
}

// etcd unreachable for less than a lease: the primary keeps serving on its
// backups' heartbeat echoes (its read lease), nobody runs for primary, and
// once etcd answers again the same member is primary with every write.
TEST_F(ElectionUnitTest, AnUnreachableCoordinatorForLessThanALeaseChangesNothing) {
  Member* first = WaitForPrimary(nullptr, 15000);
  ASSERT_NE(first, nullptr) << "no single primary was elected";
  Write(first, 0, 100);
  coord_.SetUnavailable(true);
  const int64_t until = MonoMs() + 1000;
  int i = 100;
  while (MonoMs() < until) {
    Write(first, i, i + 10);
    if (HasFatalFailure()) break;
    i += 10;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  coord_.SetUnavailable(false);
  ASSERT_FALSE(HasFatalFailure()) << "a write failed while etcd was unreachable";
  for (Member& m : members_) {
    if (&m == first) continue;
    EXPECT_TRUE(m.node->is_backup()) << m.id << " took over";
  }
  EXPECT_EQ(WaitForPrimary(nullptr, 5000), first);
  Write(first, i, i + 10);
  ExpectEveryAcknowledgedWrite(first);
}

TEST(MemoryCoordinatorTest, CompareAndSwapRevisionsAndLeasesFollowEtcd) {
  int64_t now = 1000;
  coord::MemoryCoordinator c([&now] { return now; });
  std::optional<coord::KeyValue> cur;
  auto w = c.CompareAndSwap("/a", 0, "one", 0, &cur);
  ASSERT_TRUE(w.ok() && *w);
  auto got = c.Get("/a");
  ASSERT_TRUE(got.ok() && got->has_value());
  const int64_t rev = (*got)->mod_revision;
  w = c.CompareAndSwap("/a", 0, "two", 0, &cur);  // must not exist: it does
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(*w);
  ASSERT_TRUE(cur.has_value());
  EXPECT_EQ(cur->value, "one");
  w = c.CompareAndSwap("/a", rev, "two", 0, &cur);
  ASSERT_TRUE(w.ok() && *w);
  // A key on a lease vanishes when the lease expires, not before.
  auto lease = c.GrantLease(2, nullptr);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(c.Put("/l", "x", *lease).ok());
  now += 1500;
  ASSERT_TRUE(c.KeepAliveOnce(*lease).ok());
  now += 1500;
  EXPECT_TRUE(c.Get("/l")->has_value());
  now += 600;
  EXPECT_FALSE(c.Get("/l")->has_value());
  EXPECT_FALSE(c.KeepAliveOnce(*lease).ok());
  EXPECT_FALSE(c.Put("/m", "y", *lease).ok());
  auto prefix = c.GetPrefix("/");
  ASSERT_TRUE(prefix.ok());
  ASSERT_EQ(prefix->size(), 1u);
  EXPECT_EQ((*prefix)[0].value, "two");
  c.SetUnavailable(true);
  EXPECT_EQ(c.Get("/a").status().code(), Status::Code::kUnavailable);
}

}  // namespace
}  // namespace faha
