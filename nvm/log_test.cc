// Tests of the log: batch framing, segment switches, recovery after a simulated
// power cut at every persist and in the middle of batches (MemoryDevice drops
// every byte that was not persisted), lost-media detection, and the libpmem2
// device on real files.
#include "nvm/log.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "common/checksum.h"
#include "nvm/memory_device.h"
#include "nvm/record_iterator.h"

namespace faha::nvm {
namespace {

struct Rec {
  std::string key, value;
  uint64_t lsn;
};

std::string BatchPayload(int batch, int records, BatchBuilder* b) {
  b->Clear();
  for (int i = 0; i < records; i++) {
    std::string key = "b" + std::to_string(batch) + "-r" + std::to_string(i);
    std::string value(static_cast<size_t>(10 + (batch * 7 + i * 13) % 300),
                      static_cast<char>('a' + batch % 26));
    b->Add(RecordType::kPut, key, value, 0);
  }
  return std::string(b->payload());
}

std::vector<Rec> Replay(Log* log, RecoveryReport* report, Status* status) {
  std::vector<Rec> out;
  *status = log->Recover(
      [&](const RecordView& r, uint64_t, uint64_t lsn) {
        out.push_back({std::string(r.key), std::string(r.value), lsn});
      },
      report);
  return out;
}

std::string_view ReadKey(std::string_view record) {
  RecordView r;
  size_t n;
  return DecodeRecord(record.data(), record.size(), &r, &n) ? r.key : std::string_view();
}

LogOptions SmallSegments() {
  LogOptions o;
  o.segment_bytes = 64 << 10;  // many segment switches
  return o;
}

TEST(RecordIteratorTest, WalksEveryRecordAtItsOffsetAndStopsAtDamage) {
  BatchBuilder b;
  std::vector<size_t> at;
  at.push_back(b.Add(RecordType::kPut, "a", "one", 0));
  at.push_back(b.Add(RecordType::kDelete, "bb", "", 0));
  at.push_back(b.Add(RecordType::kPut, "ccc", std::string(1000, 'x'), 77));
  RecordIterator it(b.payload());
  std::vector<std::string> keys;
  RecordView r;
  for (size_t i = 0; it.Next(&r); i++) {
    ASSERT_LT(i, at.size());
    EXPECT_EQ(it.offset(), at[i]);
    keys.emplace_back(r.key);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "bb", "ccc"}));
  EXPECT_FALSE(it.malformed());
  EXPECT_EQ(it.consumed(), b.bytes());
  EXPECT_EQ(r.expire_at_ms, 77);

  // A type byte that names no record type stops the walk there, as damage.
  std::string bad(b.payload());
  bad[at[1]] = static_cast<char>(0xEE);
  RecordIterator damaged(bad);
  EXPECT_TRUE(damaged.Next(&r));
  EXPECT_FALSE(damaged.Next(&r));
  EXPECT_TRUE(damaged.malformed());
  EXPECT_EQ(damaged.consumed(), at[1]);
  // An empty payload has no records and no damage.
  RecordIterator empty(std::string_view{});
  EXPECT_FALSE(empty.Next(&r));
  EXPECT_FALSE(empty.malformed());
}

TEST(LogTest, AppendThenRecoverReturnsEveryRecordInOrder) {
  auto dev = std::make_shared<MemoryDevice>();
  std::vector<Rec> written;
  {
    auto log = Log::Open(dev, SmallSegments());
    ASSERT_TRUE(log.ok());
    RecoveryReport rep;
    Status s;
    EXPECT_TRUE(Replay(log->get(), &rep, &s).empty());
    ASSERT_TRUE(s.ok()) << s.ToString();
    BatchBuilder b;
    uint64_t lsn = 1;
    for (int batch = 0; batch < 200; batch++) {
      BatchPayload(batch, 1 + batch % 9, &b);
      auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->first_lsn, lsn);
      // Records are readable at base_location + payload offset right away.
      RecordView first = (*log)->ReadRecord(r->base_location);
      EXPECT_EQ(first.key, "b" + std::to_string(batch) + "-r0");
      size_t off = 0;
      while (off < b.bytes()) {
        RecordView rv;
        size_t n;
        ASSERT_TRUE(DecodeRecord(b.payload().data() + off, b.bytes() - off, &rv, &n));
        written.push_back({std::string(rv.key), std::string(rv.value), lsn++});
        off += n;
      }
    }
    EXPECT_GE((*log)->segment_count(), 3u);
  }
  dev->PowerCut();  // everything was persisted: nothing may be lost
  auto log = Log::Open(dev, SmallSegments());
  RecoveryReport rep;
  Status s;
  auto got = Replay(log->get(), &rep, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(rep.torn_tail);
  ASSERT_EQ(got.size(), written.size());
  for (size_t i = 0; i < got.size(); i++) {
    EXPECT_EQ(got[i].key, written[i].key);
    EXPECT_EQ(got[i].value, written[i].value);
    EXPECT_EQ(got[i].lsn, written[i].lsn);
  }
  EXPECT_EQ((*log)->next_lsn(), written.size() + 1);
  // And appends continue after the recovered tail.
  BatchBuilder b;
  BatchPayload(999, 3, &b);
  auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first_lsn, written.size() + 1);
}

// A cleaned segment keeps a subset of its records with their own LSNs and
// covers the same LSN range: recovery replays the kept records with those
// LSNs, the log goes on from where it was, ForEachBatch walks compacted
// batches, another log accepts them as a replica, and a damaged LSN delta
// inside a valid checksum is corruption.
TEST(LogTest, CleanedSegmentKeepsLsnsAndCoversTheSameRange) {
  auto dev = std::make_shared<MemoryDevice>();
  std::vector<Rec> written;
  {
    auto log = std::move(*Log::Open(dev, SmallSegments()));
    RecoveryReport rep;
    Status st;
    Replay(log.get(), &rep, &st);
    ASSERT_TRUE(st.ok());
    BatchBuilder b;
    for (int i = 0; i < 200; i++) {
      std::string p = BatchPayload(i, 5, &b);
      ASSERT_TRUE(log->AppendBatch_wt(p, b.count()).ok());
    }
    auto sealed = log->SealedSegments();
    ASSERT_GE(sealed.size(), 2u);
    const Log::SegmentInfo seg = sealed[0];
    EXPECT_EQ(seg.first_lsn, 1u);
    // Keep every third record of segment 1.
    std::vector<std::string> bytes;
    std::vector<uint64_t> lsns;
    ASSERT_TRUE(log->ForEachRecord(seg.id,
                                   [&](const RecordView& r, uint64_t loc, uint64_t lsn) {
                                     if (lsn % 3 != 0) return;
                                     size_t n;
                                     RecordView v;
                                     ASSERT_TRUE(
                                         DecodeRecord(log->RecordPtr(loc), 1 << 20, &v, &n));
                                     bytes.emplace_back(log->RecordPtr(loc), n);
                                     lsns.push_back(lsn);
                                     (void)r;
                                   })
                    .ok());
    std::vector<Log::KeptRecord> kept;
    for (size_t i = 0; i < bytes.size(); i++) kept.push_back({bytes[i], lsns[i]});
    std::vector<uint64_t> where;
    auto r = log->PrepareReplacement(seg, kept, 77, &where);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(log->CommitReplacement(r->get()).ok());
    log->SwapReplacement(std::move(*r));
    for (size_t i = 0; i < kept.size(); i++) {
      EXPECT_EQ(log->ReadRecord(where[i]).key, ReadKey(bytes[i]));
    }
    auto after = log->SealedSegments();
    EXPECT_TRUE(after[0].cleaned);
    EXPECT_EQ(after[0].cleaned_lsn, 77u);
    EXPECT_EQ(after[0].end_lsn, seg.end_lsn);
    EXPECT_LT(after[0].file_bytes, seg.file_bytes / 2);
    // The whole log from LSN 1, compacted batches first, into a replica.
    auto replica = std::move(*Log::Open(std::make_shared<MemoryDevice>(), SmallSegments()));
    ASSERT_TRUE(replica->Recover(nullptr, nullptr).ok());
    int compacted = 0;
    auto end = log->ForEachBatch(1, log->next_lsn(), UINT64_MAX,
                                 [&](const BatchHeader& h, std::string_view payload) {
                                   compacted += IsCompacted(h);
                                   EXPECT_TRUE(replica->AppendReplicated_wt(h, payload).ok());
                                 });
    ASSERT_TRUE(end.ok()) << end.status().ToString();
    EXPECT_EQ(*end, log->next_lsn());
    EXPECT_GE(compacted, 1);
    EXPECT_EQ(replica->next_lsn(), log->next_lsn());
    // A batch can no longer start inside the compacted range.
    EXPECT_EQ(
        log->ForEachBatch(2, 3, 1, [](const BatchHeader&, std::string_view) {}).status().code(),
        Status::Code::kNotFound);
    for (const auto& k : kept) written.push_back({std::string(ReadKey(k.bytes)), "", k.lsn});
  }
  dev->PowerCut();
  auto log = std::move(*Log::Open(dev, SmallSegments()));
  RecoveryReport rep;
  Status st;
  auto got = Replay(log.get(), &rep, &st);
  ASSERT_TRUE(st.ok()) << st.ToString();
  // The kept records of segment 1 with their LSNs, then everything after it.
  ASSERT_GE(got.size(), written.size());
  for (size_t i = 0; i < written.size(); i++) {
    EXPECT_EQ(got[i].key, written[i].key);
    EXPECT_EQ(got[i].lsn, written[i].lsn);
  }
  for (size_t i = written.size() + 1; i < got.size(); i++)
    EXPECT_EQ(got[i].lsn, got[i - 1].lsn + 1);
  EXPECT_EQ(log->next_lsn(), 200u * 5 + 1);
  // Flip an LSN delta (and fix the checksum): corruption, not a torn tail.
  std::vector<char>* img = dev->Durable(1);
  BatchHeader h;
  std::memcpy(&h, img->data() + sizeof(SegmentHeader), sizeof(h));
  ASSERT_TRUE(IsCompacted(h));
  ASSERT_GE(h.record_count, 2u);
  char* second = img->data() + sizeof(SegmentHeader) + sizeof(BatchHeader);
  RecordView first;
  size_t n;
  ASSERT_TRUE(DecodeRecord(second, h.payload_bytes, &first, &n));
  second += n;
  uint32_t zero = 0;  // not above the first record's: LSNs must ascend
  std::memcpy(second + offsetof(RecordHeader, lsn_delta), &zero, sizeof(zero));
  const char* payload = img->data() + sizeof(SegmentHeader) + sizeof(BatchHeader);
  h.checksum = Checksum(payload, h.payload_bytes, Checksum(&h, offsetof(BatchHeader, checksum)));
  std::memcpy(img->data() + sizeof(SegmentHeader), &h, sizeof(h));
  dev->PowerCut();
  auto damaged = std::move(*Log::Open(dev, SmallSegments()));
  Status bad = damaged->Recover(nullptr, nullptr);
  EXPECT_EQ(bad.code(), Status::Code::kCorruption) << bad.ToString();
  EXPECT_NE(bad.message().find("malformed"), std::string::npos) << bad.ToString();
}

// A replacement with more than a MiB of kept records is written as several
// compacted batches of about a MiB (the buffer that assembles one stays
// small); recovery replays every kept record with its LSN, and the log goes
// on from the same end.
TEST(LogTest, LargeReplacementIsSeveralCompactedBatches) {
  auto dev = std::make_shared<MemoryDevice>();
  LogOptions o;
  o.segment_bytes = 8 << 20;
  std::vector<std::pair<std::string, uint64_t>> kept_keys;
  uint64_t end = 0;
  {
    auto log = std::move(*Log::Open(dev, o));
    ASSERT_TRUE(log->Recover(nullptr, nullptr).ok());
    BatchBuilder b;
    for (int i = 0; log->SealedSegments().empty(); i++) {
      b.Clear();
      for (int j = 0; j < 16; j++) {
        b.Add(RecordType::kPut, "k" + std::to_string(i) + "-" + std::to_string(j),
              std::string(1000, static_cast<char>('a' + j)), 0);
      }
      ASSERT_TRUE(log->AppendBatch_wt(b.payload(), b.count()).ok());
    }
    const Log::SegmentInfo seg = log->SealedSegments()[0];
    std::vector<std::string> bytes;
    std::vector<uint64_t> lsns;
    ASSERT_TRUE(log->ForEachRecord(seg.id,
                                   [&](const RecordView&, uint64_t loc, uint64_t lsn) {
                                     if (lsn % 3 == 0) return;  // two thirds stay: several MiB
                                     RecordView v;
                                     size_t n;
                                     ASSERT_TRUE(
                                         DecodeRecord(log->RecordPtr(loc), 1 << 20, &v, &n));
                                     bytes.emplace_back(log->RecordPtr(loc), n);
                                     lsns.push_back(lsn);
                                   })
                    .ok());
    std::vector<Log::KeptRecord> kept;
    for (size_t i = 0; i < bytes.size(); i++) {
      kept.push_back({bytes[i], lsns[i]});
      kept_keys.emplace_back(std::string(ReadKey(bytes[i])), lsns[i]);
    }
    std::vector<uint64_t> where;
    auto r = log->PrepareReplacement(seg, kept, seg.end_lsn - 1, &where);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(log->CommitReplacement(r->get()).ok());
    log->SwapReplacement(std::move(*r));
    for (size_t i = 0; i < kept.size(); i += 97) {
      EXPECT_EQ(log->ReadRecord(where[i]).key, kept_keys[i].first);
    }
    int compacted = 0;
    ASSERT_TRUE(log->ForEachBatch(1, seg.end_lsn, UINT64_MAX,
                                  [&](const BatchHeader& h, std::string_view payload) {
                                    EXPECT_TRUE(IsCompacted(h));
                                    EXPECT_LE(payload.size(), (1u << 20) + 2048);
                                    compacted++;
                                  })
                    .ok());
    EXPECT_GE(compacted, 4);  // about 5 MiB kept
    end = log->next_lsn();
  }
  dev->PowerCut();
  auto log = std::move(*Log::Open(dev, o));
  RecoveryReport rep;
  Status st;
  auto got = Replay(log.get(), &rep, &st);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_GE(got.size(), kept_keys.size());
  for (size_t i = 0; i < kept_keys.size(); i++) {
    EXPECT_EQ(got[i].key, kept_keys[i].first);
    EXPECT_EQ(got[i].lsn, kept_keys[i].second);
  }
  EXPECT_EQ(log->next_lsn(), end);
}

TEST(LogTest, RejectsBatchesThatCannotFit) {
  auto dev = std::make_shared<MemoryDevice>();
  auto log = Log::Open(dev, SmallSegments());
  RecoveryReport rep;
  ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
  std::string huge((*log)->max_payload_bytes() + 1, 'x');
  auto r = (*log)->AppendBatch_wt(huge, 1);
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ((*log)->AppendBatch_wt("", 0).status().code(), Status::Code::kInvalidArgument);
}

// Keep-masks for the persist that is interrupted by the power cut.
std::vector<MemoryDevice::KeepFn> CrashShapes() {
  return {
      [](size_t n) { return std::vector<bool>(n, false); },  // nothing reached media
      [](size_t n) { return std::vector<bool>(n, true); },   // all of it did
      [](size_t n) {                                         // first half
        std::vector<bool> m(n, false);
        for (size_t i = 0; i < n / 2; i++) m[i] = true;
        return m;
      },
      [](size_t n) {  // everything but the first line (header lost, payload there)
        std::vector<bool> m(n, true);
        m[0] = false;
        return m;
      },
      [](size_t n) {  // only the last line
        std::vector<bool> m(n, false);
        m[n - 1] = true;
        return m;
      },
      [](size_t n) {  // every other line
        std::vector<bool> m(n);
        for (size_t i = 0; i < n; i++) m[i] = i % 2 == 0;
        return m;
      },
  };
}

// Power cut at every persist call (batch boundaries, segment creation) and in
// the middle of the interrupted batch, in several shapes: recovery must return
// exactly the acknowledged batches, plus at most the interrupted one if all of
// it reached the media, and appending must work afterwards.
TEST(LogTest, PowerCutAtEveryPersistLosesNothingAcknowledged) {
  const int kBatches = 40;
  auto shapes = CrashShapes();
  for (int crash_at = 0; crash_at < kBatches + 12; crash_at++) {
    for (size_t shape = 0; shape < shapes.size(); shape++) {
      SCOPED_TRACE("crash_at=" + std::to_string(crash_at) + " shape=" + std::to_string(shape));
      auto dev = std::make_shared<MemoryDevice>();
      std::vector<std::string> acked_keys;
      std::vector<std::string> inflight_keys;
      {
        auto log = Log::Open(dev, SmallSegments());
        RecoveryReport rep;
        dev->CrashAtPersist(static_cast<uint64_t>(crash_at), shapes[shape]);
        Status s = (*log)->Recover(nullptr, &rep);
        if (!s.ok()) {
          ASSERT_TRUE(dev->crashed());  // the crash hit creating the first segment
        } else {
          BatchBuilder b;
          for (int batch = 0; batch < kBatches; batch++) {
            BatchPayload(batch, 1 + batch % 5, &b);
            // Big batches so segment switches happen often.
            for (int pad = 0; pad < 20; pad++) {
              b.Add(RecordType::kPut, "pad" + std::to_string(batch) + "-" + std::to_string(pad),
                    std::string(500, 'p'), 0);
            }
            auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
            std::vector<std::string>& dst = r.ok() ? acked_keys : inflight_keys;
            size_t off = 0;
            while (off < b.bytes()) {
              RecordView rv;
              size_t n;
              DecodeRecord(b.payload().data() + off, b.bytes() - off, &rv, &n);
              dst.emplace_back(rv.key);
              off += n;
            }
            if (!r.ok()) break;
          }
        }
      }
      dev->PowerCut();
      auto log = Log::Open(dev, SmallSegments());
      RecoveryReport rep;
      Status s;
      auto got = Replay(log->get(), &rep, &s);
      ASSERT_TRUE(s.ok()) << s.ToString();
      ASSERT_GE(got.size(), acked_keys.size());
      for (size_t i = 0; i < acked_keys.size(); i++) ASSERT_EQ(got[i].key, acked_keys[i]);
      if (got.size() > acked_keys.size()) {
        // Only the interrupted batch, and only whole.
        ASSERT_EQ(got.size(), acked_keys.size() + inflight_keys.size());
        for (size_t i = 0; i < inflight_keys.size(); i++) {
          ASSERT_EQ(got[acked_keys.size() + i].key, inflight_keys[i]);
        }
      }
      for (size_t i = 0; i < got.size(); i++) ASSERT_EQ(got[i].lsn, i + 1);
      // The log is usable after recovery and survives another clean cycle.
      BatchBuilder b;
      BatchPayload(777, 2, &b);
      auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->first_lsn, got.size() + 1);
      log->reset();
      dev->PowerCut();
      auto again = Log::Open(dev, SmallSegments());
      auto got2 = Replay(again->get(), &rep, &s);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(got2.size(), got.size() + 2);
      EXPECT_FALSE(rep.torn_tail);
    }
  }
}

// Writes `batches` batches and returns the device and each batch's offset.
std::shared_ptr<MemoryDevice> WriteBatches(int batches, std::vector<uint64_t>* locations,
                                           LogOptions opts = LogOptions{}) {
  auto dev = std::make_shared<MemoryDevice>();
  auto log = Log::Open(dev, opts);
  RecoveryReport rep;
  EXPECT_TRUE((*log)->Recover(nullptr, &rep).ok());
  BatchBuilder b;
  for (int i = 0; i < batches; i++) {
    BatchPayload(i, 3, &b);
    auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
    EXPECT_TRUE(r.ok());
    locations->push_back(r->base_location - sizeof(BatchHeader));  // batch header location
  }
  return dev;
}

// A replica drops its unacknowledged suffix: at a batch inside a segment, at
// the first batch of a segment, and down to nothing. After each cut the log
// appends from there, and recovery (also after a cut whose later segments were
// removed) returns exactly the kept batches followed by the new ones.
TEST(LogTest, TruncateToDropsTheSuffixAndAppendsContinueFromThere) {
  for (int cut_batch : {0, 1, 7, 13, 29}) {
    SCOPED_TRACE("cut at batch " + std::to_string(cut_batch));
    auto dev = std::make_shared<MemoryDevice>();
    std::vector<uint64_t> first_lsns;
    std::vector<Rec> kept;
    {
      auto log = Log::Open(dev, SmallSegments());
      ASSERT_TRUE(log.ok());
      RecoveryReport rep;
      ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
      BatchBuilder b;
      for (int i = 0; i < 30; i++) {
        BatchPayload(i, 40, &b);  // ~7 KiB: several batches per 64 KiB segment
        auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
        ASSERT_TRUE(r.ok());
        first_lsns.push_back(r->first_lsn);
      }
      ASSERT_GT((*log)->segment_count(), 3u);
      EXPECT_FALSE((*log)->TruncateTo_wt(first_lsns[5] + 1).ok()) << "inside a batch";
      EXPECT_FALSE((*log)->TruncateTo_wt((*log)->next_lsn() + 1).ok()) << "beyond the end";
      ASSERT_TRUE((*log)->TruncateTo_wt(first_lsns[cut_batch]).ok());
      EXPECT_EQ((*log)->next_lsn(), first_lsns[cut_batch]);
      if (cut_batch > 0) {
        EXPECT_EQ((*log)->last_batch_wt().first_lsn, first_lsns[cut_batch - 1]);
      } else {
        EXPECT_EQ((*log)->last_batch_wt().first_lsn, 0u);
      }
      // Appends continue at the cut, with different contents.
      for (int i = 100; i < 103; i++) {
        BatchPayload(i, 40, &b);
        auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
        ASSERT_TRUE(r.ok()) << r.status().ToString();
      }
      EXPECT_EQ((*log)->last_batch_wt().first_lsn, first_lsns[cut_batch] + 80);
      auto visited = (*log)->ForEachBatch(1, (*log)->next_lsn(), UINT64_MAX,
                                          [](const BatchHeader&, std::string_view) {});
      ASSERT_TRUE(visited.ok()) << visited.status().ToString();
    }
    auto log = Log::Open(dev, SmallSegments());
    ASSERT_TRUE(log.ok());
    RecoveryReport rep;
    Status s;
    std::vector<Rec> got = Replay(log->get(), &rep, &s);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE(rep.torn_tail);
    ASSERT_EQ(got.size(), static_cast<size_t>(cut_batch + 3) * 40);
    for (size_t i = 0; i < got.size(); i++) {
      int batch = static_cast<int>(i / 40);
      int want_batch = batch < cut_batch ? batch : 100 + batch - cut_batch;
      EXPECT_EQ(got[i].key, "b" + std::to_string(want_batch) + "-r" + std::to_string(i % 40));
      EXPECT_EQ(got[i].lsn, i + 1);
    }
  }
}

// A writer that persists every batch has no in-flight window: a valid batch
// after a damaged one means lost media.
TEST(LogTest, DamagedBatchFollowedByValidOnesRefusesToStartAndNamesTheOffset) {
  std::vector<uint64_t> locs;
  auto dev = WriteBatches(5, &locs);
  uint32_t off = LocationOffset(locs[2]);
  (*dev->Durable(1))[off + sizeof(BatchHeader) + 5] ^= 0x40;  // a flipped bit in batch 3's payload
  dev->PowerCut();
  auto log = Log::Open(dev, LogOptions{});
  RecoveryReport rep;
  Status s;
  auto got = Replay(log->get(), &rep, &s);
  ASSERT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("mem-segment-1 offset " + std::to_string(off)), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("--recovery_drop_corrupt"), std::string::npos);
  // Refusing changed nothing: the later batches are still there.
  auto again = Log::Open(dev, LogOptions{});
  Replay(again->get(), &rep, &s);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
}

TEST(LogTest, DropCorruptFlagDropsFromTheDamageAndReportsIt) {
  std::vector<uint64_t> locs;
  auto dev = WriteBatches(5, &locs);
  uint32_t off = LocationOffset(locs[1]);
  (*dev->Durable(1))[off + 2] ^= 0xFF;  // batch 2's header magic
  dev->PowerCut();
  LogOptions o;
  o.drop_corrupt = true;
  auto log = Log::Open(dev, o);
  RecoveryReport rep;
  Status s;
  auto got = Replay(log->get(), &rep, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got.size(), 3u);  // batch 1 only
  EXPECT_TRUE(rep.dropped_corrupt);
  EXPECT_EQ(rep.dropped_batches, 3u);
  EXPECT_EQ(rep.dropped_records, 9u);
  EXPECT_NE(rep.dropped_detail.find("offset " + std::to_string(off)), std::string::npos);
  // The dropped bytes are gone for good: a normal restart now succeeds.
  log->reset();
  auto again = Log::Open(dev, LogOptions{});
  auto got2 = Replay(again->get(), &rep, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got2.size(), 3u);
}

TEST(LogTest, DamagedLastBatchIsATornTail) {
  std::vector<uint64_t> locs;
  auto dev = WriteBatches(4, &locs);
  (*dev->Durable(1))[LocationOffset(locs[3]) + sizeof(BatchHeader) + 3] ^= 1;
  dev->PowerCut();
  auto log = Log::Open(dev, LogOptions{});
  RecoveryReport rep;
  Status s;
  auto got = Replay(log->get(), &rep, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got.size(), 9u);
  EXPECT_TRUE(rep.torn_tail);
  EXPECT_NE(rep.torn_detail.find("checksum"), std::string::npos) << rep.torn_detail;
}

LogOptions BackupWindow() {
  LogOptions o;
  o.in_flight_batches = kTornWindowBatches;
  return o;
}

// Writes 3 batches persisted one by one, then `burst` batches without a
// persist each (a backup taking a burst), and cuts the power during the
// persist of the burst: the first batch of the burst loses its lines, the
// others reach the media. Returns the device.
std::shared_ptr<MemoryDevice> TearFirstOfABurst(const LogOptions& o, int burst) {
  auto dev = std::make_shared<MemoryDevice>();
  auto log = Log::Open(dev, o);
  RecoveryReport rep;
  EXPECT_TRUE((*log)->Recover(nullptr, &rep).ok());
  BatchBuilder b;
  for (int i = 0; i < 3; i++) {
    BatchPayload(i, 3, &b);
    EXPECT_TRUE((*log)->AppendBatch_wt(b.payload(), b.count()).ok());
  }
  uint64_t first_bytes = 0;
  const uint64_t persists = dev->persist_calls();
  for (int i = 3; i < 3 + burst; i++) {
    BatchPayload(i, 3, &b);
    const BatchHeader h = Log::FrameBatch(b.payload(), b.count(), (*log)->next_lsn(), 0);
    auto r = (*log)->AppendReplicated_wt(h, b.payload(), /*persist=*/false);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (i == 3) first_bytes = r->bytes;
  }
  EXPECT_EQ(dev->persist_calls(), persists);  // the burst is one persist
  dev->CrashAtPersist(0, [&](size_t lines) {
    std::vector<bool> keep(lines, true);
    for (size_t l = 0; l < first_bytes / kBatchAlign; l++) keep[l] = false;
    return keep;
  });
  EXPECT_FALSE((*log)->PersistAppended_wt().ok());
  log->reset();
  dev->PowerCut();
  return dev;
}

// Batches persisted together become durable in whatever order the pages reach
// the media. A power cut during that persist can leave the earlier batch torn
// and the later ones whole: recovery of a log with an in-flight window drops
// them all as a torn tail and starts, without --recovery_drop_corrupt; every
// batch persisted before is kept.
TEST(LogTest, LaterBatchDurableAndEarlierNotIsATornTail) {
  for (int burst : {2, static_cast<int>(kTornWindowBatches)}) {
    SCOPED_TRACE("burst of " + std::to_string(burst));
    auto dev = TearFirstOfABurst(BackupWindow(), burst);
    auto again = Log::Open(dev, BackupWindow());
    RecoveryReport rep;
    Status s;
    auto got = Replay(again->get(), &rep, &s);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(got.size(), 9u);
    for (size_t i = 0; i < got.size(); i++) {
      EXPECT_EQ(got[i].key, "b" + std::to_string(i / 3) + "-r" + std::to_string(i % 3));
    }
    EXPECT_TRUE(rep.torn_tail);
    EXPECT_FALSE(rep.dropped_corrupt);
    EXPECT_NE(rep.torn_detail.find("in-flight window"), std::string::npos) << rep.torn_detail;
    // The tail is gone for good and the log appends after the kept batches.
    EXPECT_EQ((*again)->next_lsn(), 10u);
    BatchBuilder b;
    BatchPayload(9, 3, &b);
    ASSERT_TRUE((*again)->AppendBatch_wt(b.payload(), b.count()).ok());
  }
}

// The window does not hide damage before it: with as many valid batches after
// the damaged one as the window holds, recovery refuses to start. And a log
// without a window (a primary's) refuses even one.
TEST(LogTest, DamageBeforeTheInFlightWindowStillRefusesToStart) {
  {
    std::vector<uint64_t> locs;
    auto dev = WriteBatches(3 + kTornWindowBatches, &locs, BackupWindow());
    (*dev->Durable(1))[LocationOffset(locs[2]) + sizeof(BatchHeader) + 5] ^= 0x40;
    dev->PowerCut();
    auto log = Log::Open(dev, BackupWindow());
    RecoveryReport rep;
    Status s;
    Replay(log->get(), &rep, &s);
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  }
  auto dev = TearFirstOfABurst(LogOptions{}, 1);  // window 1: the burst is one batch
  auto log = Log::Open(dev, LogOptions{});
  RecoveryReport rep;
  Status s;
  auto got = Replay(log->get(), &rep, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();  // a lone torn batch is a torn tail
  EXPECT_EQ(got.size(), 9u);
  auto dev2 = TearFirstOfABurst(BackupWindow(), 2);
  auto strict = Log::Open(dev2, LogOptions{});
  Replay(strict->get(), &rep, &s);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
}

// The writer keeps its side of that bargain: however long a burst of
// unpersisted batches, it persists before a window would hold more than
// in_flight_batches batches or kTornWindowBytes; with no window, before every
// batch after the first.
TEST(LogTest, UnpersistedBatchesNeverExceedTheInFlightWindow) {
  auto dev = std::make_shared<MemoryDevice>();
  auto log = Log::Open(dev, BackupWindow());
  RecoveryReport rep;
  ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
  BatchBuilder b;
  const uint64_t before = dev->persist_calls();
  for (uint32_t i = 0; i < 3 * kTornWindowBatches; i++) {
    BatchPayload(static_cast<int>(i), 3, &b);
    const BatchHeader h = Log::FrameBatch(b.payload(), b.count(), (*log)->next_lsn(), 0);
    ASSERT_TRUE((*log)->AppendReplicated_wt(h, b.payload(), false).ok());
  }
  EXPECT_EQ(dev->persist_calls() - before, 2u);  // after the 16th and the 32nd
  // Big batches: the byte bound persists first.
  b.Clear();
  b.Add(RecordType::kPut, "big", std::string(kTornWindowBytes / 3, 'x'), 0);
  const uint64_t mid = dev->persist_calls();
  for (int i = 0; i < 3; i++) {
    const BatchHeader h = Log::FrameBatch(b.payload(), b.count(), (*log)->next_lsn(), 0);
    ASSERT_TRUE((*log)->AppendReplicated_wt(h, b.payload(), false).ok());
  }
  EXPECT_EQ(dev->persist_calls() - mid, 2u);  // before the 1st (16 small waiting), before the 3rd
  ASSERT_TRUE((*log)->PersistAppended_wt().ok());

  auto dev1 = std::make_shared<MemoryDevice>();
  auto strict = Log::Open(dev1, LogOptions{});
  ASSERT_TRUE((*strict)->Recover(nullptr, &rep).ok());
  const uint64_t start = dev1->persist_calls();
  for (int i = 0; i < 5; i++) {
    BatchPayload(i, 3, &b);
    const BatchHeader h = Log::FrameBatch(b.payload(), b.count(), (*strict)->next_lsn(), 0);
    ASSERT_TRUE((*strict)->AppendReplicated_wt(h, b.payload(), false).ok());
  }
  EXPECT_EQ(dev1->persist_calls() - start, 4u);
}

TEST(LogTest, MalformedRecordInsideAValidChecksumIsCorruption) {
  auto dev = std::make_shared<MemoryDevice>();
  auto log = Log::Open(dev, LogOptions{});
  RecoveryReport rep;
  ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
  // A record whose key length runs past the payload: the checksum covers it,
  // so only the record decoder can catch it.
  RecordHeader h{};
  h.type = 1;
  h.key_bytes = 1000;
  std::string payload(reinterpret_cast<char*>(&h), sizeof(h));
  payload += "short";
  ASSERT_TRUE((*log)->AppendBatch_wt(payload, 1).ok());
  log->reset();
  dev->PowerCut();
  auto again = Log::Open(dev, LogOptions{});
  Status s = (*again)->Recover(nullptr, &rep);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("malformed"), std::string::npos) << s.message();
}

class PmemLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/faha-logtest-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Opens the log in dir_ again and recovers it; returns every record.
  std::vector<Rec> Reopen(const LogOptions& o, Status* s) {
    auto dev = OpenPmemDevice(dir_);
    if (!dev.ok()) {
      *s = dev.status();
      return {};
    }
    auto log = Log::Open(std::shared_ptr<LogDevice>(std::move(*dev)), o);
    RecoveryReport rep;
    return Replay(log->get(), &rep, s);
  }
  std::string dir_;
};

TEST(LogTest, DamagedLengthFieldIsNotMistakenForATornTail) {
  std::vector<uint64_t> locs;
  auto dev = WriteBatches(6, &locs);
  // Batch 3's payload_bytes (offset 8 of its header) gains a high bit: its
  // claimed end now lies far beyond the valid batches after it.
  (*dev->Durable(1))[LocationOffset(locs[2]) + 8 + 2] ^= 0x08;
  dev->PowerCut();
  auto log = Log::Open(dev, LogOptions{});
  RecoveryReport rep;
  Status s;
  Replay(log->get(), &rep, &s);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_FALSE(rep.torn_tail);
}

TEST(LogTest, HalfWrittenHeaderOfTheLastSegmentIsACrashDuringCreation) {
  std::vector<uint64_t> locs;
  LogOptions o = SmallSegments();
  auto dev = WriteBatches(100, &locs, o);
  auto ids = dev->ListSegments();
  uint32_t last = ids->back();
  size_t before = ids->size();
  // Make the last segment look created but never written: zero it, then put
  // half a header back (only some 8-byte stores reached the media).
  std::vector<char>* img = dev->Durable(last);
  std::vector<char> header(img->begin(), img->begin() + 64);
  std::fill(img->begin(), img->end(), 0);
  std::copy(header.begin(), header.begin() + 24, img->begin());
  dev->PowerCut();
  auto log = Log::Open(dev, o);
  RecoveryReport rep;
  Status s;
  auto got = Replay(log->get(), &rep, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(dev->ListSegments()->size(), before - 1);
  BatchBuilder b;
  BatchPayload(1, 1, &b);
  auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->first_lsn, got.size() + 1);
}

TEST(LogTest, MissingSegmentIsLostMedia) {
  // A missing middle segment, and a missing first one (nothing removes
  // segments until log cleaning exists).
  for (uint32_t missing : {3u, 1u}) {
    SCOPED_TRACE("segment " + std::to_string(missing));
    std::vector<uint64_t> locs;
    LogOptions o = SmallSegments();
    auto dev = WriteBatches(300, &locs, o);
    ASSERT_NE(dev->Durable(4), nullptr);
    ASSERT_TRUE(dev->RemoveSegment(missing).ok());
    dev->PowerCut();
    auto log = Log::Open(dev, o);
    RecoveryReport rep;
    Status s;
    Replay(log->get(), &rep, &s);
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
    std::string want = missing == 1 ? "mem-segment-1 is missing" : "segment 3 is missing";
    EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
  }
}

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n++;
  return n;
}

// On an ordinary file system every segment is written with pwritev and read
// through a read-only mapping (a store into it would crash the test). A
// sealed segment holds no descriptor, and is opened again when a truncation
// writes into it; everything survives a reopen.
TEST_F(PmemLogTest, FileSegmentsHoldNoDescriptorOnceSealedAndTruncateIntoOne) {
  LogOptions o;
  o.segment_bytes = 256 << 10;
  const size_t fds_before = OpenFds();
  std::vector<uint64_t> first_lsns;
  {
    auto dev = OpenPmemDevice(dir_);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    auto log = Log::Open(std::shared_ptr<LogDevice>(std::move(*dev)), o);
    RecoveryReport rep;
    ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
    if ((*log)->Granularity() != "PAGE") GTEST_SKIP() << "DAX mount: segments are mapped";
    BatchBuilder b;
    for (int i = 0; i < 300; i++) {
      BatchPayload(i, 40, &b);
      auto r = (*log)->AppendBatch_wt(b.payload(), b.count());
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      first_lsns.push_back(r->first_lsn);
      // What was just appended reads back through the mapping.
      EXPECT_EQ((*log)->ReadRecord(r->base_location).key, "b" + std::to_string(i) + "-r0");
    }
    ASSERT_GE((*log)->segment_count(), 8u);
    // The tail and at most a spare being prepared hold a descriptor.
    EXPECT_LE(OpenFds(), fds_before + 3);
    // Back into the first segment, sealed long ago.
    ASSERT_TRUE((*log)->TruncateTo_wt(first_lsns[5]).ok());
    BatchPayload(500, 40, &b);
    ASSERT_TRUE((*log)->AppendBatch_wt(b.payload(), b.count()).ok());
  }
  Status s;
  auto got = Reopen(o, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(got.size(), 240u);
  EXPECT_EQ(got[199].key, "b4-r39");
  EXPECT_EQ(got[200].key, "b500-r0");
  EXPECT_LE(OpenFds(), fds_before + 3);
}

TEST_F(PmemLogTest, RealFilesRoundTripAndFlippedBytesAreFound) {
  LogOptions o;
  o.segment_bytes = 1 << 20;
  size_t records = 0;
  {
    auto dev = OpenPmemDevice(dir_);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    auto log = Log::Open(std::shared_ptr<LogDevice>(std::move(*dev)), o);
    RecoveryReport rep;
    ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
    EXPECT_TRUE((*log)->Granularity() == "PAGE" || (*log)->Granularity() == "CACHE_LINE" ||
                (*log)->Granularity() == "BYTE");
    BatchBuilder b;
    for (int i = 0; i < 300; i++) {
      BatchPayload(i, 40, &b);
      ASSERT_TRUE((*log)->AppendBatch_wt(b.payload(), b.count()).ok());
      records += b.count();
    }
    EXPECT_GE((*log)->segment_count(), 2u);
  }
  {
    Status s;
    auto got = Reopen(o, &s);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(got.size(), records);
  }
  // Flip bytes in the middle of the first segment.
  std::string seg = dir_ + "/segment-00000001.log";
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 + 100);
    f.write("\xde\xad\xbe\xef", 4);
  }
  auto dev = OpenPmemDevice(dir_);
  auto log = Log::Open(std::shared_ptr<LogDevice>(std::move(*dev)), o);
  RecoveryReport rep;
  Status s;
  Replay(log->get(), &rep, &s);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find(seg + " offset "), std::string::npos) << s.message();
}

// Segments are mapped by one thread while others start and end: no mapping
// may land on a thread's stack. (libpmem2 maps a file by first trying
// MAP_SYNC over a reserved range; on a file system without DAX, Linux 6.18
// leaves the range unmapped when that fails, and a thread stack allocated
// in that moment was then mapped over and unmapped with the file: the
// thread crashed, or glibc's list of stacks did.)
TEST_F(PmemLogTest, MappingSegmentsLeavesOtherThreadsMappingsAlone) {
  auto dev = OpenPmemDevice(dir_);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  // Another thread maps memory as glibc maps a new thread's stack, and
  // checks that every page stays mapped (mincore fails on a hole).
  constexpr size_t kStack = (8 << 20) + 4096;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> mapped{0};
  std::atomic<uint64_t> holes{0};
  std::thread other([&] {
    std::vector<unsigned char> pages(kStack / 4096);
    std::deque<void*> live;
    while (!stop.load()) {
      void* p = mmap(nullptr, kStack, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (p != MAP_FAILED) live.push_back(p);
      for (void* q : live) {
        if (mincore(q, kStack, pages.data()) != 0) holes.fetch_add(1);
      }
      if (live.size() > 4) {
        munmap(live.front(), kStack);
        live.pop_front();
      }
      mapped.fetch_add(1);
    }
    for (void* q : live) munmap(q, kStack);
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  int maps = 0;
  while (std::chrono::steady_clock::now() < until && holes.load() == 0) {
    auto seg = (*dev)->CreateReplacement(1, 2 << 20);
    ASSERT_TRUE(seg.ok()) << seg.status().ToString();
    seg->reset();
    ASSERT_TRUE((*dev)->DiscardReplacement(1).ok());
    maps++;
  }
  stop.store(true);
  other.join();
  EXPECT_EQ(holes.load(), 0u) << "another thread's mapping lost pages while " << maps
                              << " segments were mapped";
  EXPECT_GT(maps, 10);
  EXPECT_GT(mapped.load(), 10u);
}

}  // namespace
}  // namespace faha::nvm

namespace faha::nvm {
namespace {

// A MemoryDevice whose next segment creations fail with a given status.
class RefusingDevice final : public LogDevice {
 public:
  Status refuse;  // OK: create as usual
  StatusOr<std::unique_ptr<Segment>> CreateSegment(uint32_t id, size_t bytes) override {
    if (!refuse.ok()) return refuse;
    return mem_.CreateSegment(id, bytes);
  }
  StatusOr<std::unique_ptr<Segment>> OpenSegment(uint32_t id) override {
    return mem_.OpenSegment(id);
  }
  StatusOr<std::vector<uint32_t>> ListSegments() override { return mem_.ListSegments(); }
  Status RemoveSegment(uint32_t id) override { return mem_.RemoveSegment(id); }
  StatusOr<std::unique_ptr<Segment>> CreateReplacement(uint32_t id, size_t bytes) override {
    return mem_.CreateReplacement(id, bytes);
  }
  Status CommitReplacement(uint32_t id) override { return mem_.CommitReplacement(id); }
  Status DiscardReplacement(uint32_t id) override { return mem_.DiscardReplacement(id); }
  std::string SegmentName(uint32_t id) const override { return mem_.SegmentName(id); }
  std::string Granularity() const override { return mem_.Granularity(); }

 private:
  MemoryDevice mem_;
};

// A segment the device cannot create for want of space makes the log full;
// one it cannot create for another reason says that reason, not "full", and
// does not count as short of space. Either way nothing is lost and the
// append succeeds once creation works again.
TEST(LogTest, ASegmentThatCannotBeCreatedSaysWhyAndAppendsResumeAfterwards) {
  auto dev = std::make_shared<RefusingDevice>();
  LogOptions o = SmallSegments();
  auto log = Log::Open(dev, o);
  ASSERT_TRUE(log.ok());
  RecoveryReport rep;
  ASSERT_TRUE((*log)->Recover(nullptr, &rep).ok());
  BatchBuilder b;
  const std::string payload = BatchPayload(1, 20, &b);  // a few KiB
  int appended = 0;
  // Fill the first segment, then make the switch fail each way.
  while ((*log)->HasRoom_wt(payload.size())) {
    ASSERT_TRUE((*log)->AppendBatch_wt(payload, b.count()).ok());
    appended++;
  }
  dev->refuse = Status::Busy("reserve 65536 bytes for mem-segment-2: No space left on device");
  Status full = (*log)->MakeRoom_wt(payload.size());
  EXPECT_EQ(full.code(), Status::Code::kBusy) << full.ToString();
  EXPECT_EQ(full.message().rfind("log full: cannot create segment 2", 0), 0u) << full.ToString();
  EXPECT_TRUE((*log)->short_of_space());

  dev->refuse = Status::IOError("create mem-segment-2: Too many open files");
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // past the retry pause
  Status other = (*log)->MakeRoom_wt(payload.size());
  EXPECT_EQ(other.code(), Status::Code::kBusy) << other.ToString();
  EXPECT_EQ(other.message().find("log full"), std::string::npos) << other.ToString();
  EXPECT_NE(other.message().find("Too many open files"), std::string::npos) << other.ToString();
  EXPECT_FALSE((*log)->short_of_space());

  dev->refuse = Status::OK();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ASSERT_TRUE((*log)->MakeRoom_wt(payload.size()).ok());
  ASSERT_TRUE((*log)->AppendBatch_wt(payload, b.count()).ok());
  appended++;
  EXPECT_FALSE((*log)->short_of_space());
  log->reset();
  auto again = Log::Open(dev, o);
  ASSERT_TRUE(again.ok());
  Status s;
  EXPECT_EQ(Replay(again->get(), &rep, &s).size(), static_cast<size_t>(appended) * 20);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

}  // namespace
}  // namespace faha::nvm
