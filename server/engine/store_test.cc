// Tests of Store: writes evaluated by the committing thread see the writes
// before them in their group (a command's WriteEval, DEL counts), MSET is
// atomic, FLUSHALL, expiry, reads see only committed state, and everything
// acknowledged survives a simulated power cut. The commands' own semantics
// (NX/XX, INCR, EXPIRE's conditions) are tested in server/commands/.
#include "server/engine/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "common/clock.h"
#include "nvm/memory_device.h"
#include "server/engine/replication_hook.h"
#include "server/engine/store_testing.h"

namespace faha {
namespace {

using testing::AppendOp;
using testing::Collect;
using testing::ExpireOp;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    if (store_) store_->Stop();
  }
  void Open() {
    StoreOptions o;
    o.log.in_flight_batches = in_flight_batches_;
    o.log.segment_bytes = 1 << 20;
    o.max_batch_bytes = 256 << 10;
    o.replicator = replicator_;
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
  // As an I/O thread submits: this thread commits the op itself when nobody
  // else is committing.
  WriteResult OneInline(WriteOp op) {
    Collect sink;
    std::vector<Store::Write> w;
    w.push_back(Store::Write{std::move(op), &sink, 7});
    store_->SubmitAll(&w);
    return sink.WaitFor(1)[0].result;
  }
  static WriteOp Set(const std::string& k, const std::string& v) { return testing::SetOp(k, v); }
  std::string Get(const std::string& k) {
    std::string v;
    return store_->Get(k, &v) ? v : "<nil>";
  }

  uint32_t in_flight_batches_ = 1;
  ReplicationHook* replicator_ = nullptr;  // a single node unless a test sets one
  std::shared_ptr<nvm::MemoryDevice> dev_ = std::make_shared<nvm::MemoryDevice>();
  Metrics metrics_;
  nvm::RecoveryReport report_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, AnEvaluationSeesTheWritesBeforeItInItsBatch) {
  auto r = Run({Set("k", "a"), AppendOp("k", "b"), AppendOp("k", "c"), testing::DelOp("k"),
                AppendOp("k", "d"), AppendOp("other", "x")});
  EXPECT_EQ(r[0].kind, WriteResult::Kind::kOk);
  EXPECT_EQ(r[1].integer, 2);
  EXPECT_EQ(r[2].integer, 3);
  EXPECT_EQ(r[3].integer, 1);
  EXPECT_EQ(r[4].integer, 1);  // after the DEL of the same batch
  EXPECT_EQ(Get("k"), "d");
  EXPECT_EQ(Get("other"), "x");
  EXPECT_EQ(store_->KeyCount(), 2u);
  EXPECT_EQ(One(AppendOp("k", "e")).integer, 2);  // and the committed state after
  PowerCutAndReopen();
  EXPECT_EQ(Get("k"), "de");
}

TEST_F(StoreTest, DeleteCountsEachKeyOnce) {
  Run({Set("n", "1"), Set("s", "2"), Set("big", "3")});
  WriteOp del;
  del.kind = WriteOp::Kind::kDelete;
  del.args = {"n", "s", "nope", "n"};
  EXPECT_EQ(One(del).integer, 2);  // n counted once
  EXPECT_EQ(Get("n"), "<nil>");
  EXPECT_EQ(Get("big"), "3");
}

TEST_F(StoreTest, AnEvaluationWithoutAFunctionIsRefused) {
  WriteOp op = AppendOp("k", "v");
  op.eval = nullptr;
  WriteResult r = One(op);
  EXPECT_EQ(r.kind, WriteResult::Kind::kError);
  EXPECT_EQ(Get("k"), "<nil>");
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
  // An expiry in the past deletes; none clears.
  auto r = Run({ExpireOp("forever", 1), ExpireOp("later", 0)});
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

TEST_F(StoreTest, BatchesAreCutByTheirRealSize) {
  // A new expiry rewrites the whole value: 40 of them on a 100 KiB value are 4 MB of
  // records from a few bytes of request, more than one 256 KiB batch holds.
  One(Set("big", std::string(100 << 10, 'b')));
  std::vector<WriteOp> ops;
  for (int i = 0; i < 40; i++) ops.push_back(ExpireOp("big", WallMs() + 100000 + i));
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
  EXPECT_EQ(r.code, WriteResult::ErrorCode::kIoError);
  EXPECT_EQ(r.str.rfind("IOERR ", 0), 0u) << r.str;
  EXPECT_EQ(Get("during"), "<nil>");  // never published
  EXPECT_TRUE(store_->failed());
  EXPECT_EQ(One(Set("after", "3")).kind, WriteResult::Kind::kError);
  PowerCutAndReopen();
  EXPECT_EQ(Get("before"), "1");
  EXPECT_EQ(Get("during"), "<nil>");
}

// A replicator whose backups hold every batch at once.
class BackupsHoldEverything : public ReplicationHook {
 public:
  Status WaitWritable(int64_t) override { return Status::OK(); }
  std::shared_ptr<const std::string> Ship(const nvm::BatchHeader&, std::string frame) override {
    shipped++;
    return std::make_shared<const std::string>(std::move(frame));
  }
  std::string SpareBuffer() override { return {}; }
  Status WaitDurable(uint64_t, int64_t) override { return Status::OK(); }
  void Committed(uint64_t) override {}
  std::atomic<int> shipped{0};
};

// A replicated primary's I/O thread commits inline only a batch it may ship at
// once (WaitWritable without waiting); any other it puts back for the
// sequencer, which waits for room. Replies come in order either way.
class NoRoomWithoutWaiting : public BackupsHoldEverything {
 public:
  Status WaitWritable(int64_t deadline_us) override {
    if (deadline_us == 0 && refuse_inline.load()) return Status::Unavailable("window full");
    return Status::OK();
  }
  std::atomic<bool> refuse_inline{true};
};

TEST_F(StoreTest, AReplicatedPrimaryCommitsInlineOnlyWhatItMayShipAtOnce) {
  store_->Stop();
  store_.reset();
  NoRoomWithoutWaiting backups;
  replicator_ = &backups;
  Open();
  auto submit = [&](std::vector<WriteOp> ops) {
    Collect sink;
    std::vector<Store::Write> w;
    for (auto& op : ops) w.push_back(Store::Write{std::move(op), &sink, 1});
    store_->SubmitAll(&w);
    std::vector<WriteResult> out;
    for (auto& c : sink.WaitFor(2)) out.push_back(c.result);
    return out;
  };
  auto r = submit({Set("k", "a"), AppendOp("k", "b")});
  EXPECT_EQ(r[0].kind, WriteResult::Kind::kOk);
  EXPECT_EQ(r[1].integer, 2);
  EXPECT_EQ(metrics_.inline_groups.load(), 0u);  // put back: the sequencer committed them
  EXPECT_EQ(backups.shipped.load(), 1);
  backups.refuse_inline = false;
  // Inline now, unless the sequencer is still giving committing back.
  for (int i = 0; i < 100 && metrics_.inline_groups.load() == 0; i++) {
    r = submit({AppendOp("k", "c"), AppendOp("k", "d")});
    EXPECT_EQ(r[1].integer, r[0].integer + 1);
  }
  EXPECT_GT(metrics_.inline_groups.load(), 0u);
  EXPECT_EQ(Get("k").substr(0, 4), "abcd");
  store_->Stop();
  store_.reset();
  replicator_ = nullptr;
  Open();
}

// A replicated primary whose own persist failed answers the write -IOERR,
// and a retry of it (the same client and sequence: the reply was lost) the
// same: the client table had recorded +OK before the persist, and the
// primary answered the retry with it, a write in no log (review).
// Both ways the batch is made durable: committed by the sequencer, which
// syncs it itself, and committed inline by a submitting thread, which leaves
// the sync to the committer (with the log window of a static primary, then of
// a node that may become a backup).
TEST_F(StoreTest, AReplicatedPrimaryAnswersARetryOfAWriteItFailedToPersistWithTheError) {
  for (const bool inline_commit : {false, true}) {
    SCOPED_TRACE(inline_commit ? "committed inline" : "committed by the sequencer");
    const uint32_t window = inline_commit ? nvm::kTornWindowBatches : 1;
    auto one = [&](WriteOp op) { return inline_commit ? OneInline(op) : One(op); };
    const std::string before = inline_commit ? "before-inline" : "before";
    const std::string during = inline_commit ? "during-inline" : "during";
    store_->Stop();
    store_.reset();
    BackupsHoldEverything backups;
    replicator_ = &backups;
    in_flight_batches_ = window;
    Open();
    WriteOp named = Set(before, "1");
    named.client_id = 42 + window;
    named.client_seq = 4;
    EXPECT_EQ(one(named).kind, WriteResult::Kind::kOk);
    if (inline_commit) {
      EXPECT_GT(metrics_.inline_groups.load(), 0u);
    }
    dev_->CrashAtPersist(0, nullptr);
    named = Set(during, "2");
    named.client_id = 42 + window;
    named.client_seq = 5;
    const WriteResult first = one(named);
    EXPECT_EQ(first.code, WriteResult::ErrorCode::kIoError) << first.str;
    EXPECT_TRUE(store_->failed());
    const int shipped = backups.shipped.load();
    for (int retry = 0; retry < 2; retry++) {
      const WriteResult again = one(named);
      EXPECT_EQ(again.code, WriteResult::ErrorCode::kIoError) << again.str;
    }
    EXPECT_EQ(backups.shipped.load(), shipped);  // nothing more after the failure
    EXPECT_EQ(Get(during), "<nil>");
    store_->Stop();
    store_.reset();
    replicator_ = nullptr;
    dev_->PowerCut();
    in_flight_batches_ = 1;
    Open();
    EXPECT_EQ(Get(before), "1");
    EXPECT_EQ(Get(during), "<nil>");
  }
}

// Two syncs in flight (--syncs_in_flight 2): threads commit their own groups,
// so a group is evaluated and written while the one before it syncs. An
// append still counts exactly (the later group sees the earlier through the
// in-flight overlay), each thread's replies come in order, and a power cut in
// the middle of a sync loses no acknowledged write: a batch after a failed
// one is never published, and recovery takes it for part of the tear.
TEST_F(StoreTest, TwoSyncsInFlightCountExactlyAndLoseNothingAcknowledged) {
  store_->Stop();
  store_.reset();
  in_flight_batches_ = 2;
  Open();
  constexpr int kThreads = 4, kRounds = 150;
  std::vector<std::vector<std::string>> acked(kThreads);
  std::vector<std::vector<int64_t>> counts(kThreads);
  std::atomic<int> crashed_after{0};
  auto worker = [&](int t) {
    for (int i = 0; i < kRounds; i++) {
      testing::Collect sink;
      std::vector<Store::Write> w;
      // Each append adds one byte: the length it answers is a count.
      w.push_back(Store::Write{AppendOp("counter", "+"), &sink, 1});
      const std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
      w.push_back(Store::Write{Set(key, std::string(200, 'a' + t)), &sink, 1});
      store_->SubmitAll(&w);
      auto got = sink.WaitFor(2);
      if (got[0].result.kind == WriteResult::Kind::kInt) counts[t].push_back(got[0].result.integer);
      if (got[1].result.kind == WriteResult::Kind::kOk) acked[t].push_back(key);
      if (got[1].result.kind == WriteResult::Kind::kError) crashed_after.fetch_add(1);
    }
  };
  // First without a crash: exact counts.
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++) ts.emplace_back(worker, t);
    for (auto& th : ts) th.join();
  }
  std::vector<int64_t> all;
  for (int t = 0; t < kThreads; t++) {
    for (size_t i = 1; i < counts[t].size(); i++) EXPECT_LT(counts[t][i - 1], counts[t][i]);
    all.insert(all.end(), counts[t].begin(), counts[t].end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kRounds));
  for (size_t i = 0; i < all.size(); i++) ASSERT_EQ(all[i], static_cast<int64_t>(i + 1));
  EXPECT_GT(metrics_.inline_groups.load(), 0u);

  // Then the power goes in the middle of a sync, half of its lines kept.
  for (auto& a : acked) a.clear();
  dev_->CrashAtPersist(40, [](size_t lines) {
    std::vector<bool> keep(lines);
    for (size_t i = 0; i < lines; i++) keep[i] = i % 2 == 1;
    return keep;
  });
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++) ts.emplace_back(worker, t);
    for (auto& th : ts) th.join();
  }
  EXPECT_GT(crashed_after.load(), 0);
  PowerCutAndReopen();
  size_t n = 0;
  for (int t = 0; t < kThreads; t++) {
    for (const auto& k : acked[t]) {
      EXPECT_EQ(Get(k), std::string(200, 'a' + t)) << k;
      n++;
    }
  }
  EXPECT_GT(n, 0u);
}

}  // namespace
}  // namespace faha

namespace faha {
namespace {

// A transaction as EXEC submits one: a single write whose evaluation
// evaluates many writes (WriteContext::Evaluate).
struct ManyWrites final : EvalPayload {
  std::vector<WriteOp> ops;
};

WriteResult EvalMany(const WriteOp& op, WriteContext& w) {
  for (const WriteOp& o : static_cast<const ManyWrites&>(*op.payload).ops) w.Evaluate(o);
  return WriteResult::Ok();
}

// Transactions of 1 to 1,000 keys from four threads, and the power cut in
// the middle of a persist, half of its lines kept: after recovery each
// transaction is there entirely or not at all, and each acknowledged one is.
TEST_F(StoreTest, ATransactionSurvivesAPowerCutEntirelyOrNotAtAll) {
  store_->Stop();
  store_.reset();
  in_flight_batches_ = 2;
  Open();
  constexpr int kThreads = 4, kTxns = 40;
  struct Txn {
    std::string prefix;
    int keys;
    bool acked = false;
  };
  std::vector<std::vector<Txn>> txns(kThreads);
  // Each thread waits for its reply, so the 160 transactions take at least 40
  // persists: the 25th always comes.
  dev_->CrashAtPersist(25, [](size_t lines) {
    std::vector<bool> keep(lines);
    for (size_t i = 0; i < lines; i++) keep[i] = i % 2 == 0;
    return keep;
  });
  auto worker = [&](int t) {
    std::mt19937 rng(t);
    for (int i = 0; i < kTxns; i++) {
      Txn txn{"t" + std::to_string(t) + "-x" + std::to_string(i) + "-",
              i % 10 == 0 ? 1000 : 1 + static_cast<int>(rng() % 200)};
      auto many = std::make_shared<ManyWrites>();
      for (int k = 0; k < txn.keys; k++) {
        many->ops.push_back(Set(txn.prefix + std::to_string(k), std::string(100, 'a' + t)));
      }
      WriteOp op;
      op.kind = WriteOp::Kind::kEval;
      op.eval = EvalMany;
      op.payload = std::move(many);
      Collect sink;
      store_->Submit(std::move(op), &sink, 1);
      txn.acked = sink.WaitFor(1)[0].result.kind == WriteResult::Kind::kOk;
      txns[t].push_back(std::move(txn));
    }
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) ts.emplace_back(worker, t);
  for (auto& th : ts) th.join();
  ASSERT_TRUE(dev_->crashed());
  PowerCutAndReopen();
  int acked = 0, whole = 0, none = 0;
  for (const auto& list : txns) {
    for (const Txn& txn : list) {
      int present = 0;
      for (int k = 0; k < txn.keys; k++) present += store_->Exists(txn.prefix + std::to_string(k));
      EXPECT_TRUE(present == 0 || present == txn.keys)
          << txn.prefix << ": " << present << " of " << txn.keys << " keys";
      if (txn.acked) {
        EXPECT_EQ(present, txn.keys) << txn.prefix << " was acknowledged";
        acked++;
      }
      (present == txn.keys ? whole : none)++;
    }
  }
  EXPECT_GT(acked, 0);
  EXPECT_GT(none, 0) << "the power cut lost no transaction: it tested nothing";
  EXPECT_GT(whole, 0);
}

}  // namespace
}  // namespace faha
