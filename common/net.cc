#include "common/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/clock.h"
#include "common/strings.h"

namespace faha::net {

Status ParseHostPort(std::string_view address, std::string* host, int* port, std::string_view what,
                     bool allow_zero) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) {
    return Status::InvalidArgument(std::string(what) + " '" + std::string(address) +
                                   "' is not HOST:PORT");
  }
  std::string_view h = address.substr(0, colon), p = address.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  long n = 0;
  for (char c : p) {
    if (c < '0' || c > '9' || n > 65535) {
      n = -1;
      break;
    }
    n = n * 10 + (c - '0');
  }
  if (n < (allow_zero ? 0 : 1) || n > 65535) {
    return Status::InvalidArgument(std::string(what) + " '" + std::string(address) +
                                   "' has no valid port (1-65535)");
  }
  *host = std::string(h);
  *port = static_cast<int>(n);
  return Status::OK();
}

namespace {

// Connects fd to ai within timeout_ms; 0 or an errno.
int ConnectOne(int fd, const addrinfo* ai, int timeout_ms) {
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  const int64_t deadline = MonoMs() + timeout_ms;
  pollfd p{fd, POLLOUT, 0};
  while (true) {
    const int64_t left = deadline - MonoMs();
    if (left <= 0) return ETIMEDOUT;
    const int rc = poll(&p, 1, static_cast<int>(left));
    if (rc > 0) break;
    if (rc == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

}  // namespace

StatusOr<int> ConnectTcp(const std::string& host, int port, const ConnectOptions& options,
                         bool* refused) {
  const std::string peer = host + ":" + std::to_string(port);
  if (refused) *refused = false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (options.numeric_host) hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return Status::InvalidArgument("cannot resolve '" + host + "': " + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> resolved(res, freeaddrinfo);
  Status last = Status::Unavailable("no address for " + peer);
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = Status::Unavailable(Errno("socket"));
      continue;
    }
    const int err = ConnectOne(fd, ai, options.timeout_ms);
    if (err != 0) {
      close(fd);
      if (refused) *refused = err == ECONNREFUSED;
      last = err == ETIMEDOUT ? Status::Timeout("connect to " + peer + " timed out after " +
                                                std::to_string(options.timeout_ms) + " ms")
                              : Status::Unavailable("connect to " + peer + ": " + strerror(err));
      continue;
    }
    if (options.no_delay) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (!options.nonblocking) {
      const int flags = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    }
    return fd;
  }
  return last;
}

StatusOr<int> ListenTcp(const std::string& bind_addr, int port, int backlog, int* bound_port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, bind_addr.c_str(), &a.sin_addr) != 1) {
    return Status::InvalidArgument("'" + bind_addr + "' is not an IPv4 address");
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::IOError(Errno("socket"));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const std::string where = bind_addr + ":" + std::to_string(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, backlog) != 0) {
    Status s = Status::IOError(Errno("bind " + where));
    close(fd);
    return s;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (bound_port) *bound_port = ntohs(a.sin_port);
  return fd;
}

std::pair<std::string, int> SplitForDisplay(const std::string& address) {
  std::string host;
  int port = 0;
  if (!ParseHostPort(address, &host, &port).ok()) return {address, 0};
  return {host, port};
}

namespace {
// Binds 127.0.0.1:port (0: the kernel's choice) and returns the port bound.
StatusOr<int> BindLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError(Errno("socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof(a);
  Status s;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    s = Status::IOError(Errno("bind 127.0.0.1:" + std::to_string(port)));
  } else if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    s = Status::IOError(Errno("getsockname"));
  }
  close(fd);
  if (!s.ok()) return s;
  return static_cast<int>(ntohs(a.sin_port));
}
// Holds `port` against every other process that picks ports here: a lock on
// /tmp/faha-ports/PORT, kept until this process exits (the fd is never
// closed). Test processes run side by side, and a port one drew but had not
// bound yet was drawn by another, whose server then bound it first. A lock
// held already (by another process, or by this one: flock locks belong to an
// open file) means the port is taken. Without the directory nothing is held.
bool HoldPort(int port) {
  const char* dir = "/tmp/faha-ports";
  if (mkdir(dir, 01777) != 0 && errno != EEXIST) return true;
  const std::string path = std::string(dir) + "/" + std::to_string(port);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return true;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  return true;  // fd stays open: the lock lasts as long as the process
}

}  // namespace

StatusOr<int> FreeLoopbackPort() {
  // A port the kernel picks for port 0 is in its ephemeral range, where any
  // outgoing connection (a test's clients, say) may take it before the server
  // binds it: "Address already in use". Below that range only binds compete.
  int ephemeral_low = 32768;
  if (FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re")) {
    if (fscanf(f, "%d", &ephemeral_low) != 1) ephemeral_low = 32768;
    fclose(f);
  }
  constexpr int kLowest = 10000;
  if (ephemeral_low > kLowest + 1000) {
    static std::atomic<uint64_t> state{static_cast<uint64_t>(MonoUs()) ^
                                       (static_cast<uint64_t>(getpid()) << 32)};
    for (int attempt = 0; attempt < 64; attempt++) {
      // xorshift64: cheap, and distinct per process through the seed.
      uint64_t x = state.load(std::memory_order_relaxed);
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      state.store(x, std::memory_order_relaxed);
      const int port =
          kLowest + static_cast<int>(x % static_cast<uint64_t>(ephemeral_low - kLowest));
      StatusOr<int> bound = BindLoopback(port);
      if (bound.ok() && HoldPort(*bound)) return bound;
    }
  }
  for (int attempt = 0; attempt < 64; attempt++) {
    StatusOr<int> bound = BindLoopback(0);
    if (!bound.ok() || HoldPort(*bound)) return bound;
  }
  return Status::Unavailable("no free loopback port that no other process holds");
}

}  // namespace faha::net
