// Elections in one process: three ClusterNodes, each with its store on an
// in-memory device and its replication port on the loopback transport,
// coordinated through a MemoryCoordinator instead of etcd. The real election,
// promotion, failure detection and catch-up code runs without etcd, sockets
// or processes; tests/failover_test.cc and the drill keep testing it with them.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
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

// A coordinator client that fails every call while `cut` is set, as an etcd
// on the far side of a partition does.
class PartitionableCoordinator final : public coord::Coordinator {
 public:
  PartitionableCoordinator(std::unique_ptr<coord::Coordinator> inner,
                           std::shared_ptr<std::atomic<bool>> cut)
      : inner_(std::move(inner)), cut_(std::move(cut)) {}
  StatusOr<int64_t> GrantLease(int64_t ttl_s, int64_t* granted) override {
    if (*cut_) return Cut();
    return inner_->GrantLease(ttl_s, granted);
  }
  StatusOr<int64_t> KeepAliveOnce(int64_t lease) override {
    if (*cut_) return Cut();
    return inner_->KeepAliveOnce(lease);
  }
  Status RevokeLease(int64_t lease) override { return *cut_ ? Cut() : inner_->RevokeLease(lease); }
  StatusOr<std::optional<coord::KeyValue>> Get(const std::string& key) override {
    if (*cut_) return Cut();
    return inner_->Get(key);
  }
  StatusOr<std::vector<coord::KeyValue>> GetPrefix(const std::string& prefix) override {
    if (*cut_) return Cut();
    return inner_->GetPrefix(prefix);
  }
  Status Put(const std::string& key, const std::string& value, int64_t lease) override {
    return *cut_ ? Cut() : inner_->Put(key, value, lease);
  }
  StatusOr<bool> CompareAndSwap(const std::string& key, int64_t expected, const std::string& value,
                                int64_t lease, std::optional<coord::KeyValue>* current) override {
    if (*cut_) return Cut();
    return inner_->CompareAndSwap(key, expected, value, lease, current);
  }
  Status Delete(const std::string& key) override { return *cut_ ? Cut() : inner_->Delete(key); }

 private:
  static Status Cut() { return Status::Unavailable("partitioned from the coordinator"); }
  std::unique_ptr<coord::Coordinator> inner_;
  std::shared_ptr<std::atomic<bool>> cut_;
};

// A transport whose connections fail to open while `cut` is set (those open
// are cut with CutLoopbackConnections).
class PartitionableTransport final : public rdma::Transport {
 public:
  PartitionableTransport(std::unique_ptr<rdma::Transport> inner,
                         std::shared_ptr<std::atomic<bool>> cut)
      : inner_(std::move(inner)), cut_(std::move(cut)) {}
  std::string name() const override { return inner_->name(); }
  StatusOr<std::unique_ptr<rdma::Channel>> Connect(const std::string& address,
                                                   int timeout_ms) override {
    if (*cut_) return Status::Unavailable("partitioned from " + address);
    return inner_->Connect(address, timeout_ms);
  }
  StatusOr<std::unique_ptr<rdma::Listener>> Listen(const std::string& bind, int port) override {
    return inner_->Listen(bind, port);
  }

 private:
  std::unique_ptr<rdma::Transport> inner_;
  std::shared_ptr<std::atomic<bool>> cut_;
};

struct Member {
  std::string id, dir, client;
  // Set: this member is cut off from the coordinator (cut_coord), or cannot
  // open connections to the others (cut_net).
  std::shared_ptr<std::atomic<bool>> cut_coord = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> cut_net = std::make_shared<std::atomic<bool>>(false);
  std::atomic<int> restarts_requested{0};
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
    co.failover_timeout_ms = failover_timeout_ms_;
    co.lease_ttl_s = lease_ttl_s_;
    co.clock_ns = [this] { return MonoNs() + clock_offset_ns_.load(); };
    co.make_transport = [this, cut = m->cut_net]() -> std::unique_ptr<rdma::Transport> {
      return std::make_unique<PartitionableTransport>(rdma::MakeLoopbackTransport(net_, topt_),
                                                      cut);
    };
    co.make_coordinator = [this,
                           cut = m->cut_coord]() -> StatusOr<std::unique_ptr<coord::Coordinator>> {
      return std::unique_ptr<coord::Coordinator>(
          std::make_unique<PartitionableCoordinator>(coord_.Connect(), cut));
    };
    co.request_restart = [m] { m->restarts_requested++; };
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

  // Cuts m off from the coordinator and from the other members.
  void Partition(Member* m) {
    m->cut_coord->store(true);
    m->cut_net->store(true);
    rdma::CutLoopbackConnections(net_.get());
  }
  // Heals m's partition; true once m finds itself deposed (asks to restart)
  // and no longer serves.
  bool HealAndWaitDeposed(Member* m) {
    m->cut_coord->store(false);
    m->cut_net->store(false);
    const int64_t deadline = MonoMs() + 15000;
    while (m->restarts_requested.load() == 0 && MonoMs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return m->restarts_requested.load() > 0 && m->node->Refusal(true, false).refused();
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
  int failover_timeout_ms_ = 400;
  int lease_ttl_s_ = 2;
  std::atomic<int64_t> clock_offset_ns_{0};  // the members' clock runs this far ahead
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

// A backup whose log failed to persist holds batches that are not durable:
// it must not run for primary with them (review). When the primary goes,
// the other backup takes over, with every acknowledged write.
TEST_F(ElectionUnitTest, ABackupWhoseLogFailedNeverBecomesPrimary) {
  Member* first = WaitForPrimary(nullptr, 15000);
  ASSERT_NE(first, nullptr) << "no single primary was elected";
  Write(first, 0, 100);
  Member* failed = first == &members_[0] ? &members_[1] : &members_[0];
  failed->dev->CrashAtPersist(0, nullptr);
  for (int i = 0; i < 50 && !failed->store->failed(); i++) {
    Collect sink;
    const std::string k = "during" + std::to_string(i);
    first->store->Submit(SetOp(k, "x"), &sink, 1);
    if (sink.WaitFor(1)[0].result.kind != WriteResult::Kind::kError) acked_[k] = "x";
  }
  ASSERT_TRUE(failed->store->failed()) << "the backup's persist never failed";
  StopMember(first);
  // The one left takes over; with no backup in sync it commits nothing, so it
  // is watched as the primary of the configuration, not as one serving.
  Member* second = nullptr;
  for (const int64_t deadline = MonoMs() + 15000; MonoMs() < deadline && !second;) {
    for (Member& m : members_) {
      if (&m != first && m.node && !m.node->is_backup()) second = &m;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(second, nullptr) << "no member took over";
  EXPECT_NE(second, failed) << "the backup whose log failed became primary";
  ExpectEveryAcknowledgedWrite(second);
  std::this_thread::sleep_for(std::chrono::milliseconds(4 * failover_timeout_ms_));
  EXPECT_TRUE(failed->node->is_backup()) << "the backup whose log failed ran for primary";
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

// The primary cut off from the coordinator and from its backups: it
// acknowledges nothing from then on, the other two elect a new primary that
// holds every acknowledged write, and once the partition heals the old
// primary finds itself deposed and asks to be restarted; restarted, it is a
// backup that dropped what it wrote alone and holds everything acknowledged.
TEST_F(ElectionUnitTest, APartitionedPrimaryIsDeposedAndRejoinsWithoutWhatItWroteAlone) {
  Member* first = WaitForPrimary(nullptr, 15000);
  ASSERT_NE(first, nullptr) << "no single primary was elected";
  Write(first, 0, 200);
  Partition(first);
  // No backup can hold these: none may be acknowledged.
  constexpr int kAlone = 50;
  Collect alone;
  for (int i = 0; i < kAlone; i++) {
    first->store->Submit(SetOp("alone" + std::to_string(i), "x"), &alone, 1);
  }
  Member* second = WaitForPrimary(first, 15000);
  ASSERT_NE(second, nullptr) << "the two members in touch elected nobody";
  for (const Completion& c : alone.WaitFor(kAlone)) {
    EXPECT_EQ(c.result.kind, WriteResult::Kind::kError)
        << "a write held by no backup was acknowledged";
  }
  EXPECT_TRUE(first->node->Refusal(true, false).refused()) << "the cut-off primary still serves";
  Write(second, 200, 300);

  ASSERT_TRUE(HealAndWaitDeposed(first)) << "the old primary did not find itself deposed";
  StopMember(first);
  StartMember(first);
  ASSERT_FALSE(HasFatalFailure());
  Write(second, 300, 320);
  // The restarted member catches up as a backup of the new primary.
  bool caught_up = false;
  const int64_t deadline = MonoMs() + 15000;
  while (!caught_up && MonoMs() < deadline) {
    std::string v;
    {
      Store::ReadGuard guard = first->store->LockForRead();
      caught_up = first->store->Get("k319", &v);
    }
    if (!caught_up) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(caught_up) << "the old primary did not catch up";
  EXPECT_TRUE(first->node->is_backup());
  EXPECT_EQ(WaitForPrimary(nullptr, 5000), second);
  ExpectEveryAcknowledgedWrite(second);
  ExpectEveryAcknowledgedWrite(first);
  for (Member* m : {first, second}) {
    Store::ReadGuard guard = m->store->LockForRead();
    for (int i = 0; i < kAlone; i++) {
      EXPECT_FALSE(m->store->Exists("alone" + std::to_string(i))) << m->id << " kept alone" << i;
    }
  }
}

// The failure detector on the members' clock, with --failover_timeout_ms at
// a minute (and etcd leases of 30 s, so none ends meanwhile): a primary cut
// off from etcd and its backups whose client port still accepts connections
// (a partition, not a crash) is not suspected while the clock stands short of
// the timeout, however long the silence lasts in real time; once the clock
// passes it, the backups elect a new primary with every acknowledged write,
// and the old one, its lease revoked, is deposed when the partition heals.
class SlowDetectorTest : public ElectionUnitTest {
 protected:
  SlowDetectorTest() {
    failover_timeout_ms_ = 60000;
    lease_ttl_s_ = 30;
  }
};

TEST_F(SlowDetectorTest, ASilentPrimaryIsSuspectedOnlyOnceTheClockPassesTheTimeout) {
  Member* first = WaitForPrimary(nullptr, 15000);
  ASSERT_NE(first, nullptr) << "no single primary was elected";
  Write(first, 0, 100);
  // The primary's client port accepts connections: the backups' probe finds it alive.
  const int port = std::stoi(first->client.substr(first->client.find(':') + 1));
  int bound = 0;
  auto listener = net::ListenTcp("127.0.0.1", port, 16, &bound);
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  Partition(first);
  EXPECT_EQ(WaitForPrimary(first, 1500), nullptr) << "a backup took over before the timeout";
  EXPECT_TRUE(first->node->Refusal(true, false).refused()) << "the cut-off primary still serves";
  for (Member& m : members_) {
    if (&m == first) continue;
    EXPECT_TRUE(m.node->is_backup()) << m.id;
  }
  clock_offset_ns_ += int64_t{61} * 1000 * 1000 * 1000;
  Member* second = WaitForPrimary(first, 15000);
  ASSERT_NE(second, nullptr) << "nobody took over once the clock passed the timeout";
  Write(second, 100, 150);
  ExpectEveryAcknowledgedWrite(second);
  EXPECT_TRUE(HealAndWaitDeposed(first)) << "the old primary was not deposed";
  close(*listener);
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
