#include "server/net/io_thread.h"

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

namespace faha {

IoThread::~IoThread() {
  for (auto& [id, c] : conns_) close(c->fd);
  if (epfd_ >= 0) close(epfd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status IoThread::Init() {
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

void IoThread::AddListener(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerId;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  listen_fd_ = fd;
}

void IoThread::RemoveListener() {
  MutexLock l(&mu_);
  remove_listener_ = true;
  Wake();
}

void IoThread::Run() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), ("faha-io" + std::to_string(index_)).c_str());
    loop_thread_ = pthread_self();
    Loop();
  });
}

void IoThread::Quit() {
  {
    MutexLock l(&mu_);
    quit_ = true;
  }
  Wake();
}

void IoThread::Join() {
  if (thread_.joinable()) thread_.join();
}

void IoThread::Adopt(int fd) {
  {
    MutexLock l(&mu_);
    adopted_.push_back(fd);
  }
  Wake();
}

void IoThread::Deliver(std::vector<Completion>* completions) {
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

void IoThread::Wake() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

void IoThread::Loop() {
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
        // One read takes the whole counter of an eventfd (not a semaphore
        // one): a second would only fail with EAGAIN, a system call per wake.
        uint64_t v;
        if (read(wake_fd_, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EINTR) {
          FAHA_LOG_ERROR("reading the wake-up eventfd: %s", strerror(errno));
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

void IoThread::Sweep(int64_t now) {
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

bool IoThread::OverOutputLimit(Connection* c, int64_t now) {
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

void IoThread::CloseForLimit(Connection* c, const char* why) {
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

void IoThread::LogClose(Connection* c, const std::string& what, const char* kind) {
  const int64_t now = MonoUs();
  if (now - limit_logged_us_ >= 1000000 && unlogged_closes_.empty()) {
    FAHA_LOG_WARN("closing client %llu: %s", static_cast<unsigned long long>(c->id), what.c_str());
    limit_logged_us_ = now;
  } else {
    unlogged_closes_[kind]++;
  }
}

void IoThread::FlushCloseLog(int64_t now) {
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

void IoThread::Account(Connection* c) {
  const size_t now =
      c->in.capacity() + c->out.capacity() + c->queued_memory + c->session.multi_bytes;
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

void IoThread::EnforceClientMemory() {
  const uint64_t limit = server_->options_.limits.maxmemory_clients.load(std::memory_order_relaxed);
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

bool IoThread::HandleWake() {
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

void IoThread::Accept() {
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

void IoThread::AddConnection(int fd) {
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

void IoThread::CloseConnection(Connection* c) {
  server_->metrics()->client_memory_bytes.fetch_sub(static_cast<int64_t>(c->accounted),
                                                    std::memory_order_relaxed);
  epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  server_->clients_.fetch_sub(1);
  server_->metrics()->connections_current.fetch_sub(1, std::memory_order_relaxed);
  conns_.erase(c->id);  // pending completions for it are dropped on arrival
}

void IoThread::UpdateEvents(Connection* c, bool want_in, bool want_out) {
  if (want_in == c->epollin && want_out == c->epollout) return;
  epoll_event ev{};
  ev.events = (want_in ? uint32_t{EPOLLIN} : 0u) | (want_out ? uint32_t{EPOLLOUT} : 0u);
  ev.data.u64 = c->id;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd, &ev);
  c->epollin = want_in;
  c->epollout = want_out;
}

}  // namespace faha
