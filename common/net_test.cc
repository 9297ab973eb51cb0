#include "common/net.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <vector>

namespace faha::net {
namespace {

TEST(NetTest, ParseHostPortAcceptsHostsAndRefusesBadPorts) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:7379", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 7379);
  ASSERT_TRUE(ParseHostPort("[::1]:65535", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 65535);
  ASSERT_TRUE(ParseHostPort(":1", &host, &port).ok());
  EXPECT_EQ(host, "");
  for (const char* bad : {"nohost", "h:", "h:0", "h:65536", "h:12x", "h:-1", "h:99999999999"}) {
    Status s = ParseHostPort(bad, &host, &port, "backup address");
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("backup address '" + std::string(bad) + "'"), std::string::npos)
        << s.ToString();
  }
  EXPECT_TRUE(ParseHostPort("h:0", &host, &port, "bind", /*allow_zero=*/true).ok());
  EXPECT_EQ(port, 0);
}

TEST(NetTest, ListenThenConnectAndARefusal) {
  int port = 0;
  auto lfd = ListenTcp("127.0.0.1", 0, 4, &port);
  ASSERT_TRUE(lfd.ok()) << lfd.status().ToString();
  ASSERT_GT(port, 0);
  ConnectOptions o;
  o.timeout_ms = 2000;
  bool refused = true;
  auto fd = ConnectTcp("127.0.0.1", port, o, &refused);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_FALSE(refused);
  close(*fd);
  close(*lfd);
  // Nothing listens there now: an active refusal, reported as such.
  auto gone = ConnectTcp("127.0.0.1", port, o, &refused);
  EXPECT_FALSE(gone.ok());
  EXPECT_TRUE(refused) << gone.status().ToString();
  EXPECT_TRUE(ListenTcp("not-an-ip", 0, 4, &port).status().code() ==
              Status::Code::kInvalidArgument);
  o.numeric_host = true;  // no DNS query from a test
  EXPECT_EQ(ConnectTcp("no such host", 1, o).status().code(), Status::Code::kInvalidArgument);
}

// Test processes run side by side: a port one of them drew is never drawn by
// another while the first lives. 400 draws each from the ~22,000 ports below
// the ephemeral range would share about 7 by chance alone.
TEST(NetTest, APortOneProcessDrewIsNeverDrawnByAnother) {
  constexpr int kDraws = 400;
  std::set<int> mine;
  for (int i = 0; i < kDraws; i++) {
    StatusOr<int> port = FreeLoopbackPort();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    EXPECT_TRUE(mine.insert(*port).second) << "port " << *port << " drawn twice";
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    for (int i = 0; i < kDraws; i++) {
      StatusOr<int> port = FreeLoopbackPort();
      const int p = port.ok() ? *port : -1;
      if (write(fds[1], &p, sizeof(p)) != sizeof(p)) _exit(2);
    }
    _exit(0);
  }
  close(fds[1]);
  std::vector<int> theirs;
  int p = 0;
  while (read(fds[0], &p, sizeof(p)) == sizeof(p)) theirs.push_back(p);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(theirs.size(), static_cast<size_t>(kDraws));
  for (int port : theirs) {
    EXPECT_GT(port, 0);
    EXPECT_EQ(mine.count(port), 0u) << "port " << port << " drawn by both processes";
  }
}

}  // namespace
}  // namespace faha::net
