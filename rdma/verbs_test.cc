// Verbs streams and the rdma replication transport on a real RDMA device
// (soft-RoCE in the test guest: tests/guest/run-rdma-suite.sh). Without a
// device the tests skip, unless FAHA_REQUIRE_RDMA=1 (the guest sets it).
#include "rdma/verbs.h"

#include <gtest/gtest.h>
#include <netdb.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#if __has_include(<rdma/rdma_cma.h>)
#include <rdma/rdma_cma.h>
#define FAHA_TEST_RAW_CM 1
#endif

#include "rdma/channel_testing.h"
#include "rdma/repl_frame.h"
#include "rdma/transport.h"

namespace faha::rdma {
namespace {

std::string RdmaAddr() {
  const char* a = std::getenv("FAHA_RDMA_ADDR");
  return a ? a : "";
}

#define REQUIRE_RDMA()                                                              \
  do {                                                                              \
    std::string why;                                                                \
    if (RdmaAddr().empty() || ProbeVerbsDevices(&why).empty()) {                    \
      if (std::getenv("FAHA_REQUIRE_RDMA")) FAIL() << "no RDMA device: " << why;    \
      GTEST_SKIP() << "no RDMA device here (" << why << "; FAHA_RDMA_ADDR unset?)"; \
    }                                                                               \
  } while (0)

VerbsOptions SmallRing() {
  VerbsOptions o;
  o.ring_bytes = 64 << 10;  // small, so the ring wraps and credits run out often
  o.max_message = 16 << 10;
  o.queue_depth = 8;
  return o;
}

struct Pair {
  std::unique_ptr<VerbsStream> a, b;
};

Pair Connect(const VerbsOptions& oa, const VerbsOptions& ob, std::string_view data = "x") {
  auto l = VerbsListen(RdmaAddr(), 0, ob);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  if (!l.ok()) return {};
  Pair p;
  std::thread t([&] {
    auto s = (*l)->Accept(5000, [](std::string_view) { return Status::OK(); });
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (s.ok()) p.b = std::move(*s);
  });
  auto c = VerbsConnect(RdmaAddr(), (*l)->port(), data, oa, 5000);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (c.ok()) p.a = std::move(*c);
  t.join();
  return p;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng());
  return s;
}

// Sends `data` in random-sized writes while the other thread reads it back.
void Pump(VerbsStream* from, VerbsStream* to, const std::string& data, std::string* got) {
  std::thread reader([&] {
    while (got->size() < data.size()) {
      Status s = to->Read(got, 5000);
      if (!s.ok()) {
        ADD_FAILURE() << s.ToString();
        return;
      }
    }
  });
  std::mt19937 rng(7);
  size_t off = 0;
  while (off < data.size()) {
    size_t n = std::min<size_t>(data.size() - off, 1 + rng() % (40 << 10));
    Status s = from->Write(std::string_view(data).substr(off, n), 5000);
    ASSERT_TRUE(s.ok()) << s.ToString();
    off += n;
  }
  reader.join();
}

TEST(VerbsTest, DevicesProbed) {
  REQUIRE_RDMA();
  std::string why;
  for (const auto& d : ProbeVerbsDevices(&why)) {
    std::printf("RDMA device: %s\n", d.summary.c_str());
    EXPECT_NE(d.summary.find("FLUSH"), std::string::npos);
  }
}

TEST(VerbsTest, BytesArriveInOrderBothWaysThroughRingWrapsAndCredits) {
  REQUIRE_RDMA();
  Pair p = Connect(SmallRing(), SmallRing());
  ASSERT_TRUE(p.a && p.b);
  const std::string ab = Pattern(6 << 20, 1), ba = Pattern(3 << 20, 2);
  std::string got_ab, got_ba;
  std::thread other([&] { Pump(p.b.get(), p.a.get(), ba, &got_ba); });
  Pump(p.a.get(), p.b.get(), ab, &got_ab);
  other.join();
  EXPECT_TRUE(got_ab == ab) << "a->b bytes differ (" << got_ab.size() << " of " << ab.size() << ")";
  EXPECT_TRUE(got_ba == ba) << "b->a bytes differ (" << got_ba.size() << " of " << ba.size() << ")";
}

TEST(VerbsTest, DifferentRingSizesOnEachSide) {
  REQUIRE_RDMA();
  VerbsOptions big;
  big.ring_bytes = 1 << 20;
  Pair p = Connect(SmallRing(), big);
  ASSERT_TRUE(p.a && p.b);
  const std::string data = Pattern(2 << 20, 3);
  std::string got;
  Pump(p.a.get(), p.b.get(), data, &got);
  EXPECT_TRUE(got == data);
  got.clear();
  Pump(p.b.get(), p.a.get(), data, &got);
  EXPECT_TRUE(got == data);
}

TEST(VerbsTest, OnlyTheReceiveRingAndCreditWordAreExposed) {
  REQUIRE_RDMA();
  Pair p = Connect(SmallRing(), SmallRing());
  ASSERT_TRUE(p.a && p.b);
  for (auto* s : {p.a.get(), p.b.get()}) {
    auto regions = s->RemoteRegions();
    ASSERT_EQ(regions.size(), 2u);
    EXPECT_EQ(regions[0].what, "receive ring");
    EXPECT_EQ(regions[0].bytes, SmallRing().ring_bytes);
    EXPECT_EQ(regions[1].what, "credit word");
    EXPECT_LE(regions[1].bytes, 64u);
  }
}

TEST(VerbsTest, GuardedMemoryIsNeverRegisteredForRemoteAccess) {
  REQUIRE_RDMA();
  // A guard that calls everything log memory: no stream can be set up.
  SetRemoteAccessGuard([](const void*, size_t) { return true; });
  auto l = VerbsListen(RdmaAddr(), 0, SmallRing());
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  Status accepted;
  std::thread t([&] {
    auto s = (*l)->Accept(5000, [](std::string_view) { return Status::OK(); });
    accepted = s.ok() ? Status::OK() : s.status();
  });
  auto c = VerbsConnect(RdmaAddr(), (*l)->port(), "x", SmallRing(), 5000);
  t.join();
  SetRemoteAccessGuard(nullptr);
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("log memory"), std::string::npos) << c.status().ToString();
  EXPECT_FALSE(accepted.ok());
}

TEST(VerbsTest, RefusalReachesTheConnectorWithItsReason) {
  REQUIRE_RDMA();
  auto l = VerbsListen(RdmaAddr(), 0, SmallRing());
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  Status accepted;
  std::thread t([&] {
    auto s = (*l)->Accept(5000, [](std::string_view) { return Status::Auth("go away: test"); });
    accepted = s.ok() ? Status::OK() : s.status();
  });
  auto c = VerbsConnect(RdmaAddr(), (*l)->port(), "x", SmallRing(), 5000);
  t.join();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kAuth) << c.status().ToString();
  EXPECT_NE(c.status().message().find("go away: test"), std::string::npos) << c.status().ToString();
  EXPECT_EQ(accepted.code(), Status::Code::kAuth);
}

TEST(VerbsTest, DisconnectIsSeenByTheReader) {
  REQUIRE_RDMA();
  Pair p = Connect(SmallRing(), SmallRing());
  ASSERT_TRUE(p.a && p.b);
  ASSERT_TRUE(p.a->Write("last words", 1000).ok());
  p.a.reset();
  std::string got;
  Status s;
  for (int i = 0; i < 50 && s.ok(); i++) s = p.b->Read(&got, 100);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
}

TEST(VerbsTest, ASilentPeerIsTakenForDeadByTheKeepalive) {
  REQUIRE_RDMA();
  VerbsOptions watch = SmallRing();
  watch.keepalive_ms = 50;
  watch.dead_peer_ms = 400;
  // The peer never reads, so it sends no keepalives: as if it lost power.
  Pair p = Connect(watch, SmallRing());
  ASSERT_TRUE(p.a && p.b);
  std::string got;
  Status s;
  auto t0 = std::chrono::steady_clock::now();
  while (s.ok() || s.code() == Status::Code::kTimeout) s = p.a->Read(&got, 100);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("keepalive"), std::string::npos) << s.ToString();
  EXPECT_LT(ms, 3000);
}

#ifdef FAHA_TEST_RAW_CM
// A peer that goes through rdma_cm up to ESTABLISHED and then says nothing: it
// never sends the ring set-up a FaHA stream starts with.
class SilentPeer {
 public:
  ~SilentPeer() {
    if (established_) rdma_disconnect(id_);
    if (id_ && id_->qp) rdma_destroy_qp(id_);
    if (id_) rdma_destroy_id(id_);
    if (ec_) rdma_destroy_event_channel(ec_);
  }

  Status Connect(const std::string& host, int port, const std::string& private_data) {
    ec_ = rdma_create_event_channel();
    if (!ec_ || rdma_create_id(ec_, &id_, nullptr, RDMA_PS_TCP) != 0) {
      return Status::Unavailable("rdma_create_id failed");
    }
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) {
      return Status::InvalidArgument("cannot resolve " + host);
    }
    int rc = rdma_resolve_addr(id_, nullptr, res->ai_addr, 5000);
    freeaddrinfo(res);
    if (rc != 0) return Status::Unavailable("rdma_resolve_addr failed");
    FAHA_RETURN_IF_ERROR(Expect(RDMA_CM_EVENT_ADDR_RESOLVED));
    if (rdma_resolve_route(id_, 5000) != 0) return Status::Unavailable("rdma_resolve_route failed");
    FAHA_RETURN_IF_ERROR(Expect(RDMA_CM_EVENT_ROUTE_RESOLVED));
    ibv_qp_init_attr qa{};
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = qa.cap.max_recv_wr = 4;
    qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
    if (rdma_create_qp(id_, nullptr, &qa) != 0) return Status::Unavailable("rdma_create_qp failed");
    rdma_conn_param param{};
    param.private_data = private_data.data();
    param.private_data_len = static_cast<uint8_t>(private_data.size());
    param.retry_count = 7;
    param.rnr_retry_count = 7;
    if (rdma_connect(id_, &param) != 0) return Status::Unavailable("rdma_connect failed");
    FAHA_RETURN_IF_ERROR(Expect(RDMA_CM_EVENT_ESTABLISHED));
    established_ = true;
    return Status::OK();
  }

 private:
  Status Expect(rdma_cm_event_type want) {
    pollfd p{ec_->fd, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return Status::Timeout(std::string("no ") + rdma_event_str(want));
    rdma_cm_event* e = nullptr;
    if (rdma_get_cm_event(ec_, &e) != 0) return Status::Unavailable("rdma_get_cm_event failed");
    rdma_cm_event_type got = e->event;
    rdma_ack_cm_event(e);
    if (got != want) return Status::Unavailable(std::string("got ") + rdma_event_str(got));
    return Status::OK();
  }

  rdma_event_channel* ec_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  bool established_ = false;
};

TEST(VerbsTest, APeerSilentInItsSetUpHoldsUpNoOtherConnection) {
  REQUIRE_RDMA();
  auto l = VerbsListen(RdmaAddr(), 0, SmallRing());
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  // Accepts until the test ends, keeping what each Accept gave.
  struct Acceptor {
    std::mutex mu;
    std::vector<std::unique_ptr<VerbsStream>> accepted;
    std::vector<Status> failed;
    std::atomic<bool> stop{false};
    std::thread thread;
    ~Acceptor() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } a;
  a.thread = std::thread([&] {
    while (!a.stop) {
      auto s = (*l)->Accept(100, [](std::string_view) { return Status::OK(); });
      if (!s.ok() && s.status().code() == Status::Code::kNotFound) continue;
      std::lock_guard<std::mutex> g(a.mu);
      if (s.ok()) {
        a.accepted.push_back(std::move(*s));
      } else {
        a.failed.push_back(s.status());
      }
    }
  });
  auto wait_for = [&](auto done, int ms) {
    for (int i = 0; i < ms / 10; i++) {
      {
        std::lock_guard<std::mutex> g(a.mu);
        if (done()) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };

  SilentPeer silent;
  Status sc = silent.Connect(RdmaAddr(), (*l)->port(), "x");
  ASSERT_TRUE(sc.ok()) << sc.ToString();
  // The silent peer's set-up may take the listener's whole set-up time (5 s);
  // an honest connection made meanwhile must not wait for it.
  auto t0 = std::chrono::steady_clock::now();
  auto c = VerbsConnect(RdmaAddr(), (*l)->port(), "x", SmallRing(), 1500);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::printf("connected in %lld ms while a silent peer was setting up\n",
              static_cast<long long>(ms));
  ASSERT_TRUE(wait_for([&] { return a.accepted.size() == 1; }, 5000));
  ASSERT_TRUE((*c)->Write("hello", 1000).ok());
  std::string got;
  while (got.size() < 5) ASSERT_TRUE(a.accepted[0]->Read(&got, 2000).ok());
  EXPECT_EQ(got, "hello");

  // The silent one is given up once its set-up time has passed, with a reason.
  ASSERT_TRUE(wait_for([&] { return !a.failed.empty(); }, 10000));
  EXPECT_EQ(a.failed[0].code(), Status::Code::kTimeout) << a.failed[0].ToString();
  EXPECT_NE(a.failed[0].message().find("ring set-up"), std::string::npos) << a.failed[0].ToString();
}
#endif  // FAHA_TEST_RAW_CM

TEST(VerbsTransportTest, WrongSecretIsRefusedAtConnectionSetUp) {
  REQUIRE_RDMA();
  auto server = MakeTransport("rdma", {.secret = "the-right-secret-0123"});
  auto stranger = MakeTransport("rdma", {.secret = "a-wrong-secret-012345"});
  ASSERT_TRUE(server.ok() && stranger.ok()) << server.status().ToString();
  auto l = (*server)->Listen(RdmaAddr(), 0);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  Status accepted;
  std::thread t([&] {
    auto ch = (*l)->Accept(5000);
    accepted = ch.ok() ? Status::OK() : ch.status();
  });
  auto ch = (*stranger)->Connect(RdmaAddr() + ":" + std::to_string((*l)->port()), 5000);
  t.join();
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Status::Code::kAuth) << ch.status().ToString();
  EXPECT_NE(ch.status().message().find("wrong cluster secret"), std::string::npos);
  EXPECT_EQ(accepted.code(), Status::Code::kAuth) << accepted.ToString();

  // A client-kind request on the replication port is refused too.
  Status refused;
  std::thread t2([&] {
    auto refusal = (*l)->Accept(5000);
    refused = refusal.ok() ? Status::OK() : refusal.status();
  });
  auto client = VerbsConnect(RdmaAddr(), (*l)->port(), EncodeConnectData(ConnectKind::kClient, ""),
                             SmallRing(), 5000);
  t2.join();
  EXPECT_FALSE(client.ok());
  EXPECT_NE(refused.message().find("not a client port"), std::string::npos) << refused.ToString();
}

TEST(VerbsTransportTest, FramesFlowBetweenPeersWithTheSecret) {
  REQUIRE_RDMA();
  testing::ChannelPair p;
  ASSERT_TRUE(testing::Connect("rdma", RdmaAddr(), {.secret = "the-right-secret-0123"}, &p));
  Channel* client = p.client.get();
  Channel* server = p.server.get();
  std::string out;
  const std::string big = Pattern(3 << 20, 9);  // larger than one ring message
  for (uint64_t i = 1; i <= 20; i++)
    EncodeFrame(&out, FrameType::kBatch, 7, i, i == 10 ? big : "b");
  ASSERT_TRUE(client->Send(out, 5000).ok());
  for (uint64_t i = 1; i <= 20; i++) {
    auto f = server->Receive(5000);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->lsn, i);
    EXPECT_EQ(f->epoch, 7u);
    EXPECT_EQ(f->body, i == 10 ? std::string_view(big) : std::string_view("b"));
  }
  out.clear();
  EncodeFrame(&out, FrameType::kAck, 7, 20, "");
  ASSERT_TRUE(server->Send(out, 5000).ok());
  auto ack = client->Receive(5000);
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_EQ(ack->type, FrameType::kAck);
}

TEST(VerbsTransportTest, SlowReaderIsWaitedForAndAStalledOneTimesOut) {
  REQUIRE_RDMA();
  testing::ChannelPair p;
  ASSERT_TRUE(testing::Connect("rdma", RdmaAddr(), {.secret = "the-right-secret-0123"}, &p));
  Channel* client = p.client.get();
  Channel* server = p.server.get();
  testing::ExpectSlowReaderWaitedForAndStallTimedOut(client, server);
}

TEST(VerbsTransportTest, WithoutADeviceTheTransportSaysSo) {
  std::string why;
  if (!ProbeVerbsDevices(&why).empty()) GTEST_SKIP() << "this machine has an RDMA device";
  auto t = MakeTransport("rdma", {.secret = "the-right-secret-0123"});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kUnavailable);
  EXPECT_FALSE(t.status().message().empty());
  std::printf("%s\n", t.status().ToString().c_str());
}

}  // namespace
}  // namespace faha::rdma
