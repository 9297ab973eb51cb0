// Verbs streams over rdma_cm and RC queue pairs (see verbs.h for the design).
#include "rdma/verbs.h"

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

namespace faha::rdma {
namespace {

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

std::atomic<bool (*)(const void*, size_t)> g_remote_guard{nullptr};

// The word a peer writes our send credits into. The check lets a reader tell
// a completely written value from one caught half way through an RDMA WRITE.
struct CreditWord {
  uint64_t bytes;
  uint64_t msgs;
  uint64_t check;
  uint64_t pad;
};
uint64_t CreditCheck(uint64_t bytes, uint64_t msgs) {
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
Buffer AllocBuffer(size_t bytes) {
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
StatusOr<rdma_cm_event*> NextCmEvent(rdma_event_channel* ec, int timeout_ms) {
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
ibv_mr* RegisterMr(ibv_pd* pd, void* addr, size_t bytes, int access) {
  return (ibv_reg_mr)(pd, addr, bytes, access);
}

Status NonBlocking(int fd, const char* what) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::Unavailable(Errno(std::string("fcntl O_NONBLOCK on ") + what));
  }
  return Status::OK();
}

StatusOr<EventChannel> NewEventChannel() {
  EventChannel ec(rdma_create_event_channel());
  if (!ec) {
    return Status::Unavailable(Errno("RDMA is not available here (rdma_create_event_channel)"));
  }
  FAHA_RETURN_IF_ERROR(NonBlocking(ec->fd, "the rdma_cm event channel"));
  return ec;
}

// A fresh event channel and an rdma_cm id on it.
Status NewCmId(EventChannel* ec, CmId* id) {
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
Status ExpectCmEvent(rdma_event_channel* ec, rdma_cm_event_type want, const std::string& peer,
                     int timeout_ms) {
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

class Stream final : public VerbsStream {
 public:
  Stream(const VerbsOptions& options, std::string peer)
      : options_(options), peer_(std::move(peer)) {}

  ~Stream() override {
    if (connected_) rdma_disconnect(id_.get());
  }

  // Builds the protection domain, CQs, QP and registered memory on id (which
  // has resolved its route or came from a connect request), and posts receives.
  Status Build(EventChannel ec, CmId id) {
    ec_ = std::move(ec);
    id_ = std::move(id);
    ibv_context* ctx = id_->verbs;
    if (!ctx) return Status::Unavailable(peer_ + ": the rdma_cm id has no device");
    pd_.reset(ibv_alloc_pd(ctx));
    if (!pd_) return Status::Unavailable(Errno("ibv_alloc_pd"));
    comp_.reset(ibv_create_comp_channel(ctx));
    if (!comp_) return Status::Unavailable(Errno("ibv_create_comp_channel"));
    FAHA_RETURN_IF_ERROR(NonBlocking(comp_->fd, "the completion channel"));
    const int depth = static_cast<int>(options_.queue_depth);
    sq_depth_ = depth + 16;
    FAHA_RETURN_IF_ERROR(send_cq_.Create(ctx, sq_depth_, comp_.get()));
    FAHA_RETURN_IF_ERROR(recv_cq_.Create(ctx, depth + 2, comp_.get()));
    ibv_qp_init_attr qa{};
    qa.send_cq = send_cq_.get();
    qa.recv_cq = recv_cq_.get();
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = static_cast<uint32_t>(sq_depth_);
    qa.cap.max_recv_wr = static_cast<uint32_t>(depth + 1);
    qa.cap.max_send_sge = 1;
    qa.cap.max_recv_sge = 1;
    qa.sq_sig_all = 0;
    if (rdma_create_qp(id_.get(), pd_.get(), &qa) != 0)
      return Status::Unavailable(Errno("rdma_create_qp"));
    qp_.Set(id_.get());

    const size_t ring = options_.ring_bytes;
    ring_in_ = AllocBuffer(ring);
    small_ = AllocBuffer(4096);
    if (!ring_in_ || !small_) return Status::Unavailable("out of memory for RDMA buffers");
    // Remote write only into the receive ring and the credit word; the rest
    // is registered for local access.
    if (auto guard = g_remote_guard.load();
        guard && (guard(ring_in_.get(), ring) || guard(small_.get(), sizeof(CreditWord)))) {
      return Status::IOError("refusing to expose log memory for remote access");
    }
    ring_mr_.reset(RegisterMr(pd_.get(), ring_in_.get(), ring,
                              IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE));
    credit_mr_.reset(RegisterMr(pd_.get(), small_.get(), sizeof(CreditWord),
                                IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE));
    local_mr_.reset(RegisterMr(pd_.get(), small_.get() + 1024, 3072, IBV_ACCESS_LOCAL_WRITE));
    if (!ring_mr_ || !credit_mr_ || !local_mr_) {
      return Status::Unavailable(Errno("ibv_reg_mr"));
    }
    credit_in_ = reinterpret_cast<CreditWord*>(small_.get());
    credit_out_ = reinterpret_cast<CreditWord*>(small_.get() + 1024);
    setup_out_ = small_.get() + 2048;
    setup_in_ = small_.get() + 3072;

    // The first receive takes the peer's SetupMsg; the others wait for
    // WRITE_WITH_IMMs, which carry no receive buffer.
    ibv_sge sge{reinterpret_cast<uintptr_t>(setup_in_), kSetupBytes, local_mr_->lkey};
    ibv_recv_wr wr{};
    wr.wr_id = kWrSetup;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    ibv_recv_wr* bad = nullptr;
    if (ibv_post_recv(qp_.get(), &wr, &bad) != 0)
      return Status::Unavailable(Errno("ibv_post_recv"));
    for (uint32_t i = 0; i < options_.queue_depth; i++) FAHA_RETURN_IF_ERROR(PostDataRecv());
    return Status::OK();
  }

  // After ESTABLISHED: tells the peer where to write and learns where we write.
  // Gives up early once *cancel is set.
  Status ExchangeSetup(int timeout_ms, const std::atomic<bool>* cancel = nullptr) {
    connected_ = true;
    SetupMsg m{};
    m.magic = kSetupMagic;
    m.ring_bytes = options_.ring_bytes;
    m.ring_addr = reinterpret_cast<uintptr_t>(ring_in_.get());
    m.ring_rkey = ring_mr_->rkey;
    m.credit_addr = reinterpret_cast<uintptr_t>(credit_in_);
    m.credit_rkey = credit_mr_->rkey;
    m.queue_depth = options_.queue_depth;
    m.max_message = options_.max_message;
    std::memcpy(setup_out_, &m, sizeof(m));
    ibv_sge sge{reinterpret_cast<uintptr_t>(setup_out_), sizeof(m), local_mr_->lkey};
    ibv_send_wr wr{};
    wr.wr_id = kWrSetup;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    {
      MutexLock l(&send_mu_);
      ibv_send_wr* bad = nullptr;
      if (ibv_post_send(qp_.get(), &wr, &bad) != 0)
        return Status::Unavailable(Errno("ibv_post_send"));
      sq_outstanding_++;
    }
    int64_t deadline = MonoUs() + int64_t{timeout_ms} * 1000;
    while (true) {
      ibv_wc wc{};
      int n = ibv_poll_cq(recv_cq_.get(), 1, &wc);  // one: data may follow at once
      if (n < 0) return Status::Unavailable(peer_ + ": ibv_poll_cq failed");
      if (n == 1) {
        FAHA_RETURN_IF_ERROR(CheckWc(wc, "setup receive"));
        if (wc.wr_id != kWrSetup || wc.byte_len < sizeof(SetupMsg)) {
          return Status::Protocol(peer_ + " did not start with its ring set-up");
        }
        SetupMsg p;
        std::memcpy(&p, setup_in_, sizeof(p));
        if (p.magic != kSetupMagic || p.ring_bytes < 4096 || p.ring_bytes > (64u << 20) ||
            p.queue_depth == 0 || p.max_message == 0) {
          return Status::Protocol(peer_ + " sent a malformed ring set-up");
        }
        // Our staging ring mirrors the peer's receive ring, offset for offset.
        staging_ = AllocBuffer(p.ring_bytes);
        if (!staging_) return Status::Unavailable("out of memory for the RDMA staging ring");
        staging_mr_.reset(RegisterMr(pd_.get(), staging_.get(), p.ring_bytes, 0));
        if (!staging_mr_) return Status::Unavailable(Errno("ibv_reg_mr (staging)"));
        peer_ring_addr_ = p.ring_addr;
        peer_ring_bytes_ = p.ring_bytes;
        peer_ring_rkey_ = p.ring_rkey;
        peer_credit_addr_ = p.credit_addr;
        peer_credit_rkey_ = p.credit_rkey;
        peer_depth_ = p.queue_depth;
        peer_max_message_ = std::min(p.max_message, options_.max_message);
        last_recv_us_ = last_send_us_ = MonoUs();
        return Status::OK();
      }
      if (MonoUs() > deadline) return Status::Timeout(peer_ + " sent no ring set-up");
      if (cancel && cancel->load()) return Status::Unavailable(peer_ + ": set-up abandoned");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  Status Write(std::string_view bytes, int timeout_ms) override {
    int64_t deadline = MonoUs() + int64_t{timeout_ms} * 1000;
    int spins = 0;
    while (!bytes.empty()) {
      {
        MutexLock l(&send_mu_);
        FAHA_RETURN_IF_ERROR(PollSendLocked());
        ReadCredits();
        const uint64_t pos = head_ % peer_ring_bytes_;
        uint64_t room = peer_ring_bytes_ - (head_ - peer_bytes_);
        room = std::min<uint64_t>({room, peer_ring_bytes_ - pos, peer_max_message_, bytes.size()});
        bool msg_credit = msgs_sent_ - peer_msgs_ < peer_depth_;
        if (room > 0 && msg_credit && sq_outstanding_ < sq_depth_) {
          const size_t n = room;
          // Our staging ring mirrors the peer's ring offsets, and the peer has
          // consumed what was there, so the RDMA engine is done reading it.
          std::memcpy(staging_.get() + pos, bytes.data(), n);
          FAHA_RETURN_IF_ERROR(PostWriteLocked(pos, n));
          head_ += n;
          bytes.remove_prefix(n);
          spins = 0;
          deadline = MonoUs() + int64_t{timeout_ms} * 1000;
          continue;
        }
      }
      if (MonoUs() > deadline) {
        return Status::Timeout("sending to " + peer_ + " timed out: no RDMA credits for " +
                               std::to_string(timeout_ms) + " ms");
      }
      // Credits arrive as a remote write, which raises no event: spin a
      // little, then back off.
      if (++spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    return Status::OK();
  }

  Status Read(std::string* in, int timeout_ms) override {
    if (!error_.ok()) return error_;
    const int64_t start = MonoUs();
    const int64_t deadline = start + int64_t{timeout_ms} * 1000;
    while (true) {
      auto got = PollRecv(in);
      if (!got.ok()) return got.status();
      if (*got) {
        if (unreported_bytes_ >= options_.ring_bytes / 4 ||
            unreported_msgs_ >= options_.queue_depth / 4) {
          FAHA_RETURN_IF_ERROR(ReturnCredits());
        }
        return Status::OK();
      }
      // About to wait: hand back every credit, so a sender blocked on them
      // can go on (it raises no event for us to answer later).
      if (unreported_bytes_ || unreported_msgs_) FAHA_RETURN_IF_ERROR(ReturnCredits());
      FAHA_RETURN_IF_ERROR(CheckCmEvents());
      const int64_t now = MonoUs();
      if (options_.keepalive_ms > 0 && now - last_send_us_ >= options_.keepalive_ms * 1000) {
        FAHA_RETURN_IF_ERROR(SendKeepalive());
      }
      if (options_.dead_peer_ms > 0 && now - last_recv_us_ >= options_.dead_peer_ms * 1000) {
        return Fail(Status::Unavailable(peer_ + " sent nothing for " +
                                        std::to_string(options_.dead_peer_ms) +
                                        " ms, not even a keepalive: taking it for dead"));
      }
      if (now >= deadline) {
        return Status::Timeout("nothing from " + peer_ + " within " + std::to_string(timeout_ms) +
                               " ms");
      }
      if (now - start < options_.busy_poll_us) continue;
      if (!armed_) {
        // Arm, then look once more: a completion that arrived before arming
        // raises no event.
        if (ibv_req_notify_cq(recv_cq_.get(), 0) || ibv_req_notify_cq(send_cq_.get(), 0)) {
          return Fail(Status::Unavailable(Errno("ibv_req_notify_cq")));
        }
        armed_ = true;
        continue;
      }
      int wait_ms = static_cast<int>((deadline - now + 999) / 1000);
      if (options_.keepalive_ms > 0) wait_ms = std::min(wait_ms, options_.keepalive_ms / 2 + 1);
      if (credit_pending_) wait_ms = std::min(wait_ms, 1);
      FAHA_RETURN_IF_ERROR(SleepOnCompletions(wait_ms));
    }
  }

  const std::string& peer() const override { return peer_; }
  // rdma_disconnect moves the QP to the error state: posted work completes
  // with a flush error and a Read or Write waiting on completions returns.
  // Safe from another thread; harmless (an error we ignore) if not connected.
  void Shutdown() override { rdma_disconnect(id_.get()); }

  std::vector<RemoteRegion> RemoteRegions() const override {
    return {{reinterpret_cast<uintptr_t>(ring_in_.get()), options_.ring_bytes, "receive ring"},
            {reinterpret_cast<uintptr_t>(credit_in_), sizeof(CreditWord), "credit word"}};
  }

  rdma_event_channel* event_channel() const { return ec_.get(); }
  rdma_cm_id* id() const { return id_.get(); }

 private:
  Status Fail(Status s) {
    if (error_.ok()) error_ = s;
    return error_;
  }

  Status CheckWc(const ibv_wc& wc, const char* what) {
    if (wc.status == IBV_WC_SUCCESS) return Status::OK();
    return Fail(Status::Unavailable(peer_ + ": " + what +
                                    " work completion failed: " + ibv_wc_status_str(wc.status) +
                                    " (vendor error " + std::to_string(wc.vendor_err) + ")"));
  }

  Status PostDataRecv() {
    ibv_recv_wr wr{};
    wr.wr_id = kWrData;
    wr.num_sge = 0;
    ibv_recv_wr* bad = nullptr;
    if (ibv_post_recv(qp_.get(), &wr, &bad) != 0)
      return Fail(Status::Unavailable(Errno("ibv_post_recv")));
    return Status::OK();
  }

  // A WRITE_WITH_IMM of `n` staged bytes at ring offset pos (n == 0: keepalive).
  Status PostWriteLocked(uint64_t pos, size_t n) {
    ibv_sge sge{reinterpret_cast<uintptr_t>(staging_.get() + pos), static_cast<uint32_t>(n),
                staging_mr_->lkey};
    ibv_send_wr wr{};
    wr.wr_id = kWrData;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.sg_list = n ? &sge : nullptr;
    wr.num_sge = n ? 1 : 0;
    wr.imm_data = htonl(static_cast<uint32_t>(n));
    wr.wr.rdma.remote_addr = peer_ring_addr_ + pos;
    wr.wr.rdma.rkey = peer_ring_rkey_;
    ibv_send_wr* bad = nullptr;
    if (ibv_post_send(qp_.get(), &wr, &bad) != 0) {
      return Fail(Status::Unavailable(Errno("ibv_post_send to " + peer_)));
    }
    sq_outstanding_++;
    msgs_sent_++;
    last_send_us_ = MonoUs();
    return Status::OK();
  }

  Status PollSendLocked() {
    ibv_wc wc[16];
    while (true) {
      int n = ibv_poll_cq(send_cq_.get(), 16, wc);
      if (n < 0) return Fail(Status::Unavailable(peer_ + ": ibv_poll_cq (send) failed"));
      for (int i = 0; i < n; i++) {
        sq_outstanding_--;
        if (wc[i].wr_id == kWrCredit) credit_inflight_ = false;
        FAHA_RETURN_IF_ERROR(CheckWc(wc[i], wc[i].wr_id == kWrCredit ? "credit write" : "write"));
      }
      if (n < 16) return error_;
    }
  }

  void ReadCredits() {
    CreditWord c;
    c.bytes = __atomic_load_n(&credit_in_->bytes, __ATOMIC_ACQUIRE);
    c.msgs = __atomic_load_n(&credit_in_->msgs, __ATOMIC_ACQUIRE);
    c.check = __atomic_load_n(&credit_in_->check, __ATOMIC_ACQUIRE);
    if (c.check != CreditCheck(c.bytes, c.msgs)) return;  // caught mid-write: keep the old
    if (c.bytes > peer_bytes_ && c.bytes <= head_) peer_bytes_ = c.bytes;
    if (c.msgs > peer_msgs_ && c.msgs <= msgs_sent_) peer_msgs_ = c.msgs;
  }

  // Returns true if bytes were appended; consumes keepalives silently.
  // Copies no more than about a quarter of the ring at a time: a slow reader
  // comes back for more, and hands back credits, before its sender has
  // waited long on a full ring.
  StatusOr<bool> PollRecv(std::string* in) {
    bool got = false;
    size_t taken = 0;
    constexpr int kPoll = 8;
    ibv_wc wc[kPoll];
    while (true) {
      if (taken >= options_.ring_bytes / 4) return got;
      int n = ibv_poll_cq(recv_cq_.get(), kPoll, wc);
      if (n < 0) return Fail(Status::Unavailable(peer_ + ": ibv_poll_cq (recv) failed"));
      for (int i = 0; i < n; i++) {
        FAHA_RETURN_IF_ERROR(CheckWc(wc[i], "receive"));
        if (wc[i].opcode != IBV_WC_RECV_RDMA_WITH_IMM) {
          return Fail(Status::Protocol(peer_ + " sent an unexpected operation"));
        }
        const uint32_t len = ntohl(wc[i].imm_data);
        const uint64_t pos = rpos_ % options_.ring_bytes;
        if (len > options_.max_message || len > options_.ring_bytes - pos) {
          return Fail(Status::Protocol(peer_ + " wrote " + std::to_string(len) +
                                       " bytes past its ring space"));
        }
        last_recv_us_ = MonoUs();
        if (len > 0) {
          in->append(ring_in_.get() + pos, len);
          got = true;
          taken += len;
        }
        rpos_ += len;
        msgs_consumed_++;
        unreported_bytes_ += len;
        unreported_msgs_++;
        FAHA_RETURN_IF_ERROR(PostDataRecv());
      }
      if (n < kPoll) return got;
    }
  }

  Status ReturnCredits() {
    MutexLock l(&send_mu_);
    FAHA_RETURN_IF_ERROR(PollSendLocked());
    if (credit_inflight_ || sq_outstanding_ >= sq_depth_) {
      credit_pending_ = true;
      return Status::OK();
    }
    credit_out_->bytes = rpos_;
    credit_out_->msgs = msgs_consumed_;
    credit_out_->check = CreditCheck(rpos_, msgs_consumed_);
    ibv_sge sge{reinterpret_cast<uintptr_t>(credit_out_), sizeof(CreditWord), local_mr_->lkey};
    ibv_send_wr wr{};
    wr.wr_id = kWrCredit;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.wr.rdma.remote_addr = peer_credit_addr_;
    wr.wr.rdma.rkey = peer_credit_rkey_;
    ibv_send_wr* bad = nullptr;
    if (ibv_post_send(qp_.get(), &wr, &bad) != 0) {
      return Fail(Status::Unavailable(Errno("ibv_post_send (credits) to " + peer_)));
    }
    sq_outstanding_++;
    credit_inflight_ = true;
    credit_pending_ = false;
    unreported_bytes_ = unreported_msgs_ = 0;
    return Status::OK();
  }

  Status SendKeepalive() {
    MutexLock l(&send_mu_);
    FAHA_RETURN_IF_ERROR(PollSendLocked());
    ReadCredits();
    // Without a message credit the peer has our data still to read anyway.
    if (msgs_sent_ - peer_msgs_ >= peer_depth_ || sq_outstanding_ >= sq_depth_) return Status::OK();
    return PostWriteLocked(head_ % peer_ring_bytes_, 0);
  }

  Status CheckCmEvents() {
    rdma_cm_event* ev = nullptr;
    while (rdma_get_cm_event(ec_.get(), &ev) == 0) {
      rdma_cm_event_type type = ev->event;
      rdma_ack_cm_event(ev);
      if (type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL ||
          type == RDMA_CM_EVENT_TIMEWAIT_EXIT) {
        // Read polls the CQ before this, so what arrived first is taken first.
        if (type == RDMA_CM_EVENT_DISCONNECTED) connected_ = false;
        return Fail(Status::Unavailable(peer_ + " disconnected (" + rdma_event_str(type) + ")"));
      }
    }
    return Status::OK();
  }

  Status SleepOnCompletions(int wait_ms) {
    pollfd p[2] = {{comp_->fd, POLLIN, 0}, {ec_->fd, POLLIN, 0}};
    int rc = poll(p, 2, wait_ms);
    if (rc < 0 && errno != EINTR) return Fail(Status::Unavailable(Errno("poll")));
    if (p[0].revents & POLLIN) {
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      while (ibv_get_cq_event(comp_.get(), &cq, &ctx) == 0) {
        (cq == send_cq_.get() ? send_cq_ : recv_cq_).CountEvent();
        armed_ = false;  // an event disarms its CQ
      }
    }
    if (credit_pending_) return ReturnCredits();
    return Status::OK();
  }

  VerbsOptions options_;
  std::string peer_;
  // Declaration order is the reverse of destruction order: memory regions go
  // before the QP, the QP before its CQs, those before the PD, the id and its
  // event channel last.
  EventChannel ec_;
  CmId id_;
  Pd pd_;
  CompChannel comp_;
  Cq send_cq_;
  Cq recv_cq_;
  Qp qp_;
  Buffer ring_in_, staging_, small_;
  Mr ring_mr_, credit_mr_, staging_mr_, local_mr_;
  CreditWord* credit_in_ = nullptr;
  CreditWord* credit_out_ = nullptr;
  char* setup_out_ = nullptr;
  char* setup_in_ = nullptr;
  bool connected_ = false;
  Status error_;

  uint64_t peer_ring_addr_ = 0, peer_credit_addr_ = 0;
  uint32_t peer_ring_rkey_ = 0, peer_credit_rkey_ = 0;
  uint64_t peer_ring_bytes_ = 1, peer_depth_ = 0, peer_max_message_ = 0;
  int sq_depth_ = 0;

  Mutex send_mu_;  // the send queue, send CQ and credits below
  int sq_outstanding_ = 0;
  uint64_t head_ = 0;                        // bytes written to the peer's ring
  uint64_t msgs_sent_ = 0;                   // WRITE_WITH_IMMs sent
  uint64_t peer_bytes_ = 0, peer_msgs_ = 0;  // what the peer has consumed
  bool credit_inflight_ = false;
  std::atomic<int64_t> last_send_us_{0};

  // Reader side.
  uint64_t rpos_ = 0, msgs_consumed_ = 0;
  uint64_t unreported_bytes_ = 0, unreported_msgs_ = 0;
  bool credit_pending_ = false;
  bool armed_ = false;
  int64_t last_recv_us_ = 0;
};

std::string AddrString(const sockaddr* a) {
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

rdma_conn_param ConnParam(std::string_view private_data) {
  rdma_conn_param p{};
  p.private_data = private_data.empty() ? nullptr : private_data.data();
  p.private_data_len = static_cast<uint8_t>(private_data.size());
  p.responder_resources = 0;  // no RDMA READ or atomics towards us
  p.initiator_depth = 0;
  p.retry_count = 7;
  p.rnr_retry_count = 7;  // credits keep receives posted; this only covers a slow repost
  return p;
}

// How long an accepted connection has to finish its set-up (ESTABLISHED, then
// the peer's ring set-up), and how many may be setting up at once. Set-ups run
// on their own threads, so a slow or silent peer holds up nobody else.
constexpr int kAcceptSetUpMs = 5000;
constexpr size_t kMaxSettingUp = 32;

class Listener final : public VerbsListener {
 public:
  Listener(EventChannel ec, CmId id, int port, const VerbsOptions& options, int wake_fd)
      : ec_(std::move(ec)), id_(std::move(id)), port_(port), options_(options), wake_fd_(wake_fd) {}

  ~Listener() override {
    closing_ = true;
    for (auto& h : setting_up_) h.thread.join();
    finished_.clear();
    close(wake_fd_);
  }

  StatusOr<std::unique_ptr<VerbsStream>> Accept(int timeout_ms, const Check& check) override {
    const int64_t deadline = MonoUs() + int64_t{timeout_ms} * 1000;
    while (true) {
      if (auto done = TakeFinished()) return std::move(*done);
      rdma_cm_event* e = nullptr;
      if (rdma_get_cm_event(ec_.get(), &e) == 0) {
        if (e->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
          rdma_ack_cm_event(e);
          continue;
        }
        FAHA_RETURN_IF_ERROR(StartSetUp(e, check));
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return Status::Unavailable(Errno("rdma_get_cm_event"));
      const int left = static_cast<int>((deadline - MonoUs()) / 1000);
      if (left <= 0) return Status::NotFound("no RDMA peer connected");
      pollfd p[2] = {{ec_->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      poll(p, 2, left);
      uint64_t count;
      if (p[1].revents & POLLIN) (void)!read(wake_fd_, &count, sizeof(count));
    }
  }

  int port() const override { return port_; }

 private:
  struct SettingUp {
    std::thread thread;
    bool done = false;
  };
  using Result = StatusOr<std::unique_ptr<VerbsStream>>;

  // Refuses or accepts the request of event e (acknowledging e); an accepted
  // one finishes its set-up on its own thread and comes out of a later Accept.
  Status StartSetUp(rdma_cm_event* e, const Check& check) {
    CmId child(e->id);
    std::string pdata(static_cast<const char*>(e->param.conn.private_data),
                      e->param.conn.private_data_len);
    std::string peer = AddrString(rdma_get_peer_addr(child.get()));
    rdma_ack_cm_event(e);
    Status ok = check(pdata);
    if (ok.ok() && Reap() >= kMaxSettingUp) {
      ok = Status::Unavailable("too many RDMA connections setting up (" +
                               std::to_string(kMaxSettingUp) + "); try again");
    }
    if (!ok.ok()) {
      std::string reason = ok.message().substr(0, 140);
      rdma_reject(child.get(), reason.c_str(), static_cast<uint8_t>(reason.size() + 1));
      return ok.WithPrefix(peer + ": ");
    }
    auto ec = NewEventChannel();
    if (!ec.ok()) {
      rdma_reject(child.get(), nullptr, 0);
      return ec.status();
    }
    // From here on the child's events arrive on its own channel.
    if (rdma_migrate_id(child.get(), ec->get()) != 0) {
      rdma_reject(child.get(), nullptr, 0);
      return Status::Unavailable(Errno("rdma_migrate_id"));
    }
    MutexLock l(&mu_);
    setting_up_.emplace_back();
    SettingUp* h = &setting_up_.back();
    h->thread = std::thread(
        [this, h, ec = std::move(*ec), child = std::move(child), peer = std::move(peer)]() mutable {
          Result r = SetUp(std::move(ec), std::move(child), peer);
          {
            MutexLock g(&mu_);
            finished_.push_back(std::move(r));
            h->done = true;
          }
          const uint64_t one = 1;
          (void)!write(wake_fd_, &one, sizeof(one));
        });
    return Status::OK();
  }

  Result SetUp(EventChannel ec, CmId child, const std::string& peer) {
    auto s = std::make_unique<Stream>(options_, peer);
    rdma_cm_id* raw = child.get();
    Status b = s->Build(std::move(ec), std::move(child));
    if (!b.ok()) {
      rdma_reject(raw, nullptr, 0);
      return b;
    }
    rdma_conn_param param = ConnParam({});
    if (rdma_accept(s->id(), &param) != 0) return Status::Unavailable(Errno("rdma_accept"));
    // Waited for in slices, so that closing the listener is not held up.
    const int64_t deadline = MonoUs() + int64_t{kAcceptSetUpMs} * 1000;
    while (true) {
      if (closing_) return Status::Unavailable(peer + ": set-up abandoned");
      const int left = static_cast<int>((deadline - MonoUs()) / 1000);
      Status e = ExpectCmEvent(s->event_channel(), RDMA_CM_EVENT_ESTABLISHED, peer,
                               std::clamp(left, 0, 100));
      if (e.ok()) break;
      if (e.code() != Status::Code::kTimeout) return e;
      if (left <= 100) {
        return Status::Timeout(peer + ": not established within " + std::to_string(kAcceptSetUpMs) +
                               " ms of its acceptance");
      }
    }
    FAHA_RETURN_IF_ERROR(s->ExchangeSetup(kAcceptSetUpMs, &closing_));
    return std::unique_ptr<VerbsStream>(std::move(s));
  }

  // Joins the set-up threads that are done; returns how many are still running.
  size_t Reap() {
    std::list<SettingUp> done;
    {
      MutexLock l(&mu_);
      for (auto it = setting_up_.begin(); it != setting_up_.end();) {
        auto next = std::next(it);
        if (it->done) done.splice(done.end(), setting_up_, it);
        it = next;
      }
    }
    for (auto& h : done) h.thread.join();
    MutexLock l(&mu_);
    return setting_up_.size();
  }

  std::optional<Result> TakeFinished() {
    Reap();
    MutexLock l(&mu_);
    if (finished_.empty()) return std::nullopt;
    Result r = std::move(finished_.front());
    finished_.pop_front();
    return r;
  }

  EventChannel ec_;
  CmId id_;
  int port_;
  VerbsOptions options_;
  int wake_fd_;  // an eventfd a set-up thread writes when it is done
  std::atomic<bool> closing_{false};
  Mutex mu_;
  std::list<SettingUp> setting_up_;  // list: a thread holds a pointer to its entry
  std::deque<Result> finished_;
};

Status ValidateOptions(const VerbsOptions& o) {
  if (o.ring_bytes < 4096 || o.max_message == 0 || o.max_message > o.ring_bytes ||
      o.queue_depth < 4) {
    return Status::InvalidArgument("bad RDMA stream options (ring, message size or queue depth)");
  }
  return Status::OK();
}

}  // namespace

StatusOr<std::unique_ptr<VerbsStream>> VerbsConnect(const std::string& host, int port,
                                                    std::string_view private_data,
                                                    const VerbsOptions& options, int timeout_ms) {
  FAHA_RETURN_IF_ERROR(ValidateOptions(options));
  if (private_data.size() > 56) return Status::InvalidArgument("RDMA private data over 56 bytes");
  const std::string peer = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return Status::InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> resolved(res, freeaddrinfo);
  EventChannel ec;
  CmId id;
  FAHA_RETURN_IF_ERROR(NewCmId(&ec, &id));
  if (rdma_resolve_addr(id.get(), nullptr, res->ai_addr, timeout_ms) != 0) {
    return Status::Unavailable(Errno("rdma_resolve_addr " + peer));
  }
  FAHA_RETURN_IF_ERROR(
      ExpectCmEvent(ec.get(), RDMA_CM_EVENT_ADDR_RESOLVED, peer, timeout_ms + 100));
  if (rdma_resolve_route(id.get(), timeout_ms) != 0) {
    return Status::Unavailable(Errno("rdma_resolve_route " + peer));
  }
  FAHA_RETURN_IF_ERROR(
      ExpectCmEvent(ec.get(), RDMA_CM_EVENT_ROUTE_RESOLVED, peer, timeout_ms + 100));
  auto s = std::make_unique<Stream>(options, peer);
  FAHA_RETURN_IF_ERROR(s->Build(std::move(ec), std::move(id)));
  rdma_conn_param param = ConnParam(private_data);
  if (rdma_connect(s->id(), &param) != 0) return Status::Unavailable(Errno("rdma_connect " + peer));
  FAHA_RETURN_IF_ERROR(
      ExpectCmEvent(s->event_channel(), RDMA_CM_EVENT_ESTABLISHED, peer, timeout_ms));
  FAHA_RETURN_IF_ERROR(s->ExchangeSetup(timeout_ms));
  return std::unique_ptr<VerbsStream>(std::move(s));
}

StatusOr<std::unique_ptr<VerbsListener>> VerbsListen(const std::string& bind, int port,
                                                     const VerbsOptions& options) {
  FAHA_RETURN_IF_ERROR(ValidateOptions(options));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, bind.c_str(), &a.sin_addr) != 1) {
    return Status::InvalidArgument("'" + bind + "' is not an IPv4 address");
  }
  EventChannel ec;
  CmId id;
  FAHA_RETURN_IF_ERROR(NewCmId(&ec, &id));
  if (rdma_bind_addr(id.get(), reinterpret_cast<sockaddr*>(&a)) != 0) {
    return Status::Unavailable(Errno("rdma_bind_addr " + bind + ":" + std::to_string(port)));
  }
  if (rdma_listen(id.get(), 64) != 0) return Status::Unavailable(Errno("rdma_listen"));
  if (!id->verbs) {
    return Status::Unavailable("no RDMA device has the address " + bind);
  }
  int bound = ntohs(rdma_get_src_port(id.get()));
  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake < 0) return Status::Unavailable(Errno("eventfd"));
  return std::unique_ptr<VerbsListener>(
      new Listener(std::move(ec), std::move(id), bound, options, wake));
}

std::vector<VerbsDeviceInfo> ProbeVerbsDevices(std::string* why) {
  std::vector<VerbsDeviceInfo> out;
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (!list) {
    if (why) {
      *why = "no RDMA device (" + Errno("ibv_get_device_list") +
             (errno == ENOSYS ? "; this kernel has no RDMA support)" : ")");
    }
    return out;
  }
  for (int i = 0; i < n; i++) {
    VerbsDeviceInfo info;
    info.name = ibv_get_device_name(list[i]);
    ibv_context* ctx = ibv_open_device(list[i]);
    if (!ctx) {
      info.summary = info.name + ": cannot open (" + std::strerror(errno) + ")";
      out.push_back(info);
      continue;
    }
    ibv_device_attr_ex attr{};
    ibv_port_attr port{};
    if (ibv_query_device_ex(ctx, nullptr, &attr) == 0 && ibv_query_port(ctx, 1, &port) == 0) {
      const uint64_t caps = attr.device_cap_flags_ex;
      info.flush = caps & (kCapFlushGlobal | kCapFlushPersistent);
      info.atomic_write = caps & kCapAtomicWrite;
      char buf[512];
      std::snprintf(buf, sizeof(buf),
                    "%s: port 1 %s, active MTU %d, max_qp_wr %d, max_mr_size %llu, atomics %s, "
                    "device_cap_flags_ex 0x%llx: FLUSH %s, ATOMIC WRITE %s",
                    info.name.c_str(), ibv_port_state_str(port.state), 128 << port.active_mtu,
                    attr.orig_attr.max_qp_wr,
                    static_cast<unsigned long long>(attr.orig_attr.max_mr_size),
                    attr.orig_attr.atomic_cap == IBV_ATOMIC_NONE ? "none" : "yes",
                    static_cast<unsigned long long>(caps),
                    info.flush ? (caps & kCapFlushPersistent ? "persistent" : "global") : "no",
                    info.atomic_write ? "yes" : "no");
      info.summary = buf;
    } else {
      info.summary = info.name + ": query failed (" + std::strerror(errno) + ")";
    }
    ibv_close_device(ctx);
    out.push_back(info);
  }
  ibv_free_device_list(list);
  if (out.empty() && why) *why = "no RDMA device (ibv_get_device_list found none)";
  return out;
}

bool VerbsBuiltIn() { return true; }

void SetRemoteAccessGuard(bool (*overlaps)(const void* p, size_t n)) { g_remote_guard = overlaps; }

std::string EncodeConnectData(ConnectKind kind, std::string_view rest) {
  std::string out("FAHV", 4);
  out.push_back(static_cast<char>(kind));
  out.push_back(static_cast<char>(std::min<size_t>(rest.size(), 48)));
  out.append(rest.substr(0, 48));
  return out;
}

bool DecodeConnectData(std::string_view data, ConnectKind* kind, std::string_view* rest) {
  if (data.size() < 6 || data.substr(0, 4) != "FAHV") return false;
  const auto k = static_cast<uint8_t>(data[4]);
  const auto len = static_cast<uint8_t>(data[5]);
  if ((k != 1 && k != 2) || len > 48 || data.size() < 6u + len) return false;
  *kind = static_cast<ConnectKind>(k);
  *rest = data.substr(6, len);
  return true;
}

}  // namespace faha::rdma
