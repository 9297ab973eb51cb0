// Tests of CheckHistory: hand-built histories for each kind of violation and
// their passing twins, random histories of a simulated linearizable store (clean
// and with one stale read planted), and the time to check a million ops.
#include "bench/history_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace faha::drill {
namespace {

using Kind = Op::Kind;
using Outcome = Op::Outcome;

constexpr int64_t kEnd = 1'000'000;  // When the final reads happen.

Op Write(int client, const std::string& key, const std::string& value, int64_t invoke,
         int64_t response, Outcome outcome = Outcome::kOk) {
  Op op;
  op.kind = Kind::kWrite;
  op.key = key;
  op.value = value;
  op.invoke_us = invoke;
  op.response_us = response;
  op.outcome = outcome;
  op.client = client;
  return op;
}

Op Read(int client, const std::string& key, std::optional<std::string> value, int64_t invoke,
        int64_t response) {
  Op op;
  op.kind = Kind::kRead;
  op.key = key;
  op.found = value.has_value();
  op.value = value.value_or("");
  op.invoke_us = invoke;
  op.response_us = response;
  op.client = client;
  return op;
}

Op FinalRead(const std::string& key, std::optional<std::string> value) {
  return Read(99, key, std::move(value), kEnd, kEnd);
}

Op Incr(int client, const std::string& key, int64_t invoke, int64_t response,
        Outcome outcome = Outcome::kOk, int64_t result = 0) {
  Op op;
  op.kind = Kind::kIncr;
  op.key = key;
  op.invoke_us = invoke;
  op.response_us = response;
  op.outcome = outcome;
  op.incr_result = result;
  op.client = client;
  return op;
}

std::string Joined(const CheckResult& r) {
  std::string s;
  for (const std::string& p : r.problems) s += p + "\n";
  return s;
}

bool Mentions(const CheckResult& r, const std::string& text) {
  return Joined(r).find(text) != std::string::npos;
}

TEST(HistoryCheckTest, CleanSequentialHistoryPasses) {
  const std::vector<Op> ops = {
      Read(1, "k", std::nullopt, 0, 5), Write(1, "k", "a", 10, 20), Read(2, "k", "a", 30, 40),
      Write(2, "k", "b", 50, 60),       Read(1, "k", "b", 70, 80),  FinalRead("k", "b"),
  };
  const CheckResult r = CheckHistory(ops, {});
  EXPECT_TRUE(r.ok()) << Joined(r);
  EXPECT_EQ(r.keys, 1u);
  EXPECT_EQ(r.writes_acked, 2u);
  EXPECT_EQ(r.reads, 4u);
}

TEST(HistoryCheckTest, ConcurrentWritesWithReadsOfEitherOrderPass) {
  // The writes overlap, so either may take effect last.
  const std::vector<Op> a_then_b = {
      Write(1, "k", "a", 0, 100), Write(2, "k", "b", 10, 110), Read(3, "k", "a", 20, 30),
      Read(4, "k", "b", 40, 50),  Read(3, "k", "b", 120, 130), FinalRead("k", "b"),
  };
  EXPECT_TRUE(CheckHistory(a_then_b, {}).ok()) << Joined(CheckHistory(a_then_b, {}));
  const std::vector<Op> b_then_a = {
      Write(1, "k", "a", 0, 100), Write(2, "k", "b", 10, 110), Read(3, "k", "b", 20, 30),
      Read(4, "k", "a", 40, 50),  Read(3, "k", "a", 120, 130), FinalRead("k", "a"),
  };
  EXPECT_TRUE(CheckHistory(b_then_a, {}).ok()) << Joined(CheckHistory(b_then_a, {}));
  // Reads concurrent with both writes may each see either value, in any order.
  const std::vector<Op> racing = {
      Write(1, "k", "a", 0, 100), Write(2, "k", "b", 0, 100), Read(3, "k", std::nullopt, 0, 100),
      Read(4, "k", "b", 0, 100),  Read(5, "k", "a", 0, 100),  FinalRead("k", "a"),
  };
  EXPECT_TRUE(CheckHistory(racing, {}).ok()) << Joined(CheckHistory(racing, {}));
}

TEST(HistoryCheckTest, StaleReadFails) {
  const std::vector<Op> ops = {
      Write(1, "k", "a", 0, 10),
      Write(2, "k", "b", 20, 30),
      Read(3, "k", "a", 40, 50),  // Began after b was acknowledged.
      FinalRead("k", "b"),
  };
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "not linearizable")) << Joined(r);
  EXPECT_TRUE(Mentions(r, "client 3 GET -> \"a\" [40us, 50us]")) << Joined(r);
}

TEST(HistoryCheckTest, ReadOfAbsentAfterAcknowledgedWriteFails) {
  const std::vector<Op> stale = {Write(1, "k", "a", 0, 10), Read(2, "k", std::nullopt, 20, 30),
                                 FinalRead("k", "a")};
  const CheckResult r = CheckHistory(stale, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "absent must be current")) << Joined(r);
  const std::vector<Op> concurrent = {Write(1, "k", "a", 0, 10), Read(2, "k", std::nullopt, 5, 30),
                                      FinalRead("k", "a")};
  EXPECT_TRUE(CheckHistory(concurrent, {}).ok()) << Joined(CheckHistory(concurrent, {}));
}

TEST(HistoryCheckTest, ReadOfValueNeverWrittenFails) {
  const std::vector<Op> ops = {Write(1, "k", "a", 0, 10), Read(2, "k", "zzz", 20, 30),
                               FinalRead("k", "a")};
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "never written")) << Joined(r);
}

TEST(HistoryCheckTest, ReadBeforeItsWriteWasInvokedFails) {
  const std::vector<Op> ops = {Read(2, "k", "a", 0, 10), Write(1, "k", "a", 20, 30),
                               FinalRead("k", "a")};
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "before its write")) << Joined(r);
}

TEST(HistoryCheckTest, LostAcknowledgedWriteAtFinalReadFails) {
  const std::vector<Op> ops = {Write(1, "k", "a", 0, 10), Write(2, "k", "b", 20, 30),
                               FinalRead("k", "a")};
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r,
                       "acknowledged write of key \"k\" value \"b\" (client 2, acked at 30us) "
                       "lost: final value is \"a\""))
      << Joined(r);

  const std::vector<Op> gone = {Write(1, "k", "a", 0, 10), FinalRead("k", std::nullopt)};
  const CheckResult r2 = CheckHistory(gone, {});
  ASSERT_FALSE(r2.ok());
  EXPECT_TRUE(Mentions(r2, "value \"a\" (client 1, acked at 10us) lost: final value is absent"))
      << Joined(r2);
}

TEST(HistoryCheckTest, UnknownOutcomeWriteNeverReadPasses) {
  const std::vector<Op> ops = {
      Write(1, "k", "a", 0, 10),
      Write(2, "k", "u", 20, 0, Outcome::kUnknown),
      Read(3, "k", "a", 30, 40),
      FinalRead("k", "a"),
  };
  const CheckResult r = CheckHistory(ops, {});
  EXPECT_TRUE(r.ok()) << Joined(r);
  EXPECT_EQ(r.writes_unknown, 1u);
}

TEST(HistoryCheckTest, UnknownOutcomeWriteReadLaterPasses) {
  // The write of "u" timed out at 25 but took effect later, after a read of "a".
  const std::vector<Op> ops = {
      Write(1, "k", "a", 0, 10), Write(2, "k", "u", 20, 25, Outcome::kUnknown),
      Read(3, "k", "a", 30, 40), Read(3, "k", "u", 500, 510),
      FinalRead("k", "u"),
  };
  EXPECT_TRUE(CheckHistory(ops, {}).ok()) << Joined(CheckHistory(ops, {}));
}

TEST(HistoryCheckTest, FailedWriteThatIsReadFails) {
  const std::vector<Op> ops = {
      Write(1, "k", "a", 0, 10),
      Write(2, "k", "f", 20, 25, Outcome::kFailed),
      Read(3, "k", "f", 30, 40),
      FinalRead("k", "a"),
  };
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "a write reported as failed took effect")) << Joined(r);
  // Unread, the failed write is simply ignored.
  const std::vector<Op> unread = {
      Write(1, "k", "a", 0, 10), Write(2, "k", "f", 20, 25, Outcome::kFailed), FinalRead("k", "a")};
  EXPECT_TRUE(CheckHistory(unread, {}).ok());
}

TEST(HistoryCheckTest, BackwardZoneInsideForwardZoneFails) {
  // a: written over [0, 10] and read over [30, 50]: current throughout [10, 30].
  // b: its write [5, 25] and its read [20, 28] all overlap [20, 25], inside
  // (10, 30). No op of b precedes a's write and no single op of b precedes
  // a's read, yet b must fall between them.
  std::vector<Op> ops = {
      Write(1, "k", "a", 0, 10),
      Write(2, "k", "b", 5, 25),
      Read(3, "k", "b", 20, 28),
      Read(4, "k", "a", 30, 50),
  };
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.problems.size(), 1u) << Joined(r);
  EXPECT_TRUE(Mentions(r, "value \"a\" must be current throughout [10us, 30us]")) << Joined(r);
  EXPECT_TRUE(Mentions(r, "value \"b\" was written and read entirely within [20us, 25us]"))
      << Joined(r);

  // Start a's read at 24 instead: a's zone [10, 24] no longer contains [20, 25],
  // and wA, rA@24, wB@25, rB@25 is a linearization.
  ops[3].invoke_us = 24;
  EXPECT_TRUE(CheckHistory(ops, {}).ok()) << Joined(CheckHistory(ops, {}));
}

TEST(HistoryCheckTest, OverlappingForwardZonesFail) {
  // Both writes complete by 10; a reader of each starts at 20, so each value
  // must be current throughout [10, 20].
  const std::vector<Op> ops = {
      Write(1, "k", "a", 0, 10),
      Write(2, "k", "b", 0, 10),
      Read(3, "k", "a", 20, 30),
      Read(4, "k", "b", 20, 30),
  };
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "the two intervals overlap")) << Joined(r);
  // Zones that only touch ([10, 20] and [20, 30]) are fine.
  const std::vector<Op> touching = {
      Write(1, "k", "a", 0, 10),
      Write(2, "k", "b", 0, 20),
      Read(3, "k", "a", 20, 30),
      Read(4, "k", "b", 30, 40),
  };
  EXPECT_TRUE(CheckHistory(touching, {}).ok()) << Joined(CheckHistory(touching, {}));
}

TEST(HistoryCheckTest, DuplicateWrittenValueIsReported) {
  const std::vector<Op> ops = {Write(1, "k", "a", 0, 10), Write(2, "k", "a", 20, 30),
                               FinalRead("k", "a")};
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "written twice")) << Joined(r);
}

// Brute force: is there an order of the kOk ops and of any subset of the
// unknown-outcome writes that respects real time and register semantics? Op a
// must come before op b iff a responded (kOk) before b was invoked.
bool BruteForceLinearizable(const std::vector<Op>& ops) {
  std::vector<const Op*> live;
  for (const Op& op : ops) {
    if (op.outcome == Outcome::kOk ||
        (op.kind == Kind::kWrite && op.outcome == Outcome::kUnknown)) {
      live.push_back(&op);
    }
  }
  const size_t n = live.size();
  uint32_t required = 0;
  std::vector<uint32_t> before(n, 0);  // Ops that must precede op i.
  for (size_t i = 0; i < n; ++i) {
    if (live[i]->outcome == Outcome::kOk) required |= 1u << i;
    for (size_t j = 0; j < n; ++j) {
      if (live[j]->outcome == Outcome::kOk && live[j]->response_us < live[i]->invoke_us) {
        before[i] |= 1u << j;
      }
    }
  }
  // State: placed ops and the op whose write is current (n = absent).
  std::vector<bool> seen((size_t{1} << n) * (n + 1), false);
  auto search = [&](auto& self, uint32_t placed, size_t current) -> bool {
    if ((placed & required) == required) return true;
    const size_t state = placed * (n + 1) + current;
    if (seen[state]) return false;
    seen[state] = true;
    for (size_t i = 0; i < n; ++i) {
      if ((placed >> i) & 1 || (before[i] & ~placed) != 0) continue;
      const Op& op = *live[i];
      if (op.kind == Kind::kWrite) {
        if (self(self, placed | 1u << i, i)) return true;
      } else {
        const bool matches =
            current == n ? !op.found : op.found && op.value == live[current]->value;
        if (matches && self(self, placed | 1u << i, current)) return true;
      }
    }
    return false;
  };
  return search(search, 0, n);
}

TEST(HistoryCheckTest, AgreesWithBruteForceOnSmallRandomHistories) {
  std::mt19937_64 rng(7);
  auto below = [&rng](uint64_t n) { return static_cast<int64_t>(rng() % n); };
  int linearizable = 0, not_linearizable = 0;
  for (int trial = 0; trial < 30000; ++trial) {
    std::vector<Op> ops;
    std::vector<std::string> written;
    const int count = 2 + static_cast<int>(below(7));
    for (int i = 0; i < count; ++i) {
      const int64_t invoke = below(12);
      const int64_t response = invoke + below(6);
      if (below(2) == 0) {
        const int64_t fate = below(10);
        const Outcome outcome = fate < 7   ? Outcome::kOk
                                : fate < 9 ? Outcome::kUnknown
                                           : Outcome::kFailed;
        written.push_back("w" + std::to_string(i));
        ops.push_back(Write(i, "k", written.back(), invoke, response, outcome));
      } else {
        ops.push_back(Read(i, "k", std::nullopt, invoke, response));
      }
    }
    for (Op& op : ops) {
      if (op.kind != Kind::kRead) continue;
      const int64_t pick = below(written.size() + 1);
      op.found = pick < static_cast<int64_t>(written.size());
      if (op.found) op.value = written[pick];
    }
    const bool expected = BruteForceLinearizable(ops);
    const CheckResult r = CheckHistory(ops, {});
    ASSERT_EQ(r.ok(), expected) << "trial " << trial << ": " << Joined(r);
    ++(expected ? linearizable : not_linearizable);
  }
  std::printf("%d linearizable, %d not\n", linearizable, not_linearizable);
  EXPECT_GT(linearizable, 3000);
  EXPECT_GT(not_linearizable, 3000);
}

std::vector<Op> CounterHistory(int64_t final_value) {
  std::vector<Op> ops;
  for (int i = 0; i < 5; ++i)
    ops.push_back(Incr(1, "c", 100 * i, 100 * i + 10, Outcome::kOk, i + 1));
  ops.push_back(Incr(2, "c", 600, 610, Outcome::kUnknown));
  ops.push_back(Incr(2, "c", 700, 710, Outcome::kUnknown));
  ops.push_back(Incr(2, "c", 800, 810, Outcome::kFailed));
  ops.push_back(FinalRead("c", std::to_string(final_value)));
  return ops;
}

TEST(HistoryCheckTest, CounterWithinRangePasses) {
  for (int64_t final_value : {5, 6, 7}) {
    const CheckResult r = CheckHistory(CounterHistory(final_value), {});
    EXPECT_TRUE(r.ok()) << final_value << ": " << Joined(r);
    EXPECT_EQ(r.incrs_acked, 5u);
  }
}

TEST(HistoryCheckTest, CounterAppliedTwiceFails) {
  const CheckResult r = CheckHistory(CounterHistory(5 + 2 + 1), {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "duplicated write")) << Joined(r);
}

TEST(HistoryCheckTest, CounterLostIncrFails) {
  const CheckResult r = CheckHistory(CounterHistory(4), {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "acknowledged INCR lost: final value 4")) << Joined(r);
  EXPECT_TRUE(Mentions(r, "INCR -> 5 [400us, 410us] returned more than the final value 4"))
      << Joined(r);
}

TEST(HistoryCheckTest, DuplicateIncrResultFails) {
  const std::vector<Op> ops = {
      Incr(1, "c", 0, 10, Outcome::kOk, 1),
      Incr(2, "c", 5, 15, Outcome::kOk, 1),
      Incr(2, "c", 20, 30, Outcome::kUnknown),
      FinalRead("c", "2"),
  };
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "two acknowledged INCRs returned 1")) << Joined(r);
}

TEST(HistoryCheckTest, CounterGoingBackwardsFails) {
  const std::vector<Op> ops = {
      Incr(1, "c", 0, 10, Outcome::kOk, 2),
      Incr(2, "c", 20, 30, Outcome::kOk, 1),
      FinalRead("c", "2"),
  };
  const CheckResult r = CheckHistory(ops, {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r, "went backwards")) << Joined(r);
  const std::vector<Op> overlapping = {
      Incr(1, "c", 0, 10, Outcome::kOk, 2),
      Incr(2, "c", 5, 30, Outcome::kOk, 1),
      FinalRead("c", "2"),
  };
  EXPECT_TRUE(CheckHistory(overlapping, {}).ok()) << Joined(CheckHistory(overlapping, {}));
}

Op Acked(Op op, uint64_t epoch, uint64_t lsn) {
  op.epoch = epoch;
  op.lsn = lsn;
  return op;
}

TEST(HistoryCheckTest, EpochFencing) {
  const std::vector<EpochStart> epochs = {{2, 100}, {1, 1}, {3, 200}};
  const std::vector<Op> compliant = {
      Acked(Write(1, "k", "a", 0, 10), 1, 99),
      Acked(Write(1, "k", "b", 20, 30), 2, 100),
      Acked(Incr(2, "c", 20, 30, Outcome::kOk, 1), 3, 250),
      FinalRead("k", "b"),
      FinalRead("c", "1"),
  };
  EXPECT_TRUE(CheckHistory(compliant, epochs).ok()) << Joined(CheckHistory(compliant, epochs));

  // The old primary of epoch 1 acknowledged LSN 150, after epoch 2 began at 100.
  const std::vector<Op> deposed = {
      Acked(Write(1, "k", "a", 0, 10), 1, 99),
      Acked(Write(1, "k", "b", 20, 30), 1, 150),
      FinalRead("k", "b"),
  };
  const CheckResult r = CheckHistory(deposed, epochs);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r,
                       "acknowledged in epoch 1 at LSN 150 after epoch 2 began at LSN 100: "
                       "a deposed primary acknowledged a write"))
      << Joined(r);

  // Epoch 2's first LSN belongs to epoch 2 alone.
  const std::vector<Op> boundary = {Acked(Write(1, "k", "a", 0, 10), 1, 100), FinalRead("k", "a")};
  EXPECT_FALSE(CheckHistory(boundary, epochs).ok());

  const std::vector<Op> shared_lsn = {
      Acked(Write(1, "k", "a", 0, 10), 2, 120),
      Acked(Write(2, "j", "x", 0, 10), 2, 120),
      FinalRead("k", "a"),
      FinalRead("j", "x"),
  };
  const CheckResult r2 = CheckHistory(shared_lsn, epochs);
  ASSERT_FALSE(r2.ok());
  EXPECT_TRUE(Mentions(r2, "two writes acknowledged at one LSN (epoch 2, LSN 120)")) << Joined(r2);
}

// A simulated linearizable store: each client issues one op at a time; every
// applied op takes effect at a random point inside its interval, and reads and
// INCRs return what the store holds at that point. Writes are unique per key;
// a few writes and INCRs fail (never applied) or have unknown outcome (applied
// or not, at random). Applied writes and INCRs get consecutive LSNs, with a new
// epoch every `lsns_per_epoch`.
struct Simulation {
  std::vector<Op> ops;
  std::vector<EpochStart> epochs;
};

Simulation SimulateLinearizable(size_t count, int keys, int counters, int clients, uint64_t seed,
                                uint64_t lsns_per_epoch = 1000) {
  std::mt19937_64 rng(seed);
  auto below = [&rng](uint64_t n) { return static_cast<int64_t>(rng() % n); };
  Simulation sim;
  std::vector<Op>& ops = sim.ops;
  ops.reserve(count + keys + counters);
  std::vector<int64_t> point, applied_at;
  std::vector<bool> applied;
  point.reserve(count);
  applied.reserve(count);
  std::vector<int64_t> free_at(clients, 0);
  for (size_t n = 0; n < count; ++n) {
    const int client =
        static_cast<int>(std::min_element(free_at.begin(), free_at.end()) - free_at.begin());
    Op op;
    op.client = client;
    op.invoke_us = free_at[client] + below(20);
    op.response_us = op.invoke_us + 1 + below(100);
    free_at[client] = op.response_us + 1;
    const int64_t dice = below(100);
    if (counters > 0 && dice < 10) {
      op.kind = Kind::kIncr;
      op.key = "ctr" + std::to_string(below(counters));
    } else if (dice < 55) {
      op.kind = Kind::kWrite;
      op.key = "key" + std::to_string(below(keys));
      op.value = "v" + std::to_string(n);
    } else {
      op.kind = Kind::kRead;
      op.key = "key" + std::to_string(below(keys));
    }
    const int64_t fate = below(100);
    bool takes_effect = true;
    if (fate < 2) {
      op.outcome = Outcome::kFailed;
      takes_effect = op.kind == Kind::kRead;
    } else if (fate < 5) {
      op.outcome = Outcome::kUnknown;
      takes_effect = op.kind == Kind::kRead || below(2) == 0;
    }
    point.push_back(op.invoke_us + below(op.response_us - op.invoke_us + 1));
    applied.push_back(takes_effect);
    ops.push_back(std::move(op));
  }

  std::vector<size_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return std::tie(point[a], a) < std::tie(point[b], b); });
  std::map<std::string, std::string> value;
  std::map<std::string, int64_t> counter;
  uint64_t lsn = 0;
  for (size_t i : order) {
    if (!applied[i]) continue;
    Op& op = ops[i];
    if (op.kind == Kind::kRead) {
      auto it = value.find(op.key);
      op.found = it != value.end();
      if (op.found) op.value = it->second;
      continue;
    }
    if (op.kind == Kind::kWrite) {
      value[op.key] = op.value;
    } else {
      op.incr_result = ++counter[op.key];
    }
    ++lsn;
    if (op.outcome == Outcome::kOk) {
      op.epoch = 1 + (lsn - 1) / lsns_per_epoch;
      op.lsn = lsn;
    }
  }
  for (uint64_t e = 1; e <= 1 + lsn / lsns_per_epoch; ++e) {
    sim.epochs.push_back({e, (e - 1) * lsns_per_epoch + 1});
  }
  const int64_t end = *std::max_element(free_at.begin(), free_at.end()) + 1;
  for (int k = 0; k < keys; ++k) {
    const std::string key = "key" + std::to_string(k);
    auto it = value.find(key);
    ops.push_back(
        Read(-1, key, it == value.end() ? std::nullopt : std::optional(it->second), end, end));
  }
  for (int c = 0; c < counters; ++c) {
    const std::string key = "ctr" + std::to_string(c);
    auto it = counter.find(key);
    ops.push_back(Read(
        -1, key, it == counter.end() ? std::nullopt : std::optional(std::to_string(it->second)),
        end, end));
  }
  return sim;
}

// Makes one read return a value overwritten before the read began: finds a read
// r and acknowledged writes a, b of its key with a before b before r in real
// time, and makes r return a. Returns r's index, or -1 if none was found.
int PlantStaleRead(std::vector<Op>* ops, size_t from) {
  for (size_t i = from; i < ops->size(); ++i) {
    const Op& r = (*ops)[i];
    if (r.kind != Kind::kRead || r.outcome != Outcome::kOk || r.client < 0) continue;
    const Op* b = nullptr;
    for (const Op& w : *ops) {
      if (w.kind == Kind::kWrite && w.outcome == Outcome::kOk && w.key == r.key &&
          w.response_us < r.invoke_us && (b == nullptr || w.invoke_us > b->invoke_us)) {
        b = &w;
      }
    }
    if (b == nullptr) continue;
    for (const Op& a : *ops) {
      if (a.kind == Kind::kWrite && a.outcome == Outcome::kOk && a.key == r.key &&
          a.response_us < b->invoke_us) {
        Op& planted = (*ops)[i];
        planted.found = true;
        planted.value = a.value;
        return static_cast<int>(i);
      }
    }
  }
  return -1;
}

TEST(HistoryCheckTest, RandomLinearizableHistoriesPassAndAPlantedStaleReadFails) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    Simulation sim = SimulateLinearizable(10000, 8, 2, 6, seed, 500);
    const CheckResult clean = CheckHistory(sim.ops, sim.epochs);
    EXPECT_TRUE(clean.ok()) << "seed " << seed << ": " << Joined(clean);
    EXPECT_GT(clean.writes_unknown, 0u);
    EXPECT_GT(clean.incrs_acked, 0u);

    const int planted = PlantStaleRead(&sim.ops, 5000 + 500 * seed);
    ASSERT_GE(planted, 0) << "seed " << seed;
    const CheckResult stale = CheckHistory(sim.ops, sim.epochs);
    ASSERT_FALSE(stale.ok()) << "seed " << seed;
    EXPECT_TRUE(Mentions(stale, "key \"" + sim.ops[planted].key + "\": not linearizable"))
        << "seed " << seed << ": " << Joined(stale);
  }
}

TEST(HistoryCheckTest, MillionOpHistoryChecksQuickly) {
  const Simulation sim = SimulateLinearizable(1'000'000, 1000, 20, 32, 42);
  const auto start = std::chrono::steady_clock::now();
  const CheckResult r = CheckHistory(sim.ops, sim.epochs);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("checked %zu ops (%llu keys) in %.3f s\n", sim.ops.size(),
              static_cast<unsigned long long>(r.keys), seconds);
  EXPECT_TRUE(r.ok()) << Joined(r);
  EXPECT_EQ(r.keys, 1020u);
  EXPECT_LT(seconds, 30.0);
}

}  // namespace
}  // namespace faha::drill
