// History checker for failover drills: given every operation the drill's clients
// issued (with invocation and response times and what each returned) and the
// epoch table of the cluster, decides whether what the clients saw is explainable
// by one linearizable store that lost nothing it acknowledged. Checks, per key:
// linearizability of registers written with unique values (the zone test of
// Gibbons & Korach), durability of acknowledged writes at the final read, INCR
// counters against the number of acknowledged and unknown-outcome INCRs, and
// epoch fencing of acknowledgements. Pure and self-contained: CheckHistory reads
// only its arguments, so it may be called from any thread, concurrently.
#ifndef FAHA_BENCH_HISTORY_CHECK_H_
#define FAHA_BENCH_HISTORY_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

namespace faha::drill {

// One client operation. Times are microseconds on one clock shared by all
// clients (a monotonic clock of the drill's process).
struct Op {
  enum class Kind : uint8_t { kWrite, kRead, kIncr };
  // kFailed: definitely not applied. kUnknown: may or may not have been applied
  // (timeout, lost connection, error after submission).
  enum class Outcome : uint8_t { kOk, kFailed, kUnknown };

  Kind kind = Kind::kWrite;
  std::string key;
  // kWrite: the value written, unique per key across the whole history.
  // kRead: the value returned when found; for a counter, its decimal value.
  std::string value;
  bool found = false;       // kRead: the key existed.
  int64_t invoke_us = 0;    // When the client sent it (first attempt).
  int64_t response_us = 0;  // When the final reply arrived; ignored unless kOk.
  Outcome outcome = Outcome::kOk;
  // kWrite/kIncr acknowledged: epoch and LSN of the commit as reported by the
  // server (0 = not reported).
  uint64_t epoch = 0, lsn = 0;
  int64_t incr_result = 0;  // kIncr kOk: the value INCR returned.
  int client = 0;           // Which client connection (for messages).
};

// Epoch `epoch` began at LSN `start_lsn`.
struct EpochStart {
  uint64_t epoch;
  uint64_t start_lsn;
};

struct CheckResult {
  bool ok() const { return problems.empty(); }

  // Human-readable, each naming the key, values, times and clients involved.
  // At most a few hundred are spelled out; the last line then counts the rest.
  std::vector<std::string> problems;
  uint64_t keys = 0, writes_acked = 0, writes_unknown = 0, reads = 0, incrs_acked = 0;
};

// Checks a history. `ops` may come in any order. A key that sees kIncr ops is
// a counter (INCR by 1 from absent); other keys are registers. The caller is
// expected to end the history with one kRead of every key and counter, invoked
// and answered at the end time after all clients stopped; the latest kOk kRead
// of a key (by invocation time) is taken as its final read.
//
// Preconditions: written values are unique per key (a repeat is reported as a
// problem, not checked); kOk ops have invoke_us <= response_us (likewise).
CheckResult CheckHistory(const std::vector<Op>& ops, const std::vector<EpochStart>& epochs);

}  // namespace faha::drill

#endif  // FAHA_BENCH_HISTORY_CHECK_H_
