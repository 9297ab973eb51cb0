// RdmaGateway: the client port over RDMA verbs (rdma://HOST:PORT). It listens
// with rdma_cm on the client port's address and number (rdma_cm's port space
// is separate from TCP's), refuses anything but a client connection request,
// and joins each verbs stream to an I/O thread through a socketpair: a pair of
// pump threads per connection copies bytes between the two, so the command
// path is exactly the TCP one. That costs a copy and a wake-up per direction;
// polling completion channels from the I/O threads themselves is the next step.
//
// Thread-safety: Start/Stop from one thread.
#ifndef FAHA_SERVER_NET_RDMA_GATEWAY_H_
#define FAHA_SERVER_NET_RDMA_GATEWAY_H_

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "faha/status.h"
#include "rdma/verbs.h"

namespace faha {

class Server;

class RdmaGateway {
 public:
  RdmaGateway(Server* server, std::string bind, int port);
  ~RdmaGateway();
  RdmaGateway(const RdmaGateway&) = delete;
  RdmaGateway& operator=(const RdmaGateway&) = delete;

  // Listens; Unavailable when this build or machine has no RDMA device for
  // `bind`. Run starts accepting, once the server's I/O threads run.
  Status Listen();
  void Run();
  void Stop();
  int port() const { return port_; }
  uint64_t connections_total() const { return accepted_.load(); }

 private:
  struct Conn;
  void AcceptLoop();
  void Refuse(std::unique_ptr<Conn> c, std::string why) EXCLUDES(mu_);
  static void PumpIn(Conn* c);
  static void PumpOut(Conn* c);

  Server* server_;
  std::string bind_;
  int port_;
  std::unique_ptr<rdma::VerbsListener> listener_;
  std::thread accept_thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  Mutex mu_;
  std::list<std::unique_ptr<Conn>> conns_ GUARDED_BY(mu_);
};

}  // namespace faha

#endif  // FAHA_SERVER_NET_RDMA_GATEWAY_H_
