// Verbs streams over rdma_cm and RC queue pairs (see verbs.h for the design).
#include "rdma/verbs.h"

#include "rdma/verbs_internal.h"
#include "rdma/verbs_stream.h"

namespace faha::rdma {

using namespace internal;

namespace {

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
