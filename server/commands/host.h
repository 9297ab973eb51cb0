// What a command may ask of the node that runs it: its options, client
// limits (CONFIG SET), store, metrics and uptime. The client port
// (server/net/server.h) implements CommandHost, so commands never include net/.
#ifndef FAHA_SERVER_COMMANDS_HOST_H_
#define FAHA_SERVER_COMMANDS_HOST_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "nvm/log.h"
#include "server/commands/role.h"

namespace faha {

class Store;
struct Metrics;

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
  uint32_t max_pipeline = 4096;                // writes in flight per connection
  size_t max_batch_bytes = 8 << 20;            // the store's batch limit: also the largest command
  uint64_t script_memory_bytes = 64ull << 20;  // the Lua interpreter's memory
  uint32_t busy_reply_threshold_ms = 5000;     // BUSY to others while a script runs longer
  uint32_t databases = 16;                     // SELECT 0 .. databases - 1
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

class CommandHost {
 public:
  virtual ~CommandHost() = default;
  virtual const ServerOptions& options() const = 0;
  virtual ClientLimits& client_limits() = 0;
  virtual Store* store() const = 0;
  virtual Metrics* metrics() const = 0;
  virtual int64_t start_ms() const = 0;  // WallMs at Start
  virtual int bound_port() const = 0;
  // Keys active expiry deleted (INFO's expired_keys).
  virtual uint64_t expired_keys() const { return 0; }
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_HOST_H_
