// Functions and numbered databases as state that must last: libraries, each
// database's keys and the database map (SWAPDB) after kill -9 and restart
// while the log is cleaned all the time, and after a failover in a cluster
// coordinated by a real etcd; FUNCTION DUMP/RESTORE and DUMP/RESTORE across
// FaHA and a real redis-server; a library's code that never ends and a
// function that never ends (FUNCTION LOAD timeout, BUSY, FUNCTION KILL).
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "coord/etcd_testing.h"
#include "tests/etcd_cluster.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

const std::string kLibrary =
    "#!lua name=counters\n"
    "redis.register_function('bump', function(keys, args)\n"
    "  return redis.call('incrby', keys[1], args[1]) end)\n"
    "redis.register_function{function_name='peek', flags={'no-writes'},\n"
    "  description='reads a counter',\n"
    "  callback=function(keys) return redis.call('get', keys[1]) end}";

// Writes what State() expects: the library, keys in databases 0, 3 and 9,
// database 5 flushed, databases 0 and 7 swapped.
void Populate(RespConnection& c) {
  ASSERT_EQ(c.Call({"FUNCTION", "LOAD", kLibrary}), "$8\r\ncounters\r\n");
  ASSERT_EQ(c.Call({"FCALL", "bump", "1", "hits", "41"}), ":41\r\n");
  ASSERT_EQ(c.Call({"SELECT", "3"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"MSET", "a", "3a", "b", "3b"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"FCALL", "bump", "1", "hits", "3"}), ":3\r\n");
  ASSERT_EQ(c.Call({"MOVE", "b", "9"}), ":1\r\n");
  ASSERT_EQ(c.Call({"SELECT", "5"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"SET", "gone", "x"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"FLUSHDB"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"SWAPDB", "0", "7"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"SELECT", "0"}), "+OK\r\n");
}

// The state Populate left, as one string: per database DBSIZE and MGET of
// hits, a, b, gone; then a function's read and the libraries (compared across restarts and nodes).
std::string State(RespConnection& c) {
  std::string s;
  for (int db : {0, 3, 5, 7, 9}) {
    c.Call({"SELECT", std::to_string(db)});
    s +=
        std::to_string(db) + ": " + c.Call({"DBSIZE"}) + c.Call({"MGET", "hits", "a", "b", "gone"});
  }
  c.Call({"SELECT", "7"});
  s += c.Call({"FCALL_RO", "peek", "1", "hits"}) + c.Call({"FUNCTION", "LIST", "WITHCODE"});
  c.Call({"SELECT", "0"});
  return s;
}

const std::string kExpected =
    "0: :0\r\n*4\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"
    "3: :2\r\n*4\r\n$1\r\n3\r\n$2\r\n3a\r\n$-1\r\n$-1\r\n"
    "5: :0\r\n*4\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"
    "7: :1\r\n*4\r\n$2\r\n41\r\n$-1\r\n$-1\r\n$-1\r\n"
    "9: :1\r\n*4\r\n$-1\r\n$-1\r\n$2\r\n3b\r\n$-1\r\n";

TEST(FunctionTest, FunctionsAndDatabasesSurviveKillNineAndLogCleaning) {
  TempDir dir;
  ServerProcess server(dir.path() + "/data", {"--segment_mb=2", "--max_batch_kb=1100",
                                              "--clean_threshold=0.9", "--clean_interval_ms=2"});
  server.Start();
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  std::string before;
  {
    RespConnection c(server.port());
    Populate(c);
    if (HasFatalFailure()) return;
    before = State(c);
    ASSERT_EQ(before.rfind(kExpected + "$2\r\n41\r\n", 0), 0u) << before;
    // Enough overwrites of one key in database 0 (now physical 7's partner)
    // for several segments to fill and be cleaned around the state above.
    const std::string filler(100000, 'f');
    for (int i = 0; i < 120; i++) ASSERT_EQ(c.Call({"SET", "filler", filler}), "+OK\r\n");
    ASSERT_EQ(c.Call({"DEL", "filler"}), ":1\r\n");
  }
  std::string info;
  for (int64_t deadline = MonoMs() + 10000; MonoMs() < deadline;) {
    RespConnection c(server.port());
    info = c.Call({"INFO", "persistence"});
    if (info.find("log_segments_cleaned:0\r\n") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(info.find("log_segments_cleaned:0\r\n"), std::string::npos) << info;
  for (int round = 0; round < 2; round++) {
    server.Kill(SIGKILL);
    server.Start();
    ASSERT_TRUE(server.WaitReady()) << server.Log();
    RespConnection c(server.port());
    EXPECT_EQ(State(c), before) << "round " << round;
  }
}

TEST(FunctionTest, AFailoverKeepsFunctionsDatabasesAndTheMap) {
  EtcdCluster cluster(std::vector<std::string>{});
  cluster.StartAll();
  const int p = cluster.WaitServingPrimary();
  ASSERT_GE(p, 0) << cluster.node(0).Log();
  std::string before;
  {
    RespConnection c(cluster.node(p).port());
    Populate(c);
    if (HasFatalFailure()) return;
    before = State(c);
    ASSERT_EQ(before.rfind(kExpected, 0), 0u) << before;
  }
  cluster.node(p).Kill(SIGKILL);
  const int q = cluster.WaitServingPrimary(p);
  ASSERT_GE(q, 0) << "no backup took over";
  RespConnection c(cluster.node(q).port());
  EXPECT_EQ(State(c), before);
  // The new primary runs the functions it never loaded itself, and writes.
  EXPECT_EQ(c.Call({"FCALL", "bump", "1", "hits", "1"}), ":1\r\n");  // database 0 is empty
}

// The bytes of a bulk reply.
std::string Bulk(const std::string& reply) {
  const size_t at = reply.find("\r\n");
  return reply.substr(at + 2, reply.size() - at - 4);
}

TEST(FunctionTest, DumpPayloadsMoveBetweenFahaAndRedis) {
  TempDir dir;
  ServerProcess faha(dir.path() + "/faha");
  faha.Start();
  ASSERT_TRUE(faha.WaitReady()) << faha.Log();
  RedisServer redis(dir.path());
  ASSERT_TRUE(redis.WaitReady());
  RespConnection f(faha.port()), r(redis.port());
  // Libraries: Redis's payload (compressed code) restores into FaHA and back.
  ASSERT_EQ(r.Call({"FUNCTION", "LOAD", kLibrary}), "$8\r\ncounters\r\n");
  const std::string from_redis = Bulk(r.Call({"FUNCTION", "DUMP"}));
  EXPECT_EQ(f.Call({"FUNCTION", "RESTORE", from_redis}), "+OK\r\n");
  EXPECT_EQ(f.Call({"FUNCTION", "RESTORE", from_redis}),
            r.Call({"FUNCTION", "RESTORE", from_redis}));  // APPEND: it exists
  // (A library's functions are listed in Redis's hash order: compared as counts and code.)
  EXPECT_EQ(f.Call({"FUNCTION", "STATS"}), r.Call({"FUNCTION", "STATS"}));
  EXPECT_NE(f.Call({"FUNCTION", "LIST", "WITHCODE"}).find(kLibrary), std::string::npos);
  const std::string from_faha = Bulk(f.Call({"FUNCTION", "DUMP"}));
  EXPECT_EQ(r.Call({"FUNCTION", "RESTORE", from_faha, "FLUSH"}), "+OK\r\n");
  EXPECT_EQ(r.Call({"FCALL", "bump", "1", "k", "2"}), ":2\r\n");
  std::string bad = from_redis;
  bad[bad.size() - 1] ^= 1;
  EXPECT_EQ(f.Call({"FUNCTION", "RESTORE", bad}), r.Call({"FUNCTION", "RESTORE", bad}));
  // Strings: short ones are byte for byte Redis's; compressed ones cross over.
  for (const std::string& v :
       {std::string(), std::string("12"), std::string("-70000"), std::string("0123"),
        std::string("a\0b", 3), std::string(5000, 'z'), std::string(300, '\xff')}) {
    f.Call({"SET", "v", v});
    r.Call({"SET", "v", v});
    const std::string fd = Bulk(f.Call({"DUMP", "v"})), rd = Bulk(r.Call({"DUMP", "v"}));
    if (v.size() <= 20) {
      EXPECT_EQ(fd, rd) << v;
    }
    EXPECT_EQ(f.Call({"RESTORE", "w", "0", rd, "REPLACE"}), "+OK\r\n");
    EXPECT_EQ(r.Call({"RESTORE", "w", "0", fd, "REPLACE"}), "+OK\r\n");
    EXPECT_EQ(f.Call({"GET", "w"}), r.Call({"GET", "w"}));
    EXPECT_EQ(f.Call({"GET", "w"}), f.Call({"GET", "v"}));
  }
}

TEST(FunctionTest, CodeThatNeverEndsIsStoppedAndLeavesNothing) {
  TempDir dir;
  ServerProcess server(dir.path() + "/data", {"--busy_reply_threshold_ms=100"});
  server.Start();
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  RespConnection c(server.port()), other(server.port());
  // A library whose code loops: Redis's 500 ms limit, then the server serves on.
  EXPECT_EQ(c.Call({"FUNCTION", "LOAD", "#!lua name=loop\nwhile true do end"}),
            "-ERR Error registering functions: ERR FUNCTION LOAD timeout\r\n");
  EXPECT_EQ(c.Call({"FUNCTION", "LIST"}), "*0\r\n");
  ASSERT_EQ(c.Call({"FUNCTION", "LOAD",
                    "#!lua name=spin\nredis.register_function('spin', function(keys)\n"
                    "  redis.call('set', keys[1], 'written')\n"
                    "  while true do end end)"}),
            "$4\r\nspin\r\n");
  std::thread caller([&] { c.Call({"FCALL", "spin", "1", "k"}); });
  std::string busy;
  for (int64_t deadline = MonoMs() + 10000; MonoMs() < deadline;) {
    busy = other.Call({"GET", "k"});
    if (busy.rfind("-BUSY", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(busy.rfind("-BUSY", 0), 0u) << busy;
  EXPECT_EQ(other.Call({"FUNCTION", "KILL"}), "+OK\r\n");
  caller.join();
  EXPECT_EQ(other.Call({"GET", "k"}), "$-1\r\n");  // nothing it wrote was applied
  EXPECT_EQ(other.Call({"FUNCTION", "KILL"}), "-NOTBUSY No scripts in execution right now.\r\n");
}

// No database may name FaHA's own keys, not even to MOVE or COPY one into
// database 0 (where keys are stored as sent); a transaction that a SWAPDB
// overtook while it was queued is refused whole, or answers nil if it
// watched (Redis's SWAPDB touches watched keys).
TEST(FunctionTest, ReservedKeysAndSwapsThatOvertakeATransaction) {
  TempDir dir;
  ServerProcess server(dir.path() + "/data");
  server.Start();
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  RespConnection c(server.port()), other(server.port());
  const std::string map_key("\xff\0FAHAM", 7);
  const std::string refused =
      "-ERR keys that begin with the bytes \\xff\\x00FAHA are reserved for FaHA's own state\r\n";
  for (const std::string db : {"0", "1"}) {
    ASSERT_EQ(c.Call({"SELECT", db}), "+OK\r\n");
    EXPECT_EQ(c.Call({"SET", map_key, std::string(256, '\0')}), refused) << db;
    EXPECT_EQ(c.Call({"MOVE", map_key, "0"}), refused) << db;
    EXPECT_EQ(c.Call({"COPY", "k", map_key, "DB", "0", "REPLACE"}), refused) << db;
    EXPECT_EQ(c.Call({"EVAL", "return redis.pcall('set', KEYS[1], 'x')", "1", map_key}), refused)
        << db;
  }
  // A script's SELECT is its own: keys go to that database, the client's stays.
  EXPECT_EQ(
      c.Call({"EVAL", "redis.call('select', 2) return redis.call('incr', KEYS[1])", "1", "n"}),
      ":1\r\n");
  EXPECT_EQ(c.Call({"GET", "n"}), "$-1\r\n");  // still database 1
  ASSERT_EQ(other.Call({"SELECT", "2"}), "+OK\r\n");
  EXPECT_EQ(other.Call({"GET", "n"}), "$1\r\n1\r\n");
  // MULTI in database 1, a SWAPDB from another client, EXEC.
  ASSERT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"SET", "t", "1"}), "+QUEUED\r\n");
  ASSERT_EQ(other.Call({"SWAPDB", "1", "3"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"EXEC"}),
            "-EXECABORT Transaction discarded because of: SWAPDB changed the databases while it "
            "was queued\r\n");
  EXPECT_EQ(c.Call({"EXISTS", "t"}), ":0\r\n");
  ASSERT_EQ(c.Call({"WATCH", "t"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  ASSERT_EQ(c.Call({"SET", "t", "1"}), "+QUEUED\r\n");
  ASSERT_EQ(other.Call({"SWAPDB", "1", "3"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"EXEC"}), "*-1\r\n");
  ASSERT_EQ(c.Call({"MULTI"}), "+OK\r\n");  // nothing in between: it runs
  ASSERT_EQ(c.Call({"SET", "t", "1"}), "+QUEUED\r\n");
  EXPECT_EQ(c.Call({"EXEC"}), "*1\r\n+OK\r\n");
  ASSERT_EQ(other.Call({"SELECT", "1"}), "+OK\r\n");
  EXPECT_EQ(other.Call({"GET", "t"}), "$1\r\n1\r\n");
}

}  // namespace
}  // namespace faha::test
