#include "server/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>

#include "common/clock.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/native_protocol.h"
#include "common/net.h"
#include "common/resp.h"
#include "server/commands.h"

namespace faha {
namespace {

constexpr uint64_t kListenerId = 1;
constexpr uint64_t kWakeId = 2;
constexpr size_t kReadChunk = 64 << 10;
constexpr size_t kMaxOutputBacklog = 64 << 20;  // stop parsing while a client does not read
constexpr size_t kKeepBufferBytes = 1 << 20;    // a drained buffer bigger than this is freed
constexpr size_t kPreauthInputCap = 256 << 10;  // input buffered before AUTH
constexpr int kSweepMs = 100;                   // deadlines are checked this often
constexpr int kAcceptPauseMs = 100;             // no accepting for this long after EMFILE

}  // namespace

// How to encode the reply of one pending write when its completion arrives.
struct PendingReply {
  enum class Kind : uint8_t { kResp, kNativePut, kNativeDelete, kNativeCommand };
  Kind kind;
  uint64_t request_id;
};

// A piece of a connection's unsent output: bytes of its own, or a big value
// sent from the log where it lies (Session::HeldValue).
struct OutChunk {
  std::string bytes;
  std::string_view held;
  std::shared_ptr<const void> hold;
  std::string_view data() const { return hold != nullptr ? held : std::string_view(bytes); }
  // What it counts toward the client memory limit.
  size_t memory() const { return hold != nullptr ? held.size() : bytes.capacity(); }
};

struct Connection {
  uint64_t id = 0;
  int fd = -1;
  enum class Proto : uint8_t { kUnknown, kResp, kNative } proto = Proto::kUnknown;
  std::string in;
  size_t in_pos = 0;
  // Unsent output: `queued` first, then `out` (where replies are appended).
  // out_pos is the offset of the next byte to send in the first of them that
  // is not empty: queued.front() if any, else out.
  std::deque<OutChunk> queued;
  size_t queued_bytes = 0;   // sum of queued's sizes
  size_t queued_memory = 0;  // sum of queued's memory()
  std::string out;
  size_t out_pos = 0;
  size_t Backlog() const { return queued_bytes + out.size() - out_pos; }
  bool epollout = false;
  bool epollin = true;
  bool closing = false;     // close once output is flushed
  bool incomplete = false;  // the parser waits for the rest of a command
  int64_t created_us = 0;
  int64_t last_io_us = 0;        // last byte read or written (--timeout)
  int64_t command_since_us = 0;  // when the incomplete command began (--body_timeout_ms)
  int64_t soft_since_us = 0;     // output over the soft limit since (0: not over)
  size_t accounted = 0;          // bytes of buffers counted in Metrics::client_memory_bytes
  Session session;
  std::deque<PendingReply> pending;
};

class IoThread final : public CompletionSink {
 public:
  IoThread(Server* server, int index)
      : server_(server), index_(index), commands_(server, &outbox_) {}
  ~IoThread() override {
    for (auto& [id, c] : conns_) close(c->fd);
    if (epfd_ >= 0) close(epfd_);
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  Status Init() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wake_fd_ < 0)
      return Status::IOError(std::string("epoll/eventfd: ") + strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeId;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    return Status::OK();
  }
  void AddListener(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerId;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    listen_fd_ = fd;
  }
  void RemoveListener() {
    MutexLock l(&mu_);
    remove_listener_ = true;
    Wake();
  }

  void Run() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), ("faha-io" + std::to_string(index_)).c_str());
      loop_thread_ = pthread_self();
      Loop();
    });
  }
  // Exits the loop after flushing what can be flushed.
  void Quit() {
    {
      MutexLock l(&mu_);
      quit_ = true;
    }
    Wake();
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // Hands a freshly accepted socket to this thread (any thread may call).
  void Adopt(int fd) {
    {
      MutexLock l(&mu_);
      adopted_.push_back(fd);
    }
    Wake();
  }

  void Deliver(std::vector<Completion>* completions) override {
    bool was_empty;
    {
      MutexLock l(&mu_);
      was_empty = completions_.empty();
      for (auto& c : *completions) completions_.push_back(std::move(c));
    }
    if (pthread_equal(pthread_self(), loop_thread_)) {
      // This thread committed its own writes (Store::SubmitAll): the loop
      // takes the replies as soon as the current event is handled, with no
      // wake-up through the eventfd.
      self_delivered_ = true;
      return;
    }
    if (was_empty) Wake();
  }

 private:
  void Wake() {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));
    (void)n;
  }

  void Loop() {
    std::vector<epoll_event> events(256);
    while (true) {
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), kSweepMs);
      if (n < 0 && errno != EINTR) {
        FAHA_LOG_ERROR("epoll_wait: %s", strerror(errno));
        return;
      }
      for (int i = 0; i < n; i++) {
        uint64_t id = events[i].data.u64;
        if (id == kWakeId) {
          uint64_t v;
          while (read(wake_fd_, &v, sizeof(v)) > 0) {
          }
          if (HandleWake()) return;
        } else if (id == kListenerId) {
          Accept();
        } else {
          auto it = conns_.find(id);
          if (it == conns_.end()) continue;
          Connection* c = it->second.get();
          if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(c);
          if (conns_.count(id) && (events[i].events & EPOLLOUT)) Flush(c);
        }
      }
      // The writes of every connection handled above go to the store as one
      // group (as Redis writes its AOF once per event-loop turn). When this
      // thread commits them itself, their replies are delivered here at once,
      // and the commands they unblock may submit more.
      while (true) {
        server_->store_->SubmitAll(&outbox_);
        if (!self_delivered_) break;
        self_delivered_ = false;
        if (HandleWake()) return;
      }
      EnforceClientMemory();
      const int64_t now = MonoUs();
      if (now - last_sweep_us_ >= kSweepMs * 1000) {
        last_sweep_us_ = now;
        Sweep(now);
      }
    }
  }

  // Deadlines, once per kSweepMs: a client that never authenticated, a
  // command whose bytes stopped short, an idle client (--timeout), output
  // over the soft limit for too long; and the listener after EMFILE.
  void Sweep(int64_t now) {
    const ServerOptions& opt = server_->options_;
    FlushCloseLog(now);
    if (accept_paused_until_us_ != 0 && now >= accept_paused_until_us_) {
      accept_paused_until_us_ = 0;
      if (listen_fd_ >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kListenerId;
        epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev);
        Accept();
      }
    }
    const uint32_t timeout_s = opt.limits.timeout_s.load(std::memory_order_relaxed);
    std::vector<std::pair<uint64_t, const char*>> doomed;
    for (auto& [id, cp] : conns_) {
      // Closing connections too: one that never reads its last replies would
      // otherwise hold its descriptor for good.
      Connection* c = cp.get();
      if (!c->session.authed && opt.preauth_timeout_ms > 0 &&
          now - c->created_us > int64_t{opt.preauth_timeout_ms} * 1000) {
        doomed.emplace_back(id, "preauth");
      } else if (c->incomplete && opt.body_timeout_ms > 0 &&
                 now - c->command_since_us > int64_t{opt.body_timeout_ms} * 1000) {
        doomed.emplace_back(id, "body");
      } else if (timeout_s > 0 && c->session.pending_writes == 0 &&
                 now - c->last_io_us > int64_t{timeout_s} * 1000000) {
        doomed.emplace_back(id, "idle");
      } else if (OverOutputLimit(c, now)) {
        doomed.emplace_back(id, "output");
      }
    }
    for (const auto& [id, why] : doomed) {
      auto it = conns_.find(id);
      if (it != conns_.end()) CloseForLimit(it->second.get(), why);
    }
  }

  // True once a client's unsent output is over the hard limit, or has been
  // over the soft limit for the soft seconds.
  bool OverOutputLimit(Connection* c, int64_t now) {
    const ClientLimits& lim = server_->options_.limits;
    const size_t backlog = c->Backlog();
    const uint64_t hard = lim.output_hard_bytes.load(std::memory_order_relaxed);
    const uint64_t soft = lim.output_soft_bytes.load(std::memory_order_relaxed);
    if (hard > 0 && backlog > hard) return true;
    if (soft == 0 || backlog <= soft) {
      c->soft_since_us = 0;
      return false;
    }
    if (c->soft_since_us == 0) c->soft_since_us = now;
    return now - c->soft_since_us >
           int64_t{lim.output_soft_seconds.load(std::memory_order_relaxed)} * 1000000;
  }

  // Closes a client for one of the limits, counted by reason and logged at
  // most once a second.
  void CloseForLimit(Connection* c, const char* why) {
    Metrics* m = server_->metrics();
    const ServerOptions& opt = server_->options_;
    std::string what;
    const char* kind;
    const size_t backlog = c->Backlog();
    if (std::strcmp(why, "preauth") == 0) {
      m->clients_closed_preauth.fetch_add(1, std::memory_order_relaxed);
      what = "no AUTH within --preauth_timeout_ms=" + std::to_string(opt.preauth_timeout_ms);
      kind = "at the pre-auth deadline";
    } else if (std::strcmp(why, "body") == 0) {
      m->clients_closed_body.fetch_add(1, std::memory_order_relaxed);
      what = "a command unfinished after --body_timeout_ms=" + std::to_string(opt.body_timeout_ms);
      kind = "at the body deadline";
    } else if (std::strcmp(why, "idle") == 0) {
      m->clients_closed_idle.fetch_add(1, std::memory_order_relaxed);
      what = "idle for --timeout=" + std::to_string(opt.limits.timeout_s.load()) + " s";
      kind = "idle";
    } else if (std::strcmp(why, "output") == 0) {
      m->clients_closed_output_limit.fetch_add(1, std::memory_order_relaxed);
      kind = "over the output limit";
      what = std::to_string(backlog) + " bytes of unsent replies, over the output limit (hard " +
             std::to_string(opt.limits.output_hard_bytes.load()) + ", soft " +
             std::to_string(opt.limits.output_soft_bytes.load()) + " for " +
             std::to_string(opt.limits.output_soft_seconds.load()) + " s)";
    } else {
      m->clients_evicted_memory.fetch_add(1, std::memory_order_relaxed);
      kind = "over --maxmemory_clients_mb";
      what = "biggest client (" + std::to_string(c->accounted) +
             " bytes of buffers) while all clients held " +
             std::to_string(m->client_memory_bytes.load()) +
             ", over --maxmemory_clients=" + std::to_string(opt.limits.maxmemory_clients.load());
    }
    LogClose(c, what, kind);
    CloseConnection(c);
  }

  // Logs why a client is closed, at most one line a second; the closes not
  // logged are summed up by kind in the next line (FlushCloseLog).
  void LogClose(Connection* c, const std::string& what, const char* kind) {
    const int64_t now = MonoUs();
    if (now - limit_logged_us_ >= 1000000 && unlogged_closes_.empty()) {
      FAHA_LOG_WARN("closing client %llu: %s", static_cast<unsigned long long>(c->id),
                    what.c_str());
      limit_logged_us_ = now;
    } else {
      unlogged_closes_[kind]++;
    }
  }

  // One line for the closes LogClose did not log, once a second has passed.
  void FlushCloseLog(int64_t now) {
    if (unlogged_closes_.empty() || now - limit_logged_us_ < 1000000) return;
    std::string line;
    uint64_t total = 0;
    for (const auto& [kind, n] : unlogged_closes_) {
      line += (line.empty() ? "" : ", ") + std::to_string(n) + " " + kind;
      total += n;
    }
    FAHA_LOG_WARN("closed %llu more clients since the last such line: %s",
                  static_cast<unsigned long long>(total), line.c_str());
    unlogged_closes_.clear();
    limit_logged_us_ = now;
  }

  // Counts a connection's buffers (by capacity) toward all clients' total.
  void Account(Connection* c) {
    const size_t now = c->in.capacity() + c->out.capacity() + c->queued_memory;
    if (now == c->accounted) return;
    server_->metrics()->client_memory_bytes.fetch_add(
        static_cast<int64_t>(now) - static_cast<int64_t>(c->accounted), std::memory_order_relaxed);
    c->accounted = now;
    // Published at once when it grows (EnforceClientMemory recounts it): the
    // other thread must not take a stale figure for this thread's biggest
    // and close a smaller client of its own first.
    if (now > biggest_.load(std::memory_order_relaxed))
      biggest_.store(now, std::memory_order_relaxed);
  }

  // Over --maxmemory_clients: this thread closes its own biggest clients
  // until all clients are under it again (the other thread does the same
  // with its own). Clients of 64 KiB or less are never evicted.
  void EnforceClientMemory() {
    const uint64_t limit =
        server_->options_.limits.maxmemory_clients.load(std::memory_order_relaxed);
    Metrics* m = server_->metrics();
    if (limit == 0 ||
        m->client_memory_bytes.load(std::memory_order_relaxed) <= static_cast<int64_t>(limit)) {
      return;
    }
    std::vector<std::pair<size_t, uint64_t>> by_size;
    for (auto& [id, c] : conns_) {
      if (c->accounted > (64u << 10)) by_size.emplace_back(c->accounted, id);
    }
    std::sort(by_size.rbegin(), by_size.rend());
    size_t next = 0;
    biggest_.store(by_size.empty() ? 0 : by_size[0].first, std::memory_order_relaxed);
    while (next < by_size.size() && m->client_memory_bytes.load() > static_cast<int64_t>(limit)) {
      // Biggest first across all threads: a client of another thread that is
      // bigger goes first (that thread closes it on its next turn).
      size_t others = 0;
      for (const auto& t : server_->threads_) {
        if (t.get() != this) others = std::max(others, t->biggest_.load(std::memory_order_relaxed));
      }
      if (by_size[next].first < others) break;
      auto it = conns_.find(by_size[next].second);
      if (it != conns_.end()) CloseForLimit(it->second.get(), "memory");
      next++;
      biggest_.store(next < by_size.size() ? by_size[next].first : 0, std::memory_order_relaxed);
    }
  }

  // Returns true when the loop should exit.
  bool HandleWake() {
    std::vector<Completion> done;
    std::vector<int> adopted;
    bool quit, drop_listener;
    {
      MutexLock l(&mu_);
      done.swap(completions_);
      adopted.swap(adopted_);
      quit = quit_;
      drop_listener = remove_listener_;
      remove_listener_ = false;
    }
    if (drop_listener && listen_fd_ >= 0) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
      listen_fd_ = -1;
    }
    for (int fd : adopted) AddConnection(fd);
    std::vector<uint64_t> touched;
    const int64_t now_us = done.empty() ? 0 : MonoUs();  // one clock read for the whole wake-up
    for (Completion& comp : done) {
      auto it = conns_.find(comp.conn_id);
      if (it == conns_.end()) continue;  // client left before its write committed
      EncodeCompletion(it->second.get(), comp, now_us);
      touched.push_back(comp.conn_id);
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t id : touched) {
      // Look it up again: handling an earlier connection cannot close this one,
      // but Flush() below may close this one, so never keep the pointer.
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Connection* c = it->second.get();
      if (c->session.pending_writes == 0) ProcessInput(c);
      if (conns_.count(id)) Flush(c);
    }
    if (quit) {
      server_->store_->SubmitAll(&outbox_);
      for (auto& [id, c] : conns_) {
        while (c->Backlog() > 0 && WriteOut(c.get()) > 0) {
        }
      }
      return true;
    }
    return false;
  }

  void EncodeCompletion(Connection* c, const Completion& comp, int64_t now_us) {
    if (c->pending.empty()) return;  // cannot happen: one PendingReply per submitted write
    PendingReply pr = c->pending.front();
    c->pending.pop_front();
    c->session.pending_writes--;
    Metrics* m = server_->metrics();
    m->op_latency_us[static_cast<int>(OpClass::kWrite)].Record(
        static_cast<uint64_t>(now_us - comp.start_us));
    const WriteResult& r = comp.result;
    if (r.kind == WriteResult::Kind::kError) m->errors.fetch_add(1, std::memory_order_relaxed);
    const uint64_t stamp = native::CommitStamp(server_->store_->epoch(), r.lsn);
    switch (pr.kind) {
      case PendingReply::Kind::kResp:
        Commands::AppendResult(&c->out, r);
        break;
      case PendingReply::Kind::kNativePut:
      case PendingReply::Kind::kNativeDelete:
        if (r.kind == WriteResult::Kind::kError) {
          native::EncodeResponse(&c->out, native::Code::kError, pr.request_id, r.str);
        } else {
          native::EncodeResponse(&c->out, native::Code::kOk, pr.request_id, {},
                                 r.kind == WriteResult::Kind::kInt ? r.integer : 0, stamp);
        }
        break;
      case PendingReply::Kind::kNativeCommand: {
        std::string body;
        Commands::AppendResult(&body, r);
        native::EncodeResponse(&c->out, native::Code::kOk, pr.request_id, body, 0, stamp);
        break;
      }
    }
  }

  void Accept() {
    while (true) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors (or memory): the pending connection stays in
          // the backlog and the listener would wake us at once, forever.
          // Stop listening for a while; existing clients go on being served.
          const int err = errno;
          server_->metrics()->accept_fd_exhausted.fetch_add(1, std::memory_order_relaxed);
          epoll_ctl(epfd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
          const int64_t now = MonoUs();
          accept_paused_until_us_ = now + kAcceptPauseMs * 1000;
          accept_pauses_++;
          if (now - accept_logged_us_ >= 1000000) {
            FAHA_LOG_WARN(
                "accept: %s; not accepting for %d ms (%llu such pauses since the last "
                "such line; raise the open-files limit or lower --max_clients)",
                strerror(err), kAcceptPauseMs, static_cast<unsigned long long>(accept_pauses_));
            accept_logged_us_ = now;
            accept_pauses_ = 0;
          }
          return;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
          FAHA_LOG_WARN("accept: %s", strerror(errno));
        }
        return;
      }
      Metrics* m = server_->metrics();
      if (server_->clients_.load() >= server_->options_.max_clients) {
        static const char kMsg[] = "-ERR max number of clients reached\r\n";
        ssize_t w = write(fd, kMsg, sizeof(kMsg) - 1);
        (void)w;
        close(fd);
        m->connections_rejected.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      server_->clients_.fetch_add(1);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      size_t target = next_thread_++ % server_->threads_.size();
      if (target == static_cast<size_t>(index_)) {
        AddConnection(fd);
      } else {
        server_->threads_[target]->Adopt(fd);
      }
    }
  }

  void AddConnection(int fd) {
    auto c = std::make_unique<Connection>();
    c->id = server_->next_conn_id_.fetch_add(1);
    c->fd = fd;
    c->session.conn_id = c->id;
    c->session.authed = server_->options_.requirepass.empty();
    c->created_us = c->last_io_us = MonoUs();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = c->id;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      server_->clients_.fetch_sub(1);
      return;
    }
    Metrics* m = server_->metrics();
    m->connections_total.fetch_add(1, std::memory_order_relaxed);
    m->connections_current.fetch_add(1, std::memory_order_relaxed);
    conns_[c->id] = std::move(c);
  }

  void CloseConnection(Connection* c) {
    server_->metrics()->client_memory_bytes.fetch_sub(static_cast<int64_t>(c->accounted),
                                                      std::memory_order_relaxed);
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
    close(c->fd);
    server_->clients_.fetch_sub(1);
    server_->metrics()->connections_current.fetch_sub(1, std::memory_order_relaxed);
    conns_.erase(c->id);  // pending completions for it are dropped on arrival
  }

  void UpdateEvents(Connection* c, bool want_in, bool want_out) {
    if (want_in == c->epollin && want_out == c->epollout) return;
    epoll_event ev{};
    ev.events = (want_in ? uint32_t{EPOLLIN} : 0u) | (want_out ? uint32_t{EPOLLOUT} : 0u);
    ev.data.u64 = c->id;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollin = want_in;
    c->epollout = want_out;
  }

  // The most unparsed input one connection may buffer, which is also the
  // largest command accepted: a command larger than one log batch could not be
  // committed atomically anyway.
  size_t InputCap(const Connection* c) const {
    // Before AUTH only small commands parse (resp::kPreauthArgs arguments of
    // resp::kPreauthBulkBytes): no reason to buffer more than that.
    if (!c->session.authed) return kPreauthInputCap;
    return std::max<size_t>(server_->options_.max_batch_bytes,
                            static_cast<size_t>(server_->options_.max_value_bytes) +
                                server_->options_.max_key_bytes) +
           (64 << 10);
  }

  void OnReadable(Connection* c) {
    uint64_t id = c->id;
    bool eof = false;
    while (c->in.size() - c->in_pos < InputCap(c)) {
      if (c->in_pos > 0 && c->in_pos == c->in.size()) {
        c->in.clear();
        c->in_pos = 0;
      }
      // Read into the thread's scratch buffer and append what arrived:
      // growing the string by a whole chunk would zero-fill 64 KiB per read.
      ssize_t n = read(c->fd, read_buf_.get(), kReadChunk);
      if (n > 0) {
        c->last_io_us = MonoUs();
        c->in.append(read_buf_.get(), static_cast<size_t>(n));
        if (static_cast<size_t>(n) < kReadChunk) break;
        continue;
      }
      if (n == 0) {
        eof = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        eof = true;
      }
      break;
    }
    if (eof) {
      CloseConnection(c);
      return;
    }

    ProcessInput(c);  // writes wait in outbox_ until the end of this loop turn
    if (conns_.count(id)) Flush(c);
  }

  // Marks whether the parser waits for the rest of a command, and since when.
  void NoteIncomplete(Connection* c, bool incomplete) {
    if (incomplete && !c->incomplete) c->command_since_us = MonoUs();
    c->incomplete = incomplete;
  }

  // Parses and runs buffered commands until input runs out or a command must
  // wait for pending writes.
  void ProcessInput(Connection* c) {
    if (c->closing || server_->draining_.load(std::memory_order_relaxed)) return;
    const ServerOptions& opt = server_->options_;
    const uint64_t hard = opt.limits.output_hard_bytes.load(std::memory_order_relaxed);
    while (c->in_pos < c->in.size() && !c->closing) {
      if (c->session.pending_writes >= opt.max_pipeline) break;
      if (c->Backlog() > kMaxOutputBacklog) break;
      // Over the hard output limit: Flush closes the client.
      if (hard > 0 && c->Backlog() > hard) break;
      if (c->proto == Connection::Proto::kUnknown) {
        c->proto = static_cast<uint8_t>(c->in[c->in_pos]) == native::kRequestMagic
                       ? Connection::Proto::kNative
                       : Connection::Proto::kResp;
        c->session.native = c->proto == Connection::Proto::kNative;
      }
      bool progressed = c->proto == Connection::Proto::kResp ? StepResp(c) : StepNative(c);
      if (!progressed) break;
    }
    if (!c->closing && c->session.pending_writes == 0 && c->Backlog() <= kMaxOutputBacklog &&
        c->in.size() - c->in_pos >= InputCap(c)) {
      // Nothing in flight will drain the buffer and the parser still wants
      // more: one command is larger than the input limit.
      ProtocolError(c, "Protocol error: command larger than the input limit of " +
                           std::to_string(InputCap(c)) + " bytes");
    }
    if (c->in_pos == c->in.size()) {
      c->in.clear();
      c->in_pos = 0;
    } else if (c->in_pos > (1 << 20)) {
      c->in.erase(0, c->in_pos);
      c->in_pos = 0;
    }
  }

  void ProtocolError(Connection* c, const std::string& msg) {
    LogClose(c, msg, "for protocol errors");
    server_->metrics()->protocol_errors.fetch_add(1, std::memory_order_relaxed);
    server_->metrics()->errors.fetch_add(1, std::memory_order_relaxed);
    if (c->proto == Connection::Proto::kNative) {
      native::EncodeResponse(&c->out, native::Code::kError, 0, "ERR Protocol error: " + msg);
    } else {
      resp::AppendError(&c->out, "ERR " + msg);
    }
    c->closing = true;
    c->in_pos = c->in.size();
  }

  bool StepResp(Connection* c) {
    const ServerOptions& opt = server_->options_;
    resp::ParseLimits limits;
    limits.max_bulk_bytes = std::max(opt.max_value_bytes, opt.max_key_bytes);
    limits.unauthenticated = !c->session.authed;
    size_t consumed = 0;
    std::string err;
    std::string_view view(c->in.data() + c->in_pos, c->in.size() - c->in_pos);
    resp::ParseResult r = resp::ParseCommand(view, limits, &args_, &consumed, &err);
    NoteIncomplete(c, r == resp::ParseResult::kNeedMore);
    if (r == resp::ParseResult::kNeedMore) return false;
    if (r == resp::ParseResult::kError) {
      if (c->session.pending_writes > 0) return false;  // reply after earlier writes
      ProtocolError(c, err);
      return false;
    }
    int64_t t0 = MonoUs();
    c->session.start_us = t0;
    const size_t backlog = c->Backlog();
    const uint64_t hard = opt.limits.output_hard_bytes.load(std::memory_order_relaxed);
    c->session.output_budget = hard == 0 ? SIZE_MAX : backlog >= hard ? 0 : hard - backlog;
    ExecStatus st = commands_.Execute(&c->session, args_, &c->out, this);
    TakeHeld(c);
    if (c->session.output_over_limit) c->closing = true;  // Flush closes it for the limit
    if (st == ExecStatus::kBlocked) return false;
    c->in_pos += consumed;
    if (st == ExecStatus::kSubmitted) {
      c->pending.push_back({PendingReply::Kind::kResp, 0});
    } else {
      RecordLatency(c->session, t0);
      AfterReply(c);
    }
    return true;
  }

  // An immediate reply's latency, under the class of its command's row.
  void RecordLatency(const Session& s, int64_t t0) {
    server_->metrics()->op_latency_us[static_cast<int>(s.op_class)].Record(
        static_cast<uint64_t>(MonoUs() - t0));
  }

  void AfterReply(Connection* c) {
    if (c->session.shutdown) {
      c->session.shutdown = false;
      FAHA_LOG_INFO("SHUTDOWN requested by client %llu", static_cast<unsigned long long>(c->id));
      server_->RequestShutdown();
    }
    if (c->session.close_after_reply) c->closing = true;
  }

  bool StepNative(Connection* c) {
    const ServerOptions& opt = server_->options_;
    native::Limits limits{opt.max_key_bytes, opt.max_value_bytes};
    if (!c->session.authed) {
      // As for RESP before AUTH: nothing bigger than a password.
      limits.max_key_bytes = std::min<uint32_t>(limits.max_key_bytes, resp::kPreauthBulkBytes);
      limits.max_value_bytes = std::min<uint32_t>(limits.max_value_bytes, resp::kPreauthBulkBytes);
    }
    native::Request req;
    size_t consumed = 0;
    std::string err;
    std::string_view view(c->in.data() + c->in_pos, c->in.size() - c->in_pos);
    native::DecodeResult r = native::DecodeRequest(view, limits, &req, &consumed, &err);
    NoteIncomplete(c, r == native::DecodeResult::kNeedMore);
    if (r == native::DecodeResult::kNeedMore) return false;
    if (r == native::DecodeResult::kError) {
      if (c->session.pending_writes > 0) return false;
      ProtocolError(c, err);
      return false;
    }
    Metrics* m = server_->metrics();
    const bool may_reply = c->session.pending_writes == 0;
    const bool is_write = req.op == native::Op::kPut || req.op == native::Op::kDelete;
    if (!is_write && req.op != native::Op::kCommand && !may_reply) return false;
    if (!c->session.authed && req.op != native::Op::kAuth && req.op != native::Op::kPing) {
      if (!may_reply) return false;
      native::EncodeResponse(&c->out, native::Code::kNoAuth, req.request_id,
                             "NOAUTH Authentication required.");
      m->errors.fetch_add(1, std::memory_order_relaxed);
      c->in_pos += consumed;
      return true;
    }
    int64_t t0 = MonoUs();
    c->session.start_us = t0;
    c->session.write_seq = req.request_id;
    if (is_write || req.op == native::Op::kGet) {
      // Reads too: only the primary holding its lease may answer them.
      std::string why = commands_.Refusal(c->session, is_write);
      if (!why.empty()) {
        if (!may_reply) return false;
        native::Code code = native::Code::kError;
        std::string body = why;
        if (why.rfind("MOVED ", 0) == 0) {
          code = native::Code::kMoved;
          body = why.substr(why.find(' ', 6) + 1);  // "MOVED 0 HOST:PORT" -> HOST:PORT
        } else if (why.rfind("TRYAGAIN", 0) == 0) {
          code = native::Code::kTryAgain;
        } else if (why.rfind("READONLY", 0) == 0) {
          code = native::Code::kReadOnly;
        }
        native::EncodeResponse(&c->out, code, req.request_id, body);
        m->errors.fetch_add(1, std::memory_order_relaxed);
        c->in_pos += consumed;
        return true;
      }
    }
    switch (req.op) {
      case native::Op::kClientId:
        if (req.arg == 0) {
          native::EncodeResponse(&c->out, native::Code::kError, req.request_id,
                                 "ERR a client id must be nonzero");
          m->errors.fetch_add(1, std::memory_order_relaxed);
        } else {
          c->session.client_id = static_cast<uint64_t>(req.arg);
          native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, {});
        }
        break;
      case native::Op::kPing:
        native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, "PONG");
        m->ops[static_cast<int>(OpClass::kOther)].fetch_add(1, std::memory_order_relaxed);
        break;
      case native::Op::kAuth:
        if (!server_->options_.requirepass.empty() && commands_.PasswordMatches(req.value)) {
          c->session.authed = true;
          native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, {});
        } else {
          m->auth_failures.fetch_add(1, std::memory_order_relaxed);
          m->errors.fetch_add(1, std::memory_order_relaxed);
          native::EncodeResponse(
              &c->out, native::Code::kError, req.request_id,
              server_->options_.requirepass.empty()
                  ? "ERR AUTH called without any password configured"
                  : "WRONGPASS invalid username-password pair or user is disabled.");
        }
        break;
      case native::Op::kGet: {
        m->ops[static_cast<int>(OpClass::kRead)].fetch_add(1, std::memory_order_relaxed);
        value_.clear();
        bool found;
        {
          Store::ReadGuard guard = server_->store_->LockForRead();
          found = server_->store_->Get(req.key, &value_);
        }
        if (found) {
          m->keyspace_hits.fetch_add(1, std::memory_order_relaxed);
          native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, value_);
        } else {
          m->keyspace_misses.fetch_add(1, std::memory_order_relaxed);
          native::EncodeResponse(&c->out, native::Code::kNotFound, req.request_id, {});
        }
        m->op_latency_us[static_cast<int>(OpClass::kRead)].Record(
            static_cast<uint64_t>(MonoUs() - t0));
        break;
      }
      case native::Op::kPut:
      case native::Op::kDelete: {
        WriteOp op;
        if (req.op == native::Op::kPut) {
          if (req.arg < 0 || req.arg > (int64_t{1} << 50)) {
            if (!may_reply) return false;
            native::EncodeResponse(&c->out, native::Code::kError, req.request_id,
                                   "ERR invalid time-to-live");
            m->errors.fetch_add(1, std::memory_order_relaxed);
            break;
          }
          op.kind = WriteOp::Kind::kSet;
          op.args = {std::string(req.key), std::string(req.value)};
          op.expire_at_ms = req.arg > 0 ? WallMs() + req.arg : 0;
        } else {
          op.kind = WriteOp::Kind::kDelete;
          op.args = {std::string(req.key)};
        }
        op.start_us = t0;
        op.client_id = c->session.client_id;
        op.client_seq = c->session.client_id != 0 ? req.request_id : 0;
        m->ops[static_cast<int>(OpClass::kWrite)].fetch_add(1, std::memory_order_relaxed);
        outbox_.push_back(Store::Write{std::move(op), this, c->id});
        c->session.pending_writes++;
        c->pending.push_back({req.op == native::Op::kPut ? PendingReply::Kind::kNativePut
                                                         : PendingReply::Kind::kNativeDelete,
                              req.request_id});
        break;
      }
      case native::Op::kCommand: {
        std::vector<std::string_view> args;
        if (!native::DecodeArgs(req.value, &args)) {
          if (!may_reply) return false;
          ProtocolError(c, "malformed argument list");
          return false;
        }
        std::string body;
        ExecStatus st = commands_.Execute(&c->session, args, &body, this);
        InlineHeld(&c->session, &body);  // the body goes into one response frame
        if (st == ExecStatus::kBlocked) return false;
        if (st == ExecStatus::kSubmitted) {
          c->pending.push_back({PendingReply::Kind::kNativeCommand, req.request_id});
        } else {
          native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, body);
          RecordLatency(c->session, t0);
          AfterReply(c);
        }
        break;
      }
    }
    c->in_pos += consumed;
    return true;
  }

  // Copies the values the last command held into *body, where they belong.
  static void InlineHeld(Session* s, std::string* body) {
    if (s->held.empty()) return;
    std::string full;
    full.reserve(body->size() + s->held_bytes);
    size_t at = 0;
    for (const Session::HeldValue& h : s->held) {
      full.append(*body, at, h.at - at);
      full.append(h.bytes);
      at = h.at;
    }
    full.append(*body, at);
    body->swap(full);
    s->held.clear();
    s->held_bytes = 0;
  }

  // Moves the values the last command held (Session::held) out of c->out's
  // tail into c->queued, in reply order: the bytes before each, then it.
  void TakeHeld(Connection* c) {
    Session& s = c->session;
    if (s.held.empty()) return;
    const size_t first = s.held.front().at;
    std::string rest = c->out.substr(first);
    const size_t unsent_from = c->queued.empty() ? c->out_pos : 0;
    if (first > unsent_from) {
      // The output so far becomes a chunk as it is (out_pos still holds).
      c->out.resize(first);
      QueueChunk(c, OutChunk{std::move(c->out), {}, nullptr});
    } else if (c->queued.empty()) {
      c->out_pos = 0;  // all of it was sent
    }
    c->out = std::string();
    size_t at = first;
    for (Session::HeldValue& h : s.held) {
      if (h.at > at) QueueChunk(c, OutChunk{rest.substr(at - first, h.at - at), {}, nullptr});
      QueueChunk(c, OutChunk{{}, h.bytes, std::move(h.hold)});
      at = h.at;
    }
    c->out.assign(rest, at - first);
    s.held.clear();
    s.held_bytes = 0;
  }

  void QueueChunk(Connection* c, OutChunk chunk) {
    c->queued_bytes += chunk.data().size();
    c->queued_memory += chunk.memory();
    c->queued.push_back(std::move(chunk));
  }

  // One writev of the unsent output; consumes what was written. As write(2).
  ssize_t WriteOut(Connection* c) {
    constexpr int kMaxIov = 64;
    iovec iov[kMaxIov];
    int n = 0;
    size_t skip = c->out_pos;
    for (const OutChunk& chunk : c->queued) {
      if (n == kMaxIov) break;
      std::string_view d = chunk.data();
      iov[n].iov_base = const_cast<char*>(d.data() + skip);
      iov[n].iov_len = d.size() - skip;
      skip = 0;
      n++;
    }
    if (n < kMaxIov && c->out.size() > skip) {
      iov[n].iov_base = c->out.data() + skip;
      iov[n].iov_len = c->out.size() - skip;
      n++;
    }
    ssize_t w = writev(c->fd, iov, n);
    if (w <= 0) return w;
    size_t left = static_cast<size_t>(w);
    while (left > 0 && !c->queued.empty()) {
      const size_t size = c->queued.front().data().size();
      const size_t rest = size - c->out_pos;
      if (left < rest) {
        c->out_pos += left;
        return w;
      }
      left -= rest;
      c->queued_bytes -= size;
      c->queued_memory -= c->queued.front().memory();
      c->queued.pop_front();
      c->out_pos = 0;
    }
    c->out_pos += left;
    return w;
  }

  void Flush(Connection* c) {
    if (c->session.output_over_limit) {
      CloseForLimit(c, "output");
      return;
    }
    while (c->Backlog() > 0) {
      ssize_t n = WriteOut(c);
      if (n > 0) {
        c->last_io_us = MonoUs();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      CloseConnection(c);  // peer gone
      return;
    }
    if (c->Backlog() == 0) {
      c->out.clear();
      c->out_pos = 0;
      // A big reply's buffer goes back rather than stay counted against the
      // client memory limit.
      if (c->out.capacity() > kKeepBufferBytes) std::string().swap(c->out);
      if (c->in_pos == c->in.size() && c->in.capacity() > kKeepBufferBytes) {
        std::string().swap(c->in);
        c->in_pos = 0;
      }
      if (c->closing && c->session.pending_writes == 0) {
        CloseConnection(c);
        return;
      }
    } else if (c->queued.empty() && c->out_pos > (1 << 20)) {
      c->out.erase(0, c->out_pos);
      c->out_pos = 0;
    }
    Account(c);
    if (OverOutputLimit(c, MonoUs())) {
      CloseForLimit(c, "output");
      return;
    }
    bool backlog = c->Backlog() > kMaxOutputBacklog;
    bool want_in = !c->closing && !backlog && c->in.size() - c->in_pos < InputCap(c);
    bool want_out = c->Backlog() > 0;
    UpdateEvents(c, want_in, want_out);
    if (!backlog && c->in_pos < c->in.size() && c->session.pending_writes == 0 && !c->closing &&
        !want_out) {
      // Output drained while input was waiting behind it.
      uint64_t id = c->id;
      size_t before = c->in_pos;
      ProcessInput(c);
      if (c->in_pos != before && conns_.count(id)) Flush(c);
    }
  }

  Server* server_;
  int index_;
  Commands commands_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  int listen_fd_ = -1;
  size_t next_thread_ = 0;
  // This thread's biggest client over 64 KiB, for the other threads'
  // eviction order (EnforceClientMemory).
  std::atomic<size_t> biggest_{0};
  int64_t last_sweep_us_ = 0;
  int64_t accept_paused_until_us_ = 0;  // listener out of epoll after EMFILE until then
  int64_t accept_logged_us_ = 0;
  uint64_t accept_pauses_ = 0;
  int64_t limit_logged_us_ = 0;  // clients closed for limits: one log line a second
  std::map<std::string, uint64_t> unlogged_closes_;  // kind -> closes not logged yet
  std::thread thread_;
  // Set by the thread itself before its loop runs; compared by Deliver(),
  // which sees it written because its writes were submitted after.
  pthread_t loop_thread_{};
  bool self_delivered_ = false;  // loop thread only
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::string_view> args_;
  std::string value_;
  std::vector<Store::Write> outbox_;  // writes parsed but not yet queued in the store
  std::unique_ptr<char[]> read_buf_{new char[kReadChunk]};

  Mutex mu_;
  std::vector<Completion> completions_ GUARDED_BY(mu_);
  std::vector<int> adopted_ GUARDED_BY(mu_);
  bool quit_ GUARDED_BY(mu_) = false;
  bool remove_listener_ GUARDED_BY(mu_) = false;
};

Server::Server(const ServerOptions& options, Store* store, Metrics* metrics)
    : options_(options), store_(store), metrics_(metrics) {}

Server::~Server() {
  Stop();
  if (shutdown_fd_ >= 0) close(shutdown_fd_);
}

Status Server::Start() {
  start_ms_ = WallMs();
  shutdown_fd_ = eventfd(0, EFD_CLOEXEC);
  if (shutdown_fd_ < 0) return Status::IOError(std::string("eventfd: ") + strerror(errno));
  auto listening = net::ListenTcp(options_.bind, options_.port, 511, &bound_port_);
  if (!listening.ok()) return listening.status().WithPrefix("--bind/--port: ");
  listen_fd_ = *listening;
  int n = std::max(1, options_.io_threads);
  for (int i = 0; i < n; i++) {
    threads_.push_back(std::make_unique<IoThread>(this, i));
    FAHA_RETURN_IF_ERROR(threads_.back()->Init());
  }
  threads_[0]->AddListener(listen_fd_);
  for (auto& t : threads_) t->Run();
  return Status::OK();
}

Status Server::AdoptConnection(int fd) {
  if (threads_.empty() || draining_.load()) return Status::Unavailable("server is stopping");
  if (clients_.load() >= options_.max_clients) {
    metrics_->connections_rejected.fetch_add(1, std::memory_order_relaxed);
    return Status::Busy("ERR max number of clients reached");
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::IOError(std::string("fcntl: ") + strerror(errno));
  }
  clients_.fetch_add(1);
  threads_[next_adopt_.fetch_add(1) % threads_.size()]->Adopt(fd);
  return Status::OK();
}

void Server::Wait() {
  uint64_t v;
  while (read(shutdown_fd_, &v, sizeof(v)) < 0 && errno == EINTR) {
  }
}

void Server::RequestShutdown() {
  uint64_t one = 1;
  ssize_t n = write(shutdown_fd_, &one, sizeof(one));
  (void)n;
}

void Server::Stop() {
  if (threads_.empty()) return;
  threads_[0]->RemoveListener();
  // No new commands from here on, so the store's queue drains even under load.
  draining_.store(true);
  // Every write already submitted becomes durable and its reply is delivered.
  store_->Stop();
  for (auto& t : threads_) t->Quit();
  for (auto& t : threads_) t->Join();
  threads_.clear();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace faha
