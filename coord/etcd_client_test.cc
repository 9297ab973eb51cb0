// Tests of EtcdClient against a real etcd that each test starts on its own
// free loopback ports (EtcdProcess) and kills in TearDown.
#include "coord/etcd_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "coord/etcd_testing.h"

namespace faha::coord {
namespace {

using Clock = std::chrono::steady_clock;

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    const ::faha::Status _s = (expr);                       \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)

int64_t MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A loopback port nobody listens on (bound to 0, read back, released).
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A loopback port that never completes a TCP handshake: a listener with a
// backlog of 0 whose accept queue is already full, so the kernel drops SYNs.
class BlackholePort {
 public:
  BlackholePort() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listener_, 0);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    for (int& fd : fillers_) {
      fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    }
  }
  ~BlackholePort() {
    for (int fd : fillers_) close(fd);
    close(listener_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int listener_ = -1;
  int fillers_[2] = {-1, -1};
  int port_ = 0;
};

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_ = std::make_unique<EtcdProcess>();
    ASSERT_OK(etcd_->Start());
    client_ = NewClient(etcd_->endpoint(), 2000);
    ASSERT_NE(client_, nullptr);
  }
  // Kills exactly the etcd this test started and removes its directory.
  void TearDown() override {
    client_.reset();
    etcd_.reset();
  }

  static std::unique_ptr<EtcdClient> NewClient(const std::string& endpoints, int timeout_ms) {
    StatusOr<std::unique_ptr<EtcdClient>> c = EtcdClient::Create(endpoints, timeout_ms);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdClientTest, PutGetRoundTripsBinaryBytes) {
  const std::string key("bin/\0key\xff", 9);
  std::string value;
  for (int b = 0; b < 256; ++b) value.push_back(static_cast<char>(b));
  value += std::string("\0\xff\0", 3);
  ASSERT_OK(client_->Put(key, value));

  StatusOr<std::optional<KeyValue>> got = client_->Get(key);
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  const KeyValue first = **got;
  EXPECT_EQ(first.key, key);
  EXPECT_EQ(first.value, value);
  EXPECT_GT(first.create_revision, 0);
  EXPECT_EQ(first.mod_revision, first.create_revision);
  EXPECT_EQ(first.lease, 0);

  // Overwrite with an empty value (which the gateway omits from its JSON).
  ASSERT_OK(client_->Put(key, ""));
  got = client_->Get(key);
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "");
  EXPECT_EQ((*got)->create_revision, first.create_revision);
  EXPECT_GT((*got)->mod_revision, first.mod_revision);

  // A key that is a prefix of the stored one is a different key.
  got = client_->Get(std::string("bin/\0", 5));
  ASSERT_OK(got.status());
  EXPECT_FALSE(got->has_value());
}

TEST_F(EtcdClientTest, AbsentKeyIsNullopt) {
  StatusOr<std::optional<KeyValue>> got = client_->Get("no/such/key");
  ASSERT_OK(got.status());
  EXPECT_FALSE(got->has_value());
}

TEST_F(EtcdClientTest, DeleteRemovesKeyAndToleratesAbsence) {
  ASSERT_OK(client_->Put("del/k", "v"));
  ASSERT_OK(client_->Delete("del/k"));
  StatusOr<std::optional<KeyValue>> got = client_->Get("del/k");
  ASSERT_OK(got.status());
  EXPECT_FALSE(got->has_value());
  ASSERT_OK(client_->Delete("del/k"));
}

std::vector<std::string> Keys(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> keys;
  for (const KeyValue& kv : kvs) keys.push_back(kv.key);
  return keys;
}

TEST_F(EtcdClientTest, GetPrefixReturnsOnlyThePrefixInKeyOrder) {
  // "p0" is the first key after every "p/..." ('0' follows '/'): the range's end.
  for (const std::string k : {"p/c", "p/a", "p0", "o", "p/b", "p", "p/\xff\xff", "p/a/x"}) {
    ASSERT_OK(client_->Put(k, "v:" + k));
  }
  StatusOr<std::vector<KeyValue>> got = client_->GetPrefix("p/");
  ASSERT_OK(got.status());
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"p/a", "p/a/x", "p/b", "p/c", "p/\xff\xff"}));
  for (const KeyValue& kv : *got) EXPECT_EQ(kv.value, "v:" + kv.key);

  // A prefix ending in 0xff bytes: its range ends at the next byte up.
  for (const std::string k : {"q\xff", "q\xff\x01", "q\xfe\xff", "r"})
    ASSERT_OK(client_->Put(k, "x"));
  got = client_->GetPrefix("q\xff");
  ASSERT_OK(got.status());
  EXPECT_EQ(Keys(*got), (std::vector<std::string>{"q\xff", "q\xff\x01"}));

  got = client_->GetPrefix("none/");
  ASSERT_OK(got.status());
  EXPECT_TRUE(got->empty());

  got = client_->GetPrefix("");
  ASSERT_OK(got.status());
  // Every key put above (the launcher's readiness probe only reads).
  EXPECT_EQ(got->size(), 12u);
}

TEST_F(EtcdClientTest, CasCreateIfAbsentSucceedsOnce) {
  std::optional<KeyValue> current;
  StatusOr<bool> r = client_->CompareAndSwap("cas/new", 0, "first", 0, &current);
  ASSERT_OK(r.status());
  EXPECT_TRUE(*r);

  current.reset();
  r = client_->CompareAndSwap("cas/new", 0, "second", 0, &current);
  ASSERT_OK(r.status());
  EXPECT_FALSE(*r);
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->key, "cas/new");
  EXPECT_EQ(current->value, "first");
  EXPECT_GT(current->mod_revision, 0);

  StatusOr<std::optional<KeyValue>> got = client_->Get("cas/new");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "first");
  EXPECT_EQ((*got)->mod_revision, current->mod_revision);
}

TEST_F(EtcdClientTest, CasOnModRevision) {
  ASSERT_OK(client_->Put("cas/k", "v1"));
  StatusOr<std::optional<KeyValue>> got = client_->Get("cas/k");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  const int64_t rev1 = (*got)->mod_revision;

  // "Must not exist" fails on a present key.
  StatusOr<bool> r = client_->CompareAndSwap("cas/k", 0, "nope", 0, nullptr);
  ASSERT_OK(r.status());
  EXPECT_FALSE(*r);

  r = client_->CompareAndSwap("cas/k", rev1, "v2", 0, nullptr);
  ASSERT_OK(r.status());
  EXPECT_TRUE(*r);
  got = client_->Get("cas/k");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "v2");
  const int64_t rev2 = (*got)->mod_revision;
  EXPECT_GT(rev2, rev1);

  // The stale revision fails, reports the present value and changes nothing.
  std::optional<KeyValue> current;
  r = client_->CompareAndSwap("cas/k", rev1, "v3", 0, &current);
  ASSERT_OK(r.status());
  EXPECT_FALSE(*r);
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->value, "v2");
  EXPECT_EQ(current->mod_revision, rev2);
  got = client_->Get("cas/k");
  ASSERT_OK(got.status());
  EXPECT_EQ((*got)->value, "v2");
  EXPECT_EQ((*got)->mod_revision, rev2);

  // A revision on an absent key fails and reports absence.
  current = KeyValue{"stale", "stale"};
  r = client_->CompareAndSwap("cas/absent", rev2, "x", 0, &current);
  ASSERT_OK(r.status());
  EXPECT_FALSE(*r);
  EXPECT_FALSE(current.has_value());
  got = client_->Get("cas/absent");
  ASSERT_OK(got.status());
  EXPECT_FALSE(got->has_value());

  EXPECT_EQ(client_->CompareAndSwap("cas/k", -1, "x", 0, nullptr).status().code(),
            Status::Code::kInvalidArgument);
}

TEST_F(EtcdClientTest, ConcurrentCasIncrementsLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 15;
  ASSERT_OK(client_->Put("cas/counter", "0"));
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      StatusOr<std::optional<KeyValue>> got = client_->Get("cas/counter");
      if (!got.ok() || !got->has_value()) {
        ++errors;
        return;
      }
      KeyValue kv = **got;
      for (int i = 0; i < kIncrements;) {
        std::optional<KeyValue> current;
        StatusOr<bool> r = client_->CompareAndSwap(
            "cas/counter", kv.mod_revision, std::to_string(std::stoi(kv.value) + 1), 0, &current);
        if (!r.ok() || (!*r && !current.has_value())) {
          ++errors;
          return;
        }
        if (*r) {
          ++i;
          StatusOr<std::optional<KeyValue>> again = client_->Get("cas/counter");
          if (!again.ok() || !again->has_value()) {
            ++errors;
            return;
          }
          kv = **again;
        } else {
          kv = *current;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  StatusOr<std::optional<KeyValue>> got = client_->Get("cas/counter");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, std::to_string(kThreads * kIncrements));
}

TEST_F(EtcdClientTest, LeaseLifecycle) {
  int64_t granted = 0;
  StatusOr<int64_t> lease = client_->GrantLease(1, &granted);
  ASSERT_OK(lease.status());
  EXPECT_NE(*lease, 0);
  EXPECT_GE(granted, 1);

  ASSERT_OK(client_->Put("lease/k", "v", *lease));
  StatusOr<std::optional<KeyValue>> got = client_->Get("lease/k");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->lease, *lease);

  StatusOr<int64_t> ttl = client_->KeepAliveOnce(*lease);
  ASSERT_OK(ttl.status());
  EXPECT_GT(*ttl, 0);
  EXPECT_LE(*ttl, granted);
  StatusOr<int64_t> left = client_->LeaseTimeToLive(*lease);
  ASSERT_OK(left.status());
  EXPECT_GE(*left, 0);
  EXPECT_LE(*left, granted);

  ASSERT_OK(client_->RevokeLease(*lease));
  got = client_->Get("lease/k");
  ASSERT_OK(got.status());
  EXPECT_FALSE(got->has_value());
  ttl = client_->KeepAliveOnce(*lease);
  EXPECT_TRUE(ttl.status().IsNotFound()) << ttl.status().ToString();
  left = client_->LeaseTimeToLive(*lease);
  EXPECT_TRUE(left.status().IsNotFound()) << left.status().ToString();
  // Revoking a lease that is gone is not an error.
  ASSERT_OK(client_->RevokeLease(*lease));
  // Putting with it is: etcd's own message comes back.
  Status put = client_->Put("lease/k", "v", *lease);
  EXPECT_TRUE(put.IsNotFound()) << put.ToString();
  EXPECT_NE(put.message().find("requested lease not found"), std::string::npos) << put.ToString();

  EXPECT_EQ(client_->GrantLease(0, nullptr).status().code(), Status::Code::kInvalidArgument);
}

TEST_F(EtcdClientTest, LeaseNotKeptAliveExpires) {
  int64_t granted = 0;
  StatusOr<int64_t> lease = client_->GrantLease(1, &granted);
  ASSERT_OK(lease.status());
  ASSERT_OK(client_->Put("lease/ephemeral", "v", *lease));
  const Clock::time_point start = Clock::now();
  bool gone = false;
  while (!gone && MillisSince(start) < 5000) {
    StatusOr<std::optional<KeyValue>> got = client_->Get("lease/ephemeral");
    ASSERT_OK(got.status());
    gone = !got->has_value();
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone) << "key of a " << granted << " s lease still there after 5 s";
  StatusOr<int64_t> ttl = client_->KeepAliveOnce(*lease);
  EXPECT_TRUE(ttl.status().IsNotFound()) << ttl.status().ToString();
}

TEST_F(EtcdClientTest, KeepAliveHoldsLeasePastItsTtl) {
  int64_t granted = 0;
  StatusOr<int64_t> lease = client_->GrantLease(1, &granted);
  ASSERT_OK(lease.status());
  ASSERT_OK(client_->Put("lease/held", "v", *lease));
  const Clock::time_point start = Clock::now();
  while (MillisSince(start) < (granted + 1) * 1000) {
    StatusOr<int64_t> ttl = client_->KeepAliveOnce(*lease);
    ASSERT_OK(ttl.status());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  StatusOr<std::optional<KeyValue>> got = client_->Get("lease/held");
  ASSERT_OK(got.status());
  EXPECT_TRUE(got->has_value());
}

TEST_F(EtcdClientTest, DeadEndpointIsUnavailableQuickly) {
  constexpr int kTimeoutMs = 500;
  const std::string dead = "http://127.0.0.1:" + std::to_string(DeadPort());
  std::unique_ptr<EtcdClient> client = NewClient(dead, kTimeoutMs);
  ASSERT_NE(client, nullptr);
  const Clock::time_point start = Clock::now();
  StatusOr<std::optional<KeyValue>> got = client->Get("k");
  EXPECT_LT(MillisSince(start), 2 * kTimeoutMs);
  EXPECT_EQ(got.status().code(), Status::Code::kUnavailable) << got.status().ToString();
  EXPECT_NE(got.status().message().find(dead), std::string::npos) << got.status().ToString();
  Status put = client->Put("k", "v");
  EXPECT_EQ(put.code(), Status::Code::kUnavailable) << put.ToString();
}

TEST_F(EtcdClientTest, EndpointListFailsOverToALiveEndpoint) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(DeadPort());
  std::unique_ptr<EtcdClient> client = NewClient(dead + "," + etcd_->endpoint(), 1000);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->endpoint(), dead);
  // A write that never left may go to the next endpoint too.
  ASSERT_OK(client->Put("fo/k", "v"));
  EXPECT_EQ(client->endpoint(), etcd_->endpoint());
  StatusOr<std::optional<KeyValue>> got = client->Get("fo/k");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "v");
  EXPECT_EQ(client->endpoint(), etcd_->endpoint());
}

TEST_F(EtcdClientTest, BlackholedEndpointLeavesTimeForTheNext) {
  constexpr int kTimeoutMs = 600;
  BlackholePort blackhole;
  // Alone, it uses the whole timeout to connect; nothing was sent: Unavailable.
  std::unique_ptr<EtcdClient> alone = NewClient(blackhole.url(), kTimeoutMs);
  ASSERT_NE(alone, nullptr);
  Clock::time_point start = Clock::now();
  Status put = alone->Put("bh/k", "v");
  int64_t took = MillisSince(start);
  EXPECT_EQ(put.code(), Status::Code::kUnavailable) << put.ToString();
  EXPECT_GE(took, kTimeoutMs - 20);
  EXPECT_LT(took, 2 * kTimeoutMs);

  // First of two, it gets half the time to connect, and the write (never
  // sent) goes on to the live endpoint within the one timeout.
  std::unique_ptr<EtcdClient> two =
      NewClient(blackhole.url() + "," + etcd_->endpoint(), kTimeoutMs);
  ASSERT_NE(two, nullptr);
  start = Clock::now();
  ASSERT_OK(two->Put("bh/k", "v"));
  took = MillisSince(start);
  EXPECT_GE(took, kTimeoutMs / 2 - 20);
  EXPECT_LT(took, kTimeoutMs);
  EXPECT_EQ(two->endpoint(), etcd_->endpoint());
  // Later calls start at the endpoint that answered.
  start = Clock::now();
  ASSERT_OK(two->Get("bh/k").status());
  EXPECT_LT(MillisSince(start), kTimeoutMs / 2);
}

TEST_F(EtcdClientTest, StoppedEtcdTimesOutWithinTheTimeout) {
  constexpr int kTimeoutMs = 300;
  std::unique_ptr<EtcdClient> client = NewClient(etcd_->endpoint(), kTimeoutMs);
  ASSERT_NE(client, nullptr);
  ASSERT_OK(client->Put("stop/k", "v"));  // the connection is open and idle
  ASSERT_OK(etcd_->Kill(SIGSTOP));
  const Clock::time_point start = Clock::now();
  StatusOr<std::optional<KeyValue>> got = client->Get("stop/k");
  const int64_t took = MillisSince(start);
  ASSERT_OK(etcd_->Kill(SIGCONT));
  EXPECT_EQ(got.status().code(), Status::Code::kTimeout) << got.status().ToString();
  EXPECT_GE(took, kTimeoutMs - 20);
  EXPECT_LT(took, 2 * kTimeoutMs);
  // Once etcd runs again the same client works.
  got = client->Get("stop/k");
  ASSERT_OK(got.status());
  EXPECT_TRUE(got->has_value());
}

TEST_F(EtcdClientTest, RestartedEtcdKeepsItsData) {
  ASSERT_OK(client_->Put("restart/k", "v"));
  ASSERT_OK(etcd_->Kill(SIGKILL));
  EXPECT_EQ(etcd_->pid(), -1);
  EXPECT_EQ(client_->Get("restart/k").status().code(), Status::Code::kUnavailable);
  ASSERT_OK(etcd_->Start());
  StatusOr<std::optional<KeyValue>> got = client_->Get("restart/k");
  ASSERT_OK(got.status());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "v");
}

TEST(EtcdClientCreateTest, RejectsBadArguments) {
  EXPECT_EQ(EtcdClient::Create("", 1000).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EtcdClient::Create("127.0.0.1:2379", 1000).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(EtcdClient::Create("http://127.0.0.1:2379,", 1000).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(EtcdClient::Create("http://127.0.0.1:2379", 0).status().code(),
            Status::Code::kInvalidArgument);
  StatusOr<std::unique_ptr<EtcdClient>> c =
      EtcdClient::Create(" http://127.0.0.1:2379/ , http://127.0.0.1:2381", 1000);
  ASSERT_OK(c.status());
  EXPECT_EQ((*c)->endpoint(), "http://127.0.0.1:2379");
}

}  // namespace
}  // namespace faha::coord
