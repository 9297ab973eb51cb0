// Server: the client port. One listening socket speaks RESP and the native
// protocol (told apart by a connection's first byte), served by io_threads
// epoll loops. Each connection is owned by one I/O thread for its whole life;
// a connection's commands run in order, and a read that follows a pending
// write on the same connection waits for that write's commit, so every client
// reads its own writes and replies leave in request order.
//
// Thread-safety: Start/Wait/Stop from the main thread; RequestShutdown from any
// thread or a signal handler (it only writes to an eventfd).
#ifndef FAHA_SERVER_NET_SERVER_H_
#define FAHA_SERVER_NET_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "faha/status.h"
#include "server/commands/active_expiry.h"
#include "server/commands/host.h"
#include "server/engine/store.h"
#include "server/metrics/metrics.h"

namespace faha {

class IoThread;

class Server final : public CommandHost {
 public:
  Server(const ServerOptions& options, Store* store, Metrics* metrics);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the port and starts the I/O threads.
  Status Start();
  // Blocks until RequestShutdown() (SIGTERM, SHUTDOWN).
  void Wait();
  // Async-signal-safe.
  void RequestShutdown();
  // Serves an already connected stream socket (the RDMA gateway's socketpair
  // end) like an accepted client. Busy (max clients; fd not taken) or OK.
  Status AdoptConnection(int fd);
  // Stops accepting, lets the store commit what it holds, flushes replies, joins.
  void Stop();

  const ServerOptions& options() const override { return options_; }
  ClientLimits& client_limits() override { return options_.limits; }  // CONFIG SET
  Store* store() const override { return store_; }
  Metrics* metrics() const override { return metrics_; }
  uint64_t expired_keys() const override { return expiry_.expired(); }
  int64_t start_ms() const override { return start_ms_; }
  int bound_port() const override { return bound_port_; }
  // Before Start (INFO reads it without a lock).
  void set_rdma_info(std::string info) { options_.rdma_info = std::move(info); }

 private:
  friend class IoThread;
  ServerOptions options_;
  Store* store_;
  Metrics* metrics_;
  ActiveExpiry expiry_;
  int listen_fd_ = -1;
  int bound_port_ = 0;
  int shutdown_fd_ = -1;
  int64_t start_ms_ = 0;
  std::atomic<uint32_t> clients_{0};
  std::atomic<bool> draining_{false};  // Stop() began: parse no more commands
  std::atomic<uint64_t> next_conn_id_{16};
  std::atomic<uint32_t> next_adopt_{0};
  std::vector<std::unique_ptr<IoThread>> threads_;
};

}  // namespace faha

#endif  // FAHA_SERVER_NET_SERVER_H_
