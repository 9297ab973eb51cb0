// faha-bench's generators, operation mix, error accounting and percentiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <random>

#include "bench/ycsb/generators.h"
#include "bench/ycsb/workload.h"
#include "common/histogram.h"

namespace faha::ycsb {
namespace {

TEST(ZipfianTest, TopRanksMatchTheTheory) {
  Zipfian z(1000);
  Rng rng(42);
  constexpr int kSamples = 1000000;
  std::vector<int> counts(1000);
  for (int i = 0; i < kSamples; i++) counts[z.Next(rng)]++;
  // The ten most popular ranks, each within 3% of its expected frequency
  // (at least 5 standard deviations at these counts), and in order.
  for (int r = 0; r < 10; r++) {
    const double expected = z.Probability(r) * kSamples;
    EXPECT_NEAR(counts[r], expected, 0.03 * expected) << "rank " << r;
    if (r > 0) {
      EXPECT_GT(counts[r - 1], counts[r]) << "rank " << r;
    }
  }
  // And a chi-square over them (10 cells, 9 degrees of freedom; 27.9 is p = 0.001).
  double chi2 = 0;
  for (int r = 0; r < 10; r++) {
    const double e = z.Probability(r) * kSamples;
    chi2 += (counts[r] - e) * (counts[r] - e) / e;
  }
  EXPECT_LT(chi2, 27.9);
}

TEST(ZipfianTest, GrowingTheItemCountGivesTheSameDrawsAsStartingThere) {
  Zipfian grown(100);
  Rng a(1), b(1);
  grown.Next(a, 500);
  Zipfian direct(500);
  direct.Next(b);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(grown.Next(a, 500), direct.Next(b));
  // And never outside [0, n).
  for (int i = 0; i < 100000; i++) ASSERT_LT(grown.Next(a, 3), 3u);
}

TEST(ZipfianTest, ScrambledSpreadsThePopularKeys) {
  ScrambledZipfian z(100000);
  Rng rng(3);
  std::map<uint64_t, int> counts;
  for (int i = 0; i < 200000; i++) counts[z.Next(rng)]++;
  std::vector<std::pair<int, uint64_t>> top;
  for (auto& [k, c] : counts) top.push_back({c, k});
  std::sort(top.rbegin(), top.rend());
  // Skewed: the hottest key takes far more than a uniform share (2 per key) ...
  EXPECT_GT(top[0].first, 1000);
  // ... but the hottest keys are not the lowest key numbers.
  int low = 0;
  for (int i = 0; i < 10; i++) low += top[i].second < 100 ? 1 : 0;
  EXPECT_LT(low, 3);
}

TEST(LatestTest, RecentInsertsAreFavoured) {
  SkewedLatest latest(1000);
  Rng rng(5);
  std::vector<int> counts(2000);
  for (int i = 0; i < 200000; i++) counts[latest.Next(rng, 1000)]++;
  EXPECT_GT(counts[999], counts[998]);
  EXPECT_GT(counts[998], counts[990]);
  EXPECT_GT(counts[999], 20 * std::max(1, counts[500]));
  for (int k = 1000; k < 2000; k++) EXPECT_EQ(counts[k], 0);
  // After more inserts the newest keys take over.
  for (int i = 0; i < 100000; i++) counts[latest.Next(rng, 2000)]++;
  EXPECT_GT(counts[1999], counts[999] / 4);
}

TEST(UniformTest, KeysAreFlatByChiSquare) {
  KeyChooser uniform("uniform", 100, 100, 0.99);
  Rng rng(9);
  constexpr int kSamples = 500000;
  std::vector<int> counts(100);
  for (int i = 0; i < kSamples; i++) {
    uint64_t k = uniform.Next(rng, 100);
    ASSERT_LT(k, 100u);
    counts[k]++;
  }
  double chi2 = 0;
  const double e = kSamples / 100.0;
  for (int c : counts) chi2 += (c - e) * (c - e) / e;
  EXPECT_LT(chi2, 148.2);  // 99 degrees of freedom, p = 0.001
}

TEST(KeyChooserTest, NeverPicksAKeyAtOrAboveTheLimit) {
  Rng rng(11);
  for (const char* d : {"uniform", "zipfian", "latest"}) {
    KeyChooser c(d, 1000, 2000, 0.99);
    for (int i = 0; i < 20000; i++) ASSERT_LT(c.Next(rng, 1000 + i % 500), 1000u + i % 500) << d;
  }
}

TEST(AcknowledgedCounterTest, LimitWaitsForTheOldestOutstandingInsert) {
  AcknowledgedCounter c(10);
  uint64_t a = c.Next(), b = c.Next(), d = c.Next();
  EXPECT_EQ(c.Limit(), 10u);
  c.Acknowledge(b);
  c.Acknowledge(d);
  EXPECT_EQ(c.Limit(), 10u);
  c.Acknowledge(a);
  EXPECT_EQ(c.Limit(), 13u);
}

// An in-memory database; Read of a missing key is NotFound.
class FakeDB : public DB {
 public:
  struct Shared {
    std::mutex mu;
    std::map<std::string, std::string> data;
    uint64_t reads = 0, writes = 0;
  };
  explicit FakeDB(Shared* s) : s_(s) {}
  Status Read(const std::string& key, std::string* value) override {
    std::lock_guard<std::mutex> l(s_->mu);
    s_->reads++;
    auto it = s_->data.find(key);
    if (it == s_->data.end()) return Status::NotFound(key);
    *value = it->second;
    return Status::OK();
  }
  Status Update(const std::string& key, std::string_view value) override {
    std::lock_guard<std::mutex> l(s_->mu);
    s_->writes++;
    s_->data[key] = std::string(value);
    return Status::OK();
  }
  Status Insert(const std::string& key, std::string_view value) override {
    return Update(key, value);
  }

 private:
  Shared* s_;
};

WorkloadConfig Config(const std::string& pairs) {
  Properties p;
  std::stringstream in(pairs);
  std::string kv;
  while (in >> kv) EXPECT_TRUE(p.SetPair(kv).ok()) << kv;
  auto w = WorkloadConfig::From(p);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return *w;
}

DBFactory Factory(FakeDB::Shared* s) {
  return [s]() -> StatusOr<std::unique_ptr<DB>> { return std::unique_ptr<DB>(new FakeDB(s)); };
}

uint64_t Ops(const Measurements& m, Op op) { return m.Stats(op).operations; }

TEST(WorkloadTest, OperationMixWithinOnePercentOverAHundredThousandOps) {
  struct Case {
    std::string props;
    std::map<Op, double> want;
  } cases[] = {
      {"readproportion=0.5 updateproportion=0.5 requestdistribution=zipfian",
       {{Op::kRead, 0.5}, {Op::kUpdate, 0.5}}},
      {"readproportion=0.95 updateproportion=0.05 requestdistribution=zipfian",
       {{Op::kRead, 0.95}, {Op::kUpdate, 0.05}}},
      {"readproportion=0.95 updateproportion=0 insertproportion=0.05 requestdistribution=latest",
       {{Op::kRead, 0.95}, {Op::kInsert, 0.05}}},
      {"readproportion=0.5 updateproportion=0 readmodifywriteproportion=0.5",
       {{Op::kRead, 0.5}, {Op::kReadModifyWrite, 0.5}}},
  };
  for (const auto& c : cases) {
    WorkloadConfig w =
        Config("recordcount=2000 operationcount=100000 fieldcount=2 fieldlength=8 " + c.props);
    FakeDB::Shared shared;
    RunOptions o;
    o.load = true;
    o.threads = 2;
    o.status_interval_s = 0;
    Measurements load;
    RunWorkload(w, o, Factory(&shared), &load);
    ASSERT_EQ(shared.data.size(), 2000u);
    o.load = false;
    Measurements m;
    RunResult r = RunWorkload(w, o, Factory(&shared), &m);
    EXPECT_EQ(r.measured_ops, 100000u) << c.props;
    EXPECT_EQ(m.Operations(), 100000u) << c.props;
    EXPECT_EQ(m.Errors(), 0u) << c.props;
    for (const auto& [op, share] : c.want) {
      EXPECT_NEAR(static_cast<double>(Ops(m, op)) / 100000.0, share, 0.01)
          << c.props << ": " << OpName(op);
    }
  }
}

TEST(WorkloadTest, ReadOfAKeyNeverInsertedIsAnError) {
  // Only the first half of the records is loaded; the run reads all of them.
  WorkloadConfig w = Config(
      "recordcount=1000 insertcount=500 operationcount=20000 "
      "readproportion=1 updateproportion=0 fieldcount=1 fieldlength=10");
  FakeDB::Shared shared;
  RunOptions o;
  o.load = true;
  o.status_interval_s = 0;
  Measurements load;
  RunWorkload(w, o, Factory(&shared), &load);
  ASSERT_EQ(shared.data.size(), 500u);
  o.load = false;
  Measurements m;
  RunWorkload(w, o, Factory(&shared), &m);
  const auto s = m.Stats(Op::kRead);
  const uint64_t not_found = s.returns[static_cast<size_t>(Return::kNotFound)];
  const uint64_t ok = s.returns[static_cast<size_t>(Return::kOk)];
  EXPECT_EQ(ok + not_found, 20000u);
  EXPECT_NEAR(static_cast<double>(not_found) / 20000.0, 0.5, 0.03);
  EXPECT_EQ(m.Errors(), not_found);
  EXPECT_NE(FormatReport(RunResult{1000, 20000, {}}, m).find("[READ], Return=NOT_FOUND, "),
            std::string::npos);
}

TEST(WorkloadTest, AValueOfTheWrongSizeIsUnexpectedState) {
  WorkloadConfig w = Config(
      "recordcount=10 operationcount=100 readproportion=1 "
      "updateproportion=0 fieldcount=1 fieldlength=10");
  FakeDB::Shared shared;
  for (uint64_t k = 0; k < 10; k++) shared.data[w.Key(k)] = "short";
  RunOptions o;
  o.status_interval_s = 0;
  Measurements m;
  RunWorkload(w, o, Factory(&shared), &m);
  EXPECT_EQ(m.Stats(Op::kRead).returns[static_cast<size_t>(Return::kUnexpectedState)], 100u);
}

TEST(WorkloadTest, BadPropertiesAreRefusedByName) {
  for (const char* bad : {"recordcount=abc", "readproportion=1.5", "requestdistribution=hotspot",
                          "zipfianconstant=1", "fieldlength=0", "insertorder=random"}) {
    Properties p;
    ASSERT_TRUE(p.SetPair(bad).ok());
    auto w = WorkloadConfig::From(p);
    ASSERT_FALSE(w.ok()) << bad;
    EXPECT_NE(w.status().message().find(std::string(bad).substr(0, std::string(bad).find('='))),
              std::string::npos)
        << w.status().message();
  }
  Properties p;
  EXPECT_FALSE(p.SetPair("novalue").ok());
}

TEST(HistogramPercentileTest, WithinTheBucketBoundOfExactPercentiles) {
  std::mt19937_64 rng(17);
  std::lognormal_distribution<double> d(5.0, 1.0);  // latencies around 150 us, long tail
  std::vector<uint64_t> sample;
  Histogram h;
  for (int i = 0; i < 200000; i++) {
    uint64_t v = static_cast<uint64_t>(d(rng));
    sample.push_back(v);
    h.Record(v);
  }
  std::sort(sample.begin(), sample.end());
  for (double q : {0.5, 0.9, 0.95, 0.99, 0.999}) {
    const double exact = static_cast<double>(sample[static_cast<size_t>(q * (sample.size() - 1))]);
    const double got = static_cast<double>(h.Percentile(q));
    // 32 sub-buckets per power of two: the midpoint is within 1/64 of any
    // value in its bucket, 1/32 allows for the rank falling at a bucket edge.
    EXPECT_LE(std::abs(got - exact), exact / 32.0 + 1.0) << "q=" << q;
  }
}

}  // namespace
}  // namespace faha::ycsb
