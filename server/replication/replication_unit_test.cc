// Replication in one process: a primary's Store and Replicator and two
// backups' Stores and BackupServices, every log on the in-memory device and
// every frame over the loopback transport (rdma/loopback_transport.h), so the
// real shipping, acknowledgement, catch-up and apply code runs without a
// socket or a process. The process tests (tests/replication_test.cc) stay.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "common/clock.h"
#include "nvm/memory_device.h"
#include "rdma/loopback_transport.h"
#include "server/engine/store.h"
#include "server/engine/store_testing.h"
#include "server/replication/replication.h"

namespace faha {
namespace {

using testing::Collect;
using testing::DelOp;
using testing::SetOp;

const char kSecret[] = "replication-unit-test-secret";

StoreOptions SmallLog() {
  StoreOptions o;
  o.log.segment_bytes = 1 << 20;
  o.log.in_flight_batches = nvm::kTornWindowBatches;
  o.max_batch_bytes = 256 << 10;
  return o;
}

// A backup: its store on its own in-memory device, and its replication port.
struct Backup {
  std::shared_ptr<nvm::MemoryDevice> dev = std::make_shared<nvm::MemoryDevice>();
  Metrics metrics;
  nvm::RecoveryReport report;
  std::unique_ptr<Store> store;
  std::unique_ptr<BackupService> service;
  std::string dir;
  int port = 0;
};

class ReplicationUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/faha-repl-unit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    topt_.secret = kSecret;
    for (int i = 0; i < 2; i++) {
      backups_[i].dir = root_ + "/b" + std::to_string(i);
      std::filesystem::create_directories(backups_[i].dir);
      StartBackup(&backups_[i]);
    }
    StartPrimary();
  }
  // Opens (recovering) the primary's store from its device and ships from
  // its log end to both backups, in epoch 1.
  // With `early`, a write is queued before the store starts (it is
  // committed once it does).
  void StartPrimary(Collect* early = nullptr) {
    auto s = Store::OpenOnDevice(dev_, SmallLog(), &metrics_, &report_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    ReplicatorOptions ro;
    for (const Backup& b : backups_) ro.backups.push_back("127.0.0.1:" + std::to_string(b.port));
    ro.min_sync_backups = 2;
    ro.epoch = 1;
    ro.timeout_ms = 2000;
    ro.heartbeat_ms = 20;  // tells the backups what is committed
    repl_ =
        std::make_unique<Replicator>(ro, rdma::MakeLoopbackTransport(net_, topt_), &store_->log());
    store_->set_replicator(repl_.get());
    repl_->Start(store_->log().next_lsn());
    if (early != nullptr) {
      expected_["early"] = "queued before start";
      store_->Submit(SetOp("early", "queued before start"), early, 1);
    }
    store_->Start();
  }
  void TearDown() override {
    if (store_) store_->Stop();
    if (repl_) repl_->Stop();
    for (Backup& b : backups_) {
      if (b.service) b.service->Stop();
    }
    std::filesystem::remove_all(root_);
  }

  // Opens (recovering) a backup's store from its device and serves its port:
  // the same port again after a restart, so the primary finds it.
  void StartBackup(Backup* b) {
    auto s = Store::OpenOnDevice(b->dev, SmallLog(), &b->metrics, &b->report);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    b->store = std::move(*s);
    BackupOptions bo;
    bo.port = b->port;
    bo.data_dir = b->dir;
    b->service = std::make_unique<BackupService>(bo, rdma::MakeLoopbackTransport(net_, topt_),
                                                 b->store.get());
    Status st = b->service->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
    b->port = b->service->port();
  }
  // The backup's process dies with its machine: what its log persisted stays.
  void PowerCut(Backup* b) {
    b->service->Stop();
    b->service.reset();
    b->store.reset();
    b->dev->PowerCut();
  }

  // Submits the ops together; every reply must be a success (durable on all).
  void Write(std::vector<WriteOp> ops) {
    Collect sink;
    const size_t n = ops.size();
    for (auto& op : ops) store_->Submit(std::move(op), &sink, 1);
    for (const Completion& c : sink.WaitFor(n)) {
      ASSERT_NE(c.result.kind, WriteResult::Kind::kError) << c.result.str;
    }
  }
  void WriteRange(int from, int to, const std::string& tag) {
    std::vector<WriteOp> ops;
    for (int i = from; i < to; i++) {
      std::string k = "key" + std::to_string(i);
      std::string v = tag + std::to_string(i) + std::string(i % 300, 'v');
      expected_[k] = v;
      ops.push_back(SetOp(k, v));
    }
    Write(std::move(ops));
  }

  // Waits until the backup applied everything the primary committed, then
  // checks that it serves exactly the expected keys and values.
  void ExpectSameData(Backup* b) {
    const uint64_t want = store_->committed_lsn();
    const int64_t deadline = MonoMs() + 10000;
    while (b->store->committed_lsn() < want && MonoMs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_GE(b->store->committed_lsn(), want) << "the backup did not apply the primary's log";
    Store::ReadGuard guard = b->store->LockForRead();
    EXPECT_EQ(b->store->KeyCount(), expected_.size());
    for (const auto& [k, v] : expected_) {
      std::string got;
      ASSERT_TRUE(b->store->Get(k, &got)) << k << " is missing on the backup";
      EXPECT_EQ(got, v) << k;
    }
  }

  std::string root_;
  rdma::TransportOptions topt_;
  std::shared_ptr<rdma::LoopbackNetwork> net_ = rdma::MakeLoopbackNetwork();
  Backup backups_[2];
  std::shared_ptr<nvm::MemoryDevice> dev_ = std::make_shared<nvm::MemoryDevice>();
  Metrics metrics_;
  nvm::RecoveryReport report_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Replicator> repl_;
  std::map<std::string, std::string> expected_;
};

TEST_F(ReplicationUnitTest, EveryAcknowledgedWriteIsOnBothBackups) {
  WriteRange(0, 500, "a");
  std::vector<WriteOp> dels;
  for (int i = 0; i < 500; i += 7) {
    dels.push_back(DelOp("key" + std::to_string(i)));
    expected_.erase("key" + std::to_string(i));
  }
  Write(std::move(dels));
  WriteRange(100, 300, "b");  // overwrites
  EXPECT_EQ(repl_->in_sync_count(), 2u);
  for (Backup& b : backups_) ExpectSameData(&b);
}

TEST_F(ReplicationUnitTest, ABackupCutFromThePowerCatchesUpAndRejoins) {
  WriteRange(0, 300, "a");
  PowerCut(&backups_[1]);
  // With one backup gone, min_sync_backups=2 cannot be met: writes must fail,
  // not be acknowledged by fewer copies than promised.
  {
    Collect sink;
    store_->Submit(SetOp("refused", "x"), &sink, 1);
    auto got = sink.WaitFor(1);
    EXPECT_EQ(got[0].result.kind, WriteResult::Kind::kError);
    // The kind travels as a code; the RESP text names it once, in front.
    EXPECT_EQ(got[0].result.code, WriteResult::ErrorCode::kNoReplicas);
    EXPECT_EQ(got[0].result.str.rfind("NOREPLICAS ", 0), 0u) << got[0].result.str;
    EXPECT_EQ(got[0].result.str.find("NOREPLICAS", 1), std::string::npos) << got[0].result.str;
  }
  StartBackup(&backups_[1]);
  const int64_t deadline = MonoMs() + 10000;
  while (repl_->in_sync_count() < 2 && MonoMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(repl_->in_sync_count(), 2u) << "the restarted backup did not rejoin";
  WriteRange(300, 600, "b");
  for (Backup& b : backups_) ExpectSameData(&b);
}

TEST_F(ReplicationUnitTest, CutConnectionsAreReestablishedAndNothingIsLost) {
  WriteRange(0, 200, "a");
  rdma::CutLoopbackConnections(net_.get());
  // Writes during the cut may fail (NOREPLICAS) or wait; none may be lost once
  // acknowledged. Retry until the sessions are back.
  const int64_t deadline = MonoMs() + 10000;
  bool written = false;
  while (!written && MonoMs() < deadline) {
    Collect sink;
    store_->Submit(SetOp("after-cut", "y"), &sink, 1);
    written = sink.WaitFor(1)[0].result.kind != WriteResult::Kind::kError;
  }
  ASSERT_TRUE(written) << "the primary never reconnected to its backups";
  expected_["after-cut"] = "y";
  WriteRange(200, 400, "b");
  for (Backup& b : backups_) ExpectSameData(&b);
}

// The primary's machine loses power in the middle of a persist with writes
// in flight: every write it acknowledged is in its log after the restart.
// Then either it ships the backups what they miss and writes go on, or, if a
// backup holds the batch the power tore here, it acknowledges nothing rather
// than overwrite it.
TEST_F(ReplicationUnitTest, APrimaryCutFromThePowerKeepsEveryAcknowledgedWrite) {
  WriteRange(0, 200, "a");
  // The power goes in the middle of the 10th persist from now, half of its
  // lines kept: the primary's log takes nothing after it.
  dev_->CrashAtPersist(10, [](size_t lines) {
    std::vector<bool> keep(lines);
    for (size_t i = 0; i < lines; i++) keep[i] = i % 2 == 0;
    return keep;
  });
  Collect in_flight;
  constexpr int kInFlight = 300;
  for (int i = 0; i < kInFlight; i++) {
    // The completion's conn_id names the write.
    store_->Submit(SetOp("flight" + std::to_string(i), "f" + std::to_string(i)), &in_flight,
                   static_cast<uint64_t>(i));
    if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<Completion> answers = in_flight.WaitFor(kInFlight);
  repl_->Stop();
  store_.reset();
  repl_.reset();
  dev_->PowerCut();
  StartPrimary();
  ASSERT_FALSE(HasFatalFailure());
  size_t acked = 0;
  {
    Store::ReadGuard guard = store_->LockForRead();
    for (const Completion& c : answers) {
      const std::string k = "flight" + std::to_string(c.conn_id);
      std::string got;
      const bool has = store_->Get(k, &got);
      if (c.result.kind != WriteResult::Kind::kError) {
        acked++;
        ASSERT_TRUE(has) << k << " was acknowledged and is lost";
      }
      if (has) expected_[k] = got;  // in the log: the backups get it too
    }
    for (const auto& [k, v] : expected_) {
      std::string got;
      ASSERT_TRUE(store_->Get(k, &got)) << k << " was acknowledged and is lost";
      EXPECT_EQ(got, v);
    }
  }
  EXPECT_GT(acked, 0u);
  // The backups may hold the batch the power tore here (shipped while this
  // node persisted it): a primary whose log is shorter than a backup's does
  // not overwrite it ("holds writes this primary does not have": docs/architecture.md) and
  // acknowledges nothing. Otherwise it ships what they miss and writes go on.
  Collect probe;
  store_->Submit(SetOp("after-restart", "z"), &probe, 1);
  const WriteResult r = probe.WaitFor(1)[0].result;
  bool a_backup_is_longer = false;
  for (Backup& b : backups_) {
    a_backup_is_longer |= b.store->log().next_lsn() > store_->log().next_lsn();
  }
  if (a_backup_is_longer) {
    EXPECT_EQ(r.code, WriteResult::ErrorCode::kNoReplicas) << r.str;
    return;
  }
  ASSERT_NE(r.kind, WriteResult::Kind::kError) << r.str;
  expected_["after-restart"] = "z";
  WriteRange(200, 300, "b");
  for (Backup& b : backups_) ExpectSameData(&b);
}

// A backup fenced to a later epoch (a new primary's election under way)
// applies and acknowledges nothing more from the primary of the old epoch:
// writes that need both backups fail, and the fenced backup does not have them.
// Backups that go silent without closing their connections: the batches in
// flight behind the first one are answered too, each NOREPLICAS within the
// replication timeout of its own, and none is acknowledged.
TEST_F(ReplicationUnitTest, EveryBatchIsAnsweredWhileTheBackupsAreSilent) {
  WriteRange(0, 10, "a");
  rdma::StallLoopbackConnections(net_.get(), true);
  const uint64_t before = metrics_.batches.load();
  Collect sink;
  constexpr int kWrites = 12;
  for (int i = 0; i < kWrites; i++) {
    // One batch each: the next write is submitted once this one is shipped
    // (or, once no backup is in sync, refused).
    const uint64_t batches = metrics_.batches.load();
    store_->Submit(SetOp("silent" + std::to_string(i), "x"), &sink, 1);
    const int64_t deadline = MonoMs() + 500;
    while (metrics_.batches.load() == batches && MonoMs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  EXPECT_GE(metrics_.batches.load() - before, 2u) << "the writes did not make several batches";
  for (const Completion& c : sink.WaitFor(kWrites, 30)) {
    EXPECT_EQ(c.result.kind, WriteResult::Kind::kError) << "acknowledged with no backup";
    EXPECT_EQ(c.result.code, WriteResult::ErrorCode::kNoReplicas) << c.result.str;
  }
  rdma::StallLoopbackConnections(net_.get(), false);
}

// The committing thread sends each new batch itself, as much as the pipe
// takes (Replicator::Ship); while the backups read nothing the pipes fill, a
// frame goes out in part, and its rest, sent by the sender thread, must come
// before anything else, heartbeats included (every 20 ms here): a heartbeat
// between a frame's halves would end the session.
TEST_F(ReplicationUnitTest, AFrameSentInPartEndsBeforeAnyHeartbeatOrFrame) {
  WriteRange(0, 10, "a");
  for (int round = 0; round < 8; round++) {
    rdma::StallLoopbackConnections(net_.get(), true);
    Collect sink;
    constexpr int kWrites = 24;
    for (int i = 0; i < kWrites; i++) {
      const std::string k = "big" + std::to_string(i);
      const std::string v(200000 + i, static_cast<char>('a' + (round + i) % 26));
      expected_[k] = v;
      store_->Submit(SetOp(k, v), &sink, 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + 10 * round));  // heartbeats fall due
    rdma::StallLoopbackConnections(net_.get(), false);
    for (const Completion& c : sink.WaitFor(kWrites, 30)) {
      EXPECT_NE(c.result.kind, WriteResult::Kind::kError) << c.result.str;
    }
  }
  std::string info;
  repl_->AppendInfo(&info);
  EXPECT_EQ(info.find("repl_direct_sends:0\r"), std::string::npos) << "no frame sent directly";
  EXPECT_EQ(info.find("repl_direct_rests:0\r"), std::string::npos) << "no frame went out in part";
  for (const char* b : {"backup0:", "backup1:"}) {
    const size_t at = info.find(b);
    ASSERT_NE(at, std::string::npos) << info;
    const std::string line = info.substr(at, info.find('\r', at) - at);
    EXPECT_NE(line.find(",sessions=1"), std::string::npos) << "a session ended: " << line;
  }
  for (Backup& b : backups_) ExpectSameData(&b);
}

// A backup whose persist failed holds batches written but not durable. It
// must not count as a copy of them: it used to end the session and then,
// in the next HELLO, report its log's end, batches not durable included, and
// the primary acknowledged the write (review). Now it refuses sessions until
// restarted, and with both backups required the write is refused.
TEST_F(ReplicationUnitTest, ABackupWhosePersistFailedIsNotCountedAsACopy) {
  WriteRange(0, 50, "a");
  backups_[1].dev->CrashAtPersist(0, nullptr);  // keeps nothing of that persist
  Collect sink;
  store_->Submit(SetOp("after-failure", "x"), &sink, 1);
  const Completion c = sink.WaitFor(1, 30)[0];
  EXPECT_EQ(c.result.kind, WriteResult::Kind::kError) << "acknowledged by a backup without it";
  EXPECT_EQ(c.result.code, WriteResult::ErrorCode::kNoReplicas) << c.result.str;
  EXPECT_TRUE(backups_[1].store->failed());
  // And indeed the failed backup does not hold it.
  PowerCut(&backups_[1]);
  auto s =
      Store::OpenOnDevice(backups_[1].dev, SmallLog(), &backups_[1].metrics, &backups_[1].report);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  std::string v;
  EXPECT_FALSE((*s)->Get("after-failure", &v));
  std::string kept;
  EXPECT_TRUE((*s)->Get("key1", &kept));
}

// A write queued before the primary's store starts: the sequencer takes it
// at once, so the committer must exist by then.
TEST_F(ReplicationUnitTest, AWriteQueuedBeforeStartIsCommittedOnceTheStoreStarts) {
  WriteRange(0, 10, "a");
  store_->Stop();
  repl_->Stop();
  store_.reset();
  repl_.reset();
  Collect early;
  StartPrimary(&early);
  ASSERT_FALSE(HasFatalFailure());
  const WriteResult r = early.WaitFor(1)[0].result;
  EXPECT_NE(r.kind, WriteResult::Kind::kError) << r.str;
  ExpectSameData(&backups_[0]);
}

TEST_F(ReplicationUnitTest, AFencedBackupTakesNothingMoreFromTheOldEpoch) {
  WriteRange(0, 100, "a");
  backups_[0].service->Fence(2);
  Collect sink;
  store_->Submit(SetOp("after-fence", "x"), &sink, 1);
  const WriteResult r = sink.WaitFor(1)[0].result;
  EXPECT_EQ(r.kind, WriteResult::Kind::kError);
  EXPECT_EQ(r.code, WriteResult::ErrorCode::kNoReplicas) << r.str;
  Store::ReadGuard guard = backups_[0].store->LockForRead();
  std::string got;
  EXPECT_FALSE(backups_[0].store->Get("after-fence", &got)) << "the fenced backup applied it";
  EXPECT_TRUE(backups_[0].store->Get("key99", &got)) << "what it had before the fence is gone";
}

}  // namespace
}  // namespace faha
