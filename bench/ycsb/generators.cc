#include "bench/ycsb/generators.h"

#include <cmath>

namespace faha::ycsb {

uint64_t FnvHash64(uint64_t v) {
  constexpr uint64_t kOffset = 0xCBF29CE484222325ull;
  constexpr uint64_t kPrime = 1099511628211ull;
  uint64_t h = kOffset;
  for (int i = 0; i < 8; i++) {
    h ^= v & 0xff;
    h *= kPrime;
    v >>= 8;
  }
  return h & 0x7fffffffffffffffull;  // YCSB takes the absolute value of a signed long
}

namespace {

// log1p(x)/x and expm1(x)/x, continuous at 0.
double Helper1(double x) { return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1 - x / 2 + x * x / 3; }
double Helper2(double x) { return std::abs(x) > 1e-8 ? std::expm1(x) / x : 1 + x / 2 + x * x / 6; }

}  // namespace

Zipfian::Zipfian(uint64_t n, double theta) : theta_(theta) {
  h_integral_x1_ = HIntegral(1.5) - 1.0;
  s_ = 2.0 - HIntegralInverse(HIntegral(2.5) - H(2.0));
  SetN(n == 0 ? 1 : n);
}

double Zipfian::H(double x) const { return std::exp(-theta_ * std::log(x)); }

double Zipfian::HIntegral(double x) const {
  const double lx = std::log(x);
  return Helper2((1.0 - theta_) * lx) * lx;
}

double Zipfian::HIntegralInverse(double x) const {
  double t = x * (1.0 - theta_);
  if (t < -1.0) t = -1.0;  // rounding near the lower end
  return std::exp(Helper1(t) * x);
}

void Zipfian::SetN(uint64_t n) {
  n_ = n;
  h_integral_n_ = HIntegral(static_cast<double>(n) + 0.5);
}

uint64_t Zipfian::Next(Rng& rng, uint64_t n) {
  if (n != n_) SetN(n == 0 ? 1 : n);
  while (true) {
    const double u = h_integral_n_ + NextDouble(rng) * (h_integral_x1_ - h_integral_n_);
    const double x = HIntegralInverse(u);
    double k = std::floor(x + 0.5);
    if (k < 1) k = 1;
    if (k > static_cast<double>(n_)) k = static_cast<double>(n_);
    if (k - x <= s_ || u >= HIntegral(k + 0.5) - H(k)) return static_cast<uint64_t>(k) - 1;
  }
}

double Zipfian::Probability(uint64_t i) const {
  double zeta = 0;
  for (uint64_t k = 1; k <= n_; k++) zeta += 1.0 / std::pow(static_cast<double>(k), theta_);
  return 1.0 / std::pow(static_cast<double>(i + 1), theta_) / zeta;
}

void AcknowledgedCounter::Acknowledge(uint64_t keynum) {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t limit = limit_.load(std::memory_order_relaxed);
  if (keynum != limit) {
    done_.insert(keynum);
    return;
  }
  limit++;
  while (!done_.empty() && *done_.begin() == limit) {
    done_.erase(done_.begin());
    limit++;
  }
  limit_.store(limit, std::memory_order_release);
}

uint64_t KeyChooser::Next(Rng& rng, uint64_t limit) {
  if (dist_ == "latest") return latest_.Next(rng, limit);
  if (dist_ == "zipfian") {
    // Popular keys not inserted yet are drawn again (as YCSB does).
    for (int i = 0; i < 100; i++) {
      uint64_t k = zipf_.Next(rng);
      if (k < limit) return k;
    }
  }
  return rng() % limit;
}

void Discrete::Add(double weight, int value) {
  if (weight <= 0) return;
  total_ += weight;
  weights_.push_back(total_);
  values_.push_back(value);
}

int Discrete::Next(Rng& rng) const {
  const double x = NextDouble(rng) * total_;
  for (size_t i = 0; i < weights_.size(); i++) {
    if (x < weights_[i]) return values_[i];
  }
  return values_.back();
}

}  // namespace faha::ycsb
