// ByteStream: an ordered, reliable byte stream between two peers (a TCP
// socket or a verbs stream), and StreamChannel, the replication Channel built
// on any of them: frames, the HMAC challenge of transport.h, frame limits.
// Internal to rdma/.
#ifndef FAHA_RDMA_BYTE_STREAM_H_
#define FAHA_RDMA_BYTE_STREAM_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "faha/status.h"
#include "rdma/byte_stream_base.h"
#include "rdma/transport.h"

namespace faha::rdma {

class StreamChannel final : public Channel {
 public:
  StreamChannel(std::unique_ptr<ByteStream> stream, const TransportOptions& options);
  Status Send(std::string_view frames, int timeout_ms) override;
  bool SendsWithoutWaiting() const override { return stream_->WritesWithoutWaiting(); }
  StatusOr<size_t> TrySend(std::string_view frames) override { return stream_->TryWrite(frames); }
  StatusOr<ReplFrame> Receive(int timeout_ms) override;
  const std::string& peer() const override { return stream_->peer(); }
  Status Handshake() override { return AuthenticatePeer(); }
  void Abort() override { stream_->Shutdown(); }
  bool Vouched() override;

  // The acceptor's and the connector's halves of the challenge.
  Status AuthenticatePeer();
  Status AuthenticateToPeer();

 private:
  std::unique_ptr<ByteStream> stream_;
  TransportOptions options_;
  ByteBuffer in_;        // received bytes; frames start at pos_
  size_t pos_ = 0;       // bytes of in_ already handed out and released
  size_t consumed_ = 0;  // bytes of the frame handed out last (released at the next Receive)
  // Until the peer is authenticated only handshake-sized frames are accepted,
  // so a stranger cannot make us buffer a large body.
  uint32_t limit_ = 256;
  // Set by AuthenticatePeer once the first frame proved the secret, before
  // it is read: until then Vouched looks at the bytes in the stream.
  std::atomic<bool> vouched_{false};
};

// HMAC-SHA256(secret, nonce | role).
std::string SecretProof(const std::string& secret, std::string_view nonce, std::string_view role);
bool ConstantTimeEqual(std::string_view a, std::string_view b);

// The verbs transport (verbs_transport.cc): Unavailable when built without
// rdma-core.
StatusOr<std::unique_ptr<Transport>> MakeVerbsTransport(const TransportOptions& options);

}  // namespace faha::rdma

#endif  // FAHA_RDMA_BYTE_STREAM_H_
