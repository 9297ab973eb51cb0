// Clients over RDMA verbs (rdma://) against a real faha-server in the
// soft-RoCE guest: the same workload gives the same replies and the same data
// over RDMA as over TCP; pipelined large values cross the ring boundaries;
// faha_native_load runs without errors; no client connection is given a
// remote key to log memory. Skips where FAHA_TEST_HOST names no RDMA device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "faha/client.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

#define REQUIRE_GUEST()                                                                    \
  do {                                                                                     \
    if (TestHost() == "127.0.0.1") {                                                       \
      if (getenv("FAHA_REQUIRE_RDMA")) FAIL() << "FAHA_TEST_HOST is not set";              \
      GTEST_SKIP() << "rdma:// clients run in the soft-RoCE guest (FAHA_TEST_HOST unset)"; \
    }                                                                                      \
  } while (0)

// TCG is slow: generous reply timeouts.
std::unique_ptr<Client> Dial(const std::string& address) { return ConnectClient(address, 20000); }

// A mixed workload from a fixed seed; every reply as text.
std::vector<std::string> Workload(Client* c) {
  std::mt19937 rng(42);
  std::vector<std::string> out;
  for (int i = 0; i < 3000; i++) {
    std::string key = "k" + std::to_string(rng() % 300);
    switch (rng() % 6) {
      case 0:
      case 1: {
        std::string v(1 + rng() % 3000, static_cast<char>('a' + rng() % 26));
        out.push_back("put " + c->Put(key, v).ToString());
        break;
      }
      case 2: {
        std::string v;
        Status s = c->Get(key, &v);
        out.push_back("get " + s.ToString() + " " + v);
        break;
      }
      case 3: {
        bool existed = false;
        Status s = c->Delete(key, &existed);
        out.push_back("del " + s.ToString() + (existed ? " 1" : " 0"));
        break;
      }
      case 4: {
        auto r = c->Command({"INCR", "counter" + std::to_string(rng() % 5)});
        out.push_back("incr " + (r.ok() ? r->ToString() : r.status().ToString()));
        break;
      }
      default: {
        auto r = c->Command({"SET", key, "nx", "NX"});
        out.push_back("setnx " + (r.ok() ? r->ToString() : r.status().ToString()));
      }
    }
  }
  auto r = c->Command({"DBSIZE"});
  out.push_back("dbsize " + (r.ok() ? r->ToString() : r.status().ToString()));
  return out;
}

TEST(RdmaClientTest, SameWorkloadSameRepliesOverRdmaAndTcp) {
  REQUIRE_GUEST();
  TempDir dir;
  ServerProcess over_rdma(dir.path() + "/r", {"--rdma=on"});
  ServerProcess over_tcp(dir.path() + "/t", {"--rdma=off"});
  over_rdma.Start();
  over_tcp.Start();
  ASSERT_TRUE(over_rdma.WaitReady()) << over_rdma.Log();
  ASSERT_TRUE(over_tcp.WaitReady()) << over_tcp.Log();
  auto r = Dial("rdma://" + over_rdma.address());
  auto t = Dial(over_tcp.address());
  ASSERT_TRUE(r && t);
  auto a = Workload(r.get());
  auto b = Workload(t.get());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) ASSERT_EQ(a[i], b[i]) << "operation " << i;
  // The data itself, as FAHA.DIGEST sums it (data digest and key count).
  auto da = r->Command({"FAHA.DIGEST"});
  auto db = t->Command({"FAHA.DIGEST"});
  ASSERT_TRUE(da.ok() && db.ok());
  ASSERT_EQ(da->elements.size(), db->elements.size());
  ASSERT_GE(da->elements.size(), 2u);
  EXPECT_EQ(da->elements.back().ToString(), db->elements.back().ToString());
  EXPECT_EQ(da->elements[da->elements.size() - 2].ToString(),
            db->elements[db->elements.size() - 2].ToString());
}

TEST(RdmaClientTest, PipelinedLargeValuesAndNoRemoteKeyToTheLog) {
  REQUIRE_GUEST();
  TempDir dir;
  ServerProcess s(dir.path() + "/n", {"--rdma=on"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  auto c = Dial("rdma://" + s.address());
  ASSERT_TRUE(c);
  std::mt19937 rng(5);
  std::vector<std::string> values;
  for (int round = 0; round < 4; round++) {
    int acked = 0;
    for (int i = 0; i < 40; i++) {
      values.push_back(std::string(100000 + rng() % 200000, static_cast<char>('A' + i % 26)));
      c->PutAsync("big" + std::to_string(values.size() - 1), values.back(),
                  [&acked](const Status& st) { acked += st.ok(); });
    }
    ASSERT_TRUE(c->Flush().ok());
    EXPECT_EQ(acked, 40);
  }
  for (size_t i = 0; i < values.size(); i++) {
    std::string v;
    ASSERT_TRUE(c->Get("big" + std::to_string(i), &v).ok());
    ASSERT_TRUE(v == values[i]) << "big" << i;
  }
  auto tcp = Dial(s.address());
  ASSERT_TRUE(tcp);
  EXPECT_EQ(InfoField(tcp.get(), "rdma"), "rdma://" + s.address());
  EXPECT_EQ(InfoField(tcp.get(), "rdma_connections_total"), "1");
  EXPECT_EQ(InfoField(tcp.get(), "rdma_regions_exposed_total"), "2");  // ring + credit word
  EXPECT_EQ(InfoField(tcp.get(), "rdma_log_regions_exposed_total"), "0");
  EXPECT_EQ(InfoField(tcp.get(), "log_granularity").empty(), false);

  if (access((BinDir() + "/faha_native_load").c_str(), X_OK) != 0) {
    GTEST_SKIP() << "faha_native_load is not built here (FAHA_BUILD_BENCH=OFF)";
  }
  RunResult load = RunTool(
      {BinDir() + "/faha_native_load", "--address", "rdma://" + s.address(), "--ops", "20000",
       "--connections", "2", "--depth", "8", "--value_bytes", "1000", "--keyspace", "5000",
       "--connect_timeout_ms", std::to_string(static_cast<int>(2000 * TestSlowdown()))},
      "", 120000);
  EXPECT_EQ(load.exit_code, 0) << load.out << load.err;
  EXPECT_NE(load.out.find("errors=0"), std::string::npos) << load.out << load.err;
  EXPECT_NE(load.out.find("ops=20000"), std::string::npos) << load.out << load.err;
}

}  // namespace
}  // namespace faha::test
