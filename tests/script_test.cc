// Scripts against a real redis-server (Debian's 7.0): EVAL, EVALSHA, the _RO
// forms and SCRIPT, with scripts that return every Lua type, call and pcall
// commands, fail at compile and run time, touch the sandbox, and write keys;
// every reply must be equal byte for byte (the SHA-1s in error texts too).
// Then what only FaHA does: BUSY while a long script runs, SCRIPT KILL of a
// script that wrote (nothing of it is applied), the interpreter's memory cap,
// and a server that stops while a script loops.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

class ScriptTest : public ::testing::Test {
 protected:
  void StartFaha(std::vector<std::string> flags = {}) {
    faha_ = std::make_unique<ServerProcess>(dir_.path() + "/faha", std::move(flags));
    faha_->Start();
    ASSERT_TRUE(faha_->WaitReady()) << faha_->Log();
  }
  TempDir dir_;
  std::unique_ptr<ServerProcess> faha_;
};

std::vector<std::vector<std::string>> DifferentialCases() {
  return {
      {"SET", "s", "text"},
      {"SET", "n", "10"},
      // Every Lua type back to RESP.
      {"EVAL", "return 1", "0"},
      {"EVAL", "return 3.99", "0"},
      {"EVAL", "return -0.9", "0"},
      {"EVAL", "return 1.5e20", "0"},
      {"EVAL", "return 'str'", "0"},
      {"EVAL", "return ''", "0"},
      {"EVAL", "return true", "0"},
      {"EVAL", "return false", "0"},
      {"EVAL", "return nil", "0"},
      {"EVAL", "return", "0"},
      {"EVAL", "return {1,2,{3,'x'},nil,5}", "0"},
      {"EVAL", "return {1,{2,{3,{4,{}}}}}", "0"},
      {"EVAL", "local t = {} t[1]=1 t[3]=3 return t", "0"},
      {"EVAL", "return {ok='fine'}", "0"},
      {"EVAL", "return {err='bad thing'}", "0"},
      {"EVAL", "return {ok='x', err='y'}", "0"},
      {"EVAL", "return redis.error_reply('My Error')", "0"},
      {"EVAL", "return redis.status_reply('FINE')", "0"},
      {"EVAL", "return redis.error_reply('boom')", "0"},
      {"EVAL", "return redis.error_reply('-x')", "0"},
      {"EVAL", "return redis.error_reply('-CODE with text')", "0"},
      {"EVAL", "return redis.error_reply('NOSCRIPT')", "0"},
      {"EVAL", "return redis.error_reply(1)", "0"},
      {"EVAL", "return redis.error_reply()", "0"},
      {"EVAL", "return redis.status_reply(1)", "0"},
      {"EVAL", "return redis.error_reply('line\r\n')", "0"},
      {"EVAL", "return {true, false, 'a'}", "0"},
      {"EVAL", "return math.huge", "0"},
      // Numbers outside an integer's range, and NaN, as Redis answers them.
      {"EVAL", "return -math.huge", "0"},
      {"EVAL", "return 0/0", "0"},
      {"EVAL", "return {2^63, -2^63, 2^62, -2.9, 1e300}", "0"},
      {"EVAL", "return tostring(math.huge)", "0"},
      {"EVAL", "return string.rep('ab', 3)", "0"},
      // KEYS and ARGV; numkeys errors.
      {"EVAL", "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}", "2", "k1", "k2", "a1",
       "a2"},
      {"EVAL", "return KEYS[1]..ARGV[1]", "1", "k", "v"},
      {"EVAL", "return 1", "-1"},
      {"EVAL", "return 1", "abc"},
      {"EVAL", "return 1", "3", "a"},
      {"EVAL", "return 1"},
      // Commands: every reply type into Lua and back.
      {"EVAL", "return redis.call('get', KEYS[1])", "1", "s"},
      {"EVAL", "return redis.call('get', 'missing')", "0"},
      {"EVAL", "return type(redis.call('get', 'missing'))", "0"},
      {"EVAL", "return redis.call('set', 'x', 'y')", "0"},
      {"EVAL", "return redis.call('set', 'x', 'y')['ok']", "0"},
      {"EVAL", "return redis.call('incr', 'n')", "0"},
      {"EVAL", "return redis.call('mget', 'n', 'missing', 's')", "0"},
      {"EVAL", "return redis.call('del', 'nope')", "0"},
      {"EVAL", "return {redis.call('set', 'x', 'z'), redis.call('get', 'x')}", "0"},
      {"EVAL", "return redis.call('ping')", "0"},
      {"EVAL", "return redis.call('echo', 'hi')", "0"},
      {"EVAL", "return redis.call('set', 'num', 42)", "0"},
      {"EVAL", "return redis.call('get', 'num')", "0"},
      {"EVAL", "return redis.call('incrbyfloat', 'f', 1.5)", "0"},
      {"EVAL", "redis.call('set', KEYS[1], 1/3) return redis.call('get', KEYS[1])", "1", "third"},
      {"EVAL", "return redis.call('set', 'big', 2^53 + 1)", "0"},
      {"GET", "big"},
      {"EVAL", "return redis.call('expire', 's', 100)", "0"},
      {"EVAL", "return redis.call('ttl', 's')", "0"},
      {"EVAL", "return redis.call('exists', 's', 'x', 'nope')", "0"},
      // Errors of redis.call, raised or caught; Lua errors; compile errors.
      {"EVAL", "return redis.call('incr', 's')", "0"},
      {"EVAL", "return redis.pcall('incr', 's')", "0"},
      {"EVAL", "local ok, e = pcall(function() redis.call('incr','s') end) return e", "0"},
      {"EVAL", "return pcall(redis.call, 'incr', 'n')", "0"},
      {"EVAL", "return redis.call('nosuch')", "0"},
      {"EVAL", "return redis.pcall('nosuch')", "0"},
      {"EVAL", "return redis.call('get')", "0"},
      {"EVAL", "return redis.call('multi')", "0"},
      {"EVAL", "return redis.call('eval', 'return 1', '0')", "0"},
      {"EVAL", "return redis.call('set', 'a', {})", "0"},
      {"EVAL", "return redis.call()", "0"},
      {"EVAL", "return redis.call(1)", "0"},
      {"EVAL", "error('boom')", "0"},
      {"EVAL", "error({err='TABLED boom'})", "0"},
      {"EVAL", "return 'x' .. nil", "0"},
      {"EVAL", "\n\nlocal a = 1\nreturn a + nil", "0"},
      {"EVAL", "syntax error here", "0"},
      {"EVAL", "return (", "0"},
      // The sandbox.
      {"EVAL", "return x", "0"},
      {"EVAL", "x = 5", "0"},
      {"EVAL", "return os", "0"},
      {"EVAL", "return io", "0"},
      {"EVAL", "return type(dofile)", "0"},
      {"EVAL", "return type(print)", "0"},
      {"EVAL", "return type(setfenv)", "0"},
      {"EVAL", "return type(loadstring)", "0"},
      {"EVAL", "return loadstring(string.dump(function() return 1 end))", "0"},
      {"EVAL", "return loadstring('return 7')()", "0"},
      {"EVAL", "return redis.sha1hex('')", "0"},
      {"EVAL", "return redis.sha1hex('abc')", "0"},
      {"EVAL", "return cjson.encode({1, 'a', {b=2}})", "0"},
      {"EVAL", "return cjson.decode('[1,2,{\"x\":3}]')[3].x", "0"},
      {"EVAL", "return bit.band(12, 10)", "0"},
      {"EVAL", "return bit.tohex(255)", "0"},
      {"EVAL", "return redis.setresp(2)", "0"},
      {"EVAL", "redis.setresp(3) return redis.call('get', 'missing')", "0"},
      {"EVAL", "return redis.log(redis.LOG_WARNING, 'from a script')", "0"},
      {"EVAL", "local function f() return f() + 1 end return f()", "0"},
      // Writes before an error stay, as in Redis.
      {"EVAL", "redis.call('set', 'before', '1') error('after')", "0"},
      {"GET", "before"},
      {"EVAL", "redis.call('set', 'before2', '1') return redis.call('incr', 's')", "0"},
      {"GET", "before2"},
      // EVALSHA, SCRIPT.
      {"SCRIPT", "LOAD", "return 'loaded'"},
      {"EVALSHA", "5c0b2ca8b8e4dd8a8b1fa14be7bd8b6c5a4ea8e1", "0"},
      {"EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"},
      {"EVALSHA", "short", "0"},
      {"SCRIPT", "EXISTS", "ffffffffffffffffffffffffffffffffffffffff"},
      {"EVAL", "return 'cached by eval'", "0"},
      {"EVALSHA", "16c7cfcd4e0d23aa4c2aa4e26e9e8a5bb3b39e61", "0"},
      {"SCRIPT", "FLUSH"},
      {"SCRIPT", "FLUSH", "SYNC"},
      {"SCRIPT", "FLUSH", "bad"},
      {"SCRIPT", "KILL"},
      {"SCRIPT", "NOSUCH"},
      {"SCRIPT", "LOAD"},
      {"SCRIPT", "LOAD", "syntax error here"},
      // The read-only forms.
      {"EVAL_RO", "return redis.call('get', 's')", "0"},
      {"EVAL_RO", "return redis.call('set', 'a', 'b')", "0"},
      {"EVAL_RO", "return redis.pcall('set', 'a', 'b')", "0"},
      {"EXISTS", "a"},
      // A script in a transaction.
      {"MULTI"},
      {"SET", "t", "1"},
      {"EVAL", "return redis.call('incr', KEYS[1])", "1", "t"},
      {"EXEC"},
  };
}

TEST_F(ScriptTest, RepliesEqualRedisByteForByte) {
  StartFaha();
  RedisServer redis_server(dir_.path());
  ASSERT_TRUE(redis_server.WaitReady());
  RespConnection faha(faha_->port()), redis(redis_server.port());
  // SCRIPT LOAD's SHA-1, then EVALSHA of it, compared too.
  const std::string sha = faha.Call({"SCRIPT", "LOAD", "return 'loaded'"});
  EXPECT_EQ(sha, redis.Call({"SCRIPT", "LOAD", "return 'loaded'"}));
  const std::string sha1 = sha.substr(sha.find("\r\n") + 2, 40);
  EXPECT_EQ(faha.Call({"EVALSHA", sha1, "0"}), redis.Call({"EVALSHA", sha1, "0"}));
  EXPECT_EQ(faha.Call({"SCRIPT", "EXISTS", sha1, "0000"}),
            redis.Call({"SCRIPT", "EXISTS", sha1, "0000"}));
  for (const auto& cmd : DifferentialCases()) {
    std::string line;
    for (const auto& a : cmd) line += a + " ";
    EXPECT_EQ(faha.Call(cmd), redis.Call(cmd)) << line;
  }
}

// BUSY while a script loops, SCRIPT KILL, and nothing it wrote is applied.
TEST_F(ScriptTest, AKilledScriptLeavesNothingAndOthersGotBusy) {
  StartFaha({"--busy_reply_threshold_ms=100"});
  std::string looped;
  std::thread runner([&] {
    RespConnection c(faha_->port(), 30000);
    looped = c.Call({"EVAL", "redis.call('set', KEYS[1], 'written') while true do end", "1", "w"});
  });
  RespConnection other(faha_->port());
  std::string reply;
  for (int64_t deadline = MonoMs() + 10000; MonoMs() < deadline;) {
    reply = other.Call({"GET", "w"});
    if (reply.rfind("-BUSY", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(reply,
            "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN "
            "NOSAVE.\r\n");
  EXPECT_EQ(other.Call({"SCRIPT", "KILL"}), "+OK\r\n");
  runner.join();
  EXPECT_EQ(looped.rfind("-ERR Script killed by user with SCRIPT KILL", 0), 0u) << looped;
  EXPECT_EQ(other.Call({"GET", "w"}), "$-1\r\n");
  EXPECT_EQ(other.Call({"SCRIPT", "KILL"}), "-NOTBUSY No scripts in execution right now.\r\n");
  EXPECT_EQ(other.Call({"EVAL", "return redis.call('set', 'after', 'kill')", "0"}), "+OK\r\n");
}

// The interpreter's memory is capped: a script that needs more fails, the
// server goes on, and so do later scripts.
TEST_F(ScriptTest, AScriptOverTheMemoryCapFailsAndTheServerGoesOn) {
  StartFaha({"--script_memory_mb=8"});
  RespConnection c(faha_->port(), 60000);
  const std::string big =
      c.Call({"EVAL",
              "local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 64) .. i end return #t", "0"});
  EXPECT_EQ(big.rfind("-ERR not enough memory", 0), 0u) << big;
  const std::string huge = c.Call({"EVAL", "return #string.rep('x', 1e9)", "0"});
  EXPECT_EQ(huge.rfind("-ERR not enough memory", 0), 0u) << huge;
  EXPECT_EQ(c.Call({"EVAL", "return #string.rep('x', 1e6)", "0"}), ":1000000\r\n");
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
}

// A server asked to stop while a script loops stops the script (nothing it
// wrote is applied) and exits.
TEST_F(ScriptTest, AServerStopsWhileAScriptLoops) {
  StartFaha();
  std::thread runner([&] {
    RespConnection c(faha_->port(), 30000);
    c.Call({"EVAL", "redis.call('set', 'loop', 'written') while true do end", "0"});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int64_t t0 = MonoMs();
  faha_->Kill(SIGTERM);
  EXPECT_LT(MonoMs() - t0, 10000);
  runner.join();
  faha_->Start();
  ASSERT_TRUE(faha_->WaitReady()) << faha_->Log();
  RespConnection c(faha_->port());
  EXPECT_EQ(c.Call({"GET", "loop"}), "$-1\r\n");
}

// SCRIPT KILL of a script inside MULTI drops the whole transaction; a
// command refused BUSY inside MULTI aborts it; a script that catches the
// kill error in a loop still stops.
TEST_F(ScriptTest, KillsDropWholeTransactionsAndCannotBeCaught) {
  StartFaha({"--busy_reply_threshold_ms=100"});
  RespConnection other(faha_->port());
  auto kill_when_busy = [&] {
    for (int64_t deadline = MonoMs() + 10000; MonoMs() < deadline;) {
      if (other.Call({"SCRIPT", "KILL"}) == "+OK\r\n") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  std::vector<std::string> replies;
  std::thread runner([&] {
    RespConnection c(faha_->port(), 30000);
    replies = c.Pipeline({{"MULTI"},
                          {"SET", "a", "1"},
                          {"EVAL", "redis.call('set', 'b', '2') while true do end", "0"},
                          {"EXEC"}});
  });
  ASSERT_TRUE(kill_when_busy());
  runner.join();
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[3].rfind("-EXECABORT Transaction discarded because of: a script in it was "
                             "killed",
                             0),
            0u)
      << replies[3];
  EXPECT_EQ(other.Call({"EXISTS", "a", "b"}), ":0\r\n");

  std::string caught;
  std::thread catcher([&] {
    RespConnection c(faha_->port(), 30000);
    caught = c.Call({"EVAL", "while true do pcall(function() while true do end end) end", "0"});
  });
  ASSERT_TRUE(kill_when_busy());
  catcher.join();
  EXPECT_EQ(caught.rfind("-ERR Script killed by user", 0), 0u) << caught;

  // BUSY while queueing aborts the transaction, as Redis's refusals do.
  std::thread looper([&] {
    RespConnection c(faha_->port(), 30000);
    c.Call({"EVAL", "while true do end", "0"});
  });
  RespConnection t(faha_->port());
  EXPECT_EQ(t.Call({"MULTI"}), "+OK\r\n");
  std::string busy;
  for (int64_t deadline = MonoMs() + 10000; MonoMs() < deadline;) {
    busy = t.Call({"SET", "c", "3"});
    if (busy.rfind("-BUSY", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(busy.rfind("-BUSY", 0), 0u) << busy;
  ASSERT_TRUE(kill_when_busy());
  looper.join();
  EXPECT_EQ(t.Call({"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.\r\n");
}

// What a script returns or leaves behind cannot stop the server or change
// what later scripts see.
TEST_F(ScriptTest, ScriptsCannotBreakTheServerOrLaterScripts) {
  StartFaha();
  RespConnection c(faha_->port(), 30000);
  // A metamethod that fails, and a table that holds itself, as the reply.
  EXPECT_EQ(c.Call({"EVAL", "return setmetatable({}, {__index = function() error('x') end})", "0"}),
            "*0\r\n");
  const std::string cyclic =
      c.Call({"EVAL", "local t = {} for i = 1, 4 do t[i] = t end return t", "0"});
  EXPECT_EQ(cyclic.rfind("-ERR", 0), 0u) << cyclic.substr(0, 200);
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
  // The shared libraries and globals are read-only; loadstring gets the
  // script's own globals; the raw setters are gone.
  for (const char* script : {"redis.call = function() return 'hijacked' end", "string.rep = nil",
                             "_G.x = 1", "loadstring('y = 1')()", "rawset(redis, 'call', nil)",
                             "newproxy(true)", "getmetatable('').__index = {}"}) {
    const std::string r = c.Call({"EVAL", script, "0"});
    EXPECT_EQ(r.rfind("-ERR", 0), 0u) << script << ": " << r;
  }
  EXPECT_EQ(c.Call({"EVAL", "return redis.call('ping')", "0"}), "+PONG\r\n");
  EXPECT_EQ(c.Call({"EVAL", "return string.rep('a', 3)", "0"}), "$3\r\naaa\r\n");
  EXPECT_EQ(c.Call({"EVAL", "return type(x)", "0"}).rfind("-ERR", 0), 0u);
}

}  // namespace
}  // namespace faha::test
