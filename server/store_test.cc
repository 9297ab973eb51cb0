// Tests of Store: write semantics evaluated by the sequencer (NX/XX, INCR,
// DEL counts, EXPIRE, MSET atomicity, FLUSHALL), reads see only committed
// state, and everything acknowledged survives a simulated power cut.
#include "server/store.h"
#include "server/store_testing.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "common/clock.h"
#include "nvm/memory_device.h"

namespace faha {
namespace {

using testing::Collect;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    if (store_) store_->Stop();
  }
  void Open() {
    StoreOptions o;
    o.log.segment_bytes = 1 << 20;
    o.max_batch_bytes = 256 << 10;
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
  // Submits ops together (so they share batches) and returns their results.
  std::vector<WriteResult> Run(std::vector<WriteOp> ops) {
    Collect sink;
    for (auto& op : ops) store_->Submit(std::move(op), &sink, 7);
    std::vector<WriteResult> out;
    for (auto& c : sink.WaitFor(ops.size())) out.push_back(c.result);
    return out;
  }
  WriteResult One(WriteOp op) { return Run({std::move(op)})[0]; }
  static WriteOp Set(std::string k, std::string v) {
    WriteOp op;
    op.kind = WriteOp::Kind::kSet;
    op.args = {std::move(k), std::move(v)};
    return op;
  }
  std::string Get(const std::string& k) {
    std::string v;
    return store_->Get(k, &v) ? v : "<nil>";
  }

  std::shared_ptr<nvm::MemoryDevice> dev_ = std::make_shared<nvm::MemoryDevice>();
  Metrics metrics_;
  nvm::RecoveryReport report_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, SetGetAndConditionalSetsWithinOneBatch) {
  WriteOp nx = Set("k", "second");
  nx.nx = true;
  WriteOp xx = Set("absent", "x");
  xx.xx = true;
  WriteOp get_old = Set("k", "third");
  get_old.get_old = true;
  auto r = Run({Set("k", "first"), std::move(nx), std::move(xx), std::move(get_old)});
  EXPECT_EQ(r[0].kind, WriteResult::Kind::kOk);
  EXPECT_EQ(r[1].kind, WriteResult::Kind::kNil);  // NX saw the write before it in the batch
  EXPECT_EQ(r[2].kind, WriteResult::Kind::kNil);
  EXPECT_EQ(r[3].kind, WriteResult::Kind::kBulk);
  EXPECT_EQ(r[3].str, "first");
  EXPECT_EQ(Get("k"), "third");
  EXPECT_EQ(Get("absent"), "<nil>");
  EXPECT_EQ(store_->KeyCount(), 1u);
}

TEST_F(StoreTest, IncrDelAndErrors) {
  WriteOp inc;
  inc.kind = WriteOp::Kind::kIncrBy;
  inc.args = {"n"};
  inc.delta = 5;
  WriteOp inc2 = inc;
  inc2.delta = -2;
  auto r = Run({inc, inc2, Set("s", "abc")});
  EXPECT_EQ(r[0].integer, 5);
  EXPECT_EQ(r[1].integer, 3);
  WriteOp bad = inc;
  bad.args = {"s"};
  EXPECT_EQ(One(bad).kind, WriteResult::Kind::kError);
  WriteOp big = Set("big", "9223372036854775807");
  One(big);
  WriteOp over = inc;
  over.args = {"big"};
  over.delta = 1;
  WriteResult o = One(over);
  EXPECT_EQ(o.kind, WriteResult::Kind::kError);
  EXPECT_NE(o.str.find("overflow"), std::string::npos);
  WriteOp del;
  del.kind = WriteOp::Kind::kDelete;
  del.args = {"n", "s", "nope", "n"};
  EXPECT_EQ(One(del).integer, 2);  // n counted once
  EXPECT_EQ(Get("n"), "<nil>");
  EXPECT_EQ(Get("big"), "9223372036854775807");
}

TEST_F(StoreTest, ExpiryIsAbsoluteAndSurvivesPowerCut) {
  WriteOp soon = Set("soon", "v");
  soon.expire_at_ms = WallMs() + 300;
  WriteOp later = Set("later", "v");
  later.expire_at_ms = WallMs() + 3600 * 1000;
  Run({soon, later, Set("forever", "v")});
  EXPECT_GT(store_->PttlMs("later"), 3500 * 1000);
  EXPECT_EQ(store_->PttlMs("forever"), -1);
  EXPECT_EQ(store_->PttlMs("missing"), -2);
  EXPECT_EQ(store_->KeysWithExpiry(), 2u);
  PowerCutAndReopen();
  EXPECT_GT(store_->PttlMs("later"), 3500 * 1000);
  EXPECT_EQ(store_->PttlMs("forever"), -1);
  // EXPIRE in the past deletes; PERSIST clears.
  WriteOp ex;
  ex.kind = WriteOp::Kind::kExpire;
  ex.args = {"forever"};
  ex.expire_at_ms = 1;
  WriteOp persist;
  persist.kind = WriteOp::Kind::kPersist;
  persist.args = {"later"};
  auto r = Run({ex, persist});
  EXPECT_EQ(r[0].integer, 1);
  EXPECT_EQ(r[1].integer, 1);
  EXPECT_EQ(Get("forever"), "<nil>");
  EXPECT_EQ(store_->PttlMs("later"), -1);
  while (store_->Exists("soon")) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(Get("soon"), "<nil>");
  PowerCutAndReopen();
  EXPECT_EQ(Get("soon"), "<nil>");
  EXPECT_EQ(store_->KeyCount(), 1u);  // expired key reclaimed at recovery
}

TEST_F(StoreTest, ExpireConditions) {
  WriteOp with = Set("with", "v");
  with.expire_at_ms = WallMs() + 100000;
  Run({with, Set("without", "v")});
  auto expire = [&](const std::string& key, int64_t at, WriteOp::ExpireIf cond) {
    WriteOp op;
    op.kind = WriteOp::Kind::kExpire;
    op.args = {key};
    op.expire_at_ms = at;
    op.expire_if = cond;
    return One(op).integer;
  };
  const int64_t now = WallMs();
  EXPECT_EQ(expire("with", now + 200000, WriteOp::ExpireIf::kNoExpiry), 0);
  EXPECT_EQ(expire("without", now + 200000, WriteOp::ExpireIf::kHasExpiry), 0);
  EXPECT_EQ(expire("without", now + 200000, WriteOp::ExpireIf::kGreater), 0);  // infinite > any
  EXPECT_EQ(expire("with", now + 50000, WriteOp::ExpireIf::kGreater), 0);
  EXPECT_EQ(expire("with", now + 200000, WriteOp::ExpireIf::kGreater), 1);
  EXPECT_EQ(expire("with", now + 300000, WriteOp::ExpireIf::kLess), 0);
  EXPECT_EQ(expire("without", now + 300000, WriteOp::ExpireIf::kLess), 1);
  EXPECT_GT(store_->PttlMs("with"), 190000);
  EXPECT_GT(store_->PttlMs("without"), 290000);
}

TEST_F(StoreTest, BatchesAreCutByTheirRealSize) {
  // EXPIRE rewrites the whole value: 40 of them on a 100 KiB value are 4 MB of
  // records from a few bytes of request, more than one 256 KiB batch holds.
  One(Set("big", std::string(100 << 10, 'b')));
  std::vector<WriteOp> ops;
  for (int i = 0; i < 40; i++) {
    WriteOp op;
    op.kind = WriteOp::Kind::kExpire;
    op.args = {"big"};
    op.expire_at_ms = WallMs() + 100000 + i;
    ops.push_back(op);
  }
  uint64_t batches_before = metrics_.batches.load();
  auto r = Run(std::move(ops));
  for (auto& x : r) EXPECT_EQ(x.integer, 1) << x.str;
  EXPECT_GE(metrics_.batches.load() - batches_before, 10u);
  EXPECT_FALSE(store_->failed());
  EXPECT_EQ(One(Set("after", "ok")).kind, WriteResult::Kind::kOk);
  // A single write that cannot fit in any batch is refused, and only it.
  WriteOp huge;
  huge.kind = WriteOp::Kind::kMSet;
  for (int i = 0; i < 5; i++) {
    huge.args.push_back("h" + std::to_string(i));
    huge.args.push_back(std::string(100 << 10, 'h'));
  }
  WriteResult hr = One(huge);
  EXPECT_EQ(hr.kind, WriteResult::Kind::kError);
  EXPECT_NE(hr.str.find("--max_batch_kb"), std::string::npos) << hr.str;
  EXPECT_FALSE(store_->failed());
  EXPECT_EQ(Get("h0"), "<nil>");
}

TEST_F(StoreTest, FlushAllAndMSetSurvivePowerCut) {
  WriteOp mset;
  mset.kind = WriteOp::Kind::kMSet;
  for (int i = 0; i < 100; i++) {
    mset.args.push_back("m" + std::to_string(i));
    mset.args.push_back(std::string(100, static_cast<char>('a' + i % 26)));
  }
  WriteOp flush;
  flush.kind = WriteOp::Kind::kFlushAll;
  Run({Set("gone", "1"), flush, mset});
  EXPECT_EQ(store_->KeyCount(), 100u);
  PowerCutAndReopen();
  EXPECT_EQ(store_->KeyCount(), 100u);
  EXPECT_EQ(Get("gone"), "<nil>");
  EXPECT_EQ(Get("m42"), std::string(100, 'q'));
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  do {
    cursor = store_->Scan(cursor, 10, &keys);
  } while (cursor != 0);
  EXPECT_EQ(keys.size(), 100u);
}

TEST_F(StoreTest, ManyWritesAcrossSegmentsAreAllRecovered) {
  std::vector<WriteOp> ops;
  for (int i = 0; i < 5000; i++)
    ops.push_back(
        Set("key" + std::to_string(i % 3000), std::string(300, 'a' + i % 26) + std::to_string(i)));
  auto r = Run(std::move(ops));
  for (auto& x : r) ASSERT_EQ(x.kind, WriteResult::Kind::kOk);
  EXPECT_GT(store_->log().segment_count(), 1u);
  EXPECT_GT(metrics_.batches.load(), 1u);
  PowerCutAndReopen();
  EXPECT_EQ(store_->KeyCount(), 3000u);
  for (int i = 2000; i < 5000; i++) {
    ASSERT_EQ(Get("key" + std::to_string(i % 3000)),
              std::string(300, 'a' + i % 26) + std::to_string(i));
  }
}

TEST_F(StoreTest, FailedPersistAnswersErrorsAndRefusesLaterWrites) {
  One(Set("before", "1"));
  dev_->CrashAtPersist(0, nullptr);
  WriteResult r = One(Set("during", "2"));
  EXPECT_EQ(r.kind, WriteResult::Kind::kError);
  EXPECT_NE(r.str.find("IOERR"), std::string::npos);
  EXPECT_EQ(Get("during"), "<nil>");  // never published
  EXPECT_TRUE(store_->failed());
  EXPECT_EQ(One(Set("after", "3")).kind, WriteResult::Kind::kError);
  PowerCutAndReopen();
  EXPECT_EQ(Get("before"), "1");
  EXPECT_EQ(Get("during"), "<nil>");
}

}  // namespace
}  // namespace faha
