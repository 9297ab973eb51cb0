// Independent clients: Debian's redis-cli and redis-benchmark (redis-tools)
// against a real faha-server on 127.0.0.1. They must work unmodified.
#include <gtest/gtest.h>

#include <sstream>

#include "faha/client.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

class RedisToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(dir_.path() + "/data");
    server_->Start();
    ASSERT_TRUE(server_->WaitReady()) << server_->Log();
    port_ = std::to_string(server_->port());
  }
  // redis-cli one-shot; returns stdout.
  std::string Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {"redis-cli", "-h", "127.0.0.1", "-p", port_};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunTool(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }
  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::string port_;
};

TEST_F(RedisToolsTest, RedisCliCommands) {
  EXPECT_EQ(Cli({"PING"}), "PONG\n");
  EXPECT_EQ(Cli({"ECHO", "hi there"}), "hi there\n");
  EXPECT_EQ(Cli({"SET", "k", "v"}), "OK\n");
  EXPECT_EQ(Cli({"SET", "k", "w", "NX"}), "\n");  // nil prints as an empty line when not a tty
  EXPECT_EQ(Cli({"SET", "k", "w", "XX", "GET"}), "v\n");
  EXPECT_EQ(Cli({"GET", "k"}), "w\n");
  EXPECT_EQ(Cli({"INCR", "n"}), "1\n");
  EXPECT_EQ(Cli({"DECR", "n"}), "0\n");
  EXPECT_EQ(Cli({"INCRBY", "n", "10"}), "10\n");
  EXPECT_EQ(Cli({"MSET", "a", "1", "b", "2"}), "OK\n");
  EXPECT_EQ(Cli({"MGET", "a", "b", "zz"}), "1\n2\n\n");
  EXPECT_EQ(Cli({"EXISTS", "a", "b", "zz"}), "2\n");
  EXPECT_EQ(Cli({"EXPIRE", "a", "100"}), "1\n");
  const std::string ttl = Cli({"TTL", "a"});  // 99 once half a second has passed (rounded)
  EXPECT_TRUE(ttl == "100\n" || ttl == "99\n") << ttl;
  std::string pttl = Cli({"PTTL", "a"});
  EXPECT_GT(std::stoll(pttl), 98000);
  EXPECT_EQ(Cli({"PEXPIRE", "nope", "100"}), "0\n");
  EXPECT_EQ(Cli({"DBSIZE"}), "4\n");
  EXPECT_EQ(Cli({"DEL", "a", "b", "zz"}), "2\n");
  std::string scan = Cli({"SCAN", "0", "COUNT", "100"});
  EXPECT_EQ(scan.substr(0, 2), "0\n") << scan;
  EXPECT_NE(scan.find("\nk\n"), std::string::npos) << scan;
  EXPECT_NE(scan.find("\nn\n"), std::string::npos) << scan;
  EXPECT_EQ(Cli({"SCAN", "0", "MATCH", "n*"}), "0\nn\n");
  EXPECT_EQ(Cli({"ROLE"}).substr(0, 8), "primary\n");
  std::string info = Cli({"INFO", "keyspace"});
  EXPECT_NE(info.find("db0:keys=2,expires=0"), std::string::npos) << info;
  EXPECT_NE(Cli({"INFO"}).find("# Persistence"), std::string::npos);
  EXPECT_EQ(Cli({"CONFIG", "GET", "appendonly"}), "appendonly\nno\n");
  EXPECT_NE(Cli({"COMMAND", "COUNT"}), "0\n");
  EXPECT_NE(Cli({"HELLO", "2"}).find("faha"), std::string::npos);
  EXPECT_EQ(Cli({"TYPE", "k"}), "string\n");
  std::string err = Cli({"NOSUCHCMD"});
  EXPECT_NE(err.find("ERR unknown command 'NOSUCHCMD'"), std::string::npos) << err;
  EXPECT_EQ(Cli({"FLUSHALL"}), "OK\n");
  EXPECT_EQ(Cli({"DBSIZE"}), "0\n");
}

TEST_F(RedisToolsTest, RedisCliReadsCommandsFromStdin) {
  RunResult r = RunTool({"redis-cli", "-h", "127.0.0.1", "-p", port_}, "SET x 1\nINCR x\nGET x\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n2\n2\n");
}

TEST_F(RedisToolsTest, RedisCliWithPassword) {
  ServerProcess secured(dir_.path() + "/secured", {"--requirepass=hunter2"});
  secured.Start();
  ASSERT_TRUE(secured.WaitReady()) << secured.Log();
  std::string port = std::to_string(secured.port());
  RunResult r =
      RunTool({"redis-cli", "-p", port, "--no-auth-warning", "-a", "hunter2", "SET", "s", "1"});
  EXPECT_EQ(r.out, "OK\n") << r.err;
  r = RunTool({"redis-cli", "-p", port, "GET", "s"});
  EXPECT_NE(r.out.find("NOAUTH"), std::string::npos) << r.out;
  r = RunTool({"redis-cli", "-p", port, "--no-auth-warning", "-a", "wrong", "GET", "s"});
  EXPECT_NE((r.out + r.err).find("WRONGPASS"), std::string::npos) << r.out << r.err;
}

TEST_F(RedisToolsTest, RedisBenchmarkRunsAndItsWritesAreStored) {
  RunResult r = RunTool({"redis-benchmark", "-h", "127.0.0.1", "-p", port_, "-t", "set,get", "-n",
                         "20000", "-c", "20", "-P", "8", "-d", "100", "-r", "500", "--csv"},
                        "", 120000);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // --csv: "test","rps",... one line per test
  std::istringstream lines(r.out);
  std::string line;
  int tests = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("\"SET\"", 0) == 0 || line.rfind("\"GET\"", 0) == 0) {
      double rps = std::stod(line.substr(line.find(',') + 2));
      EXPECT_GT(rps, 100.0) << line;
      tests++;
    }
  }
  EXPECT_EQ(tests, 2) << r.out;
  std::string dbsize = Cli({"DBSIZE"});
  EXPECT_GT(std::stoi(dbsize), 400);
  EXPECT_LE(std::stoi(dbsize), 500);
  std::string scan = Cli({"SCAN", "0", "COUNT", "1"});
  std::string key = scan.substr(scan.find('\n') + 1);
  key = key.substr(0, key.find('\n'));
  EXPECT_EQ(key.rfind("key:", 0), 0u) << scan;
  EXPECT_EQ(Cli({"STRLEN", key}), "100\n");  // redis-benchmark 7 writes random 100-byte values
  // And they survive a restart.
  server_->Kill(9);
  server_->Start();
  ASSERT_TRUE(server_->WaitReady());
  EXPECT_EQ(Cli({"DBSIZE"}), dbsize);
}

}  // namespace
}  // namespace faha::test
