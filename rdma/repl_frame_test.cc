// Tests of replication frames (round trip, every split point, refusals) and of
// the pieces a backup stores them with: Log::AppendReplicated_wt (byte-for-byte
// copies of the primary's batches; refuses bad or discontinuous ones, changing
// nothing) and the persisted EpochFile.
#include "rdma/repl_frame.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "nvm/epoch_file.h"
#include "nvm/log.h"
#include "nvm/memory_device.h"

namespace faha {
namespace {

using rdma::DecodeFrame;
using rdma::EncodeFrame;
using rdma::FrameDecode;
using rdma::FrameType;
using rdma::ReplFrame;

TEST(ReplFrameTest, RoundTripAtEverySplit) {
  std::string wire;
  EncodeFrame(&wire, FrameType::kBatch, 7, 1234, "batch bytes");
  EncodeFrame(&wire, FrameType::kAck, 7, 1240, "");
  size_t first_len = sizeof(rdma::ReplFrameHeader) + 11;
  for (size_t n = 0; n < first_len; n++) {
    ReplFrame f;
    size_t consumed;
    std::string err;
    ASSERT_EQ(DecodeFrame(wire.substr(0, n), 1 << 20, &f, &consumed, &err), FrameDecode::kNeedMore)
        << n;
  }
  ReplFrame f;
  size_t consumed = 0;
  std::string err;
  ASSERT_EQ(DecodeFrame(wire, 1 << 20, &f, &consumed, &err), FrameDecode::kOk) << err;
  EXPECT_EQ(f.type, FrameType::kBatch);
  EXPECT_EQ(f.epoch, 7u);
  EXPECT_EQ(f.lsn, 1234u);
  EXPECT_EQ(f.body, "batch bytes");
  ASSERT_EQ(DecodeFrame(std::string_view(wire).substr(consumed), 1 << 20, &f, &consumed, &err),
            FrameDecode::kOk);
  EXPECT_EQ(f.type, FrameType::kAck);
  EXPECT_EQ(f.lsn, 1240u);
}

// A replicated primary builds each batch behind room for its frame's headers
// and seals the frame in place: the same bytes EncodeFrame makes of the batch.
// The builder then goes on in the buffer of an earlier frame, emptied.
TEST(ReplFrameTest, ABatchBuiltInPlaceIsTheFrameEncodeFrameMakes) {
  constexpr size_t kRoom = sizeof(rdma::ReplFrameHeader) + sizeof(nvm::BatchHeader);
  nvm::BatchBuilder b(kRoom);
  EXPECT_EQ(b.Add(nvm::RecordType::kPut, "k1", "v1", 0), 0u);
  const size_t second = b.Add(nvm::RecordType::kPut, "k2", std::string(300, 'x'), 0);
  EXPECT_EQ(second, nvm::RecordSize(2, 2));  // offsets inside the payload, not the buffer
  const std::string payload(b.payload());
  EXPECT_EQ(b.bytes(), payload.size());
  const nvm::BatchHeader h = nvm::Log::FrameBatch(b.payload(), b.count(), 41, 3);
  std::string want;
  EncodeFrame(&want, FrameType::kBatch, 3, 41,
              std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), payload);

  std::string spare = "an earlier frame's bytes";
  spare.reserve(1 << 16);
  std::string frame = b.Release(std::move(spare));
  ASSERT_EQ(frame.size(), kRoom + payload.size());
  std::memcpy(frame.data() + sizeof(rdma::ReplFrameHeader), &h, sizeof(h));
  rdma::SealFrame(&frame, 0, FrameType::kBatch, 3, 41);
  EXPECT_EQ(frame, want);
  ReplFrame f;
  size_t consumed = 0;
  std::string err;
  ASSERT_EQ(DecodeFrame(frame, 1 << 20, &f, &consumed, &err), FrameDecode::kOk) << err;
  EXPECT_EQ(f.body.substr(sizeof(h)), payload);

  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.bytes(), 0u);
  b.Add(nvm::RecordType::kDelete, "k1", {}, 0);
  EXPECT_EQ(b.count(), 1u);
  EXPECT_EQ(b.bytes(), nvm::RecordSize(2, 0));  // nothing of the spare's old bytes
  b.Truncate(0, 0);
  EXPECT_TRUE(b.payload().empty());
}

TEST(ReplFrameTest, RefusesGarbageDamageAndOversizeFromTheHeader) {
  ReplFrame f;
  size_t consumed;
  std::string err;
  EXPECT_EQ(DecodeFrame("GET / HTTP/1.0\r\n\r\n", 1 << 20, &f, &consumed, &err),
            FrameDecode::kError);
  EXPECT_NE(err.find("bad magic"), std::string::npos);
  std::string wire;
  EncodeFrame(&wire, FrameType::kBatch, 1, 1, std::string(100, 'x'));
  std::string flipped = wire;
  flipped[60] ^= 1;  // a body byte
  EXPECT_EQ(DecodeFrame(flipped, 1 << 20, &f, &consumed, &err), FrameDecode::kError);
  EXPECT_EQ(err, "replication frame checksum mismatch");
  // Past the batch header a BATCH frame's body is the batch checksum's to
  // check (ReplicatedLogTest.RefusesBadOrDiscontinuousBatchesAndChangesNothing);
  // any other frame's whole body is the frame checksum's.
  flipped = wire;
  flipped[40 + rdma::kBatchFrameCheckedBytes] ^= 1;
  EXPECT_EQ(DecodeFrame(flipped, 1 << 20, &f, &consumed, &err), FrameDecode::kOk) << err;
  std::string error_frame;
  EncodeFrame(&error_frame, FrameType::kError, 1, 1, std::string(100, 'x'));
  error_frame[40 + rdma::kBatchFrameCheckedBytes] ^= 1;
  EXPECT_EQ(DecodeFrame(error_frame, 1 << 20, &f, &consumed, &err), FrameDecode::kError);
  EXPECT_EQ(err, "replication frame checksum mismatch");
  flipped = wire;
  flipped[20] ^= 1;  // the epoch
  EXPECT_EQ(DecodeFrame(flipped, 1 << 20, &f, &consumed, &err), FrameDecode::kError);
  // Over the limit: refused with only the header received.
  EXPECT_EQ(DecodeFrame(wire.substr(0, 40), 99, &f, &consumed, &err), FrameDecode::kError);
  EXPECT_NE(err.find("exceeds the limit of 99"), std::string::npos) << err;
  flipped = wire;
  flipped[6] = 9;  // type
  EXPECT_EQ(DecodeFrame(flipped, 1 << 20, &f, &consumed, &err), FrameDecode::kError);
  EXPECT_NE(err.find("unknown replication frame type"), std::string::npos);
}

nvm::LogOptions Small() {
  nvm::LogOptions o;
  o.segment_bytes = 64 << 10;
  return o;
}

TEST(ReplicatedLogTest, BackupHoldsTheSameBatchesByteForByte) {
  auto primary_dev = std::make_shared<nvm::MemoryDevice>();
  auto backup_dev = std::make_shared<nvm::MemoryDevice>();
  auto primary = nvm::Log::Open(primary_dev, Small());
  auto backup = nvm::Log::Open(backup_dev, Small());
  ASSERT_TRUE((*primary)->Recover(nullptr, nullptr).ok());
  ASSERT_TRUE((*backup)->Recover(nullptr, nullptr).ok());
  for (int b = 0; b < 100; b++) {
    nvm::BatchBuilder builder;
    for (int r = 0; r < 1 + b % 4; r++) {
      builder.Add(nvm::RecordType::kPut, "k" + std::to_string(b * 10 + r), std::string(700, 'v'),
                  0);
    }
    auto a = (*primary)->AppendBatch_wt(builder.payload(), builder.count());
    ASSERT_TRUE(a.ok());
    auto c = (*backup)->AppendReplicated_wt(a->header, builder.payload());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->base_location, a->base_location);  // same offsets, so catch-up can copy ranges
  }
  EXPECT_EQ((*backup)->next_lsn(), (*primary)->next_lsn());
  ASSERT_EQ(primary_dev->ListSegments()->size(), backup_dev->ListSegments()->size());
  auto ids = primary_dev->ListSegments();
  for (uint32_t id : *ids) {
    // Segment headers carry creation times; everything after them is identical.
    std::vector<char>& p = *primary_dev->Durable(id);
    std::vector<char>& q = *backup_dev->Durable(id);
    EXPECT_TRUE(std::equal(p.begin() + 64, p.end(), q.begin() + 64)) << "segment " << id;
  }
}

// A backup appends a burst of batches without persisting each one and makes
// the burst durable with one PersistAppended_wt. What it persisted survives a
// power cut, across segment boundaries; what it did not persist may be lost,
// and recovery still finds a clean prefix of the primary's log.
TEST(ReplicatedLogTest, BurstPersistedTogetherSurvivesAPowerCutAndTheRestIsATornTail) {
  auto primary_dev = std::make_shared<nvm::MemoryDevice>();
  auto backup_dev = std::make_shared<nvm::MemoryDevice>();
  auto primary = nvm::Log::Open(primary_dev, Small());
  ASSERT_TRUE((*primary)->Recover(nullptr, nullptr).ok());
  uint64_t persisted_end = 1;
  uint64_t appended_end = 1;
  {
    auto backup = nvm::Log::Open(backup_dev, Small());
    ASSERT_TRUE((*backup)->Recover(nullptr, nullptr).ok());
    for (int b = 0; b < 120; b++) {
      nvm::BatchBuilder builder;
      for (int r = 0; r < 1 + b % 3; r++) {
        builder.Add(nvm::RecordType::kPut, "k" + std::to_string(b * 10 + r), std::string(900, 'v'),
                    0);
      }
      auto a = (*primary)->AppendBatch_wt(builder.payload(), builder.count());
      ASSERT_TRUE(a.ok());
      auto c = (*backup)->AppendReplicated_wt(a->header, builder.payload(), /*persist=*/false);
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      appended_end = (*backup)->next_lsn();
      // Bursts of 7; the last one (from batch 112 on) is never persisted.
      if (b % 7 == 6 && b < 112) {
        ASSERT_TRUE((*backup)->PersistAppended_wt().ok());
        persisted_end = appended_end;
      }
    }
    ASSERT_GE(backup_dev->ListSegments()->size(), 3u);  // bursts crossed segments
    ASSERT_LT(persisted_end, appended_end);
  }
  backup_dev->PowerCut();
  auto backup = nvm::Log::Open(backup_dev, Small());
  uint64_t recovered_records = 0;
  Status s = (*backup)->Recover(
      [&](const nvm::RecordView&, uint64_t, uint64_t) { recovered_records++; }, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const uint64_t end = (*backup)->next_lsn();
  EXPECT_GE(end, persisted_end) << "a persisted burst was lost";
  EXPECT_LE(end, appended_end);
  EXPECT_EQ(recovered_records, end - 1);
  // What survived is a prefix of the primary's log: the same batches.
  auto checksums = [&](nvm::Log* log) {
    std::vector<uint64_t> out;
    auto r = log->ForEachBatch(
        1, end, UINT64_MAX,
        [&](const nvm::BatchHeader& h, std::string_view) { out.push_back(h.checksum); });
    EXPECT_TRUE(r.ok());
    return out;
  };
  auto mine = checksums(backup->get());
  EXPECT_FALSE(mine.empty());
  EXPECT_EQ(mine, checksums(primary->get()));
}

TEST(ReplicatedLogTest, RefusesBadOrDiscontinuousBatchesAndChangesNothing) {
  auto dev = std::make_shared<nvm::MemoryDevice>();
  auto log = nvm::Log::Open(dev, Small());
  ASSERT_TRUE((*log)->Recover(nullptr, nullptr).ok());
  nvm::BatchBuilder b;
  b.Add(nvm::RecordType::kPut, "k", "v", 0);
  std::string payload(b.payload());
  nvm::BatchHeader gap = nvm::Log::FrameBatch(payload, 1, 5, 1);  // log expects LSN 1
  EXPECT_EQ((*log)->AppendReplicated_wt(gap, payload).status().code(),
            Status::Code::kInvalidArgument);
  nvm::BatchHeader good = nvm::Log::FrameBatch(payload, 1, 1, 1);
  std::string damaged = payload;
  damaged[45] ^= 1;
  EXPECT_EQ((*log)->AppendReplicated_wt(good, damaged).status().code(), Status::Code::kCorruption);
  nvm::BatchHeader lying = nvm::Log::FrameBatch(payload, 3, 1, 1);  // 3 records claimed
  EXPECT_EQ((*log)->AppendReplicated_wt(lying, payload).status().code(), Status::Code::kCorruption);
  EXPECT_EQ((*log)->next_lsn(), 1u);
  EXPECT_EQ((*log)->bytes_written(), 0u);
  ASSERT_TRUE((*log)->AppendReplicated_wt(good, payload).ok());  // still usable
  EXPECT_EQ((*log)->next_lsn(), 2u);
}

TEST(EpochFileTest, PersistsAndRefusesToGoBack) {
  char tmpl[] = "/tmp/faha-epoch-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  {
    auto e = nvm::EpochFile::Open(dir);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->epoch(), 0u);
    ASSERT_TRUE(e->Advance(3).ok());
    EXPECT_EQ(e->Advance(2).code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(e->epoch(), 3u);
  }
  auto e = nvm::EpochFile::Open(dir);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->epoch(), 3u);
  {
    std::fstream f(dir + "/EPOCH", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.write("\x09", 1);
  }
  auto damaged = nvm::EpochFile::Open(dir);
  EXPECT_EQ(damaged.status().code(), Status::Code::kCorruption);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace faha
