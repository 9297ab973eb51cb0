// Active expiry: expired keys leave DBSIZE and INFO without being read, the
// deletions are counted in INFO's expired_keys, and keys without an expiry
// (or written again without one) stay.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

int64_t InfoInt(RespConnection* c, const std::string& field) {
  const std::string info = c->Call({"INFO", "everything"});
  const size_t at = info.find(field + ":");
  return at == std::string::npos ? -1 : std::stoll(info.substr(at + field.size() + 1));
}

TEST(ActiveExpiryTest, ExpiredKeysLeaveWithoutBeingRead) {
  TempDir dir;
  ServerProcess server(dir.path() + "/data");
  server.Start();
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  RespConnection c(server.port());
  // The keys first without an expiry (so the count below is exact however
  // slow the build), then an expiry a second ahead for 3,000 of them.
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 3000; i++) cmds.push_back({"SET", "e" + std::to_string(i), "v"});
  for (int i = 0; i < 100; i++) cmds.push_back({"SET", "p" + std::to_string(i), "v"});
  cmds.push_back({"SET", "again", "v"});
  for (const std::string& r : c.Pipeline(cmds)) ASSERT_EQ(r, "+OK\r\n");
  EXPECT_EQ(c.Call({"DBSIZE"}), ":3101\r\n");
  const std::string at = std::to_string(WallMs() + 1000);
  cmds.clear();
  for (int i = 0; i < 3000; i++) cmds.push_back({"PEXPIREAT", "e" + std::to_string(i), at});
  // Expiring, but written again without an expiry before it does.
  cmds.push_back({"PEXPIREAT", "again", at});
  cmds.push_back({"SET", "again", "w"});
  for (const std::string& r : c.Pipeline(cmds)) ASSERT_TRUE(r == ":1\r\n" || r == "+OK\r\n") << r;
  std::string dbsize;
  for (int64_t deadline = MonoMs() + 15000; MonoMs() < deadline;) {
    dbsize = c.Call({"DBSIZE"});
    if (dbsize == ":101\r\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(dbsize, ":101\r\n") << "expired keys still counted";
  EXPECT_GE(InfoInt(&c, "expired_keys"), 3000);
  EXPECT_EQ(c.Call({"GET", "again"}), "$1\r\nw\r\n");
  EXPECT_EQ(c.Call({"EXISTS", "p0", "p99"}), ":2\r\n");
  // And after a restart.
  server.Kill(SIGTERM);
  server.Start();
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  RespConnection after(server.port());
  EXPECT_EQ(after.Call({"DBSIZE"}), ":101\r\n");
}

}  // namespace
}  // namespace faha::test
