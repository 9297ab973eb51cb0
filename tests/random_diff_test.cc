// Randomized differential test against a real redis-server (Debian's 7.0): a
// seeded generator of command sequences over a small keyspace (ten keys,
// values that are numbers, floats, text, empty and binary) sends the same
// commands to FaHA and to Redis, pipelined a thousand at a time, and compares
// every reply byte for byte. The first difference fails the test with its
// seed, its position and the commands just before it, so it can be replayed:
//   FAHA_DIFF_SEED=S FAHA_DIFF_COMMANDS=N ./random_diff_test
// Expiry uses absolute times far in the future (EXPIREAT, PXAT, GETEX EXAT), so
// both servers agree without a race against the clock. Commands named in
// docs/redis-compat.md's "Not compared" list are never generated; the test
// reads that list (the only place a difference is allowed).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "server/commands/command_table.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

using Command = std::vector<std::string>;

// The command names in docs/redis-compat.md's "## Not compared" section:
// each bullet begins with them in backticks, e.g. "- `OBJECT IDLETIME`: ...".
std::set<std::string> NotCompared() {
  std::ifstream f(std::string(FAHA_SOURCE_DIR) + "/docs/redis-compat.md");
  std::set<std::string> names;
  std::string line;
  bool in = false;
  while (std::getline(f, line)) {
    if (line.rfind("## ", 0) == 0) in = line.rfind("## Not compared", 0) == 0;
    if (!in || line.rfind("- `", 0) != 0) continue;
    const size_t end = line.find('`', 3);
    if (end != std::string::npos) names.insert(line.substr(3, end - 3));
  }
  return names;
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  Command Next() {
    const std::string k = Key(), k2 = Key(), v = Value();
    const std::string at = std::to_string(kFarSeconds + Pick(1000));
    switch (Pick(44)) {
      case 0:
        return {"SET", k, v};
      case 1:
        return {"SET", k, v, Pick(2) ? "NX" : "XX"};
      case 2:
        return {"SET", k, v, "GET"};
      case 3:
        return {"SET", k, v, "KEEPTTL"};
      case 4:
        return {"SET", k, v, "EXAT", at};
      case 5:
        return {"SET", k, v, "PXAT", at + "123"};
      case 6:
        return {"GET", k};
      case 7:
        return {"MGET", k, k2, Key()};
      case 8:
        return {"MSET", k, v, k2, Value()};
      case 9:
        return {"MSETNX", k, v, k2, Value()};
      case 10:
        return {"SETNX", k, v};
      case 11:
        return {"GETSET", k, v};
      case 12:
        return {"GETDEL", k};
      case 13:
        return {"GETEX", k, "EXAT", at};
      case 14:
        return {"GETEX", k, "PERSIST"};
      case 15:
        return {"APPEND", k, v};
      case 16:
        return {"SETRANGE", k, Int(12), v};
      case 17:
        return {"GETRANGE", k, Int(12), Int(12)};
      case 18:
        return {"STRLEN", k};
      case 19:
        return {"INCR", k};
      case 20:
        return {"DECRBY", k, Int(1000)};
      case 21:
        return {"INCRBYFLOAT", k, Pick(2) ? "1.5" : "-0.25"};
      case 22:
        return {"DEL", k, k2};
      case 23:
        return {"EXISTS", k, k2, k};
      case 24:
        return {"TYPE", k};
      case 25:
        return {"EXPIREAT", k, at};
      case 26:
        return {"EXPIREAT", k, at, Pick(2) ? "GT" : "NX"};
      case 27:
        return {"PEXPIREAT", k, at + "000", "XX"};
      case 28:
        return {"EXPIRETIME", k};
      case 29:
        return {"PEXPIRETIME", k};
      case 30:
        return {"PERSIST", k};
      case 31:
        return {"RENAME", k, k2};
      case 32:
        return {"RENAMENX", k, k2};
      case 33:
        return Copy(k, k2);
      case 34:
        return {"LCS", k, k2, Pick(2) ? "LEN" : "IDX"};
      case 35:
        return {"DBSIZE"};
      case 36:
        return {"EVAL", "return redis.call('incrby', KEYS[1], ARGV[1])", "1", k, Int(10)};
      case 37:
        return {"EVAL", "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[2])",
                "2",    k,
                k2,     v};
      case 38:
        return {"EVAL", "return redis.pcall('append', KEYS[1], ARGV[1])", "1", k, v};
      case 39:
        return Pick(50) == 0 ? Command{"FLUSHALL"} : Command{"GET", k};
      case 40:
        return {"SUBSTR", k, "0", Int(5)};
      case 41:
        return {"TOUCH", k, k2};
      case 42:
        return {"UNLINK", k};
      default:
        return {"INCRBY", k, Int(100)};
    }
  }

  // MULTI, a few commands, EXEC or DISCARD (or a queue-time error).
  std::vector<Command> Transaction() {
    std::vector<Command> t = {{"MULTI"}};
    const int n = 1 + static_cast<int>(Pick(5));
    for (int i = 0; i < n; i++) {
      Command c = Pick(20) == 0 ? Command{"SET", Key()} : Next();
      // DBSIZE reads the whole keyspace: refused inside MULTI (docs/redis-compat.md).
      while (c[0] == "DBSIZE") c = Next();
      t.push_back(std::move(c));
    }
    t.push_back({Pick(10) == 0 ? "DISCARD" : "EXEC"});
    return t;
  }

  uint64_t Pick(uint64_t n) { return rng_() % n; }

 private:
  static constexpr int64_t kFarSeconds = 4102444800;  // 2100-01-01

  Command Copy(const std::string& k, const std::string& k2) {
    return Pick(2) ? Command{"COPY", k, k2} : Command{"COPY", k, k2, "REPLACE"};
  }
  std::string Key() { return "k" + std::to_string(Pick(10)); }
  std::string Int(int64_t range) {
    return std::to_string(static_cast<int64_t>(Pick(2 * range)) - range);
  }
  std::string Value() {
    switch (Pick(8)) {
      case 0:
        return Int(100);
      case 1:
        return "3.25";
      case 2:
        return "";
      case 3:
        return std::string("a\0b\r\n", 5);
      case 4:
        return "9223372036854775807";
      case 5:
        return std::string(1 + Pick(40), 'x');
      default:
        return "v" + std::to_string(Pick(1000));
    }
  }
  std::mt19937_64 rng_;
};

std::string Line(const Command& c) {
  std::string s;
  for (const auto& a : c) s += (s.empty() ? "" : " ") + a;
  return s;
}

TEST(RandomDiffTest, HundredThousandRandomCommandsAnswerAsRedisDoes) {
  const char* seed_env = getenv("FAHA_DIFF_SEED");
  const char* n_env = getenv("FAHA_DIFF_COMMANDS");
  const uint64_t seed = seed_env ? std::stoull(seed_env) : static_cast<uint64_t>(WallMs());
  const size_t total = n_env ? std::stoul(n_env) : 100000;
  const std::set<std::string> skip = NotCompared();
  ASSERT_FALSE(skip.empty()) << "docs/redis-compat.md has no \"## Not compared\" list";
  TempDir dir;
  ServerProcess faha(dir.path() + "/faha");
  faha.Start();
  ASSERT_TRUE(faha.WaitReady()) << faha.Log();
  RedisServer redis(dir.path());
  ASSERT_TRUE(redis.WaitReady());
  RespConnection f(faha.port(), 60000), r(redis.port(), 60000);
  Generator gen(seed);
  std::vector<Command> history;
  size_t sent = 0;
  while (sent < total) {
    std::vector<Command> chunk;
    while (chunk.size() < 1000) {
      std::vector<Command> next =
          gen.Pick(15) == 0 ? gen.Transaction() : std::vector<Command>{gen.Next()};
      for (auto& c : next) {
        if (!skip.count(c[0])) chunk.push_back(std::move(c));
      }
    }
    const std::vector<std::string> fr = f.Pipeline(chunk), rr = r.Pipeline(chunk);
    for (size_t i = 0; i < chunk.size(); i++) {
      if (fr[i] == rr[i]) continue;
      std::string before;
      for (size_t j = i >= 5 ? i - 5 : 0; j < i; j++) before += "\n  " + Line(chunk[j]);
      FAIL() << "seed " << seed << ", command " << sent + i << ": " << Line(chunk[i])
             << "\n  faha:  " << fr[i] << "\n  redis: " << rr[i] << "\nafter:" << before
             << "\nreplay: FAHA_DIFF_SEED=" << seed << " FAHA_DIFF_COMMANDS=" << sent + i + 1;
    }
    sent += chunk.size();
  }
  std::printf("seed %llu: %zu commands, every reply equal\n", static_cast<unsigned long long>(seed),
              sent);
}

}  // namespace
}  // namespace faha::test
