// The "rdma" Transport: replication frames over verbs streams (verbs.h).
// A connecting primary proves the cluster secret in its rdma_cm private data
// (a fresh nonce and HMAC-SHA256(secret, "faha-rdma-connect" | nonce), cut to
// 24 bytes), so a peer without it is rejected before anything is registered
// for it; the full mutual challenge of transport.h then runs over the stream,
// which also defeats a replayed request.
#include <openssl/rand.h>

#include "common/net.h"
#include "rdma/byte_stream.h"
#include "rdma/verbs.h"

namespace faha::rdma {
namespace {

constexpr size_t kConnectNonce = 16, kConnectMac = 24;

std::string ConnectProof(const std::string& secret, std::string_view nonce) {
  return SecretProof(secret, nonce, "faha-rdma-connect").substr(0, kConnectMac);
}

VerbsOptions ReplicationStreamOptions() {
  VerbsOptions o;
  o.ring_bytes = 4u << 20;  // a few batches in flight
  o.max_message = 256u << 10;
  o.keepalive_ms = 200;
  o.dead_peer_ms = 2000;
  return o;
}

class VerbsChannelListener final : public Listener {
 public:
  VerbsChannelListener(std::unique_ptr<VerbsListener> l, const TransportOptions& options)
      : listener_(std::move(l)), options_(options) {}

  StatusOr<std::unique_ptr<Channel>> AcceptPending(int timeout_ms) override {
    const std::string& secret = options_.secret;
    auto stream = listener_->Accept(timeout_ms, [&secret](std::string_view data) {
      ConnectKind kind;
      std::string_view rest;
      if (!DecodeConnectData(data, &kind, &rest)) {
        return Status::Protocol("not a FaHA connection request");
      }
      if (kind != ConnectKind::kReplication) {
        return Status::Protocol("this is a replication port, not a client port");
      }
      if (rest.size() != kConnectNonce + kConnectMac ||
          !ConstantTimeEqual(rest.substr(kConnectNonce),
                             ConnectProof(secret, rest.substr(0, kConnectNonce)))) {
        return Status::Auth("authentication failed: wrong cluster secret");
      }
      return Status::OK();
    });
    if (!stream.ok()) return stream.status();
    return std::unique_ptr<Channel>(std::make_unique<StreamChannel>(std::move(*stream), options_));
  }
  int port() const override { return listener_->port(); }

 private:
  std::unique_ptr<VerbsListener> listener_;
  TransportOptions options_;
};

class VerbsTransport final : public Transport {
 public:
  explicit VerbsTransport(const TransportOptions& options) : options_(options) {}
  std::string name() const override { return "rdma"; }

  StatusOr<std::unique_ptr<Channel>> Connect(const std::string& address, int timeout_ms) override {
    std::string host;
    int port = 0;
    FAHA_RETURN_IF_ERROR(net::ParseHostPort(address, &host, &port, "replication address"));
    unsigned char nonce[kConnectNonce];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) return Status::IOError("RAND_bytes failed");
    std::string rest(reinterpret_cast<char*>(nonce), sizeof(nonce));
    rest += ConnectProof(options_.secret, rest);
    auto stream = VerbsConnect(host, port, EncodeConnectData(ConnectKind::kReplication, rest),
                               ReplicationStreamOptions(), timeout_ms);
    if (!stream.ok()) return stream.status();
    auto ch = std::make_unique<StreamChannel>(std::move(*stream), options_);
    FAHA_RETURN_IF_ERROR(ch->AuthenticateToPeer());
    return std::unique_ptr<Channel>(std::move(ch));
  }

  StatusOr<std::unique_ptr<Listener>> Listen(const std::string& bind, int port) override {
    auto l = VerbsListen(bind, port, ReplicationStreamOptions());
    if (!l.ok()) return l.status();
    return std::unique_ptr<Listener>(new VerbsChannelListener(std::move(*l), options_));
  }

 private:
  TransportOptions options_;
};

}  // namespace

StatusOr<std::unique_ptr<Transport>> MakeVerbsTransport(const TransportOptions& options) {
  if (!VerbsBuiltIn()) {
    return Status::Unavailable("this build has no RDMA support (rdma-core was not installed)");
  }
  std::string why;
  if (ProbeVerbsDevices(&why).empty()) return Status::Unavailable("--repl_transport=rdma: " + why);
  return std::unique_ptr<Transport>(new VerbsTransport(options));
}

}  // namespace faha::rdma
