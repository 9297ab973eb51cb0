// libfaha: the C++ client of FaHA over its native binary protocol.
//
// A Client owns one connection. Calls are synchronous unless named *Async;
// async calls queue requests that Flush() sends pipelined in one go and whose
// callbacks run, in request order, on the thread that calls Flush(). A Client
// is not thread-safe: use one per thread (they are cheap). After a transport
// error (timeout, lost connection) every call fails with Unavailable or
// Timeout; make a new Client to reconnect.
//
//   auto c = faha::Client::Connect({.address = "127.0.0.1:7379"});
//   if (!c.ok()) { ... c.status().ToString() ... }
//   faha::Status s = (*c)->Put("k", "v");   // returns once durable
//   std::string v; s = (*c)->Get("k", &v);  // s.IsNotFound() if absent
#ifndef FAHA_CLIENT_H_
#define FAHA_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "faha/status.h"

namespace faha::native {
enum class Op : uint8_t;  // common/native_protocol.h
}  // namespace faha::native

namespace faha {

struct ClientOptions {
  // "HOST:PORT" or "native://HOST:PORT" over TCP (IPv6 as "[::1]:7379"), or
  // "rdma://HOST:PORT" over RDMA verbs (HOST an address of an RDMA device).
  std::string address = "127.0.0.1:7379";
  std::string password;  // sent with AUTH on connect when non-empty
  int connect_timeout_ms = 2000;
  // Longest wait for the next reply while requests are outstanding.
  int op_timeout_ms = 5000;
  // A cluster with failover (servers started with --etcd): `address` may
  // list several nodes, comma-separated. The client finds the primary
  // (following MOVED replies), names itself with `client_id` (0: a random
  // one) so that the server applies each write once, and re-sends every
  // unanswered request with its original id to whichever node is primary
  // after a lost connection, a timeout, MOVED, TRYAGAIN or NOREPLICAS, for up
  // to failover_timeout_ms; only then does a call fail. A retried request's
  // callback may then run after those of later requests.
  bool follow_primary = false;
  int failover_timeout_ms = 10000;
  // While re-sending, the longest wait for one node to accept a connection
  // before trying the next (a node cut off the network does not refuse).
  // rdma:// nodes get at least connect_timeout_ms (rdma_cm setup is slower).
  int failover_connect_timeout_ms = 300;
  uint64_t client_id = 0;
};

struct PutOptions {
  int64_t ttl_ms = 0;  // 0: never expires
};

// A server reply to Command(), as RESP types.
struct Reply {
  enum class Type { kSimple, kError, kInt, kBulk, kNil, kArray };
  Type type = Type::kNil;
  std::string str;
  int64_t integer = 0;
  std::vector<Reply> elements;
  // redis-cli style text: OK, (integer) 1, "value", (nil), 1) ...
  std::string ToString() const;
};

class Client {
 public:
  static StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status Ping();
  // NotFound if the key is absent or expired.
  Status Get(std::string_view key, std::string* value);
  // Returns once the write is durable on the server.
  Status Put(std::string_view key, std::string_view value, const PutOptions& options = {});
  Status Delete(std::string_view key, bool* existed = nullptr);
  // Any server command ("SET", "k", "v"), e.g. INFO or SCAN. A server error
  // reply is returned as a Reply of type kError with an OK status.
  StatusOr<Reply> Command(const std::vector<std::string>& args);
  // MULTI, the commands, EXEC, as one request: the reply is EXEC's (an array
  // of each command's reply; an error reply if one command is unknown or has
  // the wrong arity, and then nothing ran). The commands commit as one unit.
  // With a client id (follow_primary), a transaction re-sent after a
  // reconnect or failover is applied once.
  StatusOr<Reply> Transaction(const std::vector<std::vector<std::string>>& commands);

  using GetCallback = std::function<void(const Status&, std::string_view value)>;
  using DoneCallback = std::function<void(const Status&)>;
  void GetAsync(std::string_view key, GetCallback done);
  void PutAsync(std::string_view key, std::string_view value, DoneCallback done,
                const PutOptions& options = {});
  void DeleteAsync(std::string_view key, DoneCallback done);
  // Sends every queued request and waits for all their replies, running the
  // callbacks. Returns the transport error if the connection failed (the
  // callbacks of unanswered requests then get it too).
  Status Flush();
  size_t queued() const;

  // The node this client is connected to now.
  const std::string& address() const;
  // In a write's callback (or after a synchronous write) on a follow_primary
  // client: the epoch and LSN at which the server committed it (0 if unknown).
  uint64_t last_commit_epoch() const;
  uint64_t last_commit_lsn() const;
  // Requests re-sent after a failover or redirect, and reconnections, so far.
  uint64_t retries() const;
  uint64_t reconnects() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  // A request whose reply body is RESP (kCommand, kTransaction).
  StatusOr<Reply> RespRequest(native::Op op, std::string_view body);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faha

#endif  // FAHA_CLIENT_H_
