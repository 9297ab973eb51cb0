// The command table against a real redis-server (Debian's 7.0): every row's
// COMMAND INFO entry must equal Redis's byte for byte, except the rows named
// in kNotCompared (FaHA-only commands, and container commands whose
// subcommand lists differ: docs/redis-compat.md). Then COMMAND, COMMAND COUNT
// and the dispatcher's arity and authentication checks, which read the same
// rows.
#include "server/commands/command_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "tests/harness.h"

namespace faha::test {
namespace {

// FaHA-only, or a container command whose subcommands FaHA lists as none.
const std::set<std::string> kNotCompared = {"faha.digest", "client", "command", "config",
                                            "script",      "object", "function"};

class CommandTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    faha_ = std::make_unique<ServerProcess>(dir_.path() + "/faha");
    faha_->Start();
    ASSERT_TRUE(faha_->WaitReady()) << faha_->Log();
    redis_ = std::make_unique<RedisServer>(dir_.path());
    ASSERT_TRUE(redis_->WaitReady()) << "redis-server did not start";
  }
  TempDir dir_;
  std::unique_ptr<ServerProcess> faha_;
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(CommandTableTest, CommandInfoOfEveryRowEqualsRedis) {
  RespConnection faha(faha_->port()), redis(redis_->port());
  int compared = 0;
  for (const CommandRow& row : CommandTable()) {
    const std::string name(row.name);
    if (kNotCompared.count(name)) continue;
    EXPECT_EQ(faha.Call({"COMMAND", "INFO", name}), redis.Call({"COMMAND", "INFO", name}))
        << "COMMAND INFO " << name;
    compared++;
  }
  EXPECT_GE(compared, 30);
  // Unknown names, and several at once in any case.
  const std::vector<std::string> info = {"COMMAND", "INFO", "GeT", "no-such-command", "mset"};
  EXPECT_EQ(faha.Call(info), redis.Call(info));
}

TEST_F(CommandTableTest, CommandListsEveryRowAndCountsThem) {
  RespConnection faha(faha_->port());
  const std::string count = faha.Call({"COMMAND", "COUNT"});
  EXPECT_EQ(count, ":" + std::to_string(CommandTable().size()) + "\r\n");
  const std::string all = faha.Call({"COMMAND"});
  ASSERT_EQ(all.rfind("*" + std::to_string(CommandTable().size()) + "\r\n", 0), 0u) << all;
  for (const CommandRow& row : CommandTable()) {
    const std::string name(row.name);
    EXPECT_NE(all.find("*10\r\n$" + std::to_string(name.size()) + "\r\n" + name + "\r\n"),
              std::string::npos)
        << name;
  }
}

// The dispatcher's checks come from the rows: wrong arity gives Redis's error
// text for every row (as Redis does), NOAUTH before AUTH except for the rows
// that may run unauthenticated.
TEST_F(CommandTableTest, ArityAndAuthenticationComeFromTheRows) {
  RespConnection faha(faha_->port()), redis(redis_->port());
  for (const CommandRow& row : CommandTable()) {
    const std::string name(row.name);
    if (row.arity == -1) continue;  // any number of arguments is fine
    // One argument too many for an exact arity, one too few for a minimum.
    std::vector<std::string> args = {name};
    const int send = row.arity > 0 ? row.arity + 1 : -row.arity - 1;
    while (static_cast<int>(args.size()) < send) args.push_back("x");
    // EXEC refused is EXECABORT with the reason, as Redis answers it.
    const std::string expected =
        std::string(name == "exec" ? "-EXECABORT Transaction discarded because of: " : "-ERR ") +
        "wrong number of arguments for '" + name + "' command\r\n";
    EXPECT_EQ(faha.Call(args), expected) << name;
    if (!kNotCompared.count(name)) {
      EXPECT_EQ(redis.Call(args), expected) << name;
    }
  }

  ServerProcess locked(dir_.path() + "/locked", {"--requirepass=secret"});
  locked.Start();
  ASSERT_TRUE(locked.WaitReady()) << locked.Log();
  RespConnection anon(locked.port());
  for (const CommandRow& row : CommandTable()) {
    const std::string name(row.name);
    if (name == "quit" || name == "shutdown") continue;  // would end the connection
    std::vector<std::string> args = {name};
    const int want = row.arity > 0 ? row.arity : -row.arity;
    while (static_cast<int>(args.size()) < want) args.push_back("x");
    const std::string reply = anon.Call(args);
    if (name == "exec") {
      EXPECT_EQ(reply,
                "-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n");
    } else if (row.flags & kCmdNoAuth) {
      EXPECT_NE(reply, "-NOAUTH Authentication required.\r\n") << name;
    } else {
      EXPECT_EQ(reply, "-NOAUTH Authentication required.\r\n") << name;
    }
  }
}

// Commands added as one row and one handler each, against redis-server: the
// same commands to both, the replies compared byte for byte.
TEST_F(CommandTableTest, NewStringCommandsAndIntegersAnswerAsRedisDoes) {
  RespConnection faha(faha_->port()), redis(redis_->port());
  const std::vector<std::vector<std::string>> script = {
      {"SETEX", "k", "100", "hello world"},
      {"GET", "k"},
      {"TTL", "k"},
      {"PSETEX", "p", "100000", "v"},
      {"TTL", "p"},
      {"SETEX", "k", "0", "v"},
      {"SETEX", "k", "-5", "v"},
      {"SETEX", "k", "ten", "v"},
      {"PSETEX", "k", "9223372036854775807", "v"},
      {"SETEX", "k", "9223372036854775807", "v"},
      {"SETEX", "k", "100"},
      {"GET", "k"},
      {"GETRANGE", "k", "0", "4"},
      {"GETRANGE", "k", "-5", "-1"},
      {"GETRANGE", "k", "6", "100"},
      {"GETRANGE", "k", "-100", "2"},
      {"GETRANGE", "k", "-1", "-5"},
      {"GETRANGE", "k", "5", "3"},
      {"GETRANGE", "k", "11", "20"},
      {"GETRANGE", "k", "0", "-1"},
      {"GETRANGE", "k", "0", "x"},
      {"GETRANGE", "missing", "0", "-1"},
      {"SUBSTR", "k", "1", "3"},
      {"SET", "empty", ""},
      {"GETRANGE", "empty", "0", "-1"},
      {"GETRANGE", "k", "0"},
      // Integers as Redis reads them: no '+', blanks, leading zeros or "-0".
      {"SETEX", "k", "010", "v"},
      {"SETEX", "k", "+5", "v"},
      {"INCRBY", "n", "007"},
      {"INCRBY", "n", "-0"},
      {"INCRBY", "n", " 5"},
      {"INCRBY", "n", "-5"},
      {"INCRBY", "n", "0"},
      {"EXPIRE", "n", "+100"},
      {"GETRANGE", "k", "00", "1"},
      {"SET", "z", "007"},
      {"INCR", "z"},
      {"SET", "z", "-0"},
      {"DECR", "z"},
      {"SET", "z", "9223372036854775807"},
      {"INCR", "z"},
      // GETSET and TOUCH.
      {"GETSET", "g", "one"},
      {"GETSET", "g", "two"},
      {"GET", "g"},
      {"GETSET", "g"},
      {"TOUCH", "g", "k", "missing", "g"},
      {"TOUCH"},
      // GETDEL.
      {"SET", "d", "gone soon"},
      {"GETDEL", "d"},
      {"GETDEL", "d"},
      {"EXISTS", "d"},
      {"GETDEL"},
      {"GETDEL", "d", "e"},
      // EXPIRETIME and PEXPIRETIME (an absolute expiry, so both servers agree).
      {"SET", "x", "v"},
      {"EXPIRETIME", "x"},
      {"PEXPIRETIME", "x"},
      {"EXPIRETIME", "missing"},
      {"PEXPIREAT", "x", "4000000000499"},
      {"EXPIRETIME", "x"},
      {"PEXPIRETIME", "x"},
      {"PEXPIREAT", "x", "4000000000500"},
      {"EXPIRETIME", "x"},
      {"EXPIRETIME"},
      {"PEXPIRETIME", "x", "y"},
      // SETNX and MSETNX.
      {"SETNX", "nx", "first"},
      {"SETNX", "nx", "second"},
      {"GET", "nx"},
      {"SETNX", "nx"},
      {"MSETNX", "m1", "a", "m2", "b"},
      {"MSETNX", "m2", "c", "m3", "d"},
      {"MGET", "m1", "m2", "m3"},
      {"MSETNX", "m4", "a", "m4", "b"},
      {"GET", "m4"},
      {"MSETNX", "m5", "a", "m6"},
      // APPEND keeps the expiry.
      {"APPEND", "ap", "hello"},
      {"APPEND", "ap", " world"},
      {"GET", "ap"},
      {"PEXPIREAT", "ap", "4000000000000"},
      {"APPEND", "ap", "!"},
      {"PEXPIRETIME", "ap"},
      {"APPEND", "ap", ""},
      {"APPEND", "ap"},
      // SETRANGE: padding with zero bytes, empty values, bad offsets.
      {"SETRANGE", "sr", "5", "abc"},
      {"GET", "sr"},
      {"SETRANGE", "sr", "0", "XY"},
      {"GET", "sr"},
      {"SETRANGE", "sr", "6", "long tail"},
      {"GET", "sr"},
      {"SETRANGE", "sr", "2", ""},
      {"SETRANGE", "missing", "3", ""},
      {"EXISTS", "missing"},
      {"SETRANGE", "sr", "-1", "x"},
      {"SETRANGE", "sr", "one", "x"},
      {"SETRANGE", "sr", "1"},
      // INCRBYFLOAT, Redis's formatting and errors included.
      {"INCRBYFLOAT", "f", "10.5"},
      {"INCRBYFLOAT", "f", "0.1"},
      {"INCRBYFLOAT", "f", "-5"},
      {"INCRBYFLOAT", "f", "5.0e3"},
      {"INCRBYFLOAT", "f", "2.0e2"},
      {"INCRBYFLOAT", "f", "-5200.6"},
      {"INCRBYFLOAT", "f", "3"},
      {"INCRBYFLOAT", "f", "1e300"},
      {"INCRBYFLOAT", "f", "abc"},
      {"INCRBYFLOAT", "f", " 1"},
      {"INCRBYFLOAT", "f", "inf"},
      {"INCRBYFLOAT", "f", "nan"},
      {"INCRBYFLOAT", "f", ""},
      {"SET", "f", "1.5"},
      {"INCRBYFLOAT", "f", "-1.5"},
      {"SET", "f", "not a float"},
      {"INCRBYFLOAT", "f", "1"},
      {"SET", "f", "0x10"},
      {"INCRBYFLOAT", "f", "1"},
      {"INCRBYFLOAT", "i", "1"},
      {"INCRBYFLOAT", "i", "0.000000000000000001"},
      {"INCRBYFLOAT", "i"},
      // GETEX and its options.
      {"SET", "ge", "v"},
      {"GETEX", "ge"},
      {"TTL", "ge"},
      {"GETEX", "ge", "PXAT", "4000000000000"},
      {"PEXPIRETIME", "ge"},
      {"GETEX", "ge", "PERSIST"},
      {"TTL", "ge"},
      {"GETEX", "ge", "EXAT", "4000000000"},
      {"EXPIRETIME", "ge"},
      {"GETEX", "ge", "EX", "0"},
      {"GETEX", "ge", "EX", "-1"},
      {"GETEX", "ge", "PX", "x"},
      {"GETEX", "ge", "EX"},
      {"GETEX", "ge", "EX", "10", "PX", "10"},
      {"GETEX", "ge", "PERSIST", "EX", "10"},
      {"GETEX", "ge", "KEEPTTL"},
      {"GETEX", "missing", "EX", "10"},
      {"GETEX", "ge", "PXAT", "1"},
      {"EXISTS", "ge"},
      {"GETEX"},
      // Client names: printable ASCII without spaces.
      {"CLIENT", "SETNAME", "my name"},
      {"CLIENT", "SETNAME", "tab\there"},
      {"CLIENT", "SETNAME", "caf\xc3\xa9"},
      {"CLIENT", "SETNAME", "worker-1"},
      {"CLIENT", "GETNAME"},
      {"CLIENT", "SETNAME", ""},
      {"CLIENT", "GETNAME"},
      {"HELLO", "2", "SETNAME", "bad name"},
      // A NUL inside a value ends strtold early: not a float (found by random_diff_test).
      {"SET", "nulfloat", std::string("1\0", 2)},
      {"INCRBYFLOAT", "nulfloat", "1"},
      {"SETRANGE", "padded", "3", "2"},
      {"INCRBYFLOAT", "padded", "1.5"},
  };
  for (const auto& cmd : script) {
    std::string line;
    for (const auto& a : cmd) line += a + " ";
    EXPECT_EQ(faha.Call(cmd), redis.Call(cmd)) << line;
  }
}

// The keys of one SCAN reply ("*2 cursor *N bulk..."), sorted; the cursor
// must be 0 (one page holds every key here).
std::vector<std::string> ScanKeys(const std::string& reply) {
  std::vector<std::string> keys;
  size_t pos = reply.find("\r\n*");  // after the cursor's bulk
  EXPECT_EQ(reply.substr(0, 11), "*2\r\n$1\r\n0\r\n") << reply;
  if (pos == std::string::npos) return keys;
  pos = reply.find("\r\n", pos + 3) + 2;
  while (pos < reply.size() && reply[pos] == '$') {
    const size_t eol = reply.find("\r\n", pos);
    const size_t len = std::stoul(reply.substr(pos + 1, eol - pos - 1));
    keys.push_back(reply.substr(eol + 2, len));
    pos = eol + 2 + len + 2;
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

// SCAN MATCH with Redis's glob: sets, ranges (reversed too), negation,
// escapes, '?', runs of '*', unterminated sets, NUL and high bytes in keys.
TEST_F(CommandTableTest, ScanMatchSelectsTheKeysRedisSelects) {
  RespConnection faha(faha_->port()), redis(redis_->port());
  const std::vector<std::string> keys = {"a",
                                         "b",
                                         "c",
                                         "d",
                                         "ab",
                                         "abc",
                                         "a*c",
                                         "a?c",
                                         "a[c",
                                         "a]c",
                                         "a\\c",
                                         "a-c",
                                         "x",
                                         std::string("n\0l", 3),
                                         std::string("\0", 1),
                                         "\xe9t\xe9",
                                         "\x80",
                                         "\xff",
                                         "hello",
                                         "hallo",
                                         "hllo",
                                         "heeeello",
                                         "^",
                                         "user:1",
                                         "user:22",
                                         "user:abc",
                                         ""};
  for (const auto& k : keys) {
    ASSERT_EQ(faha.Call({"SET", k, "v"}), redis.Call({"SET", k, "v"})) << k;
  }
  const std::vector<std::string> patterns = {"*",
                                             "**",
                                             "a*",
                                             "*c",
                                             "a?c",
                                             "a\\?c",
                                             "a\\*c",
                                             "[abc]",
                                             "[^abc]",
                                             "[a-c]",
                                             "[c-a]",
                                             "[^a-c]",
                                             "a[*?]c",
                                             "a[\\]]c",
                                             "a[\\-]c",
                                             "a[",
                                             "a[c",
                                             "[",
                                             "[]",
                                             "[^]",
                                             "h?llo",
                                             "h*llo",
                                             "h[ae]llo",
                                             "h[^e]llo",
                                             "h*l*o",
                                             "*:*",
                                             "user:??",
                                             "user:[0-9]*",
                                             std::string("n\0l", 3),
                                             std::string("n?l", 3),
                                             "?",
                                             "\\",
                                             "a\\",
                                             "[\x80-\xff]",
                                             "[\xe9]t*",
                                             "\\^",
                                             "^",
                                             "",
                                             "*a*b*c*"};
  for (const auto& p : patterns) {
    const std::vector<std::string> cmd = {"SCAN", "0", "MATCH", p, "COUNT", "1000"};
    EXPECT_EQ(ScanKeys(faha.Call(cmd)), ScanKeys(redis.Call(cmd))) << "pattern " << p;
  }
}

// RENAME, RENAMENX, COPY, OBJECT and LCS (IDX ranges in Redis's order, with
// MINMATCHLEN and WITHMATCHLEN), then KEYS (compared as sets: Redis leaves
// the order to the implementation) and RANDOMKEY (one of the keys).
TEST_F(CommandTableTest, KeyspaceCommandsAnswerAsRedisDoes) {
  RespConnection faha(faha_->port()), redis(redis_->port());
  const std::vector<std::vector<std::string>> script = {
      {"FLUSHALL"},
      {"SET", "a", "1"},
      {"SET", "b", "hello", "EX", "100"},
      {"RENAME", "a", "c"},
      {"GET", "c"},
      {"EXISTS", "a"},
      {"RENAME", "nokey", "x"},
      {"RENAME", "c", "c"},
      {"RENAMENX", "c", "b"},
      {"RENAMENX", "c", "d"},
      {"RENAMENX", "d", "d"},
      {"TTL", "b"},
      {"RENAME", "b", "e"},
      {"TTL", "e"},
      {"COPY", "e", "f"},
      {"COPY", "e", "f"},
      {"COPY", "e", "f", "REPLACE"},
      {"COPY", "e", "e"},
      {"COPY", "e", "g", "DB", "0"},
      {"COPY", "e", "h", "DB", "x"},
      {"COPY", "e", "h", "FOO"},
      {"COPY", "nokey", "z"},
      {"TTL", "f"},
      {"OBJECT", "ENCODING", "d"},
      {"OBJECT", "ENCODING", "e"},
      {"SET", "big", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
      {"OBJECT", "ENCODING", "big"},
      {"SET", "n", "12345"},
      {"OBJECT", "ENCODING", "n"},
      {"OBJECT", "REFCOUNT", "n"},
      {"SET", "n2", "42"},
      {"OBJECT", "REFCOUNT", "n2"},
      {"OBJECT", "REFCOUNT", "big"},
      {"OBJECT", "ENCODING", "nokey"},
      {"OBJECT", "FREQ", "n"},
      {"OBJECT", "NOPE", "n"},
      {"OBJECT", "ENCODING"},
      {"OBJECT", "HELP"},
      {"SET", "k1", "ohmytext"},
      {"SET", "k2", "mynewtext"},
      {"LCS", "k1", "k2"},
      {"LCS", "k1", "k2", "LEN"},
      {"LCS", "k1", "k2", "IDX"},
      {"LCS", "k1", "k2", "IDX", "MINMATCHLEN", "4"},
      {"LCS", "k1", "k2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"},
      {"LCS", "k1", "k2", "IDX", "WITHMATCHLEN"},
      {"LCS", "k1", "k2", "IDX", "LEN"},
      {"LCS", "k1", "nokey"},
      {"LCS", "nokey", "nokey2", "IDX"},
      {"LCS", "k1", "k2", "FOO"},
      {"SET", "x1", "abcabcabcabc"},
      {"SET", "x2", "cbacbacbacba"},
      {"LCS", "x1", "x2", "IDX", "WITHMATCHLEN"},
      {"LCS", "x2", "x1", "IDX"},
      {"SET", "y1", "aaaa"},
      {"SET", "y2", "aaaa"},
      {"LCS", "y1", "y2", "IDX", "WITHMATCHLEN"},
  };
  for (const auto& cmd : script) {
    std::string line;
    for (const auto& a : cmd) line += a + " ";
    EXPECT_EQ(faha.Call(cmd), redis.Call(cmd)) << line;
  }
  for (const std::string pattern : {"*", "k?", "[xy]*", "nomatch"}) {
    EXPECT_EQ(ScanKeys("*2\r\n$1\r\n0\r\n" + faha.Call({"KEYS", pattern})),
              ScanKeys("*2\r\n$1\r\n0\r\n" + redis.Call({"KEYS", pattern})))
        << "KEYS " << pattern;
  }
  const std::string random = faha.Call({"RANDOMKEY"});
  ASSERT_EQ(random[0], '$') << random;
  const std::string key = random.substr(random.find("\r\n") + 2);
  EXPECT_EQ(faha.Call({"EXISTS", key.substr(0, key.size() - 2)}), ":1\r\n") << random;
  EXPECT_EQ(faha.Call({"COPY", "e", "h", "DB", "16"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(faha.Call({"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(faha.Call({"RANDOMKEY"}), "$-1\r\n");
}

}  // namespace
}  // namespace faha::test
