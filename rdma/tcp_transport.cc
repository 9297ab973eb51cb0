// The TCP implementation of Transport: replication frames over a stream
// socket, with poll() for timeouts and the HMAC challenge of transport.h.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "rdma/transport.h"

namespace faha::rdma {
namespace {

constexpr size_t kNonceBytes = 32;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string Proof(const std::string& secret, std::string_view nonce, std::string_view role) {
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

class TcpChannel final : public Channel {
 public:
  TcpChannel(int fd, std::string peer, const TransportOptions& options)
      : fd_(fd), peer_(std::move(peer)), options_(options) {}
  ~TcpChannel() override { close(fd_); }
  TcpChannel(const TcpChannel&) = delete;
  TcpChannel& operator=(const TcpChannel&) = delete;

  Status Send(std::string_view frames, int timeout_ms) override {
    int64_t deadline = NowMs() + timeout_ms;
    size_t sent = 0;
    while (sent < frames.size()) {
      ssize_t n = send(fd_, frames.data() + sent, frames.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        int wait = static_cast<int>(deadline - NowMs());
        if (wait <= 0) return Status::Timeout("sending to " + peer_ + " timed out");
        pollfd p{fd_, POLLOUT, 0};
        poll(&p, 1, wait);
        continue;
      }
      return Status::Unavailable(Errno("send to " + peer_));
    }
    return Status::OK();
  }

  StatusOr<ReplFrame> Receive(int timeout_ms) override {
    if (consumed_ > 0) {
      in_.erase(0, consumed_);
      consumed_ = 0;
    }
    int64_t deadline = NowMs() + timeout_ms;
    while (true) {
      ReplFrame f;
      size_t used = 0;
      std::string err;
      FrameDecode d = DecodeFrame(in_, limit_, &f, &used, &err);
      if (d == FrameDecode::kOk) {
        consumed_ = used;
        return f;
      }
      if (d == FrameDecode::kError) return Status::Protocol(peer_ + ": " + err);
      int wait = static_cast<int>(deadline - NowMs());
      if (wait <= 0)
        return Status::Timeout("no frame from " + peer_ + " within " + std::to_string(timeout_ms) +
                               " ms");
      pollfd p{fd_, POLLIN, 0};
      int rc = poll(&p, 1, wait);
      if (rc < 0 && errno != EINTR) return Status::Unavailable(Errno("poll " + peer_));
      if (rc <= 0) continue;
      char buf[64 << 10];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return Status::Unavailable("connection closed by " + peer_);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return Status::Unavailable(Errno("recv from " + peer_));
      }
      in_.append(buf, static_cast<size_t>(n));
    }
  }

  const std::string& peer() const override { return peer_; }

  // The acceptor's half of the handshake.
  Status AuthenticatePeer() {
    unsigned char nonce[kNonceBytes];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) return Status::IOError("RAND_bytes failed");
    std::string_view n(reinterpret_cast<char*>(nonce), sizeof(nonce));
    std::string out;
    EncodeFrame(&out, FrameType::kHello, 0, 0, n);
    FAHA_RETURN_IF_ERROR(Send(out, options_.handshake_timeout_ms));
    auto reply = Receive(options_.handshake_timeout_ms);
    if (!reply.ok()) return reply.status();
    if (reply->type != FrameType::kHello ||
        !ConstantTimeEqual(reply->body, Proof(options_.secret, n, "client"))) {
      std::string refusal;
      EncodeFrame(&refusal, FrameType::kError, 0, 0, "authentication failed: wrong cluster secret");
      Send(refusal, 200);
      return Status::Auth(peer_ + " did not prove the cluster secret");
    }
    out.clear();
    EncodeFrame(&out, FrameType::kHello, 0, 0, Proof(options_.secret, n, "server"));
    FAHA_RETURN_IF_ERROR(Send(out, options_.handshake_timeout_ms));
    limit_ = options_.max_frame_body;
    return Status::OK();
  }

  // The connector's half.
  Status AuthenticateToPeer() {
    auto hello = Receive(options_.handshake_timeout_ms);
    if (!hello.ok()) return hello.status();
    if (hello->type != FrameType::kHello || hello->body.size() != kNonceBytes) {
      return Status::Protocol(peer_ + " did not start with a HELLO challenge");
    }
    std::string nonce(hello->body);
    std::string out;
    EncodeFrame(&out, FrameType::kHello, 0, 0, Proof(options_.secret, nonce, "client"));
    FAHA_RETURN_IF_ERROR(Send(out, options_.handshake_timeout_ms));
    auto proof = Receive(options_.handshake_timeout_ms);
    if (!proof.ok()) return proof.status();
    if (proof->type == FrameType::kError) {
      return Status::Auth(peer_ + " refused us: " + std::string(proof->body));
    }
    if (proof->type != FrameType::kHello ||
        !ConstantTimeEqual(proof->body, Proof(options_.secret, nonce, "server"))) {
      return Status::Auth(peer_ + " did not prove the cluster secret");
    }
    limit_ = options_.max_frame_body;
    return Status::OK();
  }

 private:
  int fd_;
  std::string peer_;
  TransportOptions options_;
  std::string in_;
  size_t consumed_ = 0;
  // Until the peer is authenticated only handshake-sized frames are accepted,
  // so a stranger cannot make us buffer a large body.
  uint32_t limit_ = 256;
};

std::string PeerName(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a.ss_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
    port = ntohs(s->sin_port);
  } else if (a.ss_family == AF_INET6) {
    auto* s = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
    port = ntohs(s->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

class TcpListener final : public Listener {
 public:
  TcpListener(int fd, int port, const TransportOptions& options)
      : fd_(fd), port_(port), options_(options) {}
  ~TcpListener() override { close(fd_); }

  StatusOr<std::unique_ptr<Channel>> Accept(int timeout_ms) override {
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc == 0) return Status::NotFound("no replication peer connected");
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return Status::Unavailable(Errno("accept"));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto ch = std::make_unique<TcpChannel>(fd, PeerName(addr), options_);
    FAHA_RETURN_IF_ERROR(ch->AuthenticatePeer());
    return std::unique_ptr<Channel>(std::move(ch));
  }
  int port() const override { return port_; }

 private:
  int fd_;
  int port_;
  TransportOptions options_;
};

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(const TransportOptions& options) : options_(options) {}
  std::string name() const override { return "tcp"; }

  StatusOr<std::unique_ptr<Channel>> Connect(const std::string& address, int timeout_ms) override {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return Status::InvalidArgument("replication address '" + address + "' is not HOST:PORT");
    }
    std::string host = address.substr(0, colon), port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) return Status::InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
    Status last = Status::Unavailable("no address for " + address);
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        if (poll(&p, 1, timeout_ms) <= 0) {
          close(fd);
          last = Status::Timeout("connecting to " + address + " timed out");
          continue;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err ? -1 : 0;
        errno = err;
      }
      if (rc != 0) {
        last = Status::Unavailable(Errno("connect to " + address));
        close(fd);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      freeaddrinfo(res);
      auto ch = std::make_unique<TcpChannel>(fd, address, options_);
      FAHA_RETURN_IF_ERROR(ch->AuthenticateToPeer());
      return std::unique_ptr<Channel>(std::move(ch));
    }
    freeaddrinfo(res);
    return last;
  }

  StatusOr<std::unique_ptr<Listener>> Listen(const std::string& bind_addr, int port) override {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, bind_addr.c_str(), &a.sin_addr) != 1) {
      return Status::InvalidArgument("'" + bind_addr + "' is not an IPv4 address");
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 64) != 0) {
      Status s = Status::IOError(Errno("listen on " + bind_addr + ":" + std::to_string(port)));
      close(fd);
      return s;
    }
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return std::unique_ptr<Listener>(new TcpListener(fd, ntohs(a.sin_port), options_));
  }

 private:
  TransportOptions options_;
};

}  // namespace

StatusOr<std::unique_ptr<Transport>> MakeTransport(const std::string& kind,
                                                   const TransportOptions& options) {
  if (options.secret.empty()) {
    return Status::InvalidArgument("replication needs a cluster secret");
  }
  if (kind == "tcp") return std::unique_ptr<Transport>(new TcpTransport(options));
  return Status::InvalidArgument("unknown transport '" + kind + "' (available: tcp)");
}

}  // namespace faha::rdma
