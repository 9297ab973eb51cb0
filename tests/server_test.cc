// Integration tests of faha-server as a real process on 127.0.0.1: the native
// client library (sync, pipelined, TTL, auth, limits), faha-cli one-shot and
// interactive, clean SIGTERM shutdown, restart recovery, INFO and /metrics.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "faha/client.h"
#include "server/metrics/metrics.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

std::unique_ptr<Client> MustConnect(const std::string& addr, const std::string& password = "") {
  ClientOptions o;
  o.address = addr;
  o.password = password;
  auto c = Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags = {}) {
    server_ = std::make_unique<ServerProcess>(dir_.path() + "/data", std::move(flags));
    server_->Start();
    ASSERT_TRUE(server_->WaitReady()) << server_->Log();
  }
  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ServerTest, ClientPutGetDeleteAndPipelining) {
  StartServer();
  auto c = MustConnect(server_->address());
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->Ping().ok());
  EXPECT_TRUE(c->Put("alpha", "one").ok());
  std::string v;
  EXPECT_TRUE(c->Get("alpha", &v).ok());
  EXPECT_EQ(v, "one");
  EXPECT_TRUE(c->Get("missing", &v).IsNotFound());
  bool existed = false;
  EXPECT_TRUE(c->Delete("alpha", &existed).ok());
  EXPECT_TRUE(existed);
  EXPECT_TRUE(c->Delete("alpha", &existed).ok());
  EXPECT_FALSE(existed);
  EXPECT_TRUE(c->Get("alpha", &v).IsNotFound());

  // 2000 pipelined writes then reads in one flush each; reads see the writes.
  int ok = 0;
  for (int i = 0; i < 2000; i++) {
    c->PutAsync("p" + std::to_string(i), std::string(i % 500, 'x') + std::to_string(i),
                [&](const Status& s) { ok += s.ok(); });
  }
  EXPECT_EQ(c->queued(), 2000u);
  ASSERT_TRUE(c->Flush().ok());
  EXPECT_EQ(ok, 2000);
  int good = 0;
  for (int i = 0; i < 2000; i++) {
    std::string want = std::string(i % 500, 'x') + std::to_string(i);
    c->GetAsync("p" + std::to_string(i), [&, want](const Status& s, std::string_view got) {
      good += s.ok() && got == want;
    });
  }
  ASSERT_TRUE(c->Flush().ok());
  EXPECT_EQ(good, 2000);
  // Mixed on one connection: a read after a write sees it.
  std::string seen;
  c->PutAsync("rw", "v1", [](const Status&) {});
  c->GetAsync("rw", [&](const Status&, std::string_view g) { seen = g; });
  c->PutAsync("rw", "v2", [](const Status&) {});
  ASSERT_TRUE(c->Flush().ok());
  EXPECT_EQ(seen, "v1");
  auto r = c->Command({"DBSIZE"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->integer, 2001);
}

TEST_F(ServerTest, ClientTimesOutOnAStoppedServer) {
  StartServer();
  ClientOptions o;
  o.address = server_->address();
  o.op_timeout_ms = 300;
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(server_->Kill(SIGSTOP), 0);
  Status s = (*c)->Put("k", "v");
  EXPECT_EQ(s.code(), Status::Code::kTimeout) << s.ToString();
  EXPECT_NE(s.message().find("within 300 ms"), std::string::npos) << s.ToString();
  // The connection is unusable afterwards; a new one works once the server runs.
  EXPECT_FALSE((*c)->Ping().ok());
  ASSERT_EQ(server_->Kill(SIGCONT), 0);
  auto fresh = MustConnect(server_->address());
  ASSERT_TRUE(fresh);
  std::string v;
  // The timed-out write may or may not have been applied; either is allowed.
  Status g = fresh->Get("k", &v);
  EXPECT_TRUE(g.ok() || g.IsNotFound()) << g.ToString();
}

TEST_F(ServerTest, MsetIsAtomicToConcurrentReaders) {
  StartServer();
  auto w = MustConnect(server_->address());
  auto r = MustConnect(server_->address());
  ASSERT_TRUE(w->Command({"MSET", "a", "0", "b", "0"}).ok());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 1; i < 2000 && !stop; i++) {
      auto x = w->Command({"MSET", "a", std::to_string(i), "b", std::to_string(i)});
      if (!x.ok()) return;
    }
  });
  int torn = 0, reads = 0;
  while (reads < 3000) {
    auto x = r->Command({"MGET", "a", "b"});
    ASSERT_TRUE(x.ok()) << x.status().ToString();
    ASSERT_EQ(x->elements.size(), 2u);
    torn += x->elements[0].str != x->elements[1].str;
    reads++;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(torn, 0) << "MGET saw half of an MSET";
}

TEST_F(ServerTest, SigtermUnderLoadExitsAndKeepsEveryAcknowledgedWrite) {
  StartServer();
  std::atomic<bool> stop{false};
  std::vector<std::vector<std::string>> acked(4);
  std::atomic<size_t> acked0{0};  // acked[0].size(), for the main thread to watch
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; t++) {
    writers.emplace_back([&, t] {
      auto c = MustConnect(server_->address());
      if (!c) return;
      for (int n = 0; !stop; n++) {
        std::vector<std::string> keys;
        for (int j = 0; j < 16; j++) {
          std::string key = "t" + std::to_string(t) + "-" + std::to_string(n * 16 + j);
          c->PutAsync(key, key, [&, t, key](const Status& s) {
            if (!s.ok()) return;
            acked[t].push_back(key);
            if (t == 0) acked0.store(acked[0].size());
          });
        }
        if (!c->Flush().ok()) return;
      }
    });
  }
  while (acked0.load() < 500) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(server_->Kill(SIGTERM), 0) << "SIGTERM under load must exit cleanly\n"
                                       << server_->Log();
  stop = true;
  for (auto& th : writers) th.join();
  server_->Start();
  ASSERT_TRUE(server_->WaitReady()) << server_->Log();
  auto c = MustConnect(server_->address());
  size_t checked = 0;
  for (auto& keys : acked) {
    for (const auto& k : keys) {
      std::string v;
      ASSERT_TRUE(c->Get(k, &v).ok()) << "acknowledged write lost: " << k;
      ASSERT_EQ(v, k);
      checked++;
    }
  }
  EXPECT_GT(checked, 500u);
}

TEST_F(ServerTest, TtlSurvivesRestartAndExpires) {
  StartServer();
  auto c = MustConnect(server_->address());
  PutOptions ttl;
  // Long enough to outlive a restart, in the sanitizer builds too.
  const int64_t short_ms = static_cast<int64_t>(1500 * TestSlowdown());
  ttl.ttl_ms = short_ms;
  ASSERT_TRUE(c->Put("short", "v", ttl).ok());
  ASSERT_TRUE(c->Command({"SET", "long", "v", "EX", "1000"}).ok());
  ASSERT_TRUE(c->Command({"SET", "plain", "v"}).ok());
  c.reset();
  EXPECT_EQ(server_->Kill(SIGKILL), 128 + SIGKILL);
  server_->Start();
  ASSERT_TRUE(server_->WaitReady()) << server_->Log();
  c = MustConnect(server_->address());
  auto pttl = c->Command({"PTTL", "short"});
  ASSERT_TRUE(pttl.ok());
  EXPECT_GT(pttl->integer, 0);
  EXPECT_LE(pttl->integer, short_ms);
  EXPECT_GT(c->Command({"TTL", "long"})->integer, 990);
  EXPECT_EQ(c->Command({"TTL", "plain"})->integer, -1);
  std::string v;
  for (int i = 0; i < 300 * TestSlowdown() && c->Get("short", &v).ok(); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(c->Get("short", &v).IsNotFound());
  EXPECT_EQ(c->Command({"TTL", "short"})->integer, -2);
}

TEST_F(ServerTest, SigtermShutsDownCleanlyAndKeepsEverything) {
  StartServer();
  auto c = MustConnect(server_->address());
  for (int i = 0; i < 500; i++)
    c->PutAsync("k" + std::to_string(i), "v" + std::to_string(i), [](const Status&) {});
  ASSERT_TRUE(c->Flush().ok());
  c.reset();
  EXPECT_EQ(server_->Kill(SIGTERM), 0) << server_->Log();
  EXPECT_NE(server_->Log().find("shutdown complete"), std::string::npos) << server_->Log();
  server_->Start();
  ASSERT_TRUE(server_->WaitReady());
  EXPECT_NE(server_->Log().find("500 keys"), std::string::npos) << server_->Log();
  c = MustConnect(server_->address());
  std::string v;
  ASSERT_TRUE(c->Get("k499", &v).ok());
  EXPECT_EQ(v, "v499");
  // SHUTDOWN over the wire does the same.
  auto r = c->Command({"SHUTDOWN"});
  EXPECT_EQ(server_->WaitExit(), 0) << server_->Log();
}

TEST_F(ServerTest, AuthIsRequiredWhenConfigured) {
  StartServer({"--requirepass=s3cret"});
  ClientOptions o;
  o.address = server_->address();
  o.password = "wrong";
  auto bad = Client::Connect(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kAuth) << bad.status().ToString();
  o.password = "";
  auto anon = Client::Connect(o);  // PING is allowed before AUTH
  ASSERT_TRUE(anon.ok());
  std::string v;
  Status s = (*anon)->Put("k", "v");
  EXPECT_EQ(s.code(), Status::Code::kAuth) << s.ToString();
  auto r = (*anon)->Command({"GET", "k"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kAuth);
  EXPECT_EQ(r.status().message().rfind("NOAUTH", 0), 0u) << r.status().ToString();
  auto good = MustConnect(server_->address(), "s3cret");
  ASSERT_TRUE(good);
  EXPECT_TRUE(good->Put("k", "v").ok());
  // Nothing the unauthenticated client sent was applied.
  EXPECT_EQ(good->Command({"DBSIZE"})->integer, 1);
  auto info = good->Command({"INFO", "stats"});
  EXPECT_NE(info->str.find("auth_failures:1"), std::string::npos) << info->str;
}

TEST_F(ServerTest, MaxClientsRefusesWithAClearError) {
  StartServer({"--max_clients=2"});
  auto a = MustConnect(server_->address());
  auto b = MustConnect(server_->address());
  ASSERT_TRUE(a && b);
  ClientOptions o;
  o.address = server_->address();
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("max number of clients"), std::string::npos)
      << c.status().ToString();
  a.reset();
  // The slot frees once the server sees the close.
  bool reconnected = false;
  for (int i = 0; i < 100 && !reconnected; i++) {
    reconnected = Client::Connect(o).ok();
    if (!reconnected) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(reconnected);
}

TEST_F(ServerTest, CliOneShotAndInteractive) {
  StartServer();
  std::string cli = BinDir() + "/faha-cli";
  std::string port = std::to_string(server_->port());
  auto r = RunTool({cli, "-p", port, "SET", "greeting", "hello world"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  r = RunTool({cli, "-p", port, "GET", "greeting"});
  EXPECT_EQ(r.out, "\"hello world\"\n");
  r = RunTool({cli, "-p", port, "NOSUCH"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("(error) ERR unknown command 'NOSUCH'"), std::string::npos) << r.out;
  r = RunTool({cli, "-p", port},
              "INCR n\nINCRBY n 41\nMGET n greeting missing\nset \"a b\" 'c d'\nget \"a b\"\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "(integer) 1\n(integer) 42\n1) \"42\"\n2) \"hello world\"\n3) (nil)\nOK\n\"c d\"\n");
  r = RunTool({cli, "-p", std::to_string(FreePort()), "PING"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect"), std::string::npos) << r.err;
}

TEST_F(ServerTest, FlagfileAndInvalidFlags) {
  std::string flagfile = dir_.path() + "/faha.flags";
  {
    FILE* f = fopen(flagfile.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fprintf(f, "--requirepass=from-file\n--max_value_bytes=100\n");
    fclose(f);
  }
  StartServer({"--flagfile=" + flagfile});
  auto c = MustConnect(server_->address(), "from-file");
  ASSERT_TRUE(c);
  Status s = c->Put("k", std::string(101, 'v'));
  EXPECT_NE(s.message().find("max_value_bytes"), std::string::npos) << s.ToString();
  // Bad values stop the server at start, naming the flag.
  std::string bin = BinDir() + "/faha-server";
  std::string data = "--data_dir=" + dir_.path() + "/other";
  auto r = RunTool({bin, data, "--segment_mb=0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--segment_mb must be in 1..4095"), std::string::npos) << r.err;
  r = RunTool({bin, data, "--max_batch_kb=64", "--max_value_bytes=1048576"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--max_batch_kb"), std::string::npos) << r.err;
  r = RunTool({bin, data, "--port=" + std::to_string(server_->port())});
  EXPECT_EQ(r.exit_code, 1);  // the port is taken
  EXPECT_NE(r.err.find("bind 127.0.0.1:" + std::to_string(server_->port())), std::string::npos)
      << r.err;
  r = RunTool({bin, "stray-argument"});
  EXPECT_EQ(r.exit_code, 2);
}

// A second server on a data directory in use refuses to start, naming the
// first's pid, and takes nothing from it: the first keeps its spares and its
// data, and serves on. Once the first is gone the directory opens again.
TEST_F(ServerTest, ASecondServerOnTheSameDataDirectoryRefusesToStart) {
  StartServer();
  auto c = MustConnect(server_->address());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Put("k", "v1").ok());
  // The first server's spare segments, which a second one would delete at start.
  const auto spares = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path() + "/data")) {
      if (e.path().filename().string().rfind("segment-spare-", 0) == 0) n++;
    }
    return n;
  };
  for (int i = 0; i < 400 && spares() == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  const size_t spares_before = spares();
  ASSERT_GT(spares_before, 0u);
  std::string bin = BinDir() + "/faha-server";
  auto r = RunTool({bin, "--data_dir=" + dir_.path() + "/data", "--bind=127.0.0.1",
                    "--port=" + std::to_string(FreePort()), "--metrics_port=-1", "--rdma=off"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("is in use by another process (pid " + std::to_string(server_->pid()) + ")"),
            std::string::npos)
      << r.err;
  ASSERT_TRUE(c->Put("k", "v2").ok());
  std::string v;
  ASSERT_TRUE(c->Get("k", &v).ok());
  EXPECT_EQ(v, "v2");
  EXPECT_GE(spares(), spares_before);
  c.reset();
  EXPECT_EQ(server_->Kill(SIGKILL), 128 + SIGKILL);
  StartServer();
  c = MustConnect(server_->address());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Get("k", &v).ok());
  EXPECT_EQ(v, "v2");
}

TEST_F(ServerTest, PreallocatedSegmentsAreUsedAndSpareFilesNeverHoldData) {
  StartServer({"--segment_mb=1", "--max_batch_kb=256", "--max_value_bytes=65536",
               "--log_preallocate_mb=3"});
  EXPECT_NE(server_->Log().find("preallocated 3 log segments (3 MiB)"), std::string::npos)
      << server_->Log();
  auto count_files = [&](const std::string& prefix) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path() + "/data")) {
      n += e.path().filename().string().rfind(prefix, 0) == 0;
    }
    return n;
  };
  EXPECT_GE(count_files("segment-spare"), 3);
  auto c = MustConnect(server_->address());
  for (int i = 0; i < 5000; i++) {
    c->PutAsync("k" + std::to_string(i), std::string(1000, 'a' + i % 26), [](const Status&) {});
  }
  ASSERT_TRUE(c->Flush().ok());
  EXPECT_GE(count_files("segment-0"), 5);  // ~5 MB of log: the spares became segments
  c.reset();
  ASSERT_EQ(server_->Kill(SIGKILL), 128 + SIGKILL);
  server_->Start();
  ASSERT_TRUE(server_->WaitReady()) << server_->Log();
  c = MustConnect(server_->address());
  EXPECT_EQ(c->Command({"DBSIZE"})->integer, 5000);
  std::string v;
  ASSERT_TRUE(c->Get("k4999", &v).ok());
  EXPECT_EQ(v, std::string(1000, 'a' + 4999 % 26));
}

TEST_F(ServerTest, InfoAndPrometheusMetrics) {
  int mport = FreePort();
  StartServer({"--metrics_port=" + std::to_string(mport)});
  auto c = MustConnect(server_->address());
  for (int i = 0; i < 100; i++) ASSERT_TRUE(c->Put("k" + std::to_string(i), "v").ok());
  std::string v;
  ASSERT_TRUE(c->Get("k1", &v).ok());
  auto info = c->Command({"INFO"});
  ASSERT_TRUE(info.ok());
  for (const char* want : {"# Server", "# Persistence", "# Stats", "# Memory", "# Keyspace",
                           "db0:keys=100", "log_granularity:", "index_bytes_per_key:",
                           "ops_write:100", "batch_ops_avg:", "latency_write_usec_p99:"}) {
    EXPECT_NE(info->str.find(want), std::string::npos) << want << "\n" << info->str;
  }
  auto role = c->Command({"ROLE"});
  ASSERT_EQ(role->type, Reply::Type::kArray);
  EXPECT_EQ(role->elements[0].str, "primary");
  std::string http = RawExchange(mport, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", 5000);
  for (const char* want : {"faha_ops_total{class=\"write\"} 100", "faha_op_latency_seconds_bucket",
                           "faha_log_bytes", "faha_batch_bytes_bucket", "faha_index_keys 100"}) {
    EXPECT_NE(http.find(want), std::string::npos) << want << "\n" << http.substr(0, 3000);
  }
  // Every metric is in both: INFO and /metrics iterate one descriptor list.
  for (const MetricDesc& d : MetricDescriptors()) {
    EXPECT_NE(info->str.find("\r\n" + std::string(d.info_name) + ":"), std::string::npos)
        << d.info_name;
    std::string prom = std::string(d.prom_name);
    if (!d.label_name.empty()) {
      prom += "{" + std::string(d.label_name) + "=\"" + std::string(d.label_value) + "\"}";
    }
    EXPECT_NE(http.find("\n" + prom + " "), std::string::npos) << prom;
  }
  for (const HistogramDesc& d : HistogramDescriptors()) {
    for (const char* suffix : {"_avg:", "_p50:", "_p99:"}) {
      EXPECT_NE(info->str.find("\r\n" + std::string(d.info_name) + suffix), std::string::npos)
          << d.info_name << suffix;
    }
    EXPECT_NE(http.find("\n" + std::string(d.prom_name) + "_bucket{"), std::string::npos)
        << d.prom_name;
  }
}

}  // namespace
}  // namespace faha::test
