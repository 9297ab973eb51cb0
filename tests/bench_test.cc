// faha-bench end to end: the committed YCSB workload files against a real
// faha-server (native protocol and RESP) and a real redis-server (RESP, with
// appendfsync always, WAIT and WAITAOF), all on 127.0.0.1.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

std::string Workload(const std::string& name) {
  return std::string(FAHA_SOURCE_DIR) + "/bench/workloads/" + name;
}

// The number after "[OP], FIELD, " in a YCSB report; -1 if absent.
double Field(const std::string& report, const std::string& op, const std::string& field) {
  const std::string head = "[" + op + "], " + field + ", ";
  size_t at = report.find(head);
  if (at == std::string::npos || (at > 0 && report[at - 1] != '\n')) return -1;
  return std::stod(report.substr(at + head.size()));
}

RunResult Bench(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BinDir() + "/faha-bench"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunTool(argv, "", 120000);
}

class FahaBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(dir_.path() + "/data");
    server_->Start();
    ASSERT_TRUE(server_->WaitReady()) << server_->Log();
  }
  std::string Target(const std::string& scheme) {
    return "target=" + scheme + "://127.0.0.1:" + std::to_string(server_->port());
  }
  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(FahaBenchTest, LoadThenRunWorkloadAOverNativeAndResp) {
  RunResult load = Bench({"load", "-P", Workload("workloada"), "-p", Target("native"), "-p",
                          "recordcount=2000", "-threads", "2"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  EXPECT_EQ(Field(load.out, "INSERT", "Operations"), 2000) << load.out;
  EXPECT_EQ(Field(load.out, "INSERT", "Return=OK"), 2000) << load.out;
  EXPECT_GT(Field(load.out, "OVERALL", "Throughput(ops/sec)"), 0) << load.out;
  for (const std::string scheme : {"native", "resp"}) {
    const std::string json = dir_.path() + "/" + scheme + ".json";
    RunResult run =
        Bench({"run", "-P", Workload("workloada"), "-p", Target(scheme), "-p", "recordcount=2000",
               "-p", "operationcount=5000", "-threads", "2", "-p", "exportfile=" + json});
    ASSERT_EQ(run.exit_code, 0) << scheme << ": " << run.err;
    const double reads = Field(run.out, "READ", "Return=OK");
    const double updates = Field(run.out, "UPDATE", "Return=OK");
    EXPECT_EQ(reads + updates, 5000) << scheme << ":\n" << run.out;
    EXPECT_NEAR(reads / 5000, 0.5, 0.05) << run.out;
    EXPECT_EQ(run.out.find("NOT_FOUND"), std::string::npos) << run.out;
    for (const char* f :
         {"AverageLatency(us)", "50thPercentileLatency(us)", "95thPercentileLatency(us)",
          "99thPercentileLatency(us)", "99.9thPercentileLatency(us)"}) {
      EXPECT_GT(Field(run.out, "READ", f), 0) << f << "\n" << run.out;
    }
    RunResult cat = RunTool({"cat", json});
    EXPECT_NE(cat.out.find("\"throughput_ops_per_sec\""), std::string::npos) << cat.out;
    EXPECT_NE(cat.out.find("\"READ\""), std::string::npos) << cat.out;
  }
}

TEST_F(FahaBenchTest, ReadsOfKeysNeverInsertedAreErrors) {
  ASSERT_EQ(Bench({"load", "-P", Workload("workloadc"), "-p", Target("native"), "-p",
                   "recordcount=1000", "-p", "insertcount=300"})
                .exit_code,
            0);
  RunResult run = Bench({"run", "-P", Workload("workloadc"), "-p", Target("native"), "-p",
                         "recordcount=1000", "-p", "operationcount=3000", "-p",
                         "requestdistribution=uniform", "-p", "failonerror=true"});
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_GT(Field(run.out, "READ", "Return=NOT_FOUND"), 1500) << run.out;
  EXPECT_GT(Field(run.out, "READ", "Return=OK"), 500) << run.out;
  EXPECT_NE(run.err.find("operations failed"), std::string::npos) << run.err;
}

TEST_F(FahaBenchTest, WorkloadEIsSkippedWithAReason) {
  RunResult run = Bench({"run", "-P", Workload("workloade"), "-p", Target("native")});
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_NE(run.err.find("no ordered scans"), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("[OVERALL]"), std::string::npos) << run.out;
}

TEST_F(FahaBenchTest, BadArgumentsAreRefusedClearly) {
  struct {
    std::vector<std::string> args;
    const char* says;
  } cases[] = {
      {{"bogus", "-P", Workload("workloada")}, "unknown phase"},
      {{"run", "-p", Target("native")}, "no workload file"},
      {{"run", "-P", Workload("workloada")}, "no target"},
      {{"run", "-P", Workload("workloada"), "-p", "target=http://x:1"}, "no known scheme"},
      {{"run", "-P", "/nonexistent/workload"}, "cannot read workload file"},
      {{"run", "-P", Workload("workloada"), "-p", "readproportion=2", "-p", Target("native")},
       "readproportion"},
      {{"run", "-P", Workload("workloada"), "-threads", "0", "-p", Target("native")},
       "threadcount"},
  };
  for (const auto& c : cases) {
    RunResult r = Bench(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.says;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
  // A server that is not there: a connect error, exit 1.
  RunResult r = Bench({"run", "-P", Workload("workloada"), "-p",
                       "target=native://127.0.0.1:" + std::to_string(FreePort())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect"), std::string::npos) << r.err;
}

TEST(FahaBenchRedisTest, DrivesRedisServerPlainAndDurable) {
  TempDir plain_dir, durable_dir;
  RedisServer plain(plain_dir.path(), {"--appendonly", "no"});
  RedisServer durable(durable_dir.path(), {"--appendonly", "yes", "--appendfsync", "always"});
  ASSERT_TRUE(plain.WaitReady());
  ASSERT_TRUE(durable.WaitReady());
  for (auto [port, durable_mode] :
       {std::pair{plain.port(), false}, std::pair{durable.port(), true}}) {
    const std::string target = "target=resp://127.0.0.1:" + std::to_string(port);
    // With appendfsync always Redis fsyncs its AOF before it replies; the
    // AOF must then hold the loaded records.
    std::vector<std::string> extra;
    std::vector<std::string> load = {"load", "-P", Workload("workloadb"), "-p",
                                     target, "-p", "recordcount=1000"};
    load.insert(load.end(), extra.begin(), extra.end());
    RunResult l = Bench(load);
    ASSERT_EQ(l.exit_code, 0) << l.err;
    EXPECT_EQ(Field(l.out, "INSERT", "Return=OK"), 1000) << l.out;
    std::vector<std::string> run = {"run",
                                    "-P",
                                    Workload("workloadb"),
                                    "-p",
                                    target,
                                    "-p",
                                    "recordcount=1000",
                                    "-p",
                                    "operationcount=3000",
                                    "-p",
                                    "failonerror=true"};
    run.insert(run.end(), extra.begin(), extra.end());
    RunResult r = Bench(run);
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(Field(r.out, "READ", "Return=OK") + Field(r.out, "UPDATE", "Return=OK"), 3000)
        << r.out;
    if (durable_mode) {
      RunResult aof = RunTool({"sh", "-c",
                               "cat " + durable_dir.path() +
                                   "/appendonlydir/*.aof | "
                                   "grep -c '^SET'"});
      EXPECT_GE(std::stoi("0" + aof.out), 1000) << aof.out << aof.err;
    }
  }
  // Waiting for a replica that does not exist: every write is an error, by
  // WAIT (any Redis) and by WAITAOF (Redis >= 7.2; older ones refuse the
  // command, also an error).
  for (const char* wait : {"redis.wait.replicas=1", "redis.waitaof.replicas=1"}) {
    RunResult r = Bench({"load", "-P", Workload("workloadb"), "-p",
                         "target=resp://127.0.0.1:" + std::to_string(durable.port()), "-p",
                         "recordcount=3", "-p", wait, "-p", "timeout.ms=300"});
    EXPECT_EQ(Field(r.out, "INSERT", "Return=ERROR"), 3) << wait << r.out << r.err;
    EXPECT_EQ(Field(r.out, "INSERT", "Return=OK"), -1) << wait << r.out;
  }
}

}  // namespace
}  // namespace faha::test
