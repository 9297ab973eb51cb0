#include "server/net/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>

#include "common/clock.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/native_protocol.h"
#include "common/net.h"
#include "common/resp.h"
#include "server/commands/commands.h"
#include "server/commands/script_engine.h"
#include "server/net/io_thread.h"

namespace faha {

Server::Server(const ServerOptions& options, Store* store, Metrics* metrics)
    : options_(options), store_(store), metrics_(metrics) {}

Server::~Server() {
  Stop();
  if (shutdown_fd_ >= 0) close(shutdown_fd_);
}

Status Server::Start() {
  start_ms_ = WallMs();
  shutdown_fd_ = eventfd(0, EFD_CLOEXEC);
  if (shutdown_fd_ < 0) return Status::IOError(std::string("eventfd: ") + strerror(errno));
  auto listening = net::ListenTcp(options_.bind, options_.port, 511, &bound_port_);
  if (!listening.ok()) return listening.status().WithPrefix("--bind/--port: ");
  listen_fd_ = *listening;
  int n = std::max(1, options_.io_threads);
  for (int i = 0; i < n; i++) {
    threads_.push_back(std::make_unique<IoThread>(this, i));
    FAHA_RETURN_IF_ERROR(threads_.back()->Init());
  }
  threads_[0]->AddListener(listen_fd_);
  for (auto& t : threads_) t->Run();
  expiry_.Start(this);
  return Status::OK();
}

Status Server::AdoptConnection(int fd) {
  if (threads_.empty() || draining_.load()) return Status::Unavailable("server is stopping");
  if (clients_.load() >= options_.max_clients) {
    metrics_->connections_rejected.fetch_add(1, std::memory_order_relaxed);
    return Status::Busy("ERR max number of clients reached");
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::IOError(std::string("fcntl: ") + strerror(errno));
  }
  clients_.fetch_add(1);
  threads_[next_adopt_.fetch_add(1) % threads_.size()]->Adopt(fd);
  return Status::OK();
}

void Server::Wait() {
  uint64_t v;
  while (read(shutdown_fd_, &v, sizeof(v)) < 0 && errno == EINTR) {
  }
}

void Server::RequestShutdown() {
  uint64_t one = 1;
  ssize_t n = write(shutdown_fd_, &one, sizeof(one));
  (void)n;
}

void Server::Stop() {
  if (threads_.empty()) return;
  threads_[0]->RemoveListener();
  // No new commands from here on, so the store's queue drains even under load.
  draining_.store(true);
  // A script still running is stopped (nothing it wrote is applied): it
  // could run forever. Then every write already submitted becomes durable
  // and its reply is delivered.
  ScriptEngine::Get().StopAll();
  expiry_.Stop();
  store_->Stop();
  for (auto& t : threads_) t->Quit();
  for (auto& t : threads_) t->Join();
  threads_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace faha
