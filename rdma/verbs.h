// Verbs streams: a reliable, ordered byte stream between two processes over an
// RDMA reliable-connected queue pair (libibverbs + librdmacm), the substrate of
// the "rdma" replication transport and of rdma:// client connections.
//
// Each direction has a receive ring registered for remote write in a
// protection domain of its own connection, so its remote key is valid on that
// one queue pair and nowhere else. The sender copies bytes into a registered
// staging ring and RDMA-WRITE_WITH_IMMs them to the same offset of the peer's
// ring (immediate = length): one one-sided write per message, several in
// flight. The receiver returns credits (bytes and messages consumed) by an
// RDMA WRITE into the sender's credit word, so the sender never overruns the
// ring nor the receive queue (no RNR). Nothing else of the process is ever
// registered for remote access; RemoteRegions() lists what a stream exposes.
//
// Connection set-up goes through rdma_cm; the connecting side's private data
// reaches the acceptor's check before anything is registered for the peer,
// and a refusal is delivered to the connector as the reject reason.
//
// Completion handling: every work completion's status is checked (errors name
// ibv_wc_status_str). Waiting busy-polls for busy_poll_us, then arms the CQ
// and sleeps on its completion channel. A peer's rdma_cm disconnect is seen as
// Unavailable; with keepalive_ms > 0 the stream also sends a keepalive when it
// has sent nothing for that long, and a Read that hears nothing at all for
// dead_peer_ms reports the peer dead (the case of a machine that lost power).
//
// Thread-safety: one writing thread and one reading thread at once.
#ifndef FAHA_RDMA_VERBS_H_
#define FAHA_RDMA_VERBS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "faha/status.h"
#include "rdma/byte_stream_base.h"

namespace faha::rdma {

struct VerbsOptions {
  uint32_t ring_bytes = 1u << 20;    // receive ring per direction
  uint32_t max_message = 64u << 10;  // one WRITE_WITH_IMM carries at most this
  uint32_t queue_depth = 256;        // receive WRs posted = message credits
  int busy_poll_us = 50;             // spin before sleeping on the completion channel
  int keepalive_ms = 0;              // 0: no keepalives (client connections)
  int dead_peer_ms = 0;              // 0: only a disconnect or a failed WR ends the stream
};

// What the local side exposes to its peer for remote access.
struct RemoteRegion {
  uint64_t addr;
  uint64_t bytes;
  std::string what;  // "receive ring", "credit word"
};

// Write waits for credits while the peer hands some back at least every
// timeout_ms; Read appends what has arrived, waiting up to timeout_ms for at
// least one byte (Timeout if none; Unavailable once the peer is gone).
class VerbsStream : public ByteStream {
 public:
  using ByteStream::Read;
  // Read into a std::string, as the client and the gateway read a verbs stream.
  virtual Status Read(std::string* in, int timeout_ms) = 0;
  virtual std::vector<RemoteRegion> RemoteRegions() const = 0;
};

// The rdma_cm private data of FaHA's connections: "FAHV", a kind, a length and
// up to 48 bytes for the kind (a replication peer's proof of the secret).
enum class ConnectKind : uint8_t { kClient = 1, kReplication = 2 };
std::string EncodeConnectData(ConnectKind kind, std::string_view rest);
// False if the bytes are not a FaHA connection request.
bool DecodeConnectData(std::string_view data, ConnectKind* kind, std::string_view* rest);

class VerbsListener {
 public:
  virtual ~VerbsListener() = default;
  // Waits up to timeout_ms for a connection request, passes its private data
  // to `check` and either refuses it (rdma_reject with check's message; the
  // returned status is check's) or accepts it. NotFound if nobody asked.
  using Check = std::function<Status(std::string_view private_data)>;
  virtual StatusOr<std::unique_ptr<VerbsStream>> Accept(int timeout_ms, const Check& check) = 0;
  virtual int port() const = 0;
};

// Connects to host:port; private_data (at most 56 bytes) goes with the request.
StatusOr<std::unique_ptr<VerbsStream>> VerbsConnect(const std::string& host, int port,
                                                    std::string_view private_data,
                                                    const VerbsOptions& options, int timeout_ms);
// Listens on bind:port (an address of an RDMA device; port 0 picks one).
StatusOr<std::unique_ptr<VerbsListener>> VerbsListen(const std::string& bind, int port,
                                                     const VerbsOptions& options);

struct VerbsDeviceInfo {
  std::string name;
  std::string summary;        // one line: ports, MTU, inline data, atomics, FLUSH / ATOMIC WRITE
  bool flush = false;         // IBTA FLUSH (global or persistent placement)
  bool atomic_write = false;  // IBTA ATOMIC WRITE
};
// The RDMA devices of this machine (empty when none or built without rdma-core);
// *why says why there are none.
std::vector<VerbsDeviceInfo> ProbeVerbsDevices(std::string* why);
bool VerbsBuiltIn();
// Memory for which `overlaps` is true (the server passes nvm::OverlapsLogMapping)
// is never registered for remote access: such a connection fails to set up.
void SetRemoteAccessGuard(bool (*overlaps)(const void* p, size_t n));

}  // namespace faha::rdma

#endif  // FAHA_RDMA_VERBS_H_
