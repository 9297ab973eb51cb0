// Tests of log cleaning on a Store over the power-cut device: overwrites keep
// the log bounded, every acknowledged value survives cleaning and a restart,
// deleted and expired keys are reclaimed and stay gone, and a power cut at any
// point of a cleaning pass loses nothing.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "nvm/log.h"
#include "nvm/memory_device.h"
#include "server/engine/store.h"
#include "server/engine/store_testing.h"

namespace faha {
namespace {

using testing::Collect;

WriteOp Set(const std::string& k, const std::string& v, int64_t expire_at_ms = 0) {
  return testing::SetOp(k, v, expire_at_ms);
}
WriteOp Del(const std::string& k) { return testing::DelOp(k); }

std::string Value(int key, int round) {
  return "v" + std::to_string(round) + "-" + std::string(100 + key % 50, 'a' + key % 26);
}

class CleanTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (store_) store_->Stop();
  }
  // Cleaning runs only when a test calls CleanOnce (the thread's period is long).
  void Open(double threshold = 0.5, double backup_threshold = 0.25) {
    StoreOptions o;
    o.log.segment_bytes = segment_bytes_;
    o.max_batch_bytes = 16 << 10;
    o.cleaning.threshold = threshold;
    o.cleaning.backup_threshold = backup_threshold;
    o.cleaning.interval_ms = 1000000;
    auto s = Store::OpenOnDevice(dev_, o, &metrics_, &report_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    store_->Start();
  }
  void PowerCutAndReopen() {
    store_->Stop();
    store_.reset();
    dev_->PowerCut();
    Open();
  }
  // Runs ops (sharing batches); returns their results.
  std::vector<WriteResult> Run(std::vector<WriteOp> ops) {
    Collect sink;
    for (auto& op : ops) store_->Submit(std::move(op), &sink, 7);
    std::vector<WriteResult> out;
    for (auto& c : sink.WaitFor(ops.size())) out.push_back(c.result);
    return out;
  }
  // One round of overwrites of every key; records what was acknowledged.
  bool Round(int keys, int round) {
    std::vector<WriteOp> ops;
    for (int k = 0; k < keys; k++) ops.push_back(Set("key" + std::to_string(k), Value(k, round)));
    auto r = Run(std::move(ops));
    bool all = true;
    for (int k = 0; k < keys; k++) {
      if (r[k].kind == WriteResult::Kind::kOk) {
        acked_[k] = round;
      } else {
        all = false;
      }
    }
    return all;
  }
  int CleanAll() {
    int passes = 0;
    while (true) {
      auto r = store_->CleanOnce();
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok() || !*r) return passes;
      passes++;
    }
  }
  // Applies one batch of (key, value) records as a backup does; returns its LSN.
  uint64_t ApplyAsBackup(const std::vector<std::pair<std::string, std::string>>& records) {
    nvm::BatchBuilder b;
    for (const auto& [k, v] : records) b.Add(nvm::RecordType::kPut, k, v, 0);
    const uint64_t lsn = store_->log().next_lsn();
    const nvm::BatchHeader h = nvm::Log::FrameBatch(b.payload(), b.count(), lsn, 0);
    auto r = store_->AppendReplicated(h, b.payload());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(store_->PersistReplicated().ok());
    if (r.ok()) store_->PublishReplicated(*r);
    return lsn;
  }
  // A backup cleans while newer values of `kept` keys are uncommitted, then
  // truncates them (the next primary never committed them): the older values
  // must be there. `filler_first` records of dead filler come before the
  // older values in their segment (4,096 and more put them in a later chunk
  // of the pass than the first).
  void KeepsWhatOnlyAnUncommittedWriteReplaced(int filler_first);
  std::string Get(const std::string& k) {
    auto guard = store_->LockForRead();
    std::string v;
    return store_->Get(k, &v) ? v : "<nil>";
  }
  void ExpectAcked() {
    for (const auto& [k, round] : acked_) {
      ASSERT_EQ(Get("key" + std::to_string(k)), Value(k, round)) << "key" << k;
    }
  }
  // 300 keys, one batch each, then the first 200 overwritten twice: the first
  // segment keeps about a third of it live (which keys land in it does not
  // depend on how writes were grouped); then filler that is nearly all dead.
  void FirstSegmentAThirdLiveThenDeadFiller() {
    const int keys = 300;
    for (int k = 0; k < keys; k++) {
      auto r = Run({Set("key" + std::to_string(k), Value(k, 0))});
      ASSERT_EQ(r[0].kind, WriteResult::Kind::kOk);
      acked_[k] = 0;
    }
    const int overwritten = 200;
    for (int round = 1; round <= 2; round++) {
      std::vector<WriteOp> ops;
      for (int k = 0; k < overwritten; k++)
        ops.push_back(Set("key" + std::to_string(k), Value(k, round)));
      for (auto& r : Run(std::move(ops))) ASSERT_EQ(r.kind, WriteResult::Kind::kOk);
      for (int k = 0; k < overwritten; k++) acked_[k] = round;
    }
    for (int i = 0; i < 600; i++)
      Run({Set("filler" + std::to_string(i % 40), std::string(200, 'f'))});
  }
  // Bytes in the sealed segments over their live bytes.
  double SealedGrowth() {
    double data = 0, live = 0;
    for (const auto& seg : store_->log().SealedSegments()) {
      data += static_cast<double>(seg.data_bytes);
      live += store_->LiveFraction(seg) * static_cast<double>(seg.data_bytes);
    }
    return live > 0 ? data / live : 1e9;
  }
  uint64_t LiveBytes(int keys) {
    uint64_t live = 0;
    for (int k = 0; k < keys; k++) {
      live += nvm::RecordSize(("key" + std::to_string(k)).size(), Value(k, 0).size());
    }
    return live;
  }

  uint64_t segment_bytes_ = 64 << 10;
  std::shared_ptr<nvm::MemoryDevice> dev_ = std::make_shared<nvm::MemoryDevice>();
  Metrics metrics_;
  nvm::RecoveryReport report_;
  std::unique_ptr<Store> store_;
  std::map<int, int> acked_;  // key -> round of its acknowledged value
};

TEST_F(CleanTest, OverwritesKeepTheLogUnderTwiceTheLiveDataAndLoseNothing) {
  Open();
  const int keys = 300;
  uint64_t max_file = 0;
  for (int round = 0; round < 20; round++) {
    ASSERT_TRUE(Round(keys, round));
    CleanAll();
    max_file = std::max(max_file, store_->log().file_bytes());
    ExpectAcked();
  }
  const uint64_t live = LiveBytes(keys);
  // Sealed segments are cleaned below half live; the tail segment and the one
  // before it (still being filled, or not committed for good) are not.
  EXPECT_LT(store_->log().file_bytes(), 2 * live + 2 * store_->log().segment_bytes())
      << "live " << live;
  EXPECT_GT(metrics_.clean_passes.load(), 10u);
  EXPECT_GT(store_->log().bytes_written(), 10 * live);  // it did write 20 times the data
  PowerCutAndReopen();
  ExpectAcked();
  EXPECT_EQ(store_->KeyCount(), static_cast<uint64_t>(keys));
  // The log recovered from cleaned segments keeps working and cleaning.
  ASSERT_TRUE(Round(keys, 20));
  CleanAll();
  PowerCutAndReopen();
  ExpectAcked();
}

TEST_F(CleanTest, DeletedAndExpiredKeysAreReclaimedAndStayGone) {
  Open();
  const int keys = 300;
  ASSERT_TRUE(Round(keys, 0));
  // Half the keys deleted, a third given an expiry that passes at once.
  std::vector<WriteOp> ops;
  for (int k = 0; k < keys; k += 2) ops.push_back(Del("key" + std::to_string(k)));
  for (int k = 1; k < keys; k += 6)
    ops.push_back(Set("key" + std::to_string(k), "soon", WallMs() + 30));
  for (auto& r : Run(std::move(ops))) ASSERT_NE(r.kind, WriteResult::Kind::kError);
  for (int k = 0; k < keys; k += 2) acked_.erase(k);
  for (int k = 1; k < keys; k += 6) acked_.erase(k);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  // Other keys written on, so the old segments are sealed and committed.
  std::vector<WriteOp> more;
  for (int i = 0; i < 2000; i++)
    more.push_back(Set("other" + std::to_string(i % 50), std::string(200, 'x')));
  Run(std::move(more));
  CleanAll();
  EXPECT_GT(metrics_.clean_expired_reclaimed.load(), 0u);
  for (int round = 0; round < 2; round++) {
    for (int k = 0; k < keys; k += 2) EXPECT_EQ(Get("key" + std::to_string(k)), "<nil>");
    for (int k = 1; k < keys; k += 6) EXPECT_EQ(Get("key" + std::to_string(k)), "<nil>");
    ExpectAcked();
    PowerCutAndReopen();
  }
  // Nothing of the deleted values is left in the log but tombstones.
  uint64_t values_left = 0;
  for (const auto& seg : store_->log().SealedSegments()) {
    ASSERT_TRUE(store_->log()
                    .ForEachRecord(seg.id,
                                   [&](const nvm::RecordView& r, uint64_t, uint64_t) {
                                     int k = -1;
                                     if (r.key.substr(0, 3) == "key")
                                       k = std::stoi(std::string(r.key.substr(3)));
                                     if (k >= 0 && k % 2 == 0 && r.type == nvm::RecordType::kPut)
                                       values_left++;
                                   })
                    .ok());
  }
  EXPECT_EQ(values_left, 0u);
}

// A backup cleans at --backup_clean_threshold (0.25 here): the segment of
// round 0, about a third live, is left alone there (the filler's, nearly all
// dead, are cleaned), and cleaned by the same log opened as a primary (0.5).
TEST_F(CleanTest, ABackupCleansAtItsLowerThreshold) {
  Open();
  store_->SetBackup();
  ASSERT_NO_FATAL_FAILURE(FirstSegmentAThirdLiveThenDeadFiller());
  store_->SetCommitHint(UINT64_MAX - 1);
  auto first_cleaned = [&] { return store_->log().SealedSegments().front().cleaned; };
  ASSERT_FALSE(first_cleaned());
  ASSERT_LE(SealedGrowth(), 4.0);  // else the backup would clean as a primary
  const double live = store_->LiveFraction(store_->log().SealedSegments().front());
  ASSERT_GT(live, 0.25);
  ASSERT_LT(live, 0.5);
  CleanAll();  // the filler's segments (nearly all dead) go
  EXPECT_FALSE(first_cleaned()) << "a backup cleaned a segment above 0.25 live";
  PowerCutAndReopen();  // now not a backup
  ExpectAcked();
  CleanAll();
  EXPECT_TRUE(first_cleaned());
  ExpectAcked();
}

// A backup whose sealed segments hold more than 4x their live data cleans as
// a primary does, whatever its own threshold (0 here: never), until they no
// longer do: its log stays bounded. The filler's records are large (2 KB), so
// that batch headers (never dead in the estimate) weigh little however the
// writes were grouped into batches.
TEST_F(CleanTest, ABackupWhoseLogOutgrewItsLiveDataCleansAsAPrimary) {
  Open(0.5, 0.0);
  store_->SetBackup();
  ASSERT_NO_FATAL_FAILURE(FirstSegmentAThirdLiveThenDeadFiller());
  for (int round = 0; round < 20; round++) {
    std::vector<WriteOp> ops;
    for (int i = 0; i < 40; i++)
      ops.push_back(Set("filler" + std::to_string(i), std::string(2000, 'f')));
    for (auto& r : Run(std::move(ops))) ASSERT_EQ(r.kind, WriteResult::Kind::kOk);
  }
  store_->SetCommitHint(UINT64_MAX - 1);
  auto first_cleaned = [&] { return store_->log().SealedSegments().front().cleaned; };
  ASSERT_GT(SealedGrowth(), 4.0);
  EXPECT_GT(CleanAll(), 0) << "a backup whose log outgrew its live data did not clean";
  EXPECT_LE(SealedGrowth(), 4.0);
  // The emptiest went first, and cleaning stopped under the bound: the
  // segment a third live, which a primary would clean, is still there.
  EXPECT_FALSE(first_cleaned());
  ExpectAcked();
  PowerCutAndReopen();
  ExpectAcked();
}

// A backup keeps a record that only a write not yet committed made obsolete:
// a later primary may truncate that write (it never committed), and the value
// before it must then be there. The uncommitted write arrives while cleaning
// is possible, in a later segment than the record it replaces.
void CleanTest::KeepsWhatOnlyAnUncommittedWriteReplaced(int filler_first) {
  store_->SetBackup();
  auto filler = [&](int n) {
    for (int i = 0; i < n; i += 50) {
      std::vector<std::pair<std::string, std::string>> batch;
      for (int j = i; j < std::min(n, i + 50); j++)
        batch.emplace_back("f" + std::to_string(j % 40), "x");
      ApplyAsBackup(batch);
    }
  };
  filler(filler_first);
  for (int k = 0; k < 8; k++)
    ApplyAsBackup({{"kept" + std::to_string(k), "old" + std::to_string(k)}});
  // Filler overwritten again and again: the first segment dies but for the above.
  while (store_->log().SealedSegments().size() < 2) filler(500);
  store_->SetCommitHint(store_->log().next_lsn() - 1);  // all of it committed
  uint64_t first_new = 0;
  for (int k = 0; k < 8; k++) {
    const uint64_t lsn = ApplyAsBackup({{"kept" + std::to_string(k), "new" + std::to_string(k)}});
    if (k == 0) first_new = lsn;
  }
  ASSERT_GT(CleanAll(), 0);
  ASSERT_TRUE(store_->log().SealedSegments().front().cleaned);
  // The new values were never committed: the next primary drops them.
  ASSERT_TRUE(store_->TruncateLog(first_new).ok());
  for (int k = 0; k < 8; k++) EXPECT_EQ(Get("kept" + std::to_string(k)), "old" + std::to_string(k));
  PowerCutAndReopen();
  for (int k = 0; k < 8; k++) EXPECT_EQ(Get("kept" + std::to_string(k)), "old" + std::to_string(k));
}

TEST_F(CleanTest, ABackupKeepsWhatOnlyAnUncommittedWriteReplaced) {
  Open(0.5, 0.5);
  KeepsWhatOnlyAnUncommittedWriteReplaced(0);
}

// The same with the older values in the pass's second chunk of records: the
// keys gathered before the first chunk still count there.
TEST_F(CleanTest, ABackupKeepsWhatOnlyAnUncommittedWriteReplacedInALaterChunk) {
  segment_bytes_ = 512 << 10;
  Open(0.5, 0.5);
  KeepsWhatOnlyAnUncommittedWriteReplaced(5000);
}

// Tombstones are counted dead when written, but they stay while the values
// they deleted lie in uncleaned segments: a segment of nothing but such
// tombstones looks like the best victim and holds nothing to gain. Finding
// that out must not end the pass: the segments of dead overwrites after it
// are cleaned all the same.
TEST_F(CleanTest, AVictimOfKeptTombstonesDoesNotStopCleaning) {
  Open();
  // Values to be deleted, under long keys (so their tombstones are big),
  // spread thin among values that stay: those segments stay above half live.
  const std::string long_key(200, 'd');
  std::vector<WriteOp> ops;
  for (int d = 0; d < 600; d++) {
    ops.push_back(Set(long_key + std::to_string(d), ""));
    if (d % 10 == 9) {
      for (int s = 0; s < 22; s++)
        ops.push_back(Set("stays" + std::to_string(d * 3 + s), std::string(200, 's')));
    }
  }
  Run(std::move(ops));
  std::vector<WriteOp> dels;
  for (int d = 0; d < 600; d++) dels.push_back(Del(long_key + std::to_string(d)));
  for (auto& r : Run(std::move(dels))) ASSERT_EQ(r.integer, 1);
  // Then segments of nothing but overwrites of one key: all dead but the last.
  for (int i = 0; i < 700; i++) Run({Set("churn", std::string(200, 'c') + std::to_string(i))});
  Run({Set("tail", "x")});
  const uint64_t before = store_->log().file_bytes();
  EXPECT_GT(CleanAll(), 0);
  EXPECT_GT(metrics_.clean_misjudged.load(), 0u);
  EXPECT_LT(store_->log().file_bytes(), before - 64 * 1024);
  EXPECT_EQ(Get("churn"), std::string(200, 'c') + "699");
  EXPECT_EQ(Get(long_key + "0"), "<nil>");
  PowerCutAndReopen();
  EXPECT_EQ(Get("churn"), std::string(200, 'c') + "699");
  for (int d = 0; d < 600; d += 7) EXPECT_EQ(Get(long_key + std::to_string(d)), "<nil>") << d;
  EXPECT_EQ(Get("stays27"), std::string(200, 's'));
}

// A deletion's tombstone sits in a segment that gets cleaned while the value
// it deleted sits in an older segment that stays (mostly live): cleaning must
// keep the tombstone, or recovery would bring the key back.
TEST_F(CleanTest, TombstoneOutlivesTheValueItDeleted) {
  Open();
  std::vector<WriteOp> ops;
  ops.push_back(Set("doomed", "old value"));
  for (int k = 0; k < 400; k++)
    ops.push_back(Set("stays" + std::to_string(k), std::string(150, 's')));
  Run(std::move(ops));
  ASSERT_EQ(Run({Del("doomed")})[0].integer, 1);
  for (int round = 0; round < 30; round++) {
    std::vector<WriteOp> churn;
    for (int k = 0; k < 40; k++)
      churn.push_back(Set("churn" + std::to_string(k), std::string(300, 'c')));
    Run(std::move(churn));
  }
  const int passes = CleanAll();
  ASSERT_GT(passes, 0);
  // The segment holding "doomed"'s value was not cleaned (it is mostly live).
  bool value_remains = false;
  for (const auto& seg : store_->log().SealedSegments()) {
    ASSERT_TRUE(store_->log()
                    .ForEachRecord(seg.id,
                                   [&](const nvm::RecordView& r, uint64_t, uint64_t) {
                                     if (r.key == "doomed" && r.type == nvm::RecordType::kPut) {
                                       value_remains = true;
                                     }
                                   })
                    .ok());
  }
  ASSERT_TRUE(value_remains);
  PowerCutAndReopen();
  EXPECT_EQ(Get("doomed"), "<nil>");
  EXPECT_EQ(Get("stays7"), std::string(150, 's'));
}

// A power cut at the n-th persist of a workload that cleans between rounds of
// overwrites, then recovery: every acknowledged write is there, with its latest
// acknowledged value. Three kinds of crash point: the n-th persist counted
// from the first overwrite round (an append or a cleaning pass, as the timing
// of group commit falls); the persist of a cleaning pass's replacement, with
// none to most of its lines reaching media; and right before a pass's
// replacement is put in place.
TEST_F(CleanTest, PowerCutAtEveryPointOfCleaningLosesNothingAcknowledged) {
  const int keys = 120;
  enum class Cut { kAnyPersist, kCleaningPersist, kAtCommit };
  int crashed_cleaning = 0, crashed_at_commit = 0;
  const auto half_the_lines = [](size_t lines) {
    std::vector<bool> keep(lines);
    for (size_t i = 0; i < lines; i++) keep[i] = i % 2 == 0;  // half the lines reach media
    return keep;
  };
  for (int n = 0; n < 80; n++) {
    for (Cut cut : {Cut::kAnyPersist, Cut::kCleaningPersist, Cut::kAtCommit}) {
      if (cut == Cut::kAtCommit && n % 10 != 0) continue;
      SCOPED_TRACE("n " + std::to_string(n) + " cut " + std::to_string(static_cast<int>(cut)));
      dev_ = std::make_shared<nvm::MemoryDevice>();
      acked_.clear();
      Open();
      for (int round = 0; round < 4; round++) ASSERT_TRUE(Round(keys, round));
      if (cut == Cut::kAnyPersist) dev_->CrashAtPersist(static_cast<uint64_t>(n), half_the_lines);
      for (int round = 4; round < 14 && !dev_->crashed(); round++) {
        if (!Round(keys, round)) break;
        if (cut == Cut::kAtCommit && round == 4 + n / 10) dev_->CrashAtCommit();
        // The persist of the replacement written by the first pass from
        // round 4 + n / 8 on that cleans anything, with (n % 8) / 8 of its
        // lines, scattered, reaching media.
        const bool arm = cut == Cut::kCleaningPersist && round >= 4 + n / 8;
        if (arm) {
          dev_->CrashAtPersist(0, [kept = n % 8](size_t lines) {
            std::vector<bool> keep(lines);
            for (size_t i = 0; i < lines; i++)
              keep[i] = static_cast<int>((i * 5 + kept) % 8) < kept;
            return keep;
          });
        }
        auto r = store_->CleanOnce();
        if (arm && r.ok()) dev_->NoCrash();
        if (!r.ok()) {
          if (cut == Cut::kAtCommit) crashed_at_commit++;
          if (cut == Cut::kCleaningPersist) crashed_cleaning++;
          break;
        }
      }
      PowerCutAndReopen();
      ExpectAcked();
      if (::testing::Test::HasFailure()) return;
      // And it goes on: writes, cleaning, recovery.
      ASSERT_TRUE(Round(keys, 100));
      CleanAll();
      PowerCutAndReopen();
      ExpectAcked();
      store_->Stop();
      store_.reset();
    }
  }
  // The crash points did fall inside cleaning passes, not only in appends.
  std::printf(
      "power cuts inside a cleaning pass: %d of 80, right before a replacement is put "
      "in place: %d of 8\n",
      crashed_cleaning, crashed_at_commit);
  EXPECT_GT(crashed_cleaning, 40);
  EXPECT_GT(crashed_at_commit, 2);
}

// A backup whose tail segment is full decides from a batch's records whether it
// may take the reserve (a batch that only deletes may), and the frame's checksum
// does not cover those records (rdma/repl_frame.h): a damaged batch is refused
// before any room is made for it, and the log is as it was.
TEST_F(CleanTest, ABackupChecksADamagedBatchBeforeMakingRoomForIt) {
  Open();
  const std::string value(1000, 'v');
  int n = 0;
  while (true) {
    nvm::BatchBuilder probe;
    probe.Add(nvm::RecordType::kPut, "k" + std::to_string(n), value, 0);
    if (!store_->log().HasRoom_wt(probe.payload().size())) break;
    ApplyAsBackup({{"k" + std::to_string(n++), value}});
    ASSERT_LT(n, 1000) << "the tail segment never filled";
  }
  const size_t sealed = store_->log().SealedSegments().size();
  const size_t files = dev_->ListSegments()->size();
  const uint64_t next = store_->log().next_lsn();
  nvm::BatchBuilder b;
  b.Add(nvm::RecordType::kPut, "last", value, 0);
  const nvm::BatchHeader h = nvm::Log::FrameBatch(b.payload(), b.count(), next, 0);
  std::string damaged(b.payload());
  damaged[0] ^= 0x02;  // the record type: a PUT becomes a FLUSHALL, a removal
  auto r = store_->AppendReplicated(h, damaged);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << r.status().ToString();
  EXPECT_EQ(store_->log().SealedSegments().size(), sealed) << "room was made for it";
  EXPECT_EQ(dev_->ListSegments()->size(), files) << "room was made for it";
  EXPECT_EQ(store_->log().next_lsn(), next);
  // The batch as sent is taken, in a new segment.
  auto ok = store_->AppendReplicated(h, b.payload());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(store_->log().SealedSegments().size(), sealed + 1);
}

}  // namespace
}  // namespace faha
