// TCP plumbing written once: HOST:PORT parsing, connecting with a timeout,
// listening. Used by the client library, the replication transport, the
// cluster's failure detector and the benchmark driver.
#ifndef FAHA_COMMON_NET_H_
#define FAHA_COMMON_NET_H_

#include <string>
#include <string_view>
#include <utility>

#include "faha/status.h"

namespace faha::net {

// Splits HOST:PORT at its last colon; a bracketed IPv6 host ([::1]:7379)
// loses its brackets. The port must be a decimal number in 1..65535 (0 too,
// when allow_zero: "pick one"). `what` names the address in errors, e.g.
// "replication address".
Status ParseHostPort(std::string_view address, std::string* host, int* port,
                     std::string_view what = "address", bool allow_zero = false);

struct ConnectOptions {
  int timeout_ms = 10000;
  bool nonblocking = true;    // the returned socket; connecting never blocks past the timeout
  bool no_delay = true;       // TCP_NODELAY
  bool numeric_host = false;  // an address only, never a DNS lookup
};
// Connects to host:port, trying each resolved address in turn, within
// timeout_ms each. Returns the socket, or: InvalidArgument (cannot resolve),
// Timeout, or Unavailable (refused or unreachable). *refused, if given, says
// whether the last address tried actively refused (nothing listens there).
StatusOr<int> ConnectTcp(const std::string& host, int port, const ConnectOptions& options,
                         bool* refused = nullptr);

// Listens on the IPv4 address bind:port (port 0 picks a free one, then
// *bound_port says which). The socket is non-blocking with SO_REUSEADDR.
StatusOr<int> ListenTcp(const std::string& bind, int port, int backlog, int* bound_port);

// HOST:PORT as (host, port) for display (INFO, ROLE); (address, 0) when it is
// not HOST:PORT (e.g. no primary known yet).
std::pair<std::string, int> SplitForDisplay(const std::string& address);

// A TCP port of 127.0.0.1 that was free a moment ago (bound, released), for
// tests and tools that start servers. Chosen at random below the kernel's
// ephemeral range (ip_local_port_range), so that no outgoing connection takes
// it before the server binds it; port 0's choice if none there is free. The
// port is held for the rest of this process's life against every other
// process's call (a lock file under /tmp/faha-ports), so tests run side by
// side never draw the same port.
StatusOr<int> FreeLoopbackPort();

}  // namespace faha::net

#endif  // FAHA_COMMON_NET_H_
