// The TCP implementation of Transport: replication frames over a stream
// socket (StreamChannel), with poll() for timeouts.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/clock.h"
#include "common/net.h"
#include "common/strings.h"
#include "rdma/byte_stream.h"
#include "rdma/transport.h"

namespace faha::rdma {
namespace {

constexpr size_t kReadChunk = 64 << 10;  // bytes a Read receives at most

class TcpStream final : public ByteStream {
 public:
  TcpStream(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  ~TcpStream() override { close(fd_); }
  void Shutdown() override { shutdown(fd_, SHUT_RDWR); }
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  Status Write(std::string_view bytes, int timeout_ms) override {
    int64_t deadline = MonoMs() + timeout_ms;
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        deadline = MonoMs() + timeout_ms;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        int wait = static_cast<int>(deadline - MonoMs());
        if (wait <= 0) {
          return Status::Timeout("sending to " + peer_ + " timed out: it took no bytes for " +
                                 std::to_string(timeout_ms) + " ms");
        }
        pollfd p{fd_, POLLOUT, 0};
        poll(&p, 1, wait);
        continue;
      }
      return Status::Unavailable(Errno("send to " + peer_));
    }
    return Status::OK();
  }

  bool WritesWithoutWaiting() const override { return true; }
  StatusOr<size_t> TryWrite(std::string_view bytes) override {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) break;  // full
      return Status::Unavailable(Errno("send to " + peer_));
    }
    return sent;
  }

  // Receives straight into the buffer's room (64 KiB at a time).
  Status Read(ByteBuffer* in, int timeout_ms) override {
    int64_t deadline = MonoMs() + timeout_ms;
    while (true) {
      in->Reserve(kReadChunk);
      ssize_t n = recv(fd_, in->end(), kReadChunk, 0);
      if (n > 0) {
        in->Commit(static_cast<size_t>(n));
        return Status::OK();
      }
      if (n == 0) return Status::Unavailable("connection closed by " + peer_);
      if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        return Status::Unavailable(Errno("recv from " + peer_));
      }
      int wait = static_cast<int>(deadline - MonoMs());
      if (wait <= 0) {
        return Status::Timeout("no frame from " + peer_ + " within " + std::to_string(timeout_ms) +
                               " ms");
      }
      pollfd p{fd_, POLLIN, 0};
      int rc = poll(&p, 1, wait);
      if (rc < 0 && errno != EINTR) return Status::Unavailable(Errno("poll " + peer_));
    }
  }

  Status Peek(std::string* out, size_t want, int timeout_ms) override {
    const int64_t deadline = MonoMs() + timeout_ms;
    std::string buf(want, '\0');
    while (true) {
      ssize_t n = recv(fd_, buf.data(), want, MSG_PEEK | MSG_DONTWAIT);
      if (n >= 0 && static_cast<size_t>(n) == want) {
        *out = std::move(buf);
        return Status::OK();
      }
      if (n == 0) return Status::Unavailable("connection closed by " + peer_);
      if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        return Status::Unavailable(Errno("recv from " + peer_));
      }
      const int wait = static_cast<int>(deadline - MonoMs());
      if (wait <= 0) {
        out->assign(buf.data(), n > 0 ? static_cast<size_t>(n) : 0);
        return Status::Timeout("fewer than " + std::to_string(want) + " bytes from " + peer_ +
                               " within " + std::to_string(timeout_ms) + " ms");
      }
      if (n > 0) {
        // Part of it: the socket stays readable, so wait a little instead.
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, wait) < 0 && errno != EINTR)
        return Status::Unavailable(Errno("poll " + peer_));
    }
  }

  const std::string& peer() const override { return peer_; }

 private:
  int fd_;
  std::string peer_;
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

  StatusOr<std::unique_ptr<Channel>> AcceptPending(int timeout_ms) override {
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0 && errno != EINTR) return Status::Unavailable(Errno("poll on the replication port"));
    if (rc <= 0) return Status::NotFound("no replication peer connected");
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    // The listening socket is non-blocking: a peer that went away between
    // poll and accept4 leaves nothing to wait for.
    int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)) {
      return Status::NotFound("no replication peer connected");
    }
    if (fd < 0) return Status::Unavailable(Errno("accept"));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return std::unique_ptr<Channel>(
        std::make_unique<StreamChannel>(std::make_unique<TcpStream>(fd, PeerName(addr)), options_));
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
    std::string host;
    int port = 0;
    FAHA_RETURN_IF_ERROR(net::ParseHostPort(address, &host, &port, "replication address"));
    net::ConnectOptions o;
    o.timeout_ms = timeout_ms;
    auto fd = net::ConnectTcp(host, port, o);
    if (!fd.ok()) return fd.status();
    auto ch = std::make_unique<StreamChannel>(std::make_unique<TcpStream>(*fd, address), options_);
    FAHA_RETURN_IF_ERROR(ch->AuthenticateToPeer());
    return std::unique_ptr<Channel>(std::move(ch));
  }

  StatusOr<std::unique_ptr<Listener>> Listen(const std::string& bind_addr, int port) override {
    int bound = 0;
    auto fd = net::ListenTcp(bind_addr, port, 64, &bound);
    if (!fd.ok()) return fd.status();
    return std::unique_ptr<Listener>(new TcpListener(*fd, bound, options_));
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
  if (kind == "rdma") return MakeVerbsTransport(options);
  return Status::InvalidArgument("unknown transport '" + kind + "' (available: tcp, rdma)");
}

}  // namespace faha::rdma
