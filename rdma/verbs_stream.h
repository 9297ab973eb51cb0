// The verbs stream (VerbsStream over an RC queue pair, a ring the peer
// writes into, and a credit word): set-up, sending, receiving, keepalive.
// Included by rdma/verbs.cc only.
#ifndef FAHA_RDMA_VERBS_STREAM_H_
#define FAHA_RDMA_VERBS_STREAM_H_

#include "rdma/verbs_internal.h"

namespace faha::rdma::internal {

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

  Status Read(ByteBuffer* in, int timeout_ms) override { return ReadInto(in, timeout_ms); }
  Status Read(std::string* in, int timeout_ms) override { return ReadInto(in, timeout_ms); }

  // Read, into a std::string or a ByteBuffer (both append).
  template <typename Buffer>
  Status ReadInto(Buffer* in, int timeout_ms) {
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
  template <typename Buffer>
  StatusOr<bool> PollRecv(Buffer* in) {
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

}  // namespace faha::rdma::internal

#endif  // FAHA_RDMA_VERBS_STREAM_H_
