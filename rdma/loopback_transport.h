// LoopbackTransport: replication frames between objects of one process, for
// tests that run a primary and its backups without sockets or processes. The
// bytes travel through in-memory pipes, but everything above them is the real
// code: StreamChannel's framing, frame limits and the cluster-secret
// challenge. Listeners register "HOST:PORT" in a LoopbackNetwork that the
// test creates and hands to every transport, so tests do not share ports.
#ifndef FAHA_RDMA_LOOPBACK_TRANSPORT_H_
#define FAHA_RDMA_LOOPBACK_TRANSPORT_H_

#include <memory>
#include <string>

#include "rdma/transport.h"

namespace faha::rdma {

class LoopbackNetwork;

// A network of its own; ports are given out from 1 up.
std::shared_ptr<LoopbackNetwork> MakeLoopbackNetwork();

// A transport on `network`: Listen(bind, 0) takes a free port there, and
// Connect reaches listeners of the same network only (Unavailable otherwise,
// as a refused TCP connection).
std::unique_ptr<Transport> MakeLoopbackTransport(std::shared_ptr<LoopbackNetwork> network,
                                                 const TransportOptions& options);

// Cuts every connection of `network` at once (both directions fail, as when a
// link goes down); listeners stay, so peers can connect again.
void CutLoopbackConnections(LoopbackNetwork* network);

// While `stalled`, every connection of `network`, open or opened meanwhile,
// delivers nothing (what is written waits, up to a pipe's capacity), as a
// link that drops packets without closing does; false delivers it all.
void StallLoopbackConnections(LoopbackNetwork* network, bool stalled);

}  // namespace faha::rdma

#endif  // FAHA_RDMA_LOOPBACK_TRANSPORT_H_
