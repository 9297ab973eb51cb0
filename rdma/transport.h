// Transport: how replication frames travel between a primary and its backups,
// chosen at run time ("tcp" now; "rdma" for verbs comes next) behind this one
// narrow interface, as valkey's connection.h does. Everything above it —
// shipping windows, acks, catch-up — is written once against Channel.
//
// Peers authenticate when a channel is set up: the accepting side sends a
// random nonce, the connecting side answers HMAC-SHA256(secret, nonce|"client")
// and the acceptor proves itself back with HMAC-SHA256(secret, nonce|"server").
// A peer without the cluster secret gets an ERROR frame and is disconnected
// before any frame of its own is looked at.
//
// Thread-safety: a Channel may be used by one sending thread and one receiving
// thread at once; a Listener by one thread.
#ifndef FAHA_RDMA_TRANSPORT_H_
#define FAHA_RDMA_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "faha/status.h"
#include "rdma/repl_frame.h"

namespace faha::rdma {

struct TransportOptions {
  std::string secret;                   // the cluster secret; must be non-empty
  uint32_t max_frame_body = 64u << 20;  // larger frames are refused from their header
  int handshake_timeout_ms = 2000;
  // The acceptor's wait for a peer's answer to its challenge: a stranger that
  // connects and stays silent holds a handshake slot this long at most.
  int preauth_timeout_ms = 1000;
};

class Channel {
 public:
  virtual ~Channel() = default;
  // Writes whole encoded frames (EncodeFrame output). timeout_ms bounds a
  // stall: a peer that keeps taking bytes, however slowly, is waited for.
  virtual Status Send(std::string_view frames, int timeout_ms) = 0;
  // Whether TrySend may be called (not over verbs, whose sends wait for
  // ring credits).
  virtual bool SendsWithoutWaiting() const { return false; }
  // Sends what the connection takes now, without waiting: the bytes sent
  // (the caller sends the rest with Send, in order, before anything else).
  virtual StatusOr<size_t> TrySend(std::string_view frames) {
    (void)frames;
    return size_t{0};
  }
  // Waits up to timeout_ms for the next frame. Its body stays valid until the
  // next Receive. Timeout gives Status::Timeout; a malformed frame, Protocol.
  virtual StatusOr<ReplFrame> Receive(int timeout_ms) = 0;
  virtual const std::string& peer() const = 0;
  // The acceptor's half of the challenge, for a channel from AcceptPending.
  virtual Status Handshake() = 0;
  // Ends the connection from any thread: a Send or Receive in progress
  // returns (used to drop a stalled handshake).
  virtual void Abort() = 0;
  // Whether the peer of a channel from AcceptPending has proved the cluster
  // secret in its first bytes (before the challenge that guards against a
  // replay): such a handshake is never aborted to make room for a newcomer.
  // Any thread, while Handshake runs; never waits.
  virtual bool Vouched() { return true; }
};

class Listener {
 public:
  virtual ~Listener() = default;
  // Accepts one peer without waiting for its handshake, which the caller runs
  // with Channel::Handshake (on a thread of its own, so that no peer can
  // delay another's). NotFound if none connected within timeout_ms.
  virtual StatusOr<std::unique_ptr<Channel>> AcceptPending(int timeout_ms) = 0;
  // Accepts and authenticates one peer: a peer that connected but failed or
  // stalled the handshake is an error of its own (Auth, Protocol, Timeout).
  StatusOr<std::unique_ptr<Channel>> Accept(int timeout_ms) {
    auto ch = AcceptPending(timeout_ms);
    if (!ch.ok()) return ch.status();
    FAHA_RETURN_IF_ERROR((*ch)->Handshake());
    return ch;
  }
  virtual int port() const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string name() const = 0;
  // Connects to "HOST:PORT" and authenticates.
  virtual StatusOr<std::unique_ptr<Channel>> Connect(const std::string& address,
                                                     int timeout_ms) = 0;
  // Listens on bind:port (port 0 picks a free one).
  virtual StatusOr<std::unique_ptr<Listener>> Listen(const std::string& bind, int port) = 0;
};

// "tcp" (anything else is refused with the list of what is available).
StatusOr<std::unique_ptr<Transport>> MakeTransport(const std::string& kind,
                                                   const TransportOptions& options);

}  // namespace faha::rdma

#endif  // FAHA_RDMA_TRANSPORT_H_
