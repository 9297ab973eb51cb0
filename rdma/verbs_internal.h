// Internals of the verbs streams (rdma/verbs.cc): device capability bits,
// the set-up message and credit word, resource owners, completion queues
// and queue pairs, and the rdma_cm helpers the stream and listener share.
// Included by the verbs implementation only.
#ifndef FAHA_RDMA_VERBS_INTERNAL_H_
#define FAHA_RDMA_VERBS_INTERNAL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <optional>
#include <thread>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/strings.h"
#include "rdma/verbs.h"

namespace faha::rdma::internal {

// IBTA FLUSH and ATOMIC WRITE device capability bits (kernel uapi, Linux 6.2);
// rdma-core 44's headers predate them, the kernel reports them all the same.
#ifdef IB_UVERBS_DEVICE_FLUSH_GLOBAL
constexpr uint64_t kCapFlushGlobal = IB_UVERBS_DEVICE_FLUSH_GLOBAL;
constexpr uint64_t kCapFlushPersistent = IB_UVERBS_DEVICE_FLUSH_PERSISTENT;
constexpr uint64_t kCapAtomicWrite = IB_UVERBS_DEVICE_ATOMIC_WRITE;
#else
constexpr uint64_t kCapFlushGlobal = 1ULL << 38;
constexpr uint64_t kCapFlushPersistent = 1ULL << 39;
constexpr uint64_t kCapAtomicWrite = 1ULL << 40;
#endif

constexpr uint32_t kSetupMagic = 0x56484146;  // "FAHV"
constexpr uint64_t kWrSetup = 1, kWrData = 2, kWrCredit = 3;
constexpr int kSetupBytes = 64;

inline std::atomic<bool (*)(const void*, size_t)> g_remote_guard{nullptr};

// The word a peer writes our send credits into. The check lets a reader tell
// a completely written value from one caught half way through an RDMA WRITE.
struct CreditWord {
  uint64_t bytes;
  uint64_t msgs;
  uint64_t check;
  uint64_t pad;
};
inline uint64_t CreditCheck(uint64_t bytes, uint64_t msgs) {
  return (bytes * 0x9E3779B97F4A7C15ull) ^ (msgs * 0xC2B2AE3D27D4EB4Full) ^ 0x46414856u;
}

// Sent once each way after the connection is established.
struct SetupMsg {
  uint32_t magic;
  uint32_t ring_bytes;
  uint64_t ring_addr;
  uint64_t credit_addr;
  uint32_t ring_rkey;
  uint32_t credit_rkey;
  uint32_t queue_depth;
  uint32_t max_message;
};
static_assert(sizeof(SetupMsg) <= kSetupBytes);

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<char, FreeDeleter>;
inline Buffer AllocBuffer(size_t bytes) {
  void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (p) std::memset(p, 0, bytes);
  return Buffer(static_cast<char*>(p));
}

struct EventChannelDeleter {
  void operator()(rdma_event_channel* c) const { rdma_destroy_event_channel(c); }
};
struct CmIdDeleter {
  void operator()(rdma_cm_id* id) const { rdma_destroy_id(id); }
};
struct PdDeleter {
  void operator()(ibv_pd* pd) const { ibv_dealloc_pd(pd); }
};
struct CompChannelDeleter {
  void operator()(ibv_comp_channel* c) const { ibv_destroy_comp_channel(c); }
};
struct MrDeleter {
  void operator()(ibv_mr* mr) const { ibv_dereg_mr(mr); }
};
using EventChannel = std::unique_ptr<rdma_event_channel, EventChannelDeleter>;
using CmId = std::unique_ptr<rdma_cm_id, CmIdDeleter>;
using Pd = std::unique_ptr<ibv_pd, PdDeleter>;
using CompChannel = std::unique_ptr<ibv_comp_channel, CompChannelDeleter>;
using Mr = std::unique_ptr<ibv_mr, MrDeleter>;

// A completion queue and the events taken from its channel, acknowledged
// before it is destroyed (ibv_destroy_cq waits for that otherwise).
class Cq {
 public:
  Cq() = default;
  ~Cq() {
    if (cq_) {
      if (unacked_) ibv_ack_cq_events(cq_, unacked_);
      ibv_destroy_cq(cq_);
    }
  }
  Cq(const Cq&) = delete;
  Cq& operator=(const Cq&) = delete;
  Status Create(ibv_context* ctx, int depth, ibv_comp_channel* channel) {
    cq_ = ibv_create_cq(ctx, depth, nullptr, channel, 0);
    return cq_ ? Status::OK() : Status::Unavailable(Errno("ibv_create_cq"));
  }
  ibv_cq* get() const { return cq_; }
  void CountEvent() {
    if (++unacked_ >= 64) {
      ibv_ack_cq_events(cq_, unacked_);
      unacked_ = 0;
    }
  }

 private:
  ibv_cq* cq_ = nullptr;
  unsigned unacked_ = 0;
};

// The queue pair belongs to its cm id (rdma_create_qp / rdma_destroy_qp).
class Qp {
 public:
  Qp() = default;
  ~Qp() {
    if (id_) rdma_destroy_qp(id_);
  }
  Qp(const Qp&) = delete;
  Qp& operator=(const Qp&) = delete;
  void Set(rdma_cm_id* id) { id_ = id; }
  ibv_qp* get() const { return id_ ? id_->qp : nullptr; }

 private:
  rdma_cm_id* id_ = nullptr;
};

// Takes the next event from a cm event channel, waiting up to timeout_ms.
inline StatusOr<rdma_cm_event*> NextCmEvent(rdma_event_channel* ec, int timeout_ms) {
  pollfd p{ec->fd, POLLIN, 0};
  int64_t deadline = MonoUs() + int64_t{timeout_ms} * 1000;
  while (true) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ec, &ev) == 0) return ev;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return Status::Unavailable(Errno("rdma_get_cm_event"));
    int wait = static_cast<int>((deadline - MonoUs()) / 1000);
    if (wait <= 0)
      return Status::Timeout("no rdma_cm event within " + std::to_string(timeout_ms) + " ms");
    poll(&p, 1, wait);
  }
}

// ibv_reg_mr called as the function: rdma-core's same-named macro mixes two
// enum types, which clang's -Wdeprecated-enum-enum-conversion rejects.
inline ibv_mr* RegisterMr(ibv_pd* pd, void* addr, size_t bytes, int access) {
  return (ibv_reg_mr)(pd, addr, bytes, access);
}

inline Status NonBlocking(int fd, const char* what) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::Unavailable(Errno(std::string("fcntl O_NONBLOCK on ") + what));
  }
  return Status::OK();
}

inline StatusOr<EventChannel> NewEventChannel() {
  EventChannel ec(rdma_create_event_channel());
  if (!ec) {
    return Status::Unavailable(Errno("RDMA is not available here (rdma_create_event_channel)"));
  }
  FAHA_RETURN_IF_ERROR(NonBlocking(ec->fd, "the rdma_cm event channel"));
  return ec;
}

// A fresh event channel and an rdma_cm id on it.
inline Status NewCmId(EventChannel* ec, CmId* id) {
  auto ecs = NewEventChannel();
  if (!ecs.ok()) return ecs.status();
  *ec = std::move(*ecs);
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(ec->get(), &raw, nullptr, RDMA_PS_TCP) != 0) {
    return Status::Unavailable(Errno("rdma_create_id"));
  }
  id->reset(raw);
  return Status::OK();
}

// Waits for one event of the expected type on ec; anything else is an error
// that names it (and, for a rejection, carries the acceptor's reason).
inline Status ExpectCmEvent(rdma_event_channel* ec, rdma_cm_event_type want,
                            const std::string& peer, int timeout_ms) {
  auto ev = NextCmEvent(ec, timeout_ms);
  if (!ev.ok()) return Status::Timeout(peer + ": " + ev.status().message());
  rdma_cm_event* e = *ev;
  rdma_cm_event_type type = e->event;
  int status = e->status;
  std::string reason;
  if (type == RDMA_CM_EVENT_REJECTED && e->param.conn.private_data_len > 0) {
    const char* p = static_cast<const char*>(e->param.conn.private_data);
    reason.assign(p, strnlen(p, e->param.conn.private_data_len));
  }
  rdma_ack_cm_event(e);
  if (type == want) return Status::OK();
  if (type == RDMA_CM_EVENT_REJECTED) {
    return Status::Auth(
        peer + " refused the connection" +
        (reason.empty() ? " (status " + std::to_string(status) + ")" : ": " + reason));
  }
  return Status::Unavailable(peer + ": " + rdma_event_str(type) + " (status " +
                             std::to_string(status) + ") while waiting for " +
                             rdma_event_str(want));
}

inline std::string AddrString(const sockaddr* a) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a && a->sa_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(a);
    inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
    port = ntohs(s->sin_port);
  } else if (a && a->sa_family == AF_INET6) {
    auto* s = reinterpret_cast<const sockaddr_in6*>(a);
    inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
    port = ntohs(s->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

inline rdma_conn_param ConnParam(std::string_view private_data) {
  rdma_conn_param p{};
  p.private_data = private_data.empty() ? nullptr : private_data.data();
  p.private_data_len = static_cast<uint8_t>(private_data.size());
  p.responder_resources = 0;  // no RDMA READ or atomics towards us
  p.initiator_depth = 0;
  p.retry_count = 7;
  p.rnr_retry_count = 7;  // credits keep receives posted; this only covers a slow repost
  return p;
}

inline Status ValidateOptions(const VerbsOptions& o) {
  if (o.ring_bytes < 4096 || o.max_message == 0 || o.max_message > o.ring_bytes ||
      o.queue_depth < 4) {
    return Status::InvalidArgument("bad RDMA stream options (ring, message size or queue depth)");
  }
  return Status::OK();
}

}  // namespace faha::rdma::internal

#endif  // FAHA_RDMA_VERBS_INTERNAL_H_
