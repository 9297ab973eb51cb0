#include "server/net/rdma_gateway.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/logging.h"
#include "common/mutex.h"
#include "nvm/log_device.h"
#include "server/net/server.h"

namespace faha {

struct RdmaGateway::Conn {
  std::unique_ptr<rdma::VerbsStream> stream;
  int fd = -1;  // our end of the socketpair; the I/O thread owns the other
  std::atomic<bool> done_in{false}, done_out{false};
  std::atomic<int> pumps{2};  // the last pump to end closes the stream
  std::atomic<bool>* stop = nullptr;
  std::thread in, out;
  // Called by each pump after its last use of the stream. Closing a verbs
  // connection can take the kernel hundreds of milliseconds (BackupService::
  // CloseChannel); it happens here, on the pump's thread, before the connection counts as done, so
  // the accepting thread, which reaps done connections, never waits on it.
  void PumpEnded() {
    if (pumps.fetch_sub(1) == 1) stream.reset();
  }
  ~Conn() {
    if (in.joinable()) in.join();
    if (out.joinable()) out.join();
    if (fd >= 0) close(fd);
  }
};

RdmaGateway::RdmaGateway(Server* server, std::string bind, int port)
    : server_(server), bind_(std::move(bind)), port_(port) {}

RdmaGateway::~RdmaGateway() { Stop(); }

Status RdmaGateway::Listen() {
  std::string why;
  if (rdma::ProbeVerbsDevices(&why).empty()) return Status::Unavailable(why);
  rdma::VerbsOptions o;  // no keepalive: a client may idle for hours
  auto l = rdma::VerbsListen(bind_, port_, o);
  if (!l.ok()) return l.status();
  listener_ = std::move(*l);
  port_ = listener_->port();
  return Status::OK();
}

void RdmaGateway::Run() {
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

void RdmaGateway::Stop() {
  if (stop_.exchange(true)) return;
  if (accept_thread_.joinable()) accept_thread_.join();
  MutexLock l(&mu_);
  for (auto& c : conns_) {
    if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
  }
  conns_.clear();  // joins the pumps
  listener_.reset();
}

void RdmaGateway::AcceptLoop() {
  while (!stop_.load()) {
    {
      // Reap connections whose pumps have both ended.
      MutexLock l(&mu_);
      conns_.remove_if([](const std::unique_ptr<Conn>& c) { return c->done_in && c->done_out; });
    }
    auto s = listener_->Accept(200, [](std::string_view data) {
      rdma::ConnectKind kind;
      std::string_view rest;
      if (!rdma::DecodeConnectData(data, &kind, &rest) || kind != rdma::ConnectKind::kClient) {
        return Status::Protocol("this is a client port; replication has its own port");
      }
      return Status::OK();
    });
    if (!s.ok()) {
      if (s.status().code() != Status::Code::kNotFound) {
        FAHA_LOG_WARN("rdma client port: %s", s.status().ToString().c_str());
      }
      continue;
    }
    // What this client may write remotely: its receive ring and credit word,
    // never log memory (the verbs layer's guard refuses that; counted here).
    Metrics* m = server_->metrics();
    for (const auto& r : (*s)->RemoteRegions()) {
      m->rdma_regions_exposed_total.fetch_add(1);
      if (nvm::OverlapsLogMapping(reinterpret_cast<const void*>(r.addr), r.bytes)) {
        m->rdma_log_regions_exposed_total.fetch_add(1);
        FAHA_LOG_ERROR("rdma client port: %s region overlaps the log", r.what.c_str());
      }
    }
    m->rdma_connections_total.fetch_add(1);
    int sv[2];
    auto c = std::make_unique<Conn>();
    c->stream = std::move(*s);
    c->stop = &stop_;
    Conn* raw = c.get();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      const std::string why = std::string("socketpair: ") + strerror(errno);
      FAHA_LOG_WARN("rdma client port: %s", why.c_str());
      Refuse(std::move(c), "-ERR " + why + "\r\n");
      continue;
    }
    Status adopted = server_->AdoptConnection(sv[0]);
    if (!adopted.ok()) {
      // The refusal (max clients) is written to sv[0]; relay it, then close.
      close(sv[0]);
      close(sv[1]);
      Refuse(std::move(c), "-" + adopted.message() + "\r\n");
      continue;
    }
    c->fd = sv[1];
    c->in = std::thread([raw] { PumpIn(raw); });
    c->out = std::thread([raw] { PumpOut(raw); });
    accepted_.fetch_add(1);
    MutexLock l(&mu_);
    conns_.push_back(std::move(c));
  }
}

// A refused client hears why, as a courtesy, and its stream is closed, on a
// thread of its own: neither may hold up the accepting thread.
void RdmaGateway::Refuse(std::unique_ptr<Conn> c, std::string why) {
  Conn* raw = c.get();
  raw->pumps.store(1);
  raw->in = std::thread([raw, why = std::move(why)] {
    raw->stream->Write(why, 200).IgnoreError();
    raw->PumpEnded();
    raw->done_out.store(true);
    raw->done_in.store(true);
  });
  MutexLock l(&mu_);
  conns_.push_back(std::move(c));
}

// Verbs stream -> socket (requests).
void RdmaGateway::PumpIn(Conn* c) {
  std::string buf;
  while (!c->stop->load() && !c->done_out.load()) {
    buf.clear();
    Status s = c->stream->Read(&buf, 200);
    if (s.code() == Status::Code::kTimeout) continue;
    if (!s.ok()) break;
    size_t off = 0;
    while (off < buf.size()) {
      ssize_t n = send(c->fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) goto done;
      off += static_cast<size_t>(n);
    }
  }
done:
  shutdown(c->fd, SHUT_WR);  // the server sees the client leave
  c->PumpEnded();
  c->done_in.store(true);
}

// Socket -> verbs stream (replies).
void RdmaGateway::PumpOut(Conn* c) {
  char buf[64 << 10];
  while (!c->stop->load()) {
    pollfd p{c->fd, POLLIN, 0};
    int rc = poll(&p, 1, 200);
    if (rc == 0 || (rc < 0 && errno == EINTR)) {
      if (c->done_in.load()) break;
      continue;
    }
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server closed the connection
    if (!c->stream->Write(std::string_view(buf, static_cast<size_t>(n)), 5000).ok()) break;
  }
  c->PumpEnded();
  c->done_out.store(true);
}

}  // namespace faha
