// CheckHistory: groups the history by key, runs the register (zone and
// durability) or counter checks on each key, then the epoch-fencing checks over
// all acknowledgements. Cost is O(n log n) in the number of ops. No state
// outlives a call, so calls are independent and thread-safe.
#include "bench/history_check.h"

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace faha::drill {
namespace {

using Kind = Op::Kind;
using Outcome = Op::Outcome;

constexpr int64_t kMinusInf = std::numeric_limits<int64_t>::min();
constexpr int64_t kPlusInf = std::numeric_limits<int64_t>::max();
// Stand-in op index for the initial "absent" value, written at -infinity.
constexpr int64_t kInitial = -1;
// Problems spelled out per call; a broken failover can trip thousands.
constexpr size_t kMaxProblems = 300;

class Problems {
 public:
  explicit Problems(std::vector<std::string>* out) : out_(out) {}

  void Add(std::string problem) {
    if (out_->size() < kMaxProblems) {
      out_->push_back(std::move(problem));
    } else {
      ++not_shown_;
    }
  }
  void Finish() {
    if (not_shown_ > 0) {
      out_->push_back("... and " + std::to_string(not_shown_) + " more problems not shown");
    }
  }

 private:
  std::vector<std::string>* out_;
  uint64_t not_shown_ = 0;
};

// When an op may last have taken effect: an unknown outcome leaves it open.
int64_t Response(const Op& op) { return op.outcome == Outcome::kOk ? op.response_us : kPlusInf; }

std::string Time(int64_t us) {
  if (us == kMinusInf) return "the start";
  if (us == kPlusInf) return "never";
  return std::to_string(us) + "us";
}

std::string Quoted(std::string_view value) {
  constexpr size_t kShown = 48;
  std::string s = "\"";
  s.append(value.substr(0, kShown));
  if (value.size() > kShown) s += "...";
  s += '"';
  return s;
}

std::string Describe(const Op& op) {
  std::string s = "client " + std::to_string(op.client) + " ";
  switch (op.kind) {
    case Kind::kWrite:
      s += "SET " + Quoted(op.value);
      break;
    case Kind::kRead:
      s +=
          op.outcome != Outcome::kOk ? "GET" : "GET -> " + (op.found ? Quoted(op.value) : "absent");
      break;
    case Kind::kIncr:
      s += "INCR";
      if (op.outcome == Outcome::kOk) s += " -> " + std::to_string(op.incr_result);
      break;
  }
  s += " [" + Time(op.invoke_us) + ", ";
  switch (op.outcome) {
    case Outcome::kOk:
      s += Time(op.response_us);
      break;
    case Outcome::kFailed:
      s += "failed";
      break;
    case Outcome::kUnknown:
      s += "outcome unknown";
      break;
  }
  return s + "]";
}

// --- Registers ---------------------------------------------------------------
//
// Why the zone test decides linearizability of a register whose written values
// are unique (Gibbons & Korach, "Testing shared memories", SIAM J. Comput.
// 26(4), 1997; the zone form is that of Golab, Li & Shah, "Analyzing
// consistency properties for fun and profit", PODC 2011). Op a precedes op b
// iff a.response < b.invoke; a linearization gives each op a point in its
// closed interval and orders ops by point (ties either way). Since values are
// unique, a linearization is a sequence of blocks, one per cluster: its write,
// then exactly the reads of its value. With f = the earliest response and s =
// the latest invocation in a cluster C, C's block has a point <= f and a point
// >= s.
// Necessary: if f < s (forward zone) C's block spans [f, s]. Two forward zones
// whose open intervals meet cannot be ordered either way. A cluster whose
// members all overlap [s', f'] (backward zone) with f < s' and f' < s can lie
// neither wholly before C's block (it has a point >= s' > f) nor wholly after
// it (a point <= f' < s).
// Sufficient: if neither happens and no read responds before its write is
// invoked, put every op of a backward cluster at one point t in [s', f'] that
// lies in no open forward zone (one exists: the connected [s', f'], lying in
// no single zone, cannot be covered by disjoint open ones), write first; put a
// forward cluster's write at max(w.invoke, f) and each of its reads at
// max(r.invoke, f, w.invoke), all inside [f, s] and inside their own
// intervals. The blocks' spans now meet at most at endpoints, so ordering
// blocks by (first point, last point) gives a register-legal sequence with
// nondecreasing points, which respects real time.
// A write of unknown outcome may take effect at any time after its invocation
// (response +infinity); if nobody read its value it can be left out, since a
// block of one write constrains no other block. history_check_test compares
// this test with a brute-force search on many small random histories.

struct Cluster {
  int64_t write = kInitial;  // Op index of the write.
  int64_t f = kPlusInf;      // Earliest response among members ...
  int64_t f_op = kInitial;   // ... and the op that gave it.
  int64_t s = kMinusInf;     // Latest invocation among members ...
  int64_t s_op = kInitial;   // ... and the op that gave it.
  uint64_t reads = 0;
};

struct Zone {
  int64_t lo, hi;
  uint32_t cluster;
};

class RegisterCheck {
 public:
  RegisterCheck(std::string_view key, const std::vector<Op>& ops, Problems* problems)
      : key_(key), ops_(ops), problems_(problems) {}

  void Run(const std::vector<uint32_t>& members) {
    BuildClusters(members);
    CheckZones();
    CheckFinalRead(members);
  }

 private:
  std::string Where() const { return "key " + Quoted(key_) + ": "; }

  std::string ValueName(const Cluster& c) const {
    return c.write == kInitial ? "absent" : "value " + Quoted(ops_[c.write].value);
  }

  std::string ForwardZone(const Cluster& c) const {
    std::string s =
        ValueName(c) + " must be current throughout [" + Time(c.f) + ", " + Time(c.s) + "] (";
    s += c.f_op == kInitial ? "the initial state" : Describe(ops_[c.f_op]) + " completed";
    return s + "; " + Describe(ops_[c.s_op]) + " started)";
  }

  std::string BackwardZone(const Cluster& c) const {
    std::string s = ValueName(c) + " was written and read entirely within [" + Time(c.s) + ", " +
                    Time(c.f) + "] (";
    s += c.write == kInitial ? "the initial state" : Describe(ops_[c.write]);
    return s + ", " + std::to_string(c.reads) + " reads)";
  }

  void AddMember(Cluster* c, uint32_t i) {
    const Op& op = ops_[i];
    if (Response(op) < c->f) {
      c->f = Response(op);
      c->f_op = i;
    }
    if (op.invoke_us > c->s) {
      c->s = op.invoke_us;
      c->s_op = i;
    }
  }

  void BuildClusters(const std::vector<uint32_t>& members) {
    Cluster initial;
    initial.f = kMinusInf;
    clusters_.assign(1, initial);
    std::unordered_map<std::string_view, uint32_t> failed;  // value -> op index
    for (uint32_t i : members) {
      const Op& op = ops_[i];
      if (op.kind != Kind::kWrite) continue;
      if (op.outcome == Outcome::kFailed) {
        failed.emplace(op.value, i);
        continue;
      }
      auto [it, inserted] = cluster_of_.emplace(op.value, static_cast<uint32_t>(clusters_.size()));
      if (!inserted) {
        problems_->Add(Where() + "value " + Quoted(op.value) + " written twice, by " +
                       Describe(ops_[clusters_[it->second].write]) + " and " + Describe(op) +
                       ": values must be unique per key; the second write is not checked");
        continue;
      }
      Cluster c;
      c.write = i;
      AddMember(&c, i);
      clusters_.push_back(c);
    }
    for (const auto& [value, i] : failed) {
      if (auto it = cluster_of_.find(value); it != cluster_of_.end()) {
        problems_->Add(Where() + "value " + Quoted(value) + " written twice, by " +
                       Describe(ops_[clusters_[it->second].write]) + " and " + Describe(ops_[i]) +
                       ": values must be unique per key; the failed write is not checked");
      }
    }
    for (uint32_t i : members) {
      const Op& op = ops_[i];
      if (op.kind != Kind::kRead || op.outcome != Outcome::kOk) continue;
      uint32_t c = 0;
      if (op.found) {
        auto it = cluster_of_.find(op.value);
        if (it == cluster_of_.end()) {
          auto f = failed.find(op.value);
          if (f != failed.end()) {
            problems_->Add(Where() +
                           "a write reported as failed took effect: " + Describe(ops_[f->second]) +
                           ", yet " + Describe(op) + " returned its value");
          } else {
            problems_->Add(Where() + Describe(op) + " returned a value never written");
          }
          continue;
        }
        c = it->second;
        const Op& write = ops_[clusters_[c].write];
        if (op.response_us < write.invoke_us) {
          problems_->Add(Where() + Describe(op) + " returned a value before its write " +
                         Describe(write) + " was invoked");
          continue;
        }
      }
      AddMember(&clusters_[c], i);
      ++clusters_[c].reads;
    }
  }

  void CheckZones() {
    std::vector<Zone> forward, backward;
    for (uint32_t id = 0; id < clusters_.size(); ++id) {
      const Cluster& c = clusters_[id];
      if (c.write != kInitial && ops_[c.write].outcome == Outcome::kUnknown && c.reads == 0) {
        continue;
      }
      if (c.f < c.s) {
        forward.push_back({c.f, c.s, id});
      } else {
        backward.push_back({c.s, c.f, id});
      }
    }
    std::sort(forward.begin(), forward.end(), [](const Zone& a, const Zone& b) {
      return std::tie(a.lo, a.hi) < std::tie(b.lo, b.hi);
    });

    // Sorted by start, a forward zone overlaps an earlier one iff it starts before the
    // furthest end so far; prefix_end[j] is that furthest end over zones 0..j.
    std::vector<size_t> prefix_end(forward.size());
    size_t widest = 0;
    for (size_t j = 0; j < forward.size(); ++j) {
      if (j > 0 && forward[j].lo < forward[widest].hi) {
        problems_->Add(
            Where() + "not linearizable: " + ForwardZone(clusters_[forward[widest].cluster]) +
            ", and " + ForwardZone(clusters_[forward[j].cluster]) +
            "; the two intervals overlap, so no order of the two writes explains the reads");
      }
      if (j == 0 || forward[j].hi > forward[widest].hi) widest = j;
      prefix_end[j] = widest;
    }

    for (const Zone& b : backward) {
      // Forward zones starting strictly before b: the first `n` in sorted order.
      const size_t n = std::partition_point(forward.begin(), forward.end(),
                                            [&](const Zone& z) { return z.lo < b.lo; }) -
                       forward.begin();
      if (n == 0) continue;
      const Zone& outer = forward[prefix_end[n - 1]];
      if (b.hi < outer.hi) {
        problems_->Add(Where() + "not linearizable: " + ForwardZone(clusters_[outer.cluster]) +
                       ", but " + BackwardZone(clusters_[b.cluster]) + ", inside that interval");
      }
    }
  }

  // Durability in plain words: the final read must not return a value older
  // than an acknowledged write that began after that value's write was
  // acknowledged and was itself acknowledged before the final read.
  void CheckFinalRead(const std::vector<uint32_t>& members) {
    int64_t last = kInitial;
    for (uint32_t i : members) {
      const Op& op = ops_[i];
      if (op.kind == Kind::kRead && op.outcome == Outcome::kOk &&
          (last == kInitial || op.invoke_us >= ops_[last].invoke_us)) {
        last = i;
      }
    }
    if (last == kInitial) return;
    const Op& final_read = ops_[last];
    int64_t writer = kInitial;
    int64_t written_by = kMinusInf;
    if (final_read.found) {
      auto it = cluster_of_.find(final_read.value);
      if (it == cluster_of_.end()) return;  // Reported as a read of a value never written.
      writer = clusters_[it->second].write;
      written_by = Response(ops_[writer]);
    }
    int64_t lost = kInitial;
    uint64_t lost_count = 0;
    for (uint32_t i : members) {
      const Op& op = ops_[i];
      if (op.kind != Kind::kWrite || op.outcome != Outcome::kOk || i == writer) continue;
      if (op.invoke_us > written_by && op.response_us < final_read.invoke_us) {
        ++lost_count;
        if (lost == kInitial || op.response_us > ops_[lost].response_us) lost = i;
      }
    }
    if (lost == kInitial) return;
    const Op& w = ops_[lost];
    std::string s = "acknowledged write of key " + Quoted(key_) + " value " + Quoted(w.value) +
                    " (client " + std::to_string(w.client) + ", acked at " + Time(w.response_us) +
                    ") lost: final value is ";
    s += writer == kInitial ? "absent"
                            : Quoted(final_read.value) + " (" + Describe(ops_[writer]) + ")";
    s += ", read by " + Describe(final_read);
    if (lost_count > 1) {
      s += "; " + std::to_string(lost_count) +
           " acknowledged writes begun after the final value's write was acknowledged are missing";
    }
    problems_->Add(std::move(s));
  }

  std::string_view key_;
  const std::vector<Op>& ops_;
  Problems* problems_;
  std::vector<Cluster> clusters_;                              // [0]: the initial absent value.
  std::unordered_map<std::string_view, uint32_t> cluster_of_;  // Written value -> cluster.
};

// --- Counters ----------------------------------------------------------------

void CheckCounter(std::string_view key, const std::vector<Op>& ops,
                  const std::vector<uint32_t>& members, Problems* problems) {
  const std::string where = "counter " + Quoted(key) + ": ";
  uint64_t acked = 0, unknown = 0, writes = 0;
  int64_t last = kInitial;
  std::vector<uint32_t> results;  // kOk INCRs.
  for (uint32_t i : members) {
    const Op& op = ops[i];
    switch (op.kind) {
      case Kind::kIncr:
        if (op.outcome == Outcome::kOk) {
          ++acked;
          results.push_back(i);
        } else if (op.outcome == Outcome::kUnknown) {
          ++unknown;
        }
        break;
      case Kind::kRead:
        if (op.outcome == Outcome::kOk &&
            (last == kInitial || op.invoke_us >= ops[last].invoke_us)) {
          last = i;
        }
        break;
      case Kind::kWrite:
        ++writes;
        break;
    }
  }
  if (writes > 0) {
    problems->Add(where + "also written by " + std::to_string(writes) +
                  " SETs; a key must be a counter or a register, SETs are not checked");
  }

  std::sort(results.begin(), results.end(), [&](uint32_t a, uint32_t b) {
    return std::tie(ops[a].incr_result, ops[a].invoke_us) <
           std::tie(ops[b].incr_result, ops[b].invoke_us);
  });
  for (size_t j = 1; j < results.size(); ++j) {
    const Op& a = ops[results[j - 1]];
    const Op& b = ops[results[j]];
    if (a.incr_result == b.incr_result) {
      problems->Add(where + "two acknowledged INCRs returned " + std::to_string(a.incr_result) +
                    ": " + Describe(a) + " and " + Describe(b) +
                    "; one was applied twice or one was lost");
    }
  }

  // Results must grow in real-time order: walking down from the largest
  // result, an INCR is late if one with a larger result completed before it began.
  int64_t earliest = kInitial;  // Earliest-responding INCR among strictly larger results.
  int64_t late = kInitial, late_before = kInitial;
  uint64_t late_count = 0;
  for (size_t hi = results.size(); hi > 0;) {
    size_t lo = hi - 1;
    while (lo > 0 && ops[results[lo - 1]].incr_result == ops[results[hi - 1]].incr_result) --lo;
    for (size_t j = lo; j < hi && earliest != kInitial; ++j) {
      if (ops[earliest].response_us < ops[results[j]].invoke_us) {
        if (late_count++ == 0) {
          late = results[j];
          late_before = earliest;
        }
      }
    }
    for (size_t j = lo; j < hi; ++j) {
      if (earliest == kInitial || ops[results[j]].response_us < ops[earliest].response_us) {
        earliest = results[j];
      }
    }
    hi = lo;
  }
  if (late_count > 0) {
    problems->Add(where + "went backwards: " + Describe(ops[late]) + " began after " +
                  Describe(ops[late_before]) + " completed but returned less (" +
                  std::to_string(late_count) + " such INCRs); an acknowledged INCR was lost");
  }

  if (last == kInitial) return;
  const Op& final_read = ops[last];
  int64_t final_value = 0;
  if (final_read.found) {
    const char* end = final_read.value.data() + final_read.value.size();
    auto [ptr, ec] = std::from_chars(final_read.value.data(), end, final_value);
    if (ec != std::errc() || ptr != end) {
      problems->Add(where + "final read " + Describe(final_read) + " is not a decimal count");
      return;
    }
  }
  const std::string counts = std::to_string(acked) + " acknowledged and " +
                             std::to_string(unknown) + " unknown-outcome INCRs";
  if (final_value < static_cast<int64_t>(acked)) {
    problems->Add(where + "acknowledged INCR lost: final value " + std::to_string(final_value) +
                  " (" + Describe(final_read) + ") is below the " + counts);
  } else if (final_value > static_cast<int64_t>(acked + unknown)) {
    problems->Add(where + "duplicated write: final value " + std::to_string(final_value) + " (" +
                  Describe(final_read) + ") is above the " + counts +
                  ": a retried INCR was applied twice");
  }
  uint64_t above = 0;
  for (uint32_t i : results) above += ops[i].incr_result > final_value;
  if (above > 0) {
    problems->Add(where + "acknowledged INCR lost: " + Describe(ops[results.back()]) +
                  " returned more than the final value " + std::to_string(final_value) + " (" +
                  std::to_string(above) + " INCRs did)");
  }
}

// --- Epoch fencing -----------------------------------------------------------

void CheckEpochs(const std::vector<Op>& ops, const std::vector<EpochStart>& epochs,
                 Problems* problems) {
  std::vector<EpochStart> table = epochs;
  std::sort(table.begin(), table.end(),
            [](const EpochStart& a, const EpochStart& b) { return a.epoch < b.epoch; });
  std::vector<uint32_t> acked;
  for (uint32_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (op.kind != Kind::kRead && op.outcome == Outcome::kOk && op.epoch > 0 && op.lsn > 0) {
      acked.push_back(i);
    }
  }
  std::sort(acked.begin(), acked.end(), [&](uint32_t a, uint32_t b) {
    return std::tie(ops[a].epoch, ops[a].lsn, a) < std::tie(ops[b].epoch, ops[b].lsn, b);
  });

  // One report per deposed epoch: its first late acknowledgement and a count.
  for (size_t j = 0; j < acked.size();) {
    const uint64_t epoch = ops[acked[j]].epoch;
    auto next = std::upper_bound(table.begin(), table.end(), epoch,
                                 [](uint64_t e, const EpochStart& s) { return e < s.epoch; });
    size_t end = j;
    int64_t first = kInitial;
    uint64_t count = 0;
    for (; end < acked.size() && ops[acked[end]].epoch == epoch; ++end) {
      if (next != table.end() && ops[acked[end]].lsn >= next->start_lsn && count++ == 0) {
        first = acked[end];
      }
    }
    if (count > 0) {
      const Op& op = ops[first];
      problems->Add("key " + Quoted(op.key) + ": " + Describe(op) + " acknowledged in epoch " +
                    std::to_string(epoch) + " at LSN " + std::to_string(op.lsn) + " after epoch " +
                    std::to_string(next->epoch) + " began at LSN " +
                    std::to_string(next->start_lsn) + ": a deposed primary acknowledged a write (" +
                    std::to_string(count) + " acknowledgements in epoch " + std::to_string(epoch) +
                    " did)");
    }
    j = end;
  }

  for (size_t j = 1; j < acked.size(); ++j) {
    const Op& a = ops[acked[j - 1]];
    const Op& b = ops[acked[j]];
    if (a.epoch == b.epoch && a.lsn == b.lsn) {
      problems->Add("two writes acknowledged at one LSN (epoch " + std::to_string(a.epoch) +
                    ", LSN " + std::to_string(a.lsn) + "): key " + Quoted(a.key) + " " +
                    Describe(a) + " and key " + Quoted(b.key) + " " + Describe(b));
    }
  }
}

}  // namespace

CheckResult CheckHistory(const std::vector<Op>& ops, const std::vector<EpochStart>& epochs) {
  CheckResult result;
  Problems problems(&result.problems);

  std::unordered_map<std::string_view, uint32_t> group_of;
  std::vector<std::vector<uint32_t>> groups;
  std::vector<bool> is_counter;
  for (uint32_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    auto [it, inserted] = group_of.emplace(op.key, static_cast<uint32_t>(groups.size()));
    if (inserted) {
      groups.emplace_back();
      is_counter.push_back(false);
    }
    groups[it->second].push_back(i);
    if (op.kind == Kind::kIncr) is_counter[it->second] = true;

    const bool ok = op.outcome == Outcome::kOk;
    switch (op.kind) {
      case Kind::kWrite:
        result.writes_acked += ok;
        result.writes_unknown += op.outcome == Outcome::kUnknown;
        break;
      case Kind::kRead:
        result.reads += ok;
        break;
      case Kind::kIncr:
        result.incrs_acked += ok;
        break;
    }
    if (ok && op.response_us < op.invoke_us) {
      problems.Add("key " + Quoted(op.key) + ": malformed op " + Describe(op) +
                   " responded before it was invoked");
    }
  }
  result.keys = groups.size();

  for (uint32_t g = 0; g < groups.size(); ++g) {
    const std::string_view key = ops[groups[g].front()].key;
    if (is_counter[g]) {
      CheckCounter(key, ops, groups[g], &problems);
    } else {
      RegisterCheck(key, ops, &problems).Run(groups[g]);
    }
  }
  CheckEpochs(ops, epochs, &problems);
  problems.Finish();
  return result;
}

}  // namespace faha::drill
