// Crash test: many concurrent clients write through libfaha while the server is
// kill -9'd at random moments, 20+ times; after every restart every
// acknowledged write must be there with its value, and no value that was never
// written (and no key never written) may appear.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "faha/client.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

const std::string kDeleted = std::string("\0<deleted>", 10);

struct KeyState {
  bool has_acked = false;
  std::string acked;                 // last acknowledged value (kDeleted if a delete)
  std::vector<std::string> pending;  // sent, outcome unknown
};

// One writer thread's keys; only that thread touches them while writing.
struct Shard {
  std::map<std::string, KeyState> keys;
  uint64_t acked = 0;
};

int Rounds() {
  const char* r = getenv("FAHA_CRASH_ROUNDS");
  return r ? atoi(r) : 20;
}

void Writer(const std::string& addr, int round, int t, Shard* shard, std::atomic<bool>* stop,
            std::atomic<uint64_t>* acked_total) {
  ClientOptions o;
  o.address = addr;
  o.op_timeout_ms = 3000;
  auto c = Client::Connect(o);
  if (!c.ok()) return;
  std::mt19937_64 rng(round * 1000 + t);
  uint64_t n = 0;
  while (!stop->load()) {
    // A pipelined burst on distinct keys of this thread.
    std::set<int> picked;
    while (picked.size() < 8) picked.insert(static_cast<int>(rng() % 300));
    struct Op {
      std::string key, value;
    };
    std::vector<Op> ops;
    for (int k : picked) {
      Op op{"t" + std::to_string(t) + "-k" + std::to_string(k), ""};
      if (rng() % 10 == 0) {
        op.value = kDeleted;
      } else {
        op.value = "r" + std::to_string(round) + "-t" + std::to_string(t) + "-n" +
                   std::to_string(n++) + "-" + std::string(rng() % 600, 'a' + rng() % 26);
      }
      shard->keys[op.key].pending.push_back(op.value);  // recorded before it is sent
      ops.push_back(std::move(op));
    }
    for (auto& op : ops) {
      auto done = [&, key = op.key, value = op.value](const Status& s) {
        if (!s.ok() && !s.IsNotFound()) return;  // outcome unknown: stays pending
        KeyState& ks = shard->keys[key];
        ks.has_acked = true;
        ks.acked = value;
        auto it = std::find(ks.pending.begin(), ks.pending.end(), value);
        if (it != ks.pending.end()) ks.pending.erase(it);
        shard->acked++;
        acked_total->fetch_add(1);
      };
      if (op.value == kDeleted) {
        (*c)->DeleteAsync(op.key, done);
      } else {
        (*c)->PutAsync(op.key, op.value, done);
      }
    }
    if (!(*c)->Flush().ok()) return;  // the server died
  }
}

// Checks every key of every shard against the server, then folds what was
// found into the model (a pending write that is visible after a restart is
// durable now).
void Verify(const std::string& addr, std::vector<Shard>* shards, uint64_t* checked) {
  ClientOptions o;
  o.address = addr;
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::set<std::string> model_keys;
  for (auto& shard : *shards) {
    for (auto& [key, ks] : shard.keys) {
      model_keys.insert(key);
      std::string v;
      Status s = (*c)->Get(key, &v);
      ASSERT_TRUE(s.ok() || s.IsNotFound()) << s.ToString();
      std::string seen = s.ok() ? v : kDeleted;
      bool matches_acked = ks.has_acked ? seen == ks.acked : seen == kDeleted;
      bool matches_pending =
          std::find(ks.pending.begin(), ks.pending.end(), seen) != ks.pending.end();
      ASSERT_TRUE(matches_acked || matches_pending)
          << "key " << key << ": found " << (s.ok() ? "'" + seen.substr(0, 40) + "'" : "nothing")
          << ", last acknowledged "
          << (ks.has_acked ? (ks.acked == kDeleted ? "delete" : "'" + ks.acked.substr(0, 40) + "'")
                           : "none")
          << ", " << ks.pending.size() << " writes in flight";
      if (matches_pending && !matches_acked) {
        ks.has_acked = true;
        ks.acked = seen;
      }
      ks.pending.clear();
      (*checked)++;
    }
  }
  // No key that was never written.
  uint64_t cursor = 0;
  do {
    auto r = (*c)->Command({"SCAN", std::to_string(cursor), "COUNT", "1000"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->type, Reply::Type::kArray);
    cursor = std::stoull(r->elements[0].str);
    for (const auto& k : r->elements[1].elements) {
      ASSERT_TRUE(model_keys.count(k.str)) << "key never written appeared: " << k.str;
    }
  } while (cursor != 0);
}

// Sum of INFO field `name` (an integer) of the server at `addr`, or -1.
int64_t InfoField(const std::string& addr, const std::string& name) {
  ClientOptions o;
  o.address = addr;
  auto c = Client::Connect(o);
  if (!c.ok()) return -1;
  auto r = (*c)->Command({"INFO"});
  if (!r.ok()) return -1;
  const std::string& text = r->str;
  size_t at = text.find("\n" + name + ":");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + name.size() + 2));
}

void KillNineRounds(const std::vector<std::string>& flags, int rounds, uint64_t* acked,
                    int64_t* clean_passes) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  const int kThreads = 8;
  std::vector<Shard> shards(kThreads);
  std::mt19937 rng(12345);
  uint64_t checked = 0;
  std::atomic<uint64_t> acked_total{0};
  *clean_passes = 0;
  for (int round = 0; round <= rounds; round++) {
    ServerProcess server(data, flags);
    server.Start();
    ASSERT_TRUE(server.WaitReady()) << server.Log();
    Verify(server.address(), &shards, &checked);
    if (::testing::Test::HasFatalFailure()) {
      ADD_FAILURE() << "round " << round << " server log:\n" << server.Log();
      return;
    }
    if (round == rounds) break;  // the last restart only verifies
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    uint64_t before = acked_total.load();
    for (int t = 0; t < kThreads; t++) {
      threads.emplace_back(Writer, server.address(), round, t, &shards[t], &stop, &acked_total);
    }
    // Let some writes land, then kill at a random moment.
    while (acked_total.load() < before + 200)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 300));
    *clean_passes += std::max<int64_t>(0, InfoField(server.address(), "clean_passes"));
    EXPECT_EQ(server.Kill(SIGKILL), 128 + SIGKILL);
    stop = true;
    for (auto& th : threads) th.join();
  }
  EXPECT_GT(acked_total.load(), 200u * rounds);
  EXPECT_GT(checked, 0u);
  printf("crash test: %d kill -9 rounds, %llu acknowledged writes, %llu key checks\n", rounds,
         static_cast<unsigned long long>(acked_total.load()),
         static_cast<unsigned long long>(checked));
  *acked = acked_total.load();
}

TEST(CrashTest, KillNineAtRandomMomentsLosesNoAcknowledgedWrite) {
  uint64_t acked = 0;
  int64_t passes = 0;
  KillNineRounds({"--io_threads=2"}, Rounds(), &acked, &passes);
}

// The same with log cleaning running all the time (small segments, a high
// threshold, a short period): kills land in the middle of cleaning passes.
TEST(CrashTest, KillNineWhileTheLogIsCleanedLosesNoAcknowledgedWrite) {
  uint64_t acked = 0;
  int64_t passes = 0;
  KillNineRounds({"--io_threads=2", "--segment_mb=2", "--max_batch_kb=1100",
                  "--clean_threshold=0.9", "--clean_interval_ms=2"},
                 Rounds(), &acked, &passes);
  printf("crash test with cleaning: %lld cleaning passes before the kills\n",
         static_cast<long long>(passes));
  EXPECT_GT(passes, 0) << "cleaning never ran: the test did not test it";
}

}  // namespace
}  // namespace faha::test
