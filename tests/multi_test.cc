// Transactions against a real redis-server (Debian's 7.0): MULTI, EXEC,
// DISCARD, WATCH and UNWATCH, with errors at queue time and at exec time,
// and WATCH against writes from other clients, expiry, FLUSHALL and the
// client's own writes. The same steps go to both servers, on as many
// connections to each; every reply must be equal byte for byte.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness.h"

namespace faha::test {
namespace {

class MultiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    faha_ = std::make_unique<ServerProcess>(dir_.path() + "/faha");
    faha_->Start();
    ASSERT_TRUE(faha_->WaitReady()) << faha_->Log();
    redis_ = std::make_unique<RedisServer>(dir_.path());
    ASSERT_TRUE(redis_->WaitReady()) << "redis-server did not start";
  }

  // A step: connection `conn` sends `args`; {"SLEEP", ms} waits instead.
  struct Step {
    int conn;
    std::vector<std::string> args;
  };

  // Runs the steps on both servers and compares each reply.
  void Compare(const std::vector<Step>& steps, int connections = 2) {
    std::vector<std::unique_ptr<RespConnection>> faha, redis;
    for (int i = 0; i < connections; i++) {
      faha.push_back(std::make_unique<RespConnection>(faha_->port()));
      redis.push_back(std::make_unique<RespConnection>(redis_->port()));
    }
    for (const Step& step : steps) {
      if (step.args[0] == "SLEEP") {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(step.args[1])));
        continue;
      }
      std::string line = "conn " + std::to_string(step.conn) + ":";
      for (const auto& a : step.args) line += " " + a;
      EXPECT_EQ(faha[step.conn]->Call(step.args), redis[step.conn]->Call(step.args)) << line;
    }
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> faha_;
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(MultiTest, QueueAndExecErrorsAnswerAsRedisDoes) {
  Compare({
      {0, {"MULTI"}},
      {0, {"MULTI"}},  // refused, but the transaction goes on
      {0, {"SET", "a", "1"}},
      {0, {"WATCH", "x"}},  // likewise
      {0, {"EXEC"}},
      {0, {"GET", "a"}},
      {0, {"EXEC"}},
      {0, {"DISCARD"}},
      // Errors while queueing abort the whole transaction.
      {0, {"MULTI"}},
      {0, {"SET", "q1", "1"}},
      {0, {"SET", "q2"}},
      {0, {"SET", "q3", "3"}},
      {0, {"EXEC"}},
      {0, {"EXISTS", "q1", "q2", "q3"}},
      {0, {"MULTI"}},
      {0, {"SET", "q1", "1"}},
      {0, {"NO-SUCH-COMMAND", "x"}},
      {0, {"EXEC"}},
      {0, {"EXISTS", "q1"}},
      // Errors at exec time are replies in the array; the rest applies.
      {0, {"SET", "n", "10"}},
      {0, {"MULTI"}},
      {0, {"INCR", "n"}},
      {0, {"SET", "s", "text"}},
      {0, {"INCR", "s"}},
      {0, {"SET", "bad", "v", "EX", "-5"}},
      {0, {"SET", "bad", "v", "NX", "XX"}},
      {0, {"GET", "s"}},
      {0, {"MGET", "n", "s", "missing"}},
      {0, {"APPEND", "s", "+more"}},
      {0, {"STRLEN", "s"}},
      {0, {"GETRANGE", "s", "0", "3"}},
      {0, {"EXPIRE", "s", "100"}},
      {0, {"TTL", "s"}},
      {0, {"PERSIST", "s"}},
      {0, {"TTL", "s"}},
      {0, {"DEL", "n", "missing"}},
      {0, {"EXISTS", "n", "s"}},
      {0, {"TYPE", "s"}},
      {0, {"PING"}},
      {0, {"ECHO", "hi"}},
      {0, {"INCRBYFLOAT", "f", "1.5"}},
      {0, {"GETDEL", "f"}},
      {0, {"EXEC"}},
      {0, {"MGET", "n", "s", "f", "bad"}},
      // A transaction sees its own writes, and an empty one is an empty array.
      {0, {"MULTI"}},
      {0, {"SET", "x", "1"}},
      {0, {"GET", "x"}},
      {0, {"DEL", "x"}},
      {0, {"GET", "x"}},
      {0, {"SETNX", "x", "2"}},
      {0, {"GETSET", "x", "3"}},
      {0, {"FLUSHALL"}},
      {0, {"GET", "x"}},
      {0, {"SET", "after", "flush"}},
      {0, {"EXEC"}},
      {0, {"GET", "after"}},
      {0, {"MULTI"}},
      {0, {"EXEC"}},
      // DISCARD drops the queue.
      {0, {"MULTI"}},
      {0, {"SET", "d", "1"}},
      {0, {"DISCARD"}},
      {0, {"EXISTS", "d"}},
      {0, {"MULTI", "extra"}},
      {0, {"EXEC", "extra"}},
      {0, {"UNWATCH"}},
  });
}

TEST_F(MultiTest, WatchAbortsOnAnyChangeToAWatchedKey) {
  // The key that expires while watched must still be there when faha's WATCH
  // arrives, after its SET and Redis's: under ThreadSanitizer with two tests
  // at a time, 100 ms once passed in between and faha watched a missing key.
  const int ttl_ms = static_cast<int>(250 * TestSlowdown());
  const std::string ttl = std::to_string(ttl_ms), after = std::to_string(ttl_ms * 5 / 2);
  Compare({
      // Another client's write.
      {0, {"SET", "w", "1"}},
      {0, {"WATCH", "w"}},
      {1, {"SET", "w", "2"}},
      {0, {"MULTI"}},
      {0, {"SET", "w", "3"}},
      {0, {"EXEC"}},
      {0, {"GET", "w"}},
      // The same value written again is a change too.
      {0, {"WATCH", "w"}},
      {1, {"SET", "w", "2"}},
      {0, {"MULTI"}},
      {0, {"INCR", "w"}},
      {0, {"EXEC"}},
      // No change: EXEC runs, and unwatches.
      {0, {"WATCH", "w", "other"}},
      {0, {"MULTI"}},
      {0, {"INCR", "w"}},
      {0, {"EXEC"}},
      {1, {"SET", "w", "5"}},
      {0, {"MULTI"}},
      {0, {"INCR", "w"}},
      {0, {"EXEC"}},
      // A missing key that another client creates.
      {0, {"WATCH", "new"}},
      {1, {"SET", "new", "1"}},
      {0, {"MULTI"}},
      {0, {"SET", "new", "2"}},
      {0, {"EXEC"}},
      // The client's own write.
      {0, {"WATCH", "w"}},
      {0, {"SET", "w", "own"}},
      {0, {"MULTI"}},
      {0, {"GET", "w"}},
      {0, {"EXEC"}},
      // Deleted, and expired while watched.
      {0, {"WATCH", "w"}},
      {1, {"DEL", "w"}},
      {0, {"MULTI"}},
      {0, {"GET", "w"}},
      {0, {"EXEC"}},
      {0, {"SET", "e", "v", "PX", ttl}},
      {0, {"WATCH", "e"}},
      {0, {"SLEEP", after}},
      {0, {"MULTI"}},
      {0, {"SET", "e", "again"}},
      {0, {"EXEC"}},
      // FLUSHALL touches watched keys that existed, not missing ones.
      {0, {"SET", "f", "1"}},
      {0, {"WATCH", "f"}},
      {1, {"FLUSHALL"}},
      {0, {"MULTI"}},
      {0, {"SET", "f", "2"}},
      {0, {"EXEC"}},
      {0, {"WATCH", "absent"}},
      {1, {"FLUSHALL"}},
      {0, {"MULTI"}},
      {0, {"SET", "absent", "2"}},
      {0, {"EXEC"}},
      // UNWATCH, and DISCARD, forget the keys.
      {0, {"WATCH", "u"}},
      {0, {"UNWATCH"}},
      {1, {"SET", "u", "1"}},
      {0, {"MULTI"}},
      {0, {"SET", "u", "2"}},
      {0, {"EXEC"}},
      {0, {"WATCH", "u"}},
      {0, {"MULTI"}},
      {0, {"DISCARD"}},
      {1, {"SET", "u", "3"}},
      {0, {"MULTI"}},
      {0, {"GET", "u"}},
      {0, {"EXEC"}},
      // A write of another client inside the queue time aborts too.
      {0, {"WATCH", "u"}},
      {0, {"MULTI"}},
      {0, {"SET", "u", "4"}},
      {1, {"SET", "u", "5"}},
      {0, {"EXEC"}},
      {0, {"GET", "u"}},
  });
}

// FaHA refuses commands that read the whole keyspace inside MULTI
// (docs/redis-compat.md): the transaction then aborts, and nothing of it
// applies.
TEST_F(MultiTest, KeyspaceWideReadsAbortTheTransaction) {
  RespConnection c(faha_->port());
  EXPECT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"SET", "k", "1"}), "+QUEUED\r\n");
  EXPECT_EQ(c.Call({"DBSIZE"}).rfind("-ERR Command not allowed inside a transaction", 0), 0u);
  EXPECT_EQ(c.Call({"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.\r\n");
  EXPECT_EQ(c.Call({"EXISTS", "k"}), ":0\r\n");
}

// A transaction bigger than one log batch is refused while queueing, before
// it takes more memory.
TEST_F(MultiTest, ATransactionLargerThanABatchIsRefusedWhileQueueing) {
  ServerProcess small(dir_.path() + "/small", {"--max_batch_kb=64", "--max_value_bytes=16384"});
  small.Start();
  ASSERT_TRUE(small.WaitReady()) << small.Log();
  RespConnection c(small.port());
  EXPECT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  const std::string value(10000, 'v');
  int queued = 0;
  std::string reply;
  for (int i = 0; i < 20; i++) {
    reply = c.Call({"SET", "k" + std::to_string(i), value});
    if (reply != "+QUEUED\r\n") break;
    queued++;
  }
  EXPECT_GE(queued, 4);
  EXPECT_LT(queued, 7);
  EXPECT_EQ(reply.rfind("-ERR transaction larger than the log's batch limit", 0), 0u) << reply;
  EXPECT_EQ(c.Call({"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.\r\n");
  EXPECT_EQ(c.Call({"EXISTS", "k0"}), ":0\r\n");
}

std::string TransactionRequest(uint64_t id, const std::vector<std::vector<std::string>>& cmds) {
  std::string body, req;
  native::EncodeTransaction(&body, cmds);
  native::EncodeRequest(&req, native::Op::kTransaction, id, {}, body);
  return req;
}

// libfaha's Transaction(): one native request, EXEC's reply; a command that
// cannot be queued refuses the whole transaction.
TEST_F(MultiTest, ANativeTransactionIsOneRequestWithExecsReply) {
  ClientOptions o;
  o.address = faha_->address();
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto r =
      (*c)->Transaction({{"SET", "a", "1"}, {"INCR", "a"}, {"GET", "a"}, {"INCR", "nope", "x"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->type, Reply::Type::kError);
  EXPECT_EQ(r->str,
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'incr' "
            "command");
  r = (*c)->Transaction({{"SET", "a", "1"},
                         {"INCR", "a"},
                         {"GET", "a"},
                         {"INCR", "text"},
                         {"SET", "text", "t"},
                         {"INCR", "text"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->type, Reply::Type::kArray);
  ASSERT_EQ(r->elements.size(), 6u);
  EXPECT_EQ(r->elements[0].ToString(), "OK");
  EXPECT_EQ(r->elements[1].integer, 2);
  EXPECT_EQ(r->elements[2].str, "2");
  EXPECT_EQ(r->elements[3].integer, 1);
  EXPECT_EQ(r->elements[5].type, Reply::Type::kError);
  EXPECT_EQ(r->elements[5].str, "ERR value is not an integer or out of range");
  for (const auto& bad : std::vector<std::vector<std::vector<std::string>>>{
           {{"MULTI"}}, {{"DBSIZE"}}, {{"WATCH", "a"}}, {{"NO-SUCH"}}}) {
    r = (*c)->Transaction(bad);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->type, Reply::Type::kError) << bad[0][0];
    EXPECT_EQ(r->str.rfind("EXECABORT", 0), 0u) << r->str;
  }
  r = (*c)->Transaction({});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type, Reply::Type::kArray);
  EXPECT_TRUE(r->elements.empty());
}

// With a client id, a transaction sent twice with one request id (a retry)
// runs once and answers the first reply both times, on any connection.
TEST_F(MultiTest, ANativeTransactionRetriedWithItsRequestIdIsAppliedOnce) {
  std::string hello;
  native::EncodeRequest(&hello, native::Op::kClientId, 1, {}, {}, 4242);
  const std::vector<std::vector<std::string>> txn = {{"INCR", "n"}, {"INCR", "n"}, {"GET", "n"}};
  auto r1 = NativeExchange(
      faha_->port(), hello + TransactionRequest(5, txn) + TransactionRequest(5, txn), 3, nullptr);
  ASSERT_EQ(r1.size(), 3u);
  const std::string want = "*3\r\n:1\r\n:2\r\n$1\r\n2\r\n";
  EXPECT_EQ(r1[1].second, want);
  EXPECT_EQ(r1[2].second, want);
  auto r2 = NativeExchange(
      faha_->port(), hello + TransactionRequest(5, txn) + TransactionRequest(6, txn), 3, nullptr);
  ASSERT_EQ(r2.size(), 3u);
  EXPECT_EQ(r2[1].second, want);
  EXPECT_EQ(r2[2].second, "*3\r\n:3\r\n:4\r\n$1\r\n4\r\n");
  RespConnection resp(faha_->port());
  EXPECT_EQ(resp.Call({"GET", "n"}), "$1\r\n4\r\n");
  // A reply over 64 KiB is not kept for a retry: the retry learns the
  // transaction was applied, and it is not applied again.
  const std::string big(100000, 'b');
  const std::vector<std::vector<std::string>> read_big = {
      {"SET", "big", big}, {"INCR", "m"}, {"GET", "big"}};
  auto r3 = NativeExchange(
      faha_->port(), hello + TransactionRequest(7, read_big) + TransactionRequest(7, read_big), 3,
      nullptr);
  ASSERT_EQ(r3.size(), 3u);
  EXPECT_EQ(r3[1].second.size(), big.size() + 24) << r3[1].second.substr(0, 60);
  EXPECT_EQ(r3[2].second.rfind("-ERR this write was applied; its reply (", 0), 0u)
      << r3[2].second.substr(0, 80);
  EXPECT_EQ(resp.Call({"GET", "m"}), "$1\r\n1\r\n");
  // A malformed transaction body is a protocol error.
  auto bad = NativeExchange(
      faha_->port(),
      [] {
        std::string req;
        native::EncodeRequest(&req, native::Op::kTransaction, 1, {}, std::string("\x05\0\0\0", 4));
        return req;
      }(),
      1, nullptr);
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].first, native::Code::kError);
  EXPECT_NE(bad[0].second.find("malformed transaction"), std::string::npos) << bad[0].second;
}

// Transactions pipelined on one connection are pipelined like writes: the
// EXECs sent together commit together (before, each EXEC waited for the one
// before it to be answered: one batch, one sync each).
TEST_F(MultiTest, PipelinedTransactionsCommitTogether) {
  RespConnection c(faha_->port());
  auto batches = [&] {
    const std::string info = c.Call({"INFO", "persistence"});
    const size_t at = info.find("log_batches:");
    return at == std::string::npos ? -1 : std::stoll(info.substr(at + 12));
  };
  const int64_t before = batches();
  ASSERT_GE(before, 0);
  std::vector<std::vector<std::string>> cmds;
  for (int t = 0; t < 20; t++) {
    cmds.push_back({"MULTI"});
    for (int k = 0; k < 5; k++) cmds.push_back({"INCR", "n" + std::to_string(k)});
    cmds.push_back({"EXEC"});
  }
  const std::vector<std::string> replies = c.Pipeline(cmds);
  ASSERT_EQ(replies.size(), cmds.size());
  for (size_t i = 0; i < replies.size(); i += 7) {
    EXPECT_EQ(replies[i], "+OK\r\n");
    const std::string n = std::to_string(i / 7 + 1);
    EXPECT_EQ(replies[i + 6],
              "*5\r\n:" + n + "\r\n:" + n + "\r\n:" + n + "\r\n:" + n + "\r\n:" + n + "\r\n");
  }
  EXPECT_LE(batches() - before, 4) << "20 pipelined transactions took a batch each";
}

}  // namespace
}  // namespace faha::test
