// Server: the client port. One listening socket speaks RESP and the native
// protocol (told apart by a connection's first byte), served by io_threads
// epoll loops. Each connection is owned by one I/O thread for its whole life;
// a connection's commands run in order, and a read that follows a pending
// write on the same connection waits for that write's commit, so every client
// reads its own writes and replies leave in request order.
//
// Thread-safety: Start/Wait/Stop from the main thread; RequestShutdown from any
// thread or a signal handler (it only writes to an eventfd).
#ifndef FAHA_SERVER_SERVER_H_
#define FAHA_SERVER_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "faha/status.h"
#include "nvm/log.h"
#include "server/metrics.h"
#include "server/replication.h"
#include "server/store.h"

namespace faha {

// Client limits (docs/flags.md): set from flags, changed by CONFIG SET while the
// server runs (atomics: the I/O threads read them at every check). Buffers are
// counted by capacity; 0 turns a limit off. As Redis's maxmemory-clients,
// client-output-buffer-limit (normal class) and timeout, but on by default.
struct ClientLimits {
  std::atomic<uint64_t> maxmemory_clients{1ull << 30};    // all clients' buffers; biggest go first
  std::atomic<uint64_t> output_hard_bytes{256ull << 20};  // unsent replies: closed at once
  std::atomic<uint64_t> output_soft_bytes{64ull << 20};   // ... if over this for soft seconds
  std::atomic<uint32_t> output_soft_seconds{60};
  std::atomic<uint32_t> timeout_s{0};  // idle clients
  ClientLimits() = default;
  ClientLimits(const ClientLimits& o) { *this = o; }
  ClientLimits& operator=(const ClientLimits& o) {
    maxmemory_clients.store(o.maxmemory_clients.load());
    output_hard_bytes.store(o.output_hard_bytes.load());
    output_soft_bytes.store(o.output_soft_bytes.load());
    output_soft_seconds.store(o.output_soft_seconds.load());
    timeout_s.store(o.timeout_s.load());
    return *this;
  }
};

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = 7379;
  std::string requirepass;
  uint32_t max_key_bytes = 16 << 10;
  uint32_t max_value_bytes = 1 << 20;
  uint32_t max_clients = 10000;
  uint32_t max_pipeline = 4096;      // writes in flight per connection
  size_t max_batch_bytes = 8 << 20;  // the store's batch limit: also the largest command
  ClientLimits limits;
  uint32_t preauth_timeout_ms = 10000;  // from connect to AUTH (with requirepass)
  uint32_t body_timeout_ms = 30000;     // from a command's first byte to its last
  int io_threads = 2;
  std::string data_dir;          // for INFO
  int metrics_port = -1;         // for INFO
  nvm::RecoveryReport recovery;  // for INFO
  uint64_t recovered_keys = 0;
  // Replication: null on a single node. On a backup, writes get -READONLY and
  // reads need --stale_reads or the connection's READONLY command.
  const ReplicationRole* replication = nullptr;
  bool stale_reads = false;
  std::string rdma_info;  // for INFO: "rdma://ADDR:PORT" or why there is none
};

class IoThread;

class Server {
 public:
  Server(const ServerOptions& options, Store* store, Metrics* metrics);
  ~Server();
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

  const ServerOptions& options() const { return options_; }
  ClientLimits& client_limits() { return options_.limits; }  // CONFIG SET
  Store* store() const { return store_; }
  Metrics* metrics() const { return metrics_; }
  int64_t start_ms() const { return start_ms_; }
  int bound_port() const { return bound_port_; }
  // Before Start (INFO reads it without a lock).
  void set_rdma_info(std::string info) { options_.rdma_info = std::move(info); }

 private:
  friend class IoThread;
  ServerOptions options_;
  Store* store_;
  Metrics* metrics_;
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

#endif  // FAHA_SERVER_SERVER_H_
