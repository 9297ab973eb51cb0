// Tests of the TCP transport on 127.0.0.1: authenticated channels carry
// frames both ways in order; a peer without the cluster secret, a peer that
// speaks something else, and an oversized frame before authentication are
// refused; receive times out.
#include "rdma/transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "rdma/byte_stream.h"
#include "rdma/channel_testing.h"
#include "rdma/repl_frame.h"

namespace faha::rdma {
namespace {

TransportOptions Opts(std::string secret) {
  TransportOptions o;
  o.secret = std::move(secret);
  o.handshake_timeout_ms = 1000;
  return o;
}

int RawConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

TEST(TcpTransportTest, AuthenticatedChannelCarriesFramesBothWaysInOrder) {
  testing::ChannelPair p;
  ASSERT_TRUE(testing::Connect("tcp", "127.0.0.1", Opts("s3cret"), &p));
  Channel* ch = p.client.get();
  Channel* peer = p.server.get();

  std::string frames;
  for (uint64_t lsn = 1; lsn <= 100; lsn++) {
    EncodeFrame(&frames, FrameType::kBatch, 4, lsn, std::string(lsn * 100, 'b'));
  }
  ASSERT_TRUE(ch->Send(frames, 3000).ok());
  for (uint64_t lsn = 1; lsn <= 100; lsn++) {
    auto f = peer->Receive(3000);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->lsn, lsn);
    EXPECT_EQ(f->epoch, 4u);
    EXPECT_EQ(f->body.size(), lsn * 100);
    std::string ack;
    EncodeFrame(&ack, FrameType::kAck, 4, lsn, "");
    ASSERT_TRUE(peer->Send(ack, 1000).ok());
  }
  for (uint64_t lsn = 1; lsn <= 100; lsn++) {
    auto a = ch->Receive(3000);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->type, FrameType::kAck);
    EXPECT_EQ(a->lsn, lsn);
  }
  auto none = ch->Receive(50);
  EXPECT_EQ(none.status().code(), Status::Code::kTimeout);
}

TEST(TcpTransportTest, SlowReaderIsWaitedForAndAStalledOneTimesOut) {
  testing::ChannelPair p;
  ASSERT_TRUE(testing::Connect("tcp", "127.0.0.1", Opts("s"), &p));
  testing::ExpectSlowReaderWaitedForAndStallTimedOut(p.client.get(), p.server.get());
}

TEST(TcpTransportTest, PeerWithoutTheSecretIsRefusedBothWays) {
  auto server = MakeTransport("tcp", Opts("right"));
  auto intruder = MakeTransport("tcp", Opts("wrong"));
  auto listener = (*server)->Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  auto accepted = std::async(std::launch::async, [&] { return (*listener)->Accept(3000); });
  auto ch = (*intruder)->Connect("127.0.0.1:" + std::to_string((*listener)->port()), 3000);
  EXPECT_EQ(ch.status().code(), Status::Code::kAuth) << ch.status().ToString();
  EXPECT_NE(ch.status().message().find("wrong cluster secret"), std::string::npos)
      << ch.status().ToString();
  auto peer = accepted.get();
  EXPECT_EQ(peer.status().code(), Status::Code::kAuth) << peer.status().ToString();
}

TEST(TcpTransportTest, GarbageAndOversizedFramesBeforeAuthAreRefused) {
  auto server = MakeTransport("tcp", Opts("s"));
  auto listener = (*server)->Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  {
    auto accepted = std::async(std::launch::async, [&] { return (*listener)->Accept(3000); });
    int fd = RawConnect((*listener)->port());
    const char kHttp[] = "GET / HTTP/1.0\r\n\r\n";
    ASSERT_EQ(write(fd, kHttp, sizeof(kHttp) - 1), static_cast<ssize_t>(sizeof(kHttp) - 1));
    auto peer = accepted.get();
    EXPECT_EQ(peer.status().code(), Status::Code::kProtocol) << peer.status().ToString();
    close(fd);
  }
  {
    auto accepted = std::async(std::launch::async, [&] { return (*listener)->Accept(3000); });
    int fd = RawConnect((*listener)->port());
    std::string big;
    EncodeFrame(&big, FrameType::kHello, 0, 0, std::string(1000, 'x'));
    ASSERT_EQ(write(fd, big.data(), 40), 40);  // just the header announcing 1000 bytes
    auto peer = accepted.get();
    EXPECT_EQ(peer.status().code(), Status::Code::kProtocol) << peer.status().ToString();
    EXPECT_NE(peer.status().message().find("exceeds the limit of 256"), std::string::npos)
        << peer.status().ToString();
    close(fd);
  }
  {
    // Nobody at all: told apart from a peer that stalls.
    auto nobody = (*listener)->Accept(50);
    EXPECT_TRUE(nobody.status().IsNotFound()) << nobody.status().ToString();
  }
  {
    // Silence: the handshake times out instead of hanging.
    auto accepted = std::async(std::launch::async, [&] { return (*listener)->Accept(3000); });
    int fd = RawConnect((*listener)->port());
    auto peer = accepted.get();
    EXPECT_EQ(peer.status().code(), Status::Code::kTimeout) << peer.status().ToString();
    close(fd);
  }
}

// The connector's first frame as the protocol defines it: HELLO {nonce,
// clock ms little-endian, HMAC(secret, nonce | clock | "connect")}.
std::string FirstFrame(const std::string& secret, char fill, int64_t clock_ms) {
  std::string body(32, fill);
  for (int b = 0; b < 8; b++)
    body.push_back(static_cast<char>((static_cast<uint64_t>(clock_ms) >> (8 * b)) & 0xff));
  body += SecretProof(secret, body, "connect");
  std::string frame;
  EncodeFrame(&frame, FrameType::kHello, 0, 0, body);
  return frame;
}

// A peer is vouched for by its first frame while its handshake has not even
// started (the backup then never aborts it for a newcomer); the same frame
// replayed, a stale one, a wrong secret's or garbage is not, and a replay is
// refused by the handshake.
TEST(TcpTransportTest, FirstFrameVouchesForAPeerOnceAndInTime) {
  auto server = MakeTransport("tcp", Opts("s"));
  auto listener = (*server)->Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto accept_with = [&](const std::string& bytes, int* fd) {
    *fd = RawConnect((*listener)->port());
    if (!bytes.empty()) {
      EXPECT_EQ(write(*fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    }
    auto ch = (*listener)->AcceptPending(3000);
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the bytes are there
    return ch.ok() ? std::move(*ch) : nullptr;
  };
  const std::string good = FirstFrame("s", 'a', now);
  int fd1, fd2, fd3, fd4, fd5;
  auto first = accept_with(good, &fd1);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->Vouched());
  EXPECT_FALSE(accept_with("", &fd2)->Vouched());                             // silent
  EXPECT_FALSE(accept_with(FirstFrame("wrong", 'b', now), &fd3)->Vouched());  // wrong secret
  EXPECT_FALSE(accept_with(FirstFrame("s", 'c', now - 10 * 60 * 1000), &fd4)->Vouched());  // stale
  // The first one's handshake takes its nonce (it then waits for an answer
  // to its challenge that never comes); the same frame again is a replay.
  auto handshake = std::async(std::launch::async, [&] { return first->Handshake(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(first->Vouched());
  auto replay = accept_with(good, &fd5);
  EXPECT_FALSE(replay->Vouched());
  Status refused = replay->Handshake();
  EXPECT_EQ(refused.code(), Status::Code::kAuth) << refused.ToString();
  EXPECT_EQ(handshake.get().code(), Status::Code::kTimeout);
  for (int fd : {fd1, fd2, fd3, fd4, fd5}) close(fd);
}

TEST(TcpTransportTest, ConfigurationErrors) {
  EXPECT_EQ(MakeTransport("tcp", Opts("")).status().code(), Status::Code::kInvalidArgument);
  auto r = MakeTransport("carrier-pigeon", Opts("s"));
  EXPECT_NE(r.status().message().find("available: tcp"), std::string::npos);
  auto t = MakeTransport("tcp", Opts("s"));
  EXPECT_EQ((*t)->Connect("no-port", 100).status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace faha::rdma
