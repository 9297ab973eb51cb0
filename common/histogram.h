// A log-linear histogram of non-negative integers (latencies in microseconds,
// batch sizes in bytes): 32 linear sub-buckets per power of two, so any reported
// percentile is within 1/32 (about 3%) of the true value. Record() is lock-free
// and may be called from any thread; readers see a consistent-enough snapshot.
#ifndef FAHA_COMMON_HISTOGRAM_H_
#define FAHA_COMMON_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace faha {

class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = kSub + (64 - kSubBits) * kSub;

  void Record(uint64_t v) {
    counts_[BucketOf(v)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t Sum() const { return sum_.load(std::memory_order_relaxed); }
  double Mean() const {
    uint64_t c = Count();
    return c ? static_cast<double>(Sum()) / c : 0;
  }

  // Value at quantile q in [0,1]: the midpoint of the bucket holding it.
  uint64_t Percentile(double q) const;
  // Number of recorded values <= bound (exact at bucket edges, else the buckets
  // whose upper edge is <= bound). For Prometheus cumulative buckets.
  uint64_t CountAtMost(uint64_t bound) const;
  void Reset();

  static int BucketOf(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    int e = 63 - __builtin_clzll(v);  // e >= kSubBits
    int sub = static_cast<int>((v >> (e - kSubBits)) & (kSub - 1));
    return kSub + (e - kSubBits) * kSub + sub;
  }
  static uint64_t BucketLow(int i) {
    if (i < kSub) return i;
    int e = (i - kSub) / kSub + kSubBits;
    uint64_t sub = (i - kSub) % kSub;
    return (kSub + sub) << (e - kSubBits);
  }
  static uint64_t BucketHigh(int i) {  // inclusive
    if (i < kSub) return i;
    int e = (i - kSub) / kSub + kSubBits;
    uint64_t sub = (i - kSub) % kSub;
    return ((kSub + sub + 1) << (e - kSubBits)) - 1;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
};

}  // namespace faha

#endif  // FAHA_COMMON_HISTOGRAM_H_
