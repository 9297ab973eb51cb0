// Shared by the TCP and verbs transport tests: what a Send's timeout means.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "rdma/repl_frame.h"
#include "rdma/transport.h"

namespace faha::rdma::testing {

// Two ends of one channel, with what they came from.
struct ChannelPair {
  std::unique_ptr<Transport> client_transport, server_transport;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Channel> client, server;
};

// Connects a client channel to a server channel of transport `kind` ("tcp",
// "rdma") listening on `host`, port 0.
inline ::testing::AssertionResult Connect(const std::string& kind, const std::string& host,
                                          const TransportOptions& options, ChannelPair* p) {
  auto server = MakeTransport(kind, options);
  auto client = MakeTransport(kind, options);
  if (!server.ok()) return ::testing::AssertionFailure() << server.status().ToString();
  if (!client.ok()) return ::testing::AssertionFailure() << client.status().ToString();
  p->server_transport = std::move(*server);
  p->client_transport = std::move(*client);
  auto listener = p->server_transport->Listen(host, 0);
  if (!listener.ok()) return ::testing::AssertionFailure() << listener.status().ToString();
  p->listener = std::move(*listener);
  auto accepted = std::async(std::launch::async, [&] { return p->listener->Accept(5000); });
  auto ch = p->client_transport->Connect(host + ":" + std::to_string(p->listener->port()), 5000);
  auto peer = accepted.get();
  if (!ch.ok()) return ::testing::AssertionFailure() << "connect: " << ch.status().ToString();
  if (!peer.ok()) return ::testing::AssertionFailure() << "accept: " << peer.status().ToString();
  p->client = std::move(*ch);
  p->server = std::move(*peer);
  return ::testing::AssertionSuccess();
}

// A Send's timeout bounds a stall, not the whole send: 48 frames of 256 KiB
// to a receiver that takes one every 25 ms (about 1.2 s in all, four times
// the 300 ms timeout) go through; then, with nobody reading, a send larger
// than any buffer on the way times out instead of hanging.
inline void ExpectSlowReaderWaitedForAndStallTimedOut(Channel* tx, Channel* rx) {
  constexpr int kFrames = 48;
  std::string out;
  for (uint64_t i = 1; i <= kFrames; i++) {
    EncodeFrame(&out, FrameType::kBatch, 3, i,
                std::string(256 << 10, static_cast<char>('a' + i % 26)));
  }
  int received = 0;
  std::thread reader([&] {
    for (int i = 1; i <= kFrames; i++) {
      auto f = rx->Receive(5000);
      if (!f.ok() || f->lsn != static_cast<uint64_t>(i) || f->body.size() != (256u << 10) ||
          f->body[0] != static_cast<char>('a' + i % 26)) {
        return;
      }
      received = i;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  });
  auto start = std::chrono::steady_clock::now();
  Status s = tx->Send(out, 300);
  reader.join();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(received, kFrames);
  EXPECT_GT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(900))
      << "the reader was not slow enough to test anything";

  // Nobody reads now: 64 MiB cannot all fit in the socket buffers or the ring.
  out.clear();
  for (uint64_t i = 1; i <= 256; i++)
    EncodeFrame(&out, FrameType::kBatch, 3, i, std::string(256 << 10, 's'));
  start = std::chrono::steady_clock::now();
  s = tx->Send(out, 300);
  EXPECT_EQ(s.code(), Status::Code::kTimeout) << s.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace faha::rdma::testing
