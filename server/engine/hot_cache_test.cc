// Tests of the hot layer: sampled counting and candidates, victim choice, and
// the store with the layer on: hot reads never read the log, hot updates leave
// the base index alone and are written back on demotion, deletes and FLUSHALL
// reach held keys, the digest matches a store without the layer, and a power
// cut loses nothing acknowledged whatever was held.
#include "server/engine/hot_cache.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "nvm/memory_device.h"
#include "server/engine/hot_maintainer.h"
#include "server/engine/store.h"
#include "server/engine/store_testing.h"

namespace faha {
namespace {

TEST(HotCacheTest, OnlyRepeatedlySampledKeysBecomeCandidatesOnce) {
  HotCache hot(1 << 20);
  // kSampleEvery accesses give one sample; kPromoteAt samples make a candidate.
  const uint64_t h1 = HashKey("hot");
  for (uint32_t i = 0; i < HotCache::kSampleEvery * HotCache::kPromoteAt * 10; i++) {
    hot.RecordAccess(nullptr, "hot", h1);
  }
  auto c = hot.TakeCandidates();
  ASSERT_EQ(c.size(), 1u);  // queued once, however often it was seen
  EXPECT_EQ(c[0].first, "hot");
  EXPECT_GE(hot.Estimate(h1), HotCache::kPromoteAt);
  // A key seen once per sampling period is never sampled twice in a row here.
  const uint64_t h2 = HashKey("cold");
  for (uint32_t i = 0; i < HotCache::kSampleEvery - 1; i++) hot.RecordAccess(nullptr, "cold", h2);
  EXPECT_TRUE(hot.TakeCandidates().empty());
  hot.Age();
  EXPECT_LE(hot.Estimate(h1), 10u * HotCache::kPromoteAt / 2);
  HotCache off(0);
  off.RecordAccess(nullptr, "hot", h1);
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.TakeCandidates().empty());
}

TEST(HotCacheTest, AgingManyTimesOverHalvesEachTimeAndClearsAtTheWidth) {
  HotCache hot(1 << 20);
  const uint64_t h = HashKey("hot");
  for (uint32_t i = 0; i < HotCache::kSampleEvery * 64; i++) hot.RecordAccess(nullptr, "hot", h);
  HotCache::Entry* e = hot.Insert("held", HashKey("held"), "v", 0, 1, /*hits=*/1000);
  const uint32_t sampled = hot.Estimate(h);
  ASSERT_GE(sampled, 64u);
  hot.Age(3);  // what three passes of one halving each would leave
  EXPECT_EQ(hot.Estimate(h), sampled >> 3);
  EXPECT_EQ(e->hits.load(), 1000u >> 3);
  hot.Age(0);  // nothing
  EXPECT_EQ(e->hits.load(), 1000u >> 3);
  // Full counts: one halving short of the width leaves 1, the width leaves 0.
  const uint64_t s = HashKey("saturated");
  for (uint32_t i = 0; i < HotCache::kSampleEvery * 70000; i++) {
    hot.RecordAccess(nullptr, "saturated", s);
  }
  ASSERT_EQ(hot.Estimate(s), uint32_t{UINT16_MAX});
  e->hits.store(UINT32_MAX);
  hot.Age(15);
  EXPECT_EQ(hot.Estimate(s), 1u);
  EXPECT_EQ(e->hits.load(), UINT32_MAX >> 15);
  e->hits.store(UINT32_MAX);
  hot.Age(31);
  EXPECT_EQ(hot.Estimate(s), 0u);
  EXPECT_EQ(e->hits.load(), 1u);
  e->hits.store(UINT32_MAX);
  hot.Age(32);
  EXPECT_EQ(e->hits.load(), 0u);
  e->hits.store(UINT32_MAX);
  hot.Age(40);  // beyond both widths: zero, not a shift the language leaves undefined
  EXPECT_EQ(e->hits.load(), 0u);
}

TEST(HotMaintainerTest, BacksOffWhileIdleUpToTheCapAndTheAgingPeriod) {
  using std::chrono::milliseconds;
  milliseconds w = HotMaintainer::kBusyWait;
  std::vector<int64_t> waits;
  for (int i = 0; i < 9; i++) {
    w = HotMaintainer::NextWait(w, /*worked=*/false, /*age_ms=*/1000);
    waits.push_back(w.count());
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{20, 40, 80, 160, 320, 640, 640, 640, 640}));
  EXPECT_EQ(HotMaintainer::NextWait(w, /*worked=*/true, 1000), HotMaintainer::kBusyWait);
  // Never longer than one aging period, nor shorter than a busy wait.
  EXPECT_EQ(HotMaintainer::NextWait(milliseconds(640), false, 100), milliseconds(100));
  EXPECT_EQ(HotMaintainer::NextWait(milliseconds(640), false, 3), HotMaintainer::kBusyWait);
  EXPECT_EQ(HotMaintainer::NextWait(milliseconds(640), false, 0), HotMaintainer::kIdleWait);
}

TEST(HotMaintainerTest, CountsHalveOncePerPeriodPassedWithTheRemainderCarried) {
  int64_t aged = 1000;
  EXPECT_EQ(HotMaintainer::Halvings(1999, &aged, 1000), 0);
  EXPECT_EQ(aged, 1000);
  EXPECT_EQ(HotMaintainer::Halvings(2500, &aged, 1000), 1);
  EXPECT_EQ(aged, 2000);  // the half period past it counts toward the next
  EXPECT_EQ(HotMaintainer::Halvings(2999, &aged, 1000), 0);
  EXPECT_EQ(HotMaintainer::Halvings(5100, &aged, 1000), 3);  // slept through three
  EXPECT_EQ(aged, 5000);
  EXPECT_EQ(HotMaintainer::Halvings(4000, &aged, 1000), 0);  // a clock that went back: none
  EXPECT_EQ(aged, 5000);
  EXPECT_EQ(HotMaintainer::Halvings(9000, &aged, 0), 1);  // age_ms 0: every pass
  EXPECT_EQ(aged, 5000);
}

TEST(HotCacheTest, VictimIsColderThanTheCandidateOrNone) {
  HotCache hot(1 << 20);
  for (int i = 0; i < 4; i++) {
    std::string k = "k" + std::to_string(i);
    hot.Insert(k, HashKey(k), "v", 0, 100 + i, /*hits=*/10 + i);
  }
  EXPECT_EQ(hot.size(), 4u);
  EXPECT_EQ(hot.Victim(10), nullptr);  // nobody is colder than 10
  HotCache::Entry* v = hot.Victim(100);
  ASSERT_NE(v, nullptr);
  EXPECT_LT(v->hits.load(), 100u);
  const size_t before = hot.bytes();
  hot.Remove(v);
  EXPECT_EQ(hot.size(), 3u);
  EXPECT_LT(hot.bytes(), before);
  // Update changes a held entry only.
  EXPECT_EQ(hot.Update("absent", HashKey("absent"), "x", 0, 9), 0u);
  HotCache::Entry* e = hot.FindMutable("k3", HashKey("k3"));
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(hot.Update("k3", HashKey("k3"), "new", 5, 777), 103u);
  EXPECT_EQ(e->value, "new");
  EXPECT_TRUE(e->dirty());
  hot.Clear();
  EXPECT_EQ(hot.size(), 0u);
  EXPECT_EQ(hot.bytes(), 0u);
}

TEST(HotCacheTest, KeysSharingAHashAreToldApartByTheirBytes) {
  HotCache hot(1 << 20);
  const uint64_t same = 42;  // as if two keys collided on all 64 bits
  HotCache::Entry* a = hot.Insert("alpha", same, "A", 0, 1, 0);
  hot.Insert("beta", same, "B", 0, 2, 0);
  ASSERT_NE(hot.Find("alpha", same), nullptr);
  EXPECT_EQ(hot.Find("alpha", same)->value, "A");
  EXPECT_EQ(hot.Find("beta", same)->value, "B");
  EXPECT_EQ(hot.Find("gamma", same), nullptr);
  hot.Remove(a);
  EXPECT_EQ(hot.Find("alpha", same), nullptr);
  ASSERT_NE(hot.Find("beta", same), nullptr);
  EXPECT_EQ(hot.Find("beta", same)->value, "B");
  EXPECT_EQ(hot.size(), 1u);
}

using testing::Collect;

class HotStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open(std::shared_ptr<nvm::MemoryDevice> dev, size_t hot_bytes,
                              Metrics* m) {
    StoreOptions o;
    o.log.segment_bytes = 1 << 20;
    o.max_batch_bytes = 256 << 10;
    o.hot_cache_bytes = hot_bytes;
    o.hot_age_ms = 1 << 30;            // the tests age by hand
    o.cleaning.interval_ms = 1 << 30;  // and clean by hand
    nvm::RecoveryReport rep;
    auto s = Store::OpenOnDevice(dev, o, m, &rep);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    (*s)->Start();
    return std::move(*s);
  }
  static void Write(Store* s, std::vector<WriteOp> ops) {
    Collect sink;
    const size_t n = ops.size();
    for (auto& op : ops) s->Submit(std::move(op), &sink, 1);
    sink.WaitFor(n);
  }
  static WriteOp Set(const std::string& k, const std::string& v) { return testing::SetOp(k, v); }
  static WriteOp Del(const std::string& k) { return testing::DelOp(k); }
  static std::string Get(Store* s, const std::string& k) {
    auto g = s->LockForRead();
    std::string v;
    return s->Get(k, &v) ? v : "<nil>";
  }
  // Whether `k` is held in the layer, and whether its entry is dirty, read under a
  // read slot: the faha-hot thread promotes and demotes meanwhile, holding every slot.
  static bool Held(Store* s, const std::string& k) {
    auto g = s->LockForRead();
    return s->hot().Find(k, HashKey(k)) != nullptr;
  }
  static bool HeldDirty(Store* s, const std::string& k) {
    auto g = s->LockForRead();
    const HotCache::Entry* e = s->hot().Find(k, HashKey(k));
    return e != nullptr && e->dirty();
  }
  // Reads `k` often enough to be sampled hot, then runs maintenance.
  static void MakeHot(Store* s, const std::string& k, int reads = 400) {
    for (int i = 0; i < reads; i++) Get(s, k);
    s->MaintainHot(false);
  }
  static Store::Digest Digest(Store* s) {
    auto g = s->LockForRead();
    auto d = s->ComputeDigest();
    EXPECT_TRUE(d.ok());
    return *d;
  }

  std::shared_ptr<nvm::MemoryDevice> dev_ = std::make_shared<nvm::MemoryDevice>();
  Metrics m_;
};

TEST_F(HotStoreTest, HotReadsSkipTheLogAndHotUpdatesSkipTheBaseIndex) {
  auto s = Open(dev_, 1 << 20, &m_);
  std::vector<WriteOp> load;
  for (int i = 0; i < 500; i++)
    load.push_back(Set("k" + std::to_string(i), "v" + std::to_string(i)));
  Write(s.get(), std::move(load));
  MakeHot(s.get(), "k7");
  ASSERT_TRUE(Held(s.get(), "k7"));
  EXPECT_GE(m_.hot_promotions.load(), 1u);
  // Reads of a held key: answered from DRAM, not one log read.
  const uint64_t log_reads = m_.key_log_reads.load();
  const uint64_t hits = m_.key_hot_hits.load();
  for (int i = 0; i < 100; i++) EXPECT_EQ(Get(s.get(), "k7"), "v7");
  EXPECT_EQ(m_.key_log_reads.load(), log_reads);
  EXPECT_EQ(m_.key_hot_hits.load(), hits + 100);
  // A cold key still reads its record.
  EXPECT_EQ(Get(s.get(), "k8"), "v8");
  EXPECT_EQ(m_.key_log_reads.load(), log_reads + 1);
  // Updates of the held key change only its entry, and readers see them.
  for (int i = 0; i < 10; i++) Write(s.get(), {Set("k7", "new" + std::to_string(i))});
  EXPECT_EQ(m_.hot_updates.load(), 10u);
  EXPECT_TRUE(HeldDirty(s.get(), "k7"));
  EXPECT_EQ(Get(s.get(), "k7"), "new9");
  EXPECT_EQ(m_.key_log_reads.load(), log_reads + 1);
  {
    auto g = s->LockForRead();
    EXPECT_TRUE(s->Exists("k7"));
    EXPECT_EQ(s->PttlMs("k7"), -1);
  }
  // A delete reaches the held key and the base.
  Write(s.get(), {Del("k7")});
  EXPECT_FALSE(Held(s.get(), "k7"));
  EXPECT_EQ(Get(s.get(), "k7"), "<nil>");
  EXPECT_EQ(s->KeyCount(), 499u);
}

// The faha-hot thread backs off while nothing is sampled hot (up to 640 ms
// between passes): a key that turns hot after a long idle spell is still
// promoted by the thread, without a pass by hand.
TEST_F(HotStoreTest, TheThreadPromotesAfterBackingOffWhileIdle) {
  auto s = Open(dev_, 1 << 20, &m_);
  Write(s.get(), {Set("k", "v")});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // backed off fully
  EXPECT_EQ(m_.hot_promotions.load(), 0u);
  for (int i = 0; i < 400; i++) Get(s.get(), "k");
  const int64_t deadline = MonoMs() + 20000;
  while (m_.hot_promotions.load() == 0 && MonoMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(m_.hot_promotions.load(), 1u);
  EXPECT_EQ(Get(s.get(), "k"), "v");
}

TEST_F(HotStoreTest, DemotionWritesTheCurrentLocationBackToTheBase) {
  // Room for about 20 values of 2 KB; a stream of newly hot keys pushes the
  // first one out once it has cooled down.
  const std::string big(2000, 'x');
  auto s = Open(dev_, HotCache::Cost(4, 2100) * 20, &m_);
  std::vector<WriteOp> load{Set("a", big)};
  for (int i = 0; i < 100; i++) load.push_back(Set("f" + std::to_string(i), big));
  Write(s.get(), std::move(load));
  MakeHot(s.get(), "a");
  ASSERT_TRUE(Held(s.get(), "a"));
  Write(s.get(),
        {Set("a", big + "-updated")});  // differential: the base still names the old record
  ASSERT_TRUE(HeldDirty(s.get(), "a"));
  for (int i = 0; i < 100 && Held(s.get(), "a"); i++) {
    s->MaintainHot(/*age=*/true);               // "a" cools down ...
    MakeHot(s.get(), "f" + std::to_string(i));  // ... while other keys get hot
    EXPECT_LE(s->hot().bytes(), s->hot().budget());
  }
  ASSERT_FALSE(Held(s.get(), "a")) << "a was never demoted";
  EXPECT_GE(m_.hot_demotions.load(), 1u);
  // Read from the log again: the base names the updated record, not the old one.
  const uint64_t log_reads = m_.key_log_reads.load();
  EXPECT_EQ(Get(s.get(), "a"), big + "-updated");
  EXPECT_EQ(m_.key_log_reads.load(), log_reads + 1);
}

TEST_F(HotStoreTest, SameDigestAsWithoutTheLayerAndNothingLostOnAPowerCut) {
  auto dev_off = std::make_shared<nvm::MemoryDevice>();
  Metrics m_off;
  auto on = Open(dev_, 1 << 20, &m_);
  auto off = Open(dev_off, 0, &m_off);
  const int64_t expire_at = WallMs() + 3600 * 1000;  // the same on both stores
  auto workload = [&](int phase) {
    std::vector<WriteOp> ops;
    for (int i = 0; i < 200; i++) {
      ops.push_back(
          Set("k" + std::to_string(i), "p" + std::to_string(phase) + "-" + std::to_string(i)));
    }
    if (phase == 2) {
      ops.push_back(Del("k3"));
      ops.push_back(testing::ExpireOp("k4", expire_at));
    }
    return ops;
  };
  Write(on.get(), workload(1));
  Write(off.get(), workload(1));
  for (int i = 0; i < 10; i++) MakeHot(on.get(), "k" + std::to_string(i));
  EXPECT_GE(on->hot().size(), 5u);
  Write(on.get(), workload(2));
  Write(off.get(), workload(2));
  Store::Digest a = Digest(on.get());
  Store::Digest b = Digest(off.get());
  EXPECT_EQ(a.data_digest, b.data_digest);
  EXPECT_EQ(a.keys, b.keys);
  {
    auto g = on->LockForRead();
    EXPECT_GT(on->PttlMs("k4"), 0);
    std::vector<std::string> keys;
    uint64_t cursor = 0;
    do cursor = on->Scan(cursor, 50, &keys);
    while (cursor != 0);
    EXPECT_EQ(keys.size(), 199u);
  }
  // Power cut with held keys updated only in DRAM's index: the log has them.
  on->Stop();
  on.reset();
  dev_->PowerCut();
  Metrics m2;
  auto again = Open(dev_, 1 << 20, &m2);
  for (int i = 0; i < 200; i++) {
    const std::string k = "k" + std::to_string(i);
    EXPECT_EQ(Get(again.get(), k), i == 3 ? "<nil>" : "p2-" + std::to_string(i)) << k;
  }
  EXPECT_EQ(Digest(again.get()).data_digest, b.data_digest);
  // FLUSHALL empties the layer too.
  for (int i = 0; i < 5; i++) MakeHot(again.get(), "k" + std::to_string(i + 10));
  ASSERT_GE(again->hot().size(), 1u);
  WriteOp flush;
  flush.kind = WriteOp::Kind::kFlushAll;
  Write(again.get(), {flush});
  EXPECT_EQ(again->hot().size(), 0u);
  EXPECT_EQ(Get(again.get(), "k10"), "<nil>");
}

// Cleaning moves the records of held keys: each entry's location (its newest
// record) and base location (the record the base index names) must follow, or
// a later demotion would point the base index at bytes that are gone.
TEST_F(HotStoreTest, HeldKeysFollowTheirRecordsThroughCleaning) {
  const std::string big(900, 'x');
  auto s = Open(dev_, HotCache::Cost(3, 1000) * 20, &m_);  // about 20 held values
  std::vector<WriteOp> load;
  for (int i = 0; i < 8; i++) load.push_back(Set("h" + std::to_string(i), big + std::to_string(i)));
  for (int i = 0; i < 1000; i++) load.push_back(Set("f" + std::to_string(i), big));
  Write(s.get(), std::move(load));
  for (int i = 0; i < 8; i++) MakeHot(s.get(), "h" + std::to_string(i));
  ASSERT_GE(s->hot().size(), 4u);
  // Held keys updated only in the layer: their base still names the old record.
  Write(s.get(), {Set("h0", big + "-new0"), Set("h1", big + "-new1")});
  // The filler dies twice over, so the first segments are mostly dead.
  for (int round = 0; round < 2; round++) {
    std::vector<WriteOp> again;
    for (int i = 0; i < 1000; i++) again.push_back(Set("f" + std::to_string(i), "y"));
    Write(s.get(), std::move(again));
  }
  int passes = 0;
  for (auto r = s->CleanOnce(); r.ok() && *r; r = s->CleanOnce()) passes++;
  ASSERT_GE(passes, 1) << "nothing was cleaned";
  ASSERT_GE(m_.clean_records_moved.load(), 8u);
  // Newly hot keys push every held one out; reads of them then follow the
  // base index to the log.
  auto held = [&] {
    int n = 0;
    for (int i = 0; i < 8; i++) n += Held(s.get(), "h" + std::to_string(i));
    return n;
  };
  for (int i = 0; i < 300 && held() > 0; i++) {
    s->MaintainHot(/*age=*/true);
    Write(s.get(), {Set("c" + std::to_string(i), big)});
    MakeHot(s.get(), "c" + std::to_string(i));
  }
  ASSERT_EQ(held(), 0) << "the held keys were never demoted";
  for (int i = 0; i < 8; i++) {
    EXPECT_EQ(Get(s.get(), "h" + std::to_string(i)),
              big + (i < 2 ? "-new" : "") + std::to_string(i));
  }
  // And a power cut finds every value in the log.
  s->Stop();
  s.reset();
  dev_->PowerCut();
  Metrics m2;
  auto again = Open(dev_, 1 << 20, &m2);
  for (int i = 0; i < 8; i++) {
    EXPECT_EQ(Get(again.get(), "h" + std::to_string(i)),
              big + (i < 2 ? "-new" : "") + std::to_string(i));
  }
}

}  // namespace
}  // namespace faha
