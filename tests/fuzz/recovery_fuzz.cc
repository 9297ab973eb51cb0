// libFuzzer target: log recovery after fuzzer-chosen histories. The input
// drives a real Log on the in-memory power-cut device: it appends batches of
// fuzzer-sized records (64 KiB segments, so segment switches happen), may cut
// the power in the middle of the last persist keeping a fuzzer-chosen set of
// cache lines, and may then flip fuzzer-chosen bytes of the durable image.
// Invariants:
//  - recovery never crashes, hangs or reads out of bounds (ASan/UBSan);
//  - without flipped bytes it always succeeds and returns exactly the
//    acknowledged records, plus the interrupted batch only if it is whole;
//  - with flipped bytes it either succeeds with LSNs counting up from 1 and a
//    prefix of what was written, or reports Corruption;
//  - a log that recovered accepts an append and recovers again to the same
//    records plus that one.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "nvm/log.h"
#include "nvm/memory_device.h"

using namespace faha::nvm;

namespace {

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  uint8_t Byte() { return pos_ < n_ ? d_[pos_++] : 0; }
  uint32_t U24() { return Byte() | (Byte() << 8) | (static_cast<uint32_t>(Byte()) << 16); }
  bool empty() const { return pos_ >= n_; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
};

constexpr uint64_t kSeg = 64 << 10;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  faha::SetLogLevel(faha::LogLevel::kError);  // recovery warns on every torn tail
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t flags = in.Byte();
  const bool crash = flags & 1;
  const bool drop_corrupt = flags & 2;
  const int batches = in.Byte() % 48;
  auto dev = std::make_shared<MemoryDevice>();
  LogOptions opts;
  opts.segment_bytes = kSeg;
  std::vector<std::string> acked, inflight;
  {
    auto log = Log::Open(dev, opts);
    if (!log.ok() || !(*log)->Recover(nullptr, nullptr).ok()) abort();
    for (int b = 0; b < batches; b++) {
      BatchBuilder builder;
      int records = in.Byte() % 6 + 1;
      for (int r = 0; r < records; r++) {
        std::string key = "b" + std::to_string(b) + "r" + std::to_string(r);
        size_t vlen = (in.Byte() * 61) % 9000;
        builder.Add(RecordType::kPut, key, std::string(vlen, static_cast<char>('a' + b % 26)), 0);
      }
      if (crash && b == batches - 1) {
        uint8_t shape = in.Byte();
        dev->CrashAtPersist(0, [shape](size_t lines) {
          std::vector<bool> keep(lines);
          for (size_t i = 0; i < lines; i++) keep[i] = (shape >> (i % 8)) & 1;
          return keep;
        });
      }
      auto r = (*log)->AppendBatch_wt(builder.payload(), builder.count());
      std::vector<std::string>& dst = r.ok() ? acked : inflight;
      size_t off = 0;
      while (off < builder.bytes()) {
        RecordView v;
        size_t n;
        DecodeRecord(builder.payload().data() + off, builder.bytes() - off, &v, &n);
        dst.emplace_back(v.key);
        off += n;
      }
      if (!r.ok()) break;
    }
  }
  dev->PowerCut();
  int flips = 0;
  while (!in.empty() && flips < 8) {
    auto ids = dev->ListSegments();
    uint32_t id = (*ids)[in.Byte() % ids->size()];
    std::vector<char>* img = dev->Durable(id);
    size_t at = in.U24() % img->size();
    uint8_t mask = in.Byte();
    if (mask == 0) continue;
    (*img)[at] = static_cast<char>((*img)[at] ^ mask);
    flips++;
  }
  dev->PowerCut();

  opts.drop_corrupt = drop_corrupt;
  std::vector<std::string> got;
  uint64_t next_lsn = 1;
  {
    auto log = Log::Open(dev, opts);
    RecoveryReport rep;
    faha::Status s = (*log)->Recover(
        [&](const RecordView& r, uint64_t, uint64_t lsn) {
          if (lsn != next_lsn++) abort();
          got.emplace_back(r.key);
        },
        &rep);
    if (!s.ok()) {
      if (flips == 0 || s.code() != faha::Status::Code::kCorruption) abort();
      return 0;
    }
    // What came back is a prefix of what was written, in order.
    std::vector<std::string> all = acked;
    all.insert(all.end(), inflight.begin(), inflight.end());
    if (got.size() > all.size()) abort();
    for (size_t i = 0; i < got.size(); i++) {
      if (got[i] != all[i]) abort();
    }
    if (flips == 0 && got.size() != acked.size() && got.size() != all.size()) abort();
    BatchBuilder b;
    b.Add(RecordType::kPut, "after", "x", 0);
    if (!(*log)->AppendBatch_wt(b.payload(), b.count()).ok()) abort();
  }
  dev->PowerCut();
  auto log = Log::Open(dev, LogOptions{kSeg, false, 0});
  size_t again = 0;
  RecoveryReport rep;
  faha::Status s = (*log)->Recover([&](const RecordView&, uint64_t, uint64_t) { again++; }, &rep);
  if (!s.ok() || again != got.size() + 1) abort();
  return 0;
}
