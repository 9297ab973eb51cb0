// Write commands' semantics without a store or a process: each command runs
// through the dispatcher (Commands::Execute: arity, parsing, its row), the
// WriteOp it submits is evaluated against a fake WriteContext (a map), and
// the reply is encoded as RESP (Commands::AppendResult), so a test reads like
// a redis-cli session.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "server/commands/commands.h"
#include "server/commands/commands_testing.h"
#include "server/commands/host.h"
#include "server/metrics/metrics.h"

namespace faha {
namespace {

class WriteCommandTest : public ::testing::Test {
 protected:
  WriteCommandTest() : commands_(&host_, &outbox_) { session_.authed = true; }

  // Runs one command; its reply as RESP, whether immediate or after evaluation.
  std::string Run(std::vector<std::string> words) {
    std::vector<std::string_view> args(words.begin(), words.end());
    std::string out;
    last_kind_.reset();
    ExecStatus st = commands_.Execute(&session_, args, &out, nullptr);
    if (st != ExecStatus::kSubmitted) return out;
    EXPECT_EQ(outbox_.size(), 1u);
    WriteOp op = std::move(outbox_.back().op);
    outbox_.clear();
    session_.pending_writes = 0;
    last_kind_ = op.kind;
    Commands::AppendResult(&out, keys_.Apply(op));
    return out;
  }
  int64_t TtlMs(const std::string& key) {
    KeyState k = keys_.Get(key, false);
    return !k.exists ? -2 : k.expire_at_ms == 0 ? -1 : k.expire_at_ms - keys_.now_ms_;
  }

  FakeHost host_;
  std::vector<Store::Write> outbox_;
  Commands commands_;
  Session session_;
  MapWriteContext keys_;
  std::optional<WriteOp::Kind> last_kind_;
};

TEST_F(WriteCommandTest, SetWithConditionsSeesTheKeyAndPlainSetIsThePrimitive) {
  EXPECT_EQ(Run({"SET", "k", "first"}), "+OK\r\n");
  EXPECT_EQ(last_kind_, WriteOp::Kind::kPut);  // no read needed: the engine's put
  EXPECT_EQ(Run({"SET", "k", "second", "NX"}), "$-1\r\n");
  EXPECT_EQ(last_kind_, WriteOp::Kind::kEval);
  EXPECT_EQ(Run({"SET", "absent", "x", "XX"}), "$-1\r\n");
  EXPECT_FALSE(keys_.Get("absent", false).exists);
  EXPECT_EQ(Run({"SET", "k", "third", "XX", "GET"}), "$5\r\nfirst\r\n");
  EXPECT_EQ(Run({"SET", "k", "fourth", "NX", "GET"}), "$5\r\nthird\r\n");  // not set
  EXPECT_EQ(keys_.Get("k", true).value, "third");
  EXPECT_EQ(Run({"SET", "new", "v", "GET"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "NX", "XX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "10", "KEEPTTL"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "0"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(keys_.Get("k", true).value, "third");  // refused commands changed nothing
}

TEST_F(WriteCommandTest, SetKeepTtlKeepsTheExpiryAndGetSetAnswersTheOldValue) {
  EXPECT_EQ(Run({"SET", "k", "v", "PX", "50000"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "k", "w", "KEEPTTL"}), "+OK\r\n");
  EXPECT_GT(TtlMs("k"), 40000);
  EXPECT_EQ(Run({"SET", "k", "x"}), "+OK\r\n");
  EXPECT_EQ(TtlMs("k"), -1);
  EXPECT_EQ(Run({"GETSET", "k", "y"}), "$1\r\nx\r\n");
  EXPECT_EQ(Run({"GETSET", "nokey", "y"}), "$-1\r\n");
  EXPECT_EQ(Run({"SETEX", "e", "100", "v"}), "+OK\r\n");
  EXPECT_GT(TtlMs("e"), 90000);
  EXPECT_EQ(Run({"PSETEX", "e", "-1", "v"}), "-ERR invalid expire time in 'psetex' command\r\n");
}

TEST_F(WriteCommandTest, IncrementsCheckTypeAndOverflowAndKeepTheExpiry) {
  EXPECT_EQ(Run({"INCR", "n"}), ":1\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "41"}), ":42\r\n");
  EXPECT_EQ(Run({"DECRBY", "n", "50"}), ":-8\r\n");
  EXPECT_EQ(Run({"DECR", "n"}), ":-9\r\n");
  EXPECT_EQ(Run({"SET", "s", "abc"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "s"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SET", "big", "9223372036854775807"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "big"}), "-ERR increment or decrement would overflow\r\n");
  EXPECT_EQ(Run({"DECRBY", "n", "-9223372036854775808"}), "-ERR decrement would overflow\r\n");
  EXPECT_EQ(keys_.Get("big", true).value, "9223372036854775807");
  EXPECT_EQ(Run({"SET", "t", "5", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "t"}), ":6\r\n");
  EXPECT_GT(TtlMs("t"), 90000);
  EXPECT_EQ(Run({"INCR", "n", "extra"}), "-ERR wrong number of arguments for 'incr' command\r\n");
}

TEST_F(WriteCommandTest, ExpireConditionsFollowRedis7) {
  const int64_t now = keys_.now_ms_;
  keys_.Put("with", "v", now + 100000);
  keys_.Put("without", "v", 0);
  auto at = [&](int64_t ms) { return std::to_string(now + ms); };
  EXPECT_EQ(Run({"PEXPIREAT", "with", at(200000), "NX"}), ":0\r\n");
  EXPECT_EQ(Run({"PEXPIREAT", "without", at(200000), "XX"}), ":0\r\n");
  EXPECT_EQ(Run({"PEXPIREAT", "without", at(200000), "GT"}), ":0\r\n");  // none is infinite
  EXPECT_EQ(Run({"PEXPIREAT", "with", at(50000), "GT"}), ":0\r\n");
  EXPECT_EQ(Run({"PEXPIREAT", "with", at(200000), "GT"}), ":1\r\n");
  EXPECT_EQ(Run({"PEXPIREAT", "with", at(300000), "LT"}), ":0\r\n");
  EXPECT_EQ(Run({"PEXPIREAT", "without", at(300000), "LT", "XX"}), ":0\r\n");  // XX: none
  EXPECT_EQ(Run({"PEXPIREAT", "without", at(300000), "LT"}), ":1\r\n");
  // XX with GT: both must hold (Redis accepts the pair).
  EXPECT_EQ(Run({"PEXPIREAT", "with", at(250000), "GT", "XX"}), ":1\r\n");
  EXPECT_EQ(TtlMs("with"), 250000);
  EXPECT_EQ(TtlMs("without"), 300000);
  EXPECT_EQ(Run({"EXPIRE", "nokey", "10"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "with", "10", "NX", "XX"}),
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
  EXPECT_EQ(Run({"EXPIRE", "with", "10", "GT", "LT"}),
            "-ERR GT and LT options at the same time are not compatible\r\n");
  EXPECT_EQ(Run({"EXPIRE", "with", "10", "NX", "XX", "FOO"}), "-ERR Unsupported option FOO\r\n");
  EXPECT_EQ(TtlMs("with"), 250000);  // refused: unchanged
}

TEST_F(WriteCommandTest, AnExpiryInThePastDeletesAndPersistClears) {
  keys_.Put("a", "v", 0);
  keys_.Put("b", "v", keys_.now_ms_ + 100000);
  EXPECT_EQ(Run({"EXPIRE", "a", "-1"}), ":1\r\n");
  EXPECT_FALSE(keys_.Get("a", false).exists);
  EXPECT_EQ(Run({"PERSIST", "b"}), ":1\r\n");
  EXPECT_EQ(TtlMs("b"), -1);
  EXPECT_EQ(Run({"PERSIST", "b"}), ":0\r\n");
  EXPECT_EQ(Run({"PERSIST", "nokey"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "b", "9223372036854775807"}),
            "-ERR invalid expire time in 'expire' command\r\n");
}

TEST_F(WriteCommandTest, GetDelAnswersTheValueAndDeletesTheKey) {
  keys_.Put("k", "v", keys_.now_ms_ + 100000);
  keys_.Put("old", "v", keys_.now_ms_ - 1);  // expired: absent
  EXPECT_EQ(Run({"GETDEL", "k"}), "$1\r\nv\r\n");
  EXPECT_FALSE(keys_.keys_.count("k"));
  EXPECT_EQ(Run({"GETDEL", "k"}), "$-1\r\n");
  EXPECT_EQ(Run({"GETDEL", "old"}), "$-1\r\n");
  EXPECT_EQ(Run({"GETDEL", "a", "b"}), "-ERR wrong number of arguments for 'getdel' command\r\n");
}

TEST_F(WriteCommandTest, DeleteMSetAndFlushAll) {
  EXPECT_EQ(Run({"MSET", "a", "1", "b", "2", "c", "3"}), "+OK\r\n");
  EXPECT_EQ(Run({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(Run({"DEL", "a", "b", "nokey", "a"}), ":2\r\n");
  EXPECT_EQ(Run({"UNLINK", "c"}), ":1\r\n");
  EXPECT_EQ(Run({"SET", "d", "4"}), "+OK\r\n");
  EXPECT_EQ(Run({"FLUSHALL", "LAZY"}), "-ERR syntax error\r\n");
  EXPECT_EQ(keys_.keys_.size(), 1u);
  EXPECT_EQ(Run({"FLUSHDB", "ASYNC"}), "+OK\r\n");
  EXPECT_TRUE(keys_.keys_.empty());
}

TEST_F(WriteCommandTest, StringsGrowOnlyUpToTheValueLimitAndKeepTheirExpiry) {
  host_.mutable_options().max_value_bytes = 10;
  EXPECT_EQ(Run({"SET", "s", "12345", "PX", "50000"}), "+OK\r\n");
  EXPECT_EQ(Run({"APPEND", "s", "678"}), ":8\r\n");
  EXPECT_GT(TtlMs("s"), 40000);
  EXPECT_EQ(Run({"APPEND", "s", "abc"}),
            "-ERR string exceeds maximum allowed size (max_value_bytes 10)\r\n");
  EXPECT_EQ(keys_.Get("s", true).value, "12345678");  // refused: unchanged
  EXPECT_EQ(Run({"SETRANGE", "s", "8", "ab"}), ":10\r\n");
  EXPECT_EQ(Run({"SETRANGE", "s", "9", "ab"}),
            "-ERR string exceeds maximum allowed size (max_value_bytes 10)\r\n");
  EXPECT_EQ(Run({"SETRANGE", "s", "99999999999", ""}), ":10\r\n");  // empty: no check
  EXPECT_EQ(Run({"SETRANGE", "z", "3", "x"}), ":4\r\n");
  EXPECT_EQ(keys_.Get("z", true).value, std::string("\0\0\0x", 4));
  EXPECT_GT(TtlMs("s"), 40000);
  EXPECT_EQ(Run({"INCRBYFLOAT", "s", "1"}), "-ERR value is not a valid float\r\n");
}

TEST_F(WriteCommandTest, GetExSetsOrClearsTheExpiryAndReadsTheValue) {
  keys_.Put("k", "v", 0);
  EXPECT_EQ(Run({"GETEX", "k", "EX", "100"}), "$1\r\nv\r\n");
  EXPECT_GT(TtlMs("k"), 90000);
  EXPECT_EQ(Run({"GETEX", "k", "PX", "5000"}), "$1\r\nv\r\n");
  EXPECT_LE(TtlMs("k"), 6000);
  EXPECT_EQ(Run({"GETEX", "k"}), "$1\r\nv\r\n");
  EXPECT_GT(TtlMs("k"), 0);  // no option: the expiry stays
  EXPECT_EQ(Run({"GETEX", "k", "PERSIST"}), "$1\r\nv\r\n");
  EXPECT_EQ(TtlMs("k"), -1);
  EXPECT_EQ(Run({"GETEX", "k", "PXAT", std::to_string(keys_.now_ms_ - 1)}), "$1\r\nv\r\n");
  EXPECT_FALSE(keys_.Get("k", false).exists);  // an expiry in the past deletes
  EXPECT_EQ(Run({"SETNX", "k", "w"}), ":1\r\n");
  EXPECT_EQ(Run({"SETNX", "k", "x"}), ":0\r\n");
  EXPECT_EQ(keys_.Get("k", true).value, "w");
}

}  // namespace
}  // namespace faha
