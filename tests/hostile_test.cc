// Hostile clients against a real faha-server (issue 18): connections that are
// slow, silent or greedy must not take the server's memory or its other
// clients' service. Each test starts its own server on a free loopback port
// and checks the bound the server must hold: its RSS, another client's PING,
// the offender closed with a reason counted in INFO.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

using namespace std::chrono_literals;

// Under AddressSanitizer the server's RSS holds the allocator's quarantine of
// freed memory (256 MiB by default) and the shadow, and everything runs 2-4x
// slower: RSS and latency bounds get that slack.
#if defined(FAHA_ASAN)
constexpr bool kAsan = true;
constexpr long long kRssSlack = 512ll << 20;
#else
constexpr bool kAsan = false;
constexpr long long kRssSlack = 0;
#endif
#if defined(FAHA_TSAN)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif
// Latency bounds stretch in the sanitizer builds: ThreadSanitizer slows the
// server 5-15x, and 300 connections refused take it most of a second there.
const double kSlowdown = std::max(kAsan ? 4.0 : kTsan ? 10.0 : 1.0, TestSlowdown());

// A blocking TCP connection to the server's client port (-1 on failure).
int Dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, TestHost().c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close first
    sent += static_cast<size_t>(n);
  }
}

// Reads until the server closes the connection or timeout_ms pass; returns
// what arrived, and whether it closed.
std::string ReadUntilClosed(int fd, int timeout_ms, bool* closed) {
  std::string got;
  *closed = false;
  const int64_t deadline = MonoMs() + timeout_ms;
  while (MonoMs() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      *closed = true;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

long long InfoNumber(Client* c, const std::string& field) {
  std::string v = InfoField(c, field);
  return v.empty() ? -1 : std::stoll(v);
}

// The server's resident memory, from /proc.
long long RssBytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// utime + stime of a process, in clock ticks.
long long CpuTicks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; i++) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  return utime + stime;
}

// RSS once it stopped moving. A fresh server prepares its spare log segments
// (allocated and faulted in, 64 MiB each at default flags) in the background
// after it answers PING, and under ThreadSanitizer a pause of 100 ms between
// two of them looked settled: the second spare then landed in the attack's
// measurement (RSS +150 MB). So first wait until INFO shows both spares ready.
void WaitForSpares(Client* c) {
  for (int i = 0; i < 1200 && InfoNumber(c, "log_spare_segments") < 2; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(InfoNumber(c, "log_spare_segments"), 2);
}

long long SettledRss(pid_t pid, Client* c) {
  WaitForSpares(c);
  long long last = RssBytes(pid);
  for (int i = 0; i < 100; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const long long now = RssBytes(pid);
    if (now == last) return now;
    last = now;
  }
  return last;
}

// Round trips of n PINGs from a well-behaved client, in ms, sorted.
std::vector<double> PingTimesMs(Client* c, int n) {
  std::vector<double> ms;
  for (int i = 0; i < n; i++) {
    const int64_t t0 = MonoUs();
    auto r = c->Command({"PING"});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    ms.push_back(static_cast<double>(MonoUs() - t0) / 1000.0);
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

double WorstPingMs(Client* c, int n) { return PingTimesMs(c, n).back(); }

// The 99th percentile (nearest rank) of `n` PINGs, in milliseconds: one stall
// of a noisy machine among 100 is not the server's latency.
double PingP99Ms(Client* c, int n) {
  const std::vector<double> ms = PingTimesMs(c, n);
  return ms[(ms.size() * 99 + 99) / 100 - 1];
}

std::string Resp(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

const char kPassword[] = "hostile-test-pw";

// A well-behaved client of a server started with --requirepass=kPassword.
// Starts *s and stores "big" (512 KiB of `fill`) through the client it
// returns; *big is the value.
std::unique_ptr<Client> StartWithBigValue(ServerProcess* s, char fill, std::string* big) {
  s->Start();
  EXPECT_TRUE(s->WaitReady()) << s->Log();
  auto c = ConnectClient(s->address());
  *big = std::string(512 << 10, fill);
  if (c == nullptr || !c->Put("big", *big).ok()) return nullptr;
  return c;
}

// A client connection that will not read: the smallest receive buffer.
int DialNonReading(int port) {
  int fd = Dial(port);
  int small = 4096;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  return fd;
}

// MGET of `n` copies of "big".
std::vector<std::string> MgetOfBig(int n) {
  std::vector<std::string> args = {"MGET"};
  for (int i = 0; i < n; i++) args.push_back("big");
  return args;
}

std::unique_ptr<Client> ConnectWithPassword(const ServerProcess& s) {
  ClientOptions o;
  o.address = s.address();
  o.password = kPassword;
  auto c = Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(HostileTest, UnauthenticatedClientsMaySendOnlySmallCommands) {
  TempDir dir;
  ServerProcess s(dir.path() + "/d", {"--requirepass=hostile-test-pw"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  bool closed = false;
  // Redis's own limits and replies before AUTH: at most 10 arguments...
  int fd = Dial(s.port());
  SendAll(fd, "*100\r\n");
  std::string got = ReadUntilClosed(fd, 3000, &closed);
  close(fd);
  EXPECT_EQ(got, "-ERR Protocol error: unauthenticated multibulk length\r\n");
  EXPECT_TRUE(closed);
  // ... of at most 16384 bytes each (announced, not sent: refused at once).
  fd = Dial(s.port());
  SendAll(fd, "*2\r\n$4\r\nAUTH\r\n$8388608\r\n");
  got = ReadUntilClosed(fd, 3000, &closed);
  close(fd);
  EXPECT_EQ(got, "-ERR Protocol error: unauthenticated bulk length\r\n");
  EXPECT_TRUE(closed);
  // After AUTH the usual limits apply.
  fd = Dial(s.port());
  SendAll(fd, Resp({"AUTH", "hostile-test-pw"}) +
                  Resp({"MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6"}) +
                  Resp({"PING"}));
  std::string replies;
  const int64_t deadline = MonoMs() + 5000;
  while (replies.size() < 15 && MonoMs() < deadline) {
    char buf[256];
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      replies.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  EXPECT_EQ(replies, "+OK\r\n+OK\r\n+PONG\r\n");
}

TEST(HostileTest, SilentTrickleAndIdleClientsAreClosedAtTheirDeadlines) {
  TempDir dir;
  ServerProcess s(dir.path() + "/d", {"--requirepass=hostile-test-pw", "--preauth_timeout_ms=400",
                                      "--body_timeout_ms=600", "--timeout=1"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  bool closed = false;
  // Never authenticates: closed at the pre-auth deadline.
  int silent = Dial(s.port());
  int64_t t0 = MonoMs();
  ReadUntilClosed(silent, 5000, &closed);
  close(silent);
  EXPECT_TRUE(closed);
  EXPECT_GE(MonoMs() - t0, 350);
  EXPECT_LT(MonoMs() - t0, 2000);
  // Authenticated, then trickles one command a byte every 50 ms: closed at the
  // body deadline although bytes keep coming.
  int trickle = Dial(s.port());
  SendAll(trickle, Resp({"AUTH", "hostile-test-pw"}));
  std::string cmd = Resp({"SET", "trickled", std::string(200, 'x')});
  t0 = MonoMs();
  for (size_t i = 0; i + 1 < cmd.size() && MonoMs() - t0 < 5000; i++) {
    SendAll(trickle, cmd.substr(i, 1));
    pollfd p{trickle, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      char buf[512];
      ssize_t n = recv(trickle, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        closed = true;
        break;
      }
    }
  }
  close(trickle);
  EXPECT_TRUE(closed);
  EXPECT_LT(MonoMs() - t0, 2500);
  // An authenticated client that says nothing: closed after --timeout; one
  // that keeps talking stays.
  int idle = Dial(s.port());
  SendAll(idle, Resp({"AUTH", "hostile-test-pw"}));
  auto busy = ConnectWithPassword(s);
  ASSERT_TRUE(busy);
  t0 = MonoMs();
  std::string got;
  closed = false;
  while (!closed && MonoMs() - t0 < 5000) {
    got += ReadUntilClosed(idle, 200, &closed);
    ASSERT_TRUE(busy->Command({"PING"}).ok());
  }
  close(idle);
  EXPECT_TRUE(closed);
  EXPECT_EQ(got, "+OK\r\n");
  EXPECT_GE(MonoMs() - t0, 900);
  EXPECT_LT(MonoMs() - t0, 3000);
  ASSERT_TRUE(busy->Command({"PING"}).ok());
  EXPECT_EQ(InfoNumber(busy.get(), "clients_closed_preauth"), 1);
  EXPECT_EQ(InfoNumber(busy.get(), "clients_closed_body_timeout"), 1);
  EXPECT_EQ(InfoNumber(busy.get(), "clients_closed_idle"), 1);
  EXPECT_NE(s.Log().find("closing client"), std::string::npos) << s.Log();
}

// Clients that ask for big replies and never read them: each is closed at the
// output limit, all of them together are kept under --maxmemory_clients, the
// server's RSS stays under that plus the data, and another client is served.
TEST(HostileTest, ClientsThatDoNotReadTheirRepliesAreBounded) {
  TempDir dir;
  ServerProcess s(dir.path() + "/d",
                  {"--segment_mb=16", "--maxmemory_clients_mb=64", "--client_output_hard_mb=32",
                   "--client_output_soft_mb=16", "--client_output_soft_seconds=1"});
  std::string big;
  auto c = StartWithBigValue(&s, 'v', &big);
  ASSERT_TRUE(c) << s.Log();
  const long long rss_before = SettledRss(s.pid(), c.get());
  // Each asks for 40 x 512 KiB = 20 MiB of replies per MGET, five times.
  std::string greedy_request;
  for (int i = 0; i < 5; i++) greedy_request += Resp(MgetOfBig(40));
  std::vector<int> greedy;
  long long rss_peak = 0;
  double worst_ping = 0;
  for (int i = 0; i < 30; i++) {
    int fd = DialNonReading(s.port());
    ASSERT_GE(fd, 0);
    SendAll(fd, greedy_request);
    greedy.push_back(fd);
    rss_peak = std::max(rss_peak, RssBytes(s.pid()));
    worst_ping = std::max(worst_ping, WorstPingMs(c.get(), 3));
  }
  for (int i = 0; i < 30; i++) {
    rss_peak = std::max(rss_peak, RssBytes(s.pid()));
    worst_ping = std::max(worst_ping, WorstPingMs(c.get(), 3));
    std::this_thread::sleep_for(50ms);
  }
  // 64 MiB for all clients, one 20 MiB reply being built per I/O thread, and
  // the allocator's slack: well under the 30 x 100 MiB asked for.
  EXPECT_LT(rss_peak - rss_before, (256ll << 20) + kRssSlack)
      << "RSS before " << rss_before << ", peak " << rss_peak;
  // Served, not starved: the big values are sent from the log, not copied.
  EXPECT_LT(worst_ping, 200.0 * kSlowdown);
  EXPECT_LE(InfoNumber(c.get(), "client_memory"), 64ll << 20);
  EXPECT_GT(
      InfoNumber(c.get(), "clients_closed_output_limit") + InfoNumber(c.get(), "evicted_clients"),
      20);
  for (int fd : greedy) close(fd);
  EXPECT_NE(s.Log().find("closing client"), std::string::npos);
  std::string v;
  ASSERT_TRUE(c->Get("big", &v).ok());
  EXPECT_EQ(v, big);
}

// Big values go out by reference to the log record (no copy): what a client
// reads is exactly the value its command read, even when the value is
// overwritten and its segment cleaned away before the reply is sent; small
// ones, misses and the native protocol's command path are unchanged.
TEST(HostileTest, BigValuesSentFromTheLogAreTheValuesTheCommandRead) {
  TempDir dir;
  ServerProcess s(dir.path() + "/d", {"--segment_mb=2", "--max_batch_kb=512",
                                      "--max_value_bytes=262144", "--clean_interval_ms=10"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  auto c = ConnectClient(s.address());
  ASSERT_TRUE(c);
  auto value = [](char fill, size_t n, int version) {
    std::string v(n, fill);
    for (size_t i = 0; i < n; i += 4096) v[i] = static_cast<char>('0' + version % 10);
    return v;
  };
  const std::string a0 = value('a', 200 << 10, 0), b0 = value('b', 70 << 10, 0);
  ASSERT_TRUE(c->Put("a", a0).ok());
  ASSERT_TRUE(c->Put("b", b0).ok());
  ASSERT_TRUE(c->Put("small", "s").ok());
  // A client that asks and does not read for now.
  int fd = Dial(s.port());
  ASSERT_GE(fd, 0);
  // A small receive buffer, so that most of the replies wait in the server
  // (not so small that TCP's window updates stall once reading starts).
  int rcvbuf = 64 << 10;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  std::string ask;
  for (int i = 0; i < 8; i++) {
    ask += Resp({"MGET", "a", "small", "missing", "b", "a"});
    ask += Resp({"GET", "b"});
  }
  SendAll(fd, ask);
  std::string expect;
  for (int i = 0; i < 8; i++) {
    expect += "*5\r\n$" + std::to_string(a0.size()) + "\r\n" + a0 + "\r\n$1\r\ns\r\n$-1\r\n$" +
              std::to_string(b0.size()) + "\r\n" + b0 + "\r\n$" + std::to_string(a0.size()) +
              "\r\n" + a0 + "\r\n";
    expect += "$" + std::to_string(b0.size()) + "\r\n" + b0 + "\r\n";
  }
  // Overwritten many times: the segments that held a0 and b0 are cleaned.
  for (int v = 1; v <= 40; v++) {
    ASSERT_TRUE(c->Put("a", value('a', 200 << 10, v)).ok());
    ASSERT_TRUE(c->Put("b", value('b', 70 << 10, v)).ok());
  }
  for (int64_t t = MonoMs(); InfoNumber(c.get(), "clean_passes") <= 3 && MonoMs() - t < 10000;) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(InfoNumber(c.get(), "clean_passes"), 3) << s.Log();
  // The segment that held a0 and b0 was cleaned away; the replies hold it.
  EXPECT_GT(InfoNumber(c.get(), "log_retired_held_bytes"), 0);
  std::string got;
  const int64_t t0 = MonoMs();
  while (got.size() < expect.size() && MonoMs() - t0 < 20000) {
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  ASSERT_EQ(got.size(), expect.size());
  EXPECT_TRUE(got == expect) << "the replies differ from the values read";
  // Sent: nothing holds the old segment any more.
  for (int64_t t = MonoMs();
       InfoNumber(c.get(), "log_retired_held_bytes") > 0 && MonoMs() - t < 5000;) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(InfoNumber(c.get(), "log_retired_held_bytes"), 0);
  // The native protocol's command path copies them into its frame.
  auto r = c->Command({"MGET", "small", "a", "missing", "b"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->elements.size(), 4u);
  EXPECT_EQ(r->elements[0].str, "s");
  EXPECT_TRUE(r->elements[1].str == value('a', 200 << 10, 40));
  EXPECT_EQ(r->elements[2].type, Reply::Type::kNil);
  EXPECT_TRUE(r->elements[3].str == value('b', 70 << 10, 40));
}

// The attack at default flags: 100 clients that each ask for 250 MB
// of replies (one MGET of 480 values of 512 KiB, then 20 GETs of it) and
// never read. Big values are sent from the log without a copy, so asking
// costs the server lookups, not memory: another client's PING p99 stays
// under 50 ms, RSS barely moves, and the offenders are closed (by the
// clients' memory total, biggest first) with the reason in INFO and the log.
struct AttackOutcome {
  double ping_p99_ms = 0, ping_max_ms = 0;
  long long rss_growth = 0, rss_before = 0;
  long long client_memory = 0, closed = 0;
  bool logged_close = false, value_intact = false;
  std::string log;
};

// One run of the attack below on a fresh server.
AttackOutcome QuarterGigabyteAttack() {
  AttackOutcome o;
  TempDir dir;
  ServerProcess s(dir.path() + "/d", {});
  std::string big;
  auto c = StartWithBigValue(&s, 'q', &big);
  if (!c) {
    o.log = s.Log();
    return o;
  }
  o.rss_before = SettledRss(s.pid(), c.get());
  std::string request = Resp(MgetOfBig(480));
  for (int i = 0; i < 20; i++) request += Resp({"GET", "big"});
  std::vector<double> pings;
  auto ping = [&] {
    const int64_t t0 = MonoUs();
    auto r = c->Command({"PING"});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    pings.push_back(static_cast<double>(MonoUs() - t0) / 1000.0);
  };
  std::vector<int> greedy;
  long long rss_peak = 0;
  for (int i = 0; i < 100; i++) {
    int fd = DialNonReading(s.port());
    EXPECT_GE(fd, 0);
    if (fd < 0) break;
    SendAll(fd, request);
    greedy.push_back(fd);
    ping();
    if (i % 10 == 0) rss_peak = std::max(rss_peak, RssBytes(s.pid()));
  }
  for (int i = 0; i < 100; i++) {
    ping();
    if (i % 10 == 0) rss_peak = std::max(rss_peak, RssBytes(s.pid()));
    std::this_thread::sleep_for(5ms);
  }
  std::sort(pings.begin(), pings.end());
  o.ping_p99_ms = pings[pings.size() * 99 / 100];
  o.ping_max_ms = pings.back();
  o.rss_growth = rss_peak - o.rss_before;
  o.client_memory = InfoNumber(c.get(), "client_memory");
  o.closed =
      InfoNumber(c.get(), "evicted_clients") + InfoNumber(c.get(), "clients_closed_output_limit");
  o.logged_close = s.Log().find("closing client") != std::string::npos;
  for (int fd : greedy) close(fd);
  std::string v;
  o.value_intact = c->Get("big", &v).ok() && v == big;
  o.log = s.Log();
  return o;
}

// The attack at default flags: 100 clients that each ask for 250 MB
// of replies (one MGET of 480 values of 512 KiB, then 20 GETs of it) and
// never read. Big values are sent from the log without a copy, so asking
// costs the server lookups, not memory: another client's PING p99 stays
// under 50 ms, RSS barely moves, and the offenders are closed (by the
// clients' memory total, biggest first) with the reason in INFO and the log.
// The p99 is of 200 PINGs on a 2-core machine that the attack saturates: a
// run that misses it is run once more on a fresh server (a stall of the
// machine hits one run; a server that stalls misses both).
TEST(HostileTest, HundredClientsAskingForQuarterGigabyteRepliesAtDefaultFlags) {
  const double bound_ms = 50.0 * kSlowdown;
  AttackOutcome o = QuarterGigabyteAttack();
  if (o.ping_p99_ms >= bound_ms) {
    std::cerr << "PING p99 " << o.ping_p99_ms << " ms (max " << o.ping_max_ms
              << ") in the first run; running the attack once more\n";
    o = QuarterGigabyteAttack();
  }
  EXPECT_LT(o.ping_p99_ms, bound_ms) << "PING p99 ms during the attack, max " << o.ping_max_ms;
  // 25 GB asked for; the server holds the one value and its socket buffers.
  EXPECT_LT(o.rss_growth, (128ll << 20) + kRssSlack) << "RSS before " << o.rss_before;
  EXPECT_LE(o.client_memory, 1ll << 30);
  EXPECT_GT(o.closed, 80);
  EXPECT_TRUE(o.logged_close) << o.log;
  EXPECT_TRUE(o.value_intact) << o.log;
}

// Unauthenticated clients that each try to send 8 MiB: refused at the first
// bulk header, so together they hold almost nothing.
TEST(HostileTest, ManyUnauthenticatedBulkSendersHoldNoMemory) {
  TempDir dir;
  // Small segments: the next one, mapped and populated in the background,
  // would otherwise add up to 64 MiB to the RSS measured.
  ServerProcess s(dir.path() + "/d", {"--requirepass=hostile-test-pw", "--segment_mb=16"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  auto c = ConnectWithPassword(s);
  ASSERT_TRUE(c);
  const long long rss_before = SettledRss(s.pid(), c.get());
  std::vector<int> fds;
  const std::string chunk = "*1000000\r\n$1048576\r\n" + std::string(1 << 20, 'z');
  for (int i = 0; i < 300; i++) {
    int fd = Dial(s.port());
    if (fd < 0) break;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    (void)n;
    fds.push_back(fd);
  }
  const double p99 = PingP99Ms(c.get(), 100);
  const long long rss_after = RssBytes(s.pid());
  for (int fd : fds) close(fd);
  EXPECT_LT(rss_after - rss_before, (64ll << 20) + kRssSlack);
  EXPECT_LT(p99, 50.0 * kSlowdown) << "PING p99 ms of 100 during the attack";
}

// At the open-files limit the server stops accepting for a moment instead of
// spinning on accept, logs about it at most once a second, and serves the
// clients it has.
TEST(HostileTest, OutOfFileDescriptorsNeitherSpinsNorFloodsTheLog) {
  if (kAsan) {
    // The sanitizers' own checks need descriptors: UBSan's vptr check opens a
    // pipe to see whether memory is readable, and reports an error when it
    // cannot. The release build runs this test.
    GTEST_SKIP() << "out of descriptors, the sanitizers report errors of their own";
  }
  TempDir dir;
  pid_t pid;
  // A hard limit the server cannot raise: it warns and goes on.
  auto s = std::make_unique<ServerProcess>(dir.path() + "/d", std::vector<std::string>{});
  s->set_open_files_limit(96);
  s->Start();
  ASSERT_TRUE(s->WaitReady()) << s->Log();
  pid = s->pid();
  auto c = ConnectClient(s->address());
  ASSERT_TRUE(c);
  // The spares' preparation is CPU too (under ThreadSanitizer it outlasted
  // the 300 ms below: 0.075 of a core in one CI run): not the accept loop's.
  WaitForSpares(c.get());
  std::vector<int> fds;
  for (int i = 0; i < 150; i++) {
    int fd = Dial(s->port());  // completes in the kernel's backlog even when not accepted
    if (fd >= 0) fds.push_back(fd);
  }
  std::this_thread::sleep_for(300ms);
  const long long t0 = CpuTicks(pid);
  const int64_t w0 = MonoMs();
  double worst = 0;
  for (int i = 0; i < 20; i++) {
    worst = std::max(worst, WorstPingMs(c.get(), 1));
    std::this_thread::sleep_for(100ms);
  }
  const double cpu = static_cast<double>(CpuTicks(pid) - t0) / sysconf(_SC_CLK_TCK) /
                     (static_cast<double>(MonoMs() - w0) / 1000.0);
  EXPECT_LT(cpu, 0.05) << "server CPU at the descriptor limit";
  EXPECT_LT(worst, 50.0);
  const std::string log = s->Log();
  size_t lines = 0;
  for (size_t at = log.find("accept: "); at != std::string::npos; at = log.find("accept: ", at + 1))
    lines++;
  EXPECT_GE(lines, 1u) << log;
  EXPECT_LE(lines, 5u) << log;
  EXPECT_NE(log.find("open-files limit is 96"), std::string::npos) << log;
  EXPECT_GT(InfoNumber(c.get(), "accept_fd_exhausted"), 0);
  for (int fd : fds) close(fd);
}

// The password from a file: not on the command line (ps shows none), and a
// file others can read gets a warning.
TEST(HostileTest, PasswordFromAFileStaysOutOfPs) {
  TempDir dir;
  const std::string pw_file = dir.path() + "/pw";
  std::ofstream(pw_file) << "file-password-1234\n";
  chmod(pw_file.c_str(), 0644);
  ServerProcess s(dir.path() + "/d", {"--requirepass_file=" + pw_file});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  std::ifstream cmdline("/proc/" + std::to_string(s.pid()) + "/cmdline");
  std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  EXPECT_EQ(args.find("file-password"), std::string::npos);
  EXPECT_NE(s.Log().find("chmod 600"), std::string::npos) << s.Log();
  ClientOptions o;
  o.address = s.address();
  o.password = "file-password-1234";
  EXPECT_TRUE(Client::Connect(o).ok());
  o.password = "wrong";
  EXPECT_FALSE(Client::Connect(o).ok());
}

// A small file system of its own (tmpfs of `mb` MiB mounted on `path`),
// unmounted at the end. Needs root; ok() is false elsewhere.
class SmallFileSystem {
 public:
  SmallFileSystem(const std::string& path, int mb) : path_(path) {
    mkdir(path.c_str(), 0755);
    mounted_ = RunTool({"/bin/mount", "-t", "tmpfs", "-o", "size=" + std::to_string(mb) + "m",
                        "tmpfs", path})
                   .exit_code == 0;
  }
  ~SmallFileSystem() {
    if (mounted_) RunTool({"/bin/umount", "-l", path_});
  }
  bool ok() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// The disk fills up (the log cannot create its next segment): writes get an
// error naming the cause, nothing acknowledged is lost, and once space is
// freed writes succeed again without a restart.
TEST(HostileTest, AFullDiskHealsWithoutARestart) {
  TempDir dir;
  SmallFileSystem fs(dir.path() + "/small", 40);
  if (!fs.ok()) GTEST_SKIP() << "mounting a tmpfs needs root";
  const std::string filler = dir.path() + "/small/filler";
  {
    std::ofstream f(filler, std::ios::binary);
    const std::string mib(1 << 20, 'f');
    for (int i = 0; i < 16; i++) f << mib;
  }
  ServerProcess s(dir.path() + "/small/d", {"--segment_mb=4", "--max_batch_kb=1024",
                                            "--max_value_bytes=65536", "--clean_threshold=0"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  auto c = ConnectClient(s.address());
  ASSERT_TRUE(c);
  const std::string value(4000, 'v');
  std::vector<std::string> acked;
  Status full;
  for (int i = 0; i < 20000; i++) {
    const std::string key = "k" + std::to_string(i);
    Status st = c->Put(key, value);
    if (!st.ok()) {
      full = st;
      break;
    }
    acked.push_back(key);
  }
  ASSERT_FALSE(full.ok()) << "the 40 MiB file system never filled up";
  EXPECT_NE(full.message().find("log full"), std::string::npos) << full.ToString();
  // Still full: still refused, and the server is up.
  EXPECT_FALSE(c->Put("still-full", value).ok());
  EXPECT_TRUE(c->Command({"PING"}).ok());
  // Deletes still work (they may use the segment held in reserve): refuse
  // what grows, allow what shrinks.
  std::vector<std::string> deleted;
  const long long segments_full = InfoNumber(c.get(), "log_segments");
  for (int i = 0; i < 400 && !acked.empty(); i++) {
    auto r = c->Command({"DEL", acked.back()});
    ASSERT_TRUE(r.ok() && r->type != Reply::Type::kError)
        << r.status().ToString() << " " << (r.ok() ? r->str : "");
    deleted.push_back(acked.back());
    acked.pop_back();
  }
  // They filled the tail segment and went on in the reserve.
  EXPECT_EQ(InfoNumber(c.get(), "log_segments"), segments_full + 1);
  // The reserve is for deletes: a write that grows is still refused, and the
  // deletes after it still fit.
  EXPECT_FALSE(c->Put("grows", value).ok());
  for (int i = 0; i < 20 && !acked.empty(); i++) {
    auto r = c->Command({"DEL", acked.back()});
    ASSERT_TRUE(r.ok() && r->type != Reply::Type::kError) << r.status().ToString();
    deleted.push_back(acked.back());
    acked.pop_back();
  }
  EXPECT_GT(InfoNumber(c.get(), "log_full_refusals"), 0);
  // Space comes back: writes succeed again within 2 s, no restart.
  ASSERT_EQ(unlink(filler.c_str()), 0);
  const int64_t t0 = MonoMs();
  Status again = Status::IOError("not tried");
  while (MonoMs() - t0 < 5000) {
    again = c->Put("after", value);
    if (again.ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_LT(MonoMs() - t0, 2000);
  // Nothing acknowledged was lost, before or after a restart.
  auto check = [&](Client* cl) {
    std::string v;
    size_t missing = 0;
    for (const auto& k : acked) missing += !(cl->Get(k, &v).ok() && v == value);
    EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged";
    size_t back = 0;
    for (const auto& k : deleted) back += cl->Get(k, &v).ok();
    EXPECT_EQ(back, 0u) << "deleted while the disk was full, yet present";
    EXPECT_TRUE(cl->Get("after", &v).ok());
  };
  check(c.get());
  c.reset();
  ASSERT_EQ(s.Kill(SIGTERM), 0);
  ServerProcess again_server(dir.path() + "/small/d",
                             {"--segment_mb=4", "--max_batch_kb=1024", "--max_value_bytes=65536"});
  again_server.Start();
  ASSERT_TRUE(again_server.WaitReady()) << again_server.Log();
  auto c2 = ConnectClient(again_server.address());
  ASSERT_TRUE(c2);
  check(c2.get());
}

// /metrics behind a password: refused without it, served with it (HTTP basic
// auth), and the limits' counters are there.
TEST(HostileTest, MetricsCanBeGuardedByAPassword) {
  TempDir dir;
  const std::string pw_file = dir.path() + "/metrics-pw";
  std::ofstream(pw_file) << "metrics-secret\n";
  chmod(pw_file.c_str(), 0600);
  const int mport = FreePort();
  ServerProcess s(dir.path() + "/d", {"--metrics_port=" + std::to_string(mport),
                                      "--metrics_password_file=" + pw_file});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  EXPECT_EQ(s.Log().find("chmod 600"), std::string::npos);
  std::string none = RawExchange(mport, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", 5000);
  EXPECT_NE(none.find("401"), std::string::npos) << none.substr(0, 300);
  EXPECT_EQ(none.find("faha_ops_total"), std::string::npos);
  // "prom:metrics-secret" in base64.
  std::string with = RawExchange(mport,
                                 "GET /metrics HTTP/1.0\r\nHost: x\r\nAuthorization: Basic "
                                 "cHJvbTptZXRyaWNzLXNlY3JldA==\r\n\r\n",
                                 5000);
  for (const char* want : {"faha_ops_total", "faha_clients_closed_total{reason=\"output_limit\"}",
                           "faha_client_memory_bytes", "faha_log_full_refusals_total"}) {
    EXPECT_NE(with.find(want), std::string::npos) << want << "\n" << with.substr(0, 500);
  }
}

// The client limits change at run time with CONFIG SET, under Redis's names,
// and a bad value changes nothing.
TEST(HostileTest, ConfigSetChangesTheClientLimits) {
  TempDir dir;
  ServerProcess s(dir.path() + "/d");
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  auto c = ConnectClient(s.address());
  ASSERT_TRUE(c);
  auto get = [&](const std::string& name) {
    auto r = c->Command({"CONFIG", "GET", name});
    return r.ok() && r->elements.size() == 2 ? r->elements[1].str : std::string("?");
  };
  EXPECT_EQ(get("timeout"), "0");
  EXPECT_EQ(get("maxmemory-clients"), std::to_string(1ull << 30));
  auto ok = c->Command({"CONFIG", "SET", "timeout", "1", "maxmemory-clients", "512mb",
                        "client-output-buffer-limit", "normal 64mb 16mb 10"});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(get("timeout"), "1");
  EXPECT_EQ(get("maxmemory-clients"), std::to_string(512ull << 20));
  EXPECT_EQ(get("client-output-buffer-limit"),
            "normal " + std::to_string(64ull << 20) + " " + std::to_string(16ull << 20) + " 10");
  // One bad pair: nothing applied.
  auto refused = [&](const std::vector<std::string>& cmd) {
    auto r = c->Command(cmd);
    return !r.ok() || r->type == Reply::Type::kError;
  };
  EXPECT_TRUE(refused({"CONFIG", "SET", "timeout", "5", "maxmemory-clients", "lots"}));
  EXPECT_EQ(get("timeout"), "1");
  EXPECT_TRUE(refused({"CONFIG", "SET", "client-output-buffer-limit", "replica 1 1 1"}));
  EXPECT_TRUE(refused({"CONFIG", "SET", "appendfsync", "no"}));
  EXPECT_TRUE(refused({"CONFIG", "SET", "timeout"}));
  // And it takes effect: an idle connection goes after a second.
  int idle = Dial(s.port());
  bool closed = false;
  const int64_t t0 = MonoMs();
  ReadUntilClosed(idle, 4000, &closed);
  close(idle);
  EXPECT_TRUE(closed);
  EXPECT_LT(MonoMs() - t0, 2500);
}

// A client that is being closed (QUIT, a protocol error) but never reads its
// last replies still goes at its deadline: it cannot hold its descriptor.
TEST(HostileTest, AClosingClientThatDoesNotReadStillGoesAtItsDeadline) {
  TempDir dir;
  ServerProcess s(dir.path() + "/d", {"--requirepass=hostile-test-pw", "--preauth_timeout_ms=500"});
  s.Start();
  ASSERT_TRUE(s.WaitReady()) << s.Log();
  auto c = ConnectWithPassword(s);
  ASSERT_TRUE(c);
  const long long before = InfoNumber(c.get(), "connected_clients");
  // About 10 MiB of -NOAUTH replies it never reads (more than the socket
  // buffers hold), then QUIT.
  int fd = DialNonReading(s.port());
  fcntl(fd, F_SETFL, O_NONBLOCK);
  std::string gets;
  for (int i = 0; i < 20000; i++) gets += "*2\r\n$3\r\nGET\r\n$1\r\nx\r\n";
  const int64_t t0 = MonoMs();
  size_t sent = 0;
  while (sent < 14 * gets.size() && MonoMs() - t0 < 3000) {
    ssize_t n =
        send(fd, gets.data() + sent % gets.size(), gets.size() - sent % gets.size(), MSG_NOSIGNAL);
    if (n > 0)
      sent += static_cast<size_t>(n);
    else
      std::this_thread::sleep_for(5ms);
  }
  for (int i = 0; i < 100; i++) {
    if (send(fd, "*1\r\n$4\r\nQUIT\r\n", 14, MSG_NOSIGNAL) == 14) break;
    std::this_thread::sleep_for(10ms);
  }
  bool gone = false;
  while (!gone && MonoMs() - t0 < 5000) {
    std::this_thread::sleep_for(100ms);
    gone = InfoNumber(c.get(), "connected_clients") == before;
  }
  close(fd);
  EXPECT_TRUE(gone) << "the non-reading client was not closed";
  EXPECT_GE(InfoNumber(c.get(), "clients_closed_preauth"), 1);
}

}  // namespace
}  // namespace faha::test
