// StreamChannel: replication frames and the cluster-secret challenge over any
// ByteStream (byte_stream.h).
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <map>

#include "common/clock.h"
#include "common/mutex.h"
#include "rdma/byte_stream.h"

namespace faha::rdma {
namespace {
constexpr size_t kNonceBytes = 32;
}  // namespace

std::string SecretProof(const std::string& secret, std::string_view nonce, std::string_view role) {
  std::string msg(nonce);
  msg.append(role);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < a.size(); i++) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

StreamChannel::StreamChannel(std::unique_ptr<ByteStream> stream, const TransportOptions& options)
    : stream_(std::move(stream)), options_(options) {}

Status StreamChannel::Send(std::string_view frames, int timeout_ms) {
  return stream_->Write(frames, timeout_ms);
}

StatusOr<ReplFrame> StreamChannel::Receive(int timeout_ms) {
  // The previous frame's bytes are released now (its views die here). The
  // buffer is compacted only once half of it is consumed: erasing each frame
  // from the front moved every frame behind it, again and again, when one read
  // brought many (a catch-up, or a burst of batches).
  pos_ += consumed_;
  consumed_ = 0;
  if (pos_ == in_.size()) {
    in_.clear();
    pos_ = 0;
  } else if (pos_ > in_.size() / 2) {
    in_.EraseFront(pos_);
    pos_ = 0;
  }
  const int64_t deadline = MonoMs() + timeout_ms;
  while (true) {
    ReplFrame f;
    size_t used = 0;
    std::string err;
    FrameDecode d = DecodeFrame(in_.view().substr(pos_), limit_, &f, &used, &err);
    if (d == FrameDecode::kOk) {
      consumed_ = used;
      return f;
    }
    if (d == FrameDecode::kError) return Status::Protocol(peer() + ": " + err);
    const int64_t left = deadline - MonoMs();
    if (left <= 0) {
      return Status::Timeout("no frame from " + peer() + " within " + std::to_string(timeout_ms) +
                             " ms");
    }
    FAHA_RETURN_IF_ERROR(stream_->Read(&in_, static_cast<int>(left)));
  }
}

namespace {
// The connector's first frame: HELLO {its nonce, its clock (ms since the
// epoch, 8 bytes little-endian), HMAC(secret, nonce | clock | "connect")},
// sent before it waits for anything, so the acceptor can tell a peer that
// knows the secret from a silent or garbage one at once. A recorded frame
// replayed is refused: its clock must be within kVouchWindowMs of the
// acceptor's, and a nonce is taken once (remembered for twice that).
constexpr size_t kVouchBody = kNonceBytes + 8 + 32;
constexpr size_t kVouchFrame = sizeof(ReplFrameHeader) + kVouchBody;
constexpr int64_t kVouchWindowMs = 5 * 60 * 1000;
constexpr size_t kMaxNoncesRemembered = 1 << 16;

Mutex g_nonces_mu;
std::map<std::string, int64_t>* g_nonces =
    new std::map<std::string, int64_t>;  // nonce -> forget after (wall ms)

std::string VouchBody(const std::string& secret, std::string_view nonce, int64_t wall_ms) {
  std::string body(nonce);
  for (int b = 0; b < 8; b++)
    body.push_back(static_cast<char>((static_cast<uint64_t>(wall_ms) >> (8 * b)) & 0xff));
  body += SecretProof(secret, body, "connect");
  return body;
}

// The nonce of a first frame that proves the secret and is fresh; empty if not.
std::string ProvenNonce(const std::string& secret, std::string_view frame_bytes) {
  ReplFrame f;
  size_t used = 0;
  std::string err;
  if (DecodeFrame(frame_bytes, kVouchBody, &f, &used, &err) != FrameDecode::kOk) return {};
  if (f.type != FrameType::kHello || f.body.size() != kVouchBody) return {};
  uint64_t clock = 0;
  for (int b = 0; b < 8; b++)
    clock |= uint64_t{static_cast<uint8_t>(f.body[kNonceBytes + b])} << (8 * b);
  const std::string_view signed_part = f.body.substr(0, kNonceBytes + 8);
  if (!ConstantTimeEqual(f.body.substr(kNonceBytes + 8),
                         SecretProof(secret, signed_part, "connect"))) {
    return {};
  }
  const int64_t skew = WallMs() - static_cast<int64_t>(clock);
  if (skew > kVouchWindowMs || skew < -kVouchWindowMs) return {};
  return std::string(f.body.substr(0, kNonceBytes));
}

bool NonceSeen(const std::string& nonce) {
  MutexLock l(&g_nonces_mu);
  return g_nonces->count(nonce) != 0;
}

// Takes a nonce for good: false if it was taken before (a replay) or too
// many are remembered.
bool ClaimNonce(const std::string& nonce) {
  MutexLock l(&g_nonces_mu);
  const int64_t now = WallMs();
  for (auto it = g_nonces->begin(); it != g_nonces->end();) {
    it = it->second < now ? g_nonces->erase(it) : std::next(it);
  }
  if (g_nonces->size() >= kMaxNoncesRemembered) return false;
  return g_nonces->emplace(nonce, now + 2 * kVouchWindowMs).second;
}
}  // namespace

bool StreamChannel::Vouched() {
  if (vouched_.load()) return true;
  std::string first;
  if (!stream_->Peek(&first, kVouchFrame, 0).ok()) return vouched_.load();
  const std::string nonce = ProvenNonce(options_.secret, first);
  return (!nonce.empty() && !NonceSeen(nonce)) || vouched_.load();
}

Status StreamChannel::AuthenticatePeer() {
  // The connector's proof, looked at before it is read (Vouched, on the
  // accepting thread, sees it in the stream or sees vouched_ set).
  const int first_ms = std::min(options_.preauth_timeout_ms, options_.handshake_timeout_ms);
  const int64_t deadline = MonoMs() + first_ms;
  bool peeked_ok = false;
  while (true) {
    std::string first;
    const int left = static_cast<int>(std::max<int64_t>(0, deadline - MonoMs()));
    Status peeked = stream_->Peek(&first, kVouchFrame, std::min(left, 20));
    if (peeked.ok()) {
      const std::string nonce = ProvenNonce(options_.secret, first);
      if (!nonce.empty() && ClaimNonce(nonce)) vouched_.store(true);
      peeked_ok = true;
      break;
    }
    if (peeked.code() == Status::Code::kInvalidArgument) break;  // cannot look ahead: read it
    if (peeked.code() != Status::Code::kTimeout) return peeked;  // closed
    // Not all there yet: refuse what cannot be the start of a first frame now.
    ReplFrame f;
    size_t used = 0;
    std::string err;
    if (DecodeFrame(first, limit_, &f, &used, &err) == FrameDecode::kError) {
      return Status::Protocol(peer() + ": " + err);
    }
    if (left == 0) {
      return Status::Timeout("no frame from " + peer() + " within " + std::to_string(first_ms) +
                             " ms");
    }
  }
  auto hello = Receive(first_ms);
  if (!hello.ok()) return hello.status();
  bool proven = vouched_.load();
  if (!peeked_ok) {
    // Read, not looked at (verbs): check it now.
    const std::string nonce = ProvenNonce(options_.secret, in_.view().substr(pos_, consumed_));
    proven = !nonce.empty() && ClaimNonce(nonce);
  }
  if (!proven) {
    std::string refusal;
    EncodeFrame(&refusal, FrameType::kError, 0, 0,
                "authentication failed: wrong cluster secret, or a replayed or stale first frame "
                "(the clocks of the nodes must agree within 5 minutes)");
    Send(refusal, 200).IgnoreError();  // a courtesy: the refusal below is the result
    return Status::Auth(peer() + " did not prove the cluster secret");
  }
  vouched_.store(true);
  // Then the challenge, which a replayed first frame cannot answer.
  unsigned char nonce[kNonceBytes];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) return Status::IOError("RAND_bytes failed");
  std::string_view n(reinterpret_cast<char*>(nonce), sizeof(nonce));
  std::string out;
  EncodeFrame(&out, FrameType::kHello, 0, 0, n);
  FAHA_RETURN_IF_ERROR(Send(out, options_.handshake_timeout_ms));
  auto reply = Receive(std::min(options_.preauth_timeout_ms, options_.handshake_timeout_ms));
  if (!reply.ok()) return reply.status();
  if (reply->type != FrameType::kHello ||
      !ConstantTimeEqual(reply->body, SecretProof(options_.secret, n, "client"))) {
    std::string refusal;
    EncodeFrame(&refusal, FrameType::kError, 0, 0, "authentication failed: wrong cluster secret");
    Send(refusal, 200).IgnoreError();  // a courtesy: the refusal below is the result
    return Status::Auth(peer() + " did not prove the cluster secret");
  }
  out.clear();
  EncodeFrame(&out, FrameType::kHello, 0, 0, SecretProof(options_.secret, n, "server"));
  FAHA_RETURN_IF_ERROR(Send(out, options_.handshake_timeout_ms));
  limit_ = options_.max_frame_body;
  return Status::OK();
}

Status StreamChannel::AuthenticateToPeer() {
  unsigned char mine[kNonceBytes];
  if (RAND_bytes(mine, sizeof(mine)) != 1) return Status::IOError("RAND_bytes failed");
  std::string first;
  EncodeFrame(&first, FrameType::kHello, 0, 0,
              VouchBody(options_.secret,
                        std::string_view(reinterpret_cast<char*>(mine), sizeof(mine)), WallMs()));
  FAHA_RETURN_IF_ERROR(Send(first, options_.handshake_timeout_ms));
  auto hello = Receive(options_.handshake_timeout_ms);
  if (!hello.ok()) return hello.status();
  if (hello->type == FrameType::kError) {
    return Status::Auth(peer() + " refused us: " + std::string(hello->body));
  }
  if (hello->type != FrameType::kHello || hello->body.size() != kNonceBytes) {
    return Status::Protocol(peer() + " did not start with a HELLO challenge");
  }
  std::string nonce(hello->body);
  std::string out;
  EncodeFrame(&out, FrameType::kHello, 0, 0, SecretProof(options_.secret, nonce, "client"));
  FAHA_RETURN_IF_ERROR(Send(out, options_.handshake_timeout_ms));
  auto proof = Receive(options_.handshake_timeout_ms);
  if (!proof.ok()) return proof.status();
  if (proof->type == FrameType::kError) {
    return Status::Auth(peer() + " refused us: " + std::string(proof->body));
  }
  if (proof->type != FrameType::kHello ||
      !ConstantTimeEqual(proof->body, SecretProof(options_.secret, nonce, "server"))) {
    return Status::Auth(peer() + " did not prove the cluster secret");
  }
  limit_ = options_.max_frame_body;
  return Status::OK();
}

}  // namespace faha::rdma
