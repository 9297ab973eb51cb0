// Tests of Histogram: bucket edges, percentile accuracy vs. exact, counters, CountAtMost, Reset.
#include "common/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace faha {
namespace {

// Histogram holds ~15 KB of counters; keep it off the test's stack.
std::unique_ptr<Histogram> NewHistogram() { return std::make_unique<Histogram>(); }

TEST(HistogramBucketTest, SmallValuesHaveTheirOwnBucket) {
  for (uint64_t v = 0; v < Histogram::kSub; v++) {
    EXPECT_EQ(Histogram::BucketOf(v), static_cast<int>(v));
    EXPECT_EQ(Histogram::BucketLow(static_cast<int>(v)), v);
    EXPECT_EQ(Histogram::BucketHigh(static_cast<int>(v)), v);
  }
}

TEST(HistogramBucketTest, BucketsTileTheWholeRange) {
  EXPECT_EQ(Histogram::BucketLow(0), 0u);
  for (int b = 0; b < Histogram::kBuckets; b++) {
    const uint64_t lo = Histogram::BucketLow(b), hi = Histogram::BucketHigh(b);
    ASSERT_LE(lo, hi) << b;
    ASSERT_EQ(Histogram::BucketOf(lo), b) << b;
    ASSERT_EQ(Histogram::BucketOf(hi), b) << b;
    ASSERT_EQ(Histogram::BucketOf(lo + (hi - lo) / 2), b) << b;
    if (b + 1 < Histogram::kBuckets) {
      ASSERT_EQ(Histogram::BucketLow(b + 1), hi + 1) << b;
    }
    // Width is at most 1/32 of the low edge, the histogram's accuracy promise.
    if (lo >= Histogram::kSub) {
      ASSERT_LE(hi - lo + 1, lo / Histogram::kSub) << b;
    }
  }
  EXPECT_EQ(Histogram::BucketOf(UINT64_MAX), Histogram::kBuckets - 1);
  EXPECT_EQ(Histogram::BucketHigh(Histogram::kBuckets - 1), UINT64_MAX);
}

TEST(HistogramBucketTest, EveryValueInSmallBucketsMapsBack) {
  for (uint64_t v = 0; v < (1u << 16); v++) {
    const int b = Histogram::BucketOf(v);
    ASSERT_LE(Histogram::BucketLow(b), v) << v;
    ASSERT_GE(Histogram::BucketHigh(b), v) << v;
  }
  // And the other way: every value of each bucket below 2^16 maps to it.
  for (int b = 0; Histogram::BucketHigh(b) < (1u << 16); b++) {
    for (uint64_t v = Histogram::BucketLow(b); v <= Histogram::BucketHigh(b); v++) {
      ASSERT_EQ(Histogram::BucketOf(v), b) << v;
    }
  }
}

TEST(HistogramBucketTest, ValuesNearPowersOfTwoUpTo2To62) {
  for (int k = 0; k <= 62; k++) {
    const uint64_t p = 1ull << k;
    for (int64_t d = -3; d <= 3; d++) {
      if (d < 0 && p < static_cast<uint64_t>(-d)) continue;
      const uint64_t v = p + d;
      const int b = Histogram::BucketOf(v);
      ASSERT_GE(b, 0);
      ASSERT_LT(b, Histogram::kBuckets);
      ASSERT_LE(Histogram::BucketLow(b), v) << "2^" << k << "+" << d;
      ASSERT_GE(Histogram::BucketHigh(b), v) << "2^" << k << "+" << d;
    }
    if (k >= Histogram::kSubBits) {
      // 2^k starts a bucket; 2^k - 1 ends the previous one.
      EXPECT_EQ(Histogram::BucketLow(Histogram::BucketOf(p)), p) << k;
      EXPECT_EQ(Histogram::BucketHigh(Histogram::BucketOf(p - 1)), p - 1) << k;
      EXPECT_EQ(Histogram::BucketOf(p), Histogram::BucketOf(p - 1) + 1) << k;
    }
  }
}

TEST(HistogramBucketTest, RandomLargeValuesLieInTheirBucket) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 200000; i++) {
    const int shift = static_cast<int>(rng() % 64);
    const uint64_t v = rng() >> shift;
    const int b = Histogram::BucketOf(v);
    ASSERT_LE(Histogram::BucketLow(b), v) << v;
    ASSERT_GE(Histogram::BucketHigh(b), v) << v;
  }
}

uint64_t ExactPercentile(const std::vector<uint64_t>& sorted, double q) {
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(sorted.size())));
  if (rank == 0) rank = 1;
  return sorted[rank - 1];
}

void ExpectPercentilesWithin1Over32(const std::vector<uint64_t>& values) {
  auto h = NewHistogram();
  for (uint64_t v : values) h->Record(v);
  std::vector<uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double exact = static_cast<double>(ExactPercentile(sorted, q));
    const double got = static_cast<double>(h->Percentile(q));
    EXPECT_LE(std::abs(got - exact), exact / 32)
        << "q=" << q << " exact=" << exact << " got=" << got;
  }
  EXPECT_LE(std::abs(static_cast<double>(h->Percentile(0)) - static_cast<double>(sorted.front())),
            static_cast<double>(sorted.front()) / 32);
  EXPECT_LE(std::abs(static_cast<double>(h->Percentile(1)) - static_cast<double>(sorted.back())),
            static_cast<double>(sorted.back()) / 32);
}

TEST(HistogramPercentileTest, LognormalSample) {
  std::mt19937_64 rng(20240601);
  std::lognormal_distribution<double> dist(std::log(200.0), 1.5);  // latencies in us
  std::vector<uint64_t> values(100000);
  for (auto& v : values) v = static_cast<uint64_t>(dist(rng));
  ExpectPercentilesWithin1Over32(values);
}

TEST(HistogramPercentileTest, UniformSample) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> dist(0, 1000000000);
  std::vector<uint64_t> values(100000);
  for (auto& v : values) v = dist(rng);
  ExpectPercentilesWithin1Over32(values);
}

TEST(HistogramPercentileTest, KnownSmallValuesAreExact) {
  auto h = NewHistogram();
  for (uint64_t v = 1; v <= 20; v++) h->Record(v);  // one bucket per value below 32
  EXPECT_EQ(h->Percentile(0.5), 10u);
  EXPECT_EQ(h->Percentile(0.9), 18u);
  EXPECT_EQ(h->Percentile(1.0), 20u);
  EXPECT_EQ(h->Percentile(0.0), 1u);
  EXPECT_EQ(h->Percentile(-1.0), 1u);
  EXPECT_EQ(h->Percentile(2.0), 20u);
}

TEST(HistogramPercentileTest, ReportsBucketMidpoint) {
  auto h = NewHistogram();
  h->Record(1000);  // bucket [992, 1007]: 16 wide between 512 and 1023
  const int b = Histogram::BucketOf(1000);
  ASSERT_EQ(Histogram::BucketLow(b), 992u);
  ASSERT_EQ(Histogram::BucketHigh(b), 1007u);
  EXPECT_EQ(h->Percentile(0.5), 999u);
}

TEST(HistogramPercentileTest, EmptyIsZero) {
  auto h = NewHistogram();
  EXPECT_EQ(h->Percentile(0.5), 0u);
  EXPECT_EQ(h->Percentile(0.99), 0u);
}

TEST(HistogramCounterTest, CountSumMean) {
  auto h = NewHistogram();
  EXPECT_EQ(h->Count(), 0u);
  EXPECT_EQ(h->Sum(), 0u);
  EXPECT_EQ(h->Mean(), 0.0);
  for (uint64_t v : {0, 5, 10, 1000000, 7}) h->Record(v);
  EXPECT_EQ(h->Count(), 5u);
  EXPECT_EQ(h->Sum(), 1000022u);
  EXPECT_DOUBLE_EQ(h->Mean(), 1000022.0 / 5);
}

TEST(HistogramCounterTest, CountAtMostAtBucketEdges) {
  auto h = NewHistogram();
  std::vector<uint64_t> values;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; i++) values.push_back(rng() >> (rng() % 64));
  for (int b : {0, 5, 31, 32, 33, 100, 500, 1000}) {
    values.push_back(Histogram::BucketLow(b));
    values.push_back(Histogram::BucketHigh(b));
  }
  for (uint64_t v : values) h->Record(v);
  std::sort(values.begin(), values.end());
  auto exact_at_most = [&](uint64_t bound) {
    return static_cast<uint64_t>(std::upper_bound(values.begin(), values.end(), bound) -
                                 values.begin());
  };
  for (int b = 0; b < Histogram::kBuckets; b++) {
    const uint64_t hi = Histogram::BucketHigh(b);
    ASSERT_EQ(h->CountAtMost(hi), exact_at_most(hi)) << "bucket " << b;
  }
  EXPECT_EQ(h->CountAtMost(UINT64_MAX), values.size());
}

TEST(HistogramCounterTest, CountAtMostInsideABucketCountsOnlyWholeBuckets) {
  auto h = NewHistogram();
  for (uint64_t v : {31, 992, 1000, 1007, 1008, 1024}) h->Record(v);
  EXPECT_EQ(h->CountAtMost(30), 0u);
  EXPECT_EQ(h->CountAtMost(31), 1u);
  EXPECT_EQ(h->CountAtMost(991), 1u);
  EXPECT_EQ(h->CountAtMost(1000), 1u);  // [992, 1007] is not whole yet
  EXPECT_EQ(h->CountAtMost(1007), 4u);
  EXPECT_EQ(h->CountAtMost(1008), 4u);  // [1008, 1023]
  EXPECT_EQ(h->CountAtMost(1023), 5u);
  EXPECT_EQ(h->CountAtMost(1024), 5u);  // [1024, 1055]
  EXPECT_EQ(h->CountAtMost(1055), 6u);
}

TEST(HistogramCounterTest, Reset) {
  auto h = NewHistogram();
  for (uint64_t v = 0; v < 5000; v += 3) h->Record(v);
  ASSERT_GT(h->Count(), 0u);
  h->Reset();
  EXPECT_EQ(h->Count(), 0u);
  EXPECT_EQ(h->Sum(), 0u);
  EXPECT_EQ(h->Mean(), 0.0);
  EXPECT_EQ(h->Percentile(0.5), 0u);
  EXPECT_EQ(h->CountAtMost(UINT64_MAX), 0u);
  h->Record(40);
  EXPECT_EQ(h->Count(), 1u);
  EXPECT_EQ(h->Sum(), 40u);
  EXPECT_EQ(h->CountAtMost(40), 1u);
  EXPECT_EQ(h->Percentile(0.5), 40u);
}

}  // namespace
}  // namespace faha
