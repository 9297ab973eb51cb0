#include "common/histogram.h"

#include <cmath>

namespace faha {

uint64_t Histogram::Percentile(double q) const {
  uint64_t total = Count();
  if (total == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; i++) {
    seen += counts_[i].load(std::memory_order_relaxed);
    if (seen >= rank) {
      uint64_t lo = BucketLow(i), hi = BucketHigh(i);
      return lo + (hi - lo) / 2;
    }
  }
  return BucketHigh(kBuckets - 1);
}

uint64_t Histogram::CountAtMost(uint64_t bound) const {
  uint64_t n = 0;
  for (int i = 0; i < kBuckets && BucketHigh(i) <= bound; i++) {
    n += counts_[i].load(std::memory_order_relaxed);
  }
  return n;
}

void Histogram::Reset() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
  count_.store(0);
  sum_.store(0);
}

}  // namespace faha
