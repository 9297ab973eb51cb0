// Key and operation generators of YCSB's core workload (Cooper et al., SoCC
// 2010), as faha-bench uses them. Each generator owns no RNG: callers pass
// their thread's engine, so a generator object is used by one thread, except
// AcknowledgedCounter, which all threads share (thread-safe).
#ifndef FAHA_BENCH_YCSB_GENERATORS_H_
#define FAHA_BENCH_YCSB_GENERATORS_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace faha::ycsb {

using Rng = std::mt19937_64;

// FNV-1a over the 8 bytes of v, as YCSB's Utils.fnvhash64 (non-negative).
uint64_t FnvHash64(uint64_t v);

// Uniform in [0, 1).
inline double NextDouble(Rng& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Zipfian over ranks [0, n): P(i) = (1 / (i+1)^theta) / zeta(n, theta); rank
// 0 is the most popular. Sampled exactly by rejection-inversion (Hoermann &
// Derflinger, "Rejection-inversion to generate variates from monotone
// discrete distributions", 1996) in O(1) per draw and O(1) to change n
// (Next(rng, n)). YCSB's generator uses Gray et al.'s approximation instead,
// which gives rank 2 about 17% too much at theta 0.99; the shape (which ranks
// are hot, the tail) is the same.
class Zipfian {
 public:
  static constexpr double kDefaultTheta = 0.99;
  explicit Zipfian(uint64_t n, double theta = kDefaultTheta);
  uint64_t Next(Rng& rng) { return Next(rng, n_); }
  uint64_t Next(Rng& rng, uint64_t n);
  uint64_t n() const { return n_; }
  // The exact probability of rank i under the current n (O(n); for tests).
  double Probability(uint64_t i) const;

 private:
  void SetN(uint64_t n);
  double H(double x) const;          // x^-theta
  double HIntegral(double x) const;  // integral of H: (x^(1-theta) - 1) / (1 - theta)
  double HIntegralInverse(double x) const;
  double theta_;
  uint64_t n_ = 0;
  double h_integral_x1_ = 0, h_integral_n_ = 0, s_ = 0;
};

// Zipfian popularity with the popular items spread over the key space
// (YCSB's ScrambledZipfianGenerator): rank r maps to FnvHash64(r) mod n.
class ScrambledZipfian {
 public:
  explicit ScrambledZipfian(uint64_t n, double theta = Zipfian::kDefaultTheta)
      : zipf_(n, theta), n_(n) {}
  uint64_t Next(Rng& rng) { return FnvHash64(zipf_.Next(rng)) % n_; }

 private:
  Zipfian zipf_;
  uint64_t n_;
};

// Recent items most popular (YCSB's SkewedLatestGenerator): with `count`
// items inserted so far, returns count - 1 - Zipfian(count).
class SkewedLatest {
 public:
  explicit SkewedLatest(uint64_t initial, double theta = Zipfian::kDefaultTheta)
      : zipf_(initial == 0 ? 1 : initial, theta) {}
  uint64_t Next(Rng& rng, uint64_t count) { return count - 1 - zipf_.Next(rng, count); }

 private:
  Zipfian zipf_;
};

// Insert key numbers handed out in order; Limit() is one past the highest
// key number below which every insert was acknowledged, so readers never
// pick a key whose insert is still in flight (YCSB's
// AcknowledgedCounterGenerator). Thread-safe.
class AcknowledgedCounter {
 public:
  explicit AcknowledgedCounter(uint64_t start) : next_(start), limit_(start) {}
  uint64_t Next() { return next_.fetch_add(1, std::memory_order_relaxed); }
  void Acknowledge(uint64_t keynum);
  uint64_t Limit() const { return limit_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> next_;
  std::atomic<uint64_t> limit_;
  std::mutex mu_;
  std::set<uint64_t> done_;  // acknowledged, above limit_
};

// The request key chooser of the run phase: requestdistribution uniform,
// zipfian (scrambled, over the records plus the inserts expected) or latest,
// always below `limit` (the acknowledged inserts).
class KeyChooser {
 public:
  KeyChooser(const std::string& distribution, uint64_t records, uint64_t expected_keys,
             double theta)
      : dist_(distribution), zipf_(expected_keys, theta), latest_(records, theta) {}
  uint64_t Next(Rng& rng, uint64_t limit);

 private:
  std::string dist_;
  ScrambledZipfian zipf_;
  SkewedLatest latest_;
};

// Picks an index by weight (the operation mix). Weights need not sum to 1.
class Discrete {
 public:
  void Add(double weight, int value);
  int Next(Rng& rng) const;
  bool empty() const { return values_.empty(); }

 private:
  std::vector<double> weights_;
  std::vector<int> values_;
  double total_ = 0;
};

}  // namespace faha::ycsb

#endif  // FAHA_BENCH_YCSB_GENERATORS_H_
