// LoopbackTransport (loopback_transport.h): in-memory pipes under StreamChannel.
#include "rdma/loopback_transport.h"

#include <chrono>
#include <deque>
#include <map>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "rdma/byte_stream.h"
#include "rdma/byte_stream_base.h"

namespace faha::rdma {

namespace {

// One direction of a connection. Bounded, so a reader that stops reading
// holds up its writer as a TCP window would; 1 MiB, less than a replication
// window of the unit tests' batches, so that a frame is sent in part.
struct Pipe {
  static constexpr size_t kCapacity = 1 << 20;
  Mutex mu;
  CondVar cv;
  std::string bytes GUARDED_BY(mu);
  bool closed GUARDED_BY(mu) = false;
  bool stalled GUARDED_BY(mu) = false;  // holds what was written: the reader gets nothing

  void Close() {
    MutexLock l(&mu);
    closed = true;
    cv.SignalAll();
  }
  void Stall(bool on) {
    MutexLock l(&mu);
    stalled = on;
    cv.SignalAll();
  }
};

class LoopbackStream final : public ByteStream {
 public:
  LoopbackStream(std::shared_ptr<Pipe> in, std::shared_ptr<Pipe> out, std::string peer)
      : in_(std::move(in)), out_(std::move(out)), peer_(std::move(peer)) {}
  ~LoopbackStream() override { Shutdown(); }

  Status Write(std::string_view bytes, int timeout_ms) override {
    MutexLock l(&out_->mu);
    while (!bytes.empty()) {
      const int64_t deadline = MonoMs() + timeout_ms;
      while (!out_->closed && out_->bytes.size() >= Pipe::kCapacity) {
        const int64_t left = deadline - MonoMs();
        if (left <= 0) return Status::Timeout("send to " + peer_ + ": the peer took nothing");
        out_->cv.WaitFor(&out_->mu, std::chrono::milliseconds(left));
      }
      if (out_->closed) return Status::Unavailable("send to " + peer_ + ": connection closed");
      const size_t n = std::min(bytes.size(), Pipe::kCapacity - out_->bytes.size());
      out_->bytes.append(bytes.substr(0, n));
      bytes.remove_prefix(n);
      out_->cv.SignalAll();
    }
    return Status::OK();
  }

  // As much as the pipe has room for, as a socket's send buffer takes it.
  bool WritesWithoutWaiting() const override { return true; }
  StatusOr<size_t> TryWrite(std::string_view bytes) override {
    MutexLock l(&out_->mu);
    if (out_->closed) return Status::Unavailable("send to " + peer_ + ": connection closed");
    const size_t n = std::min(bytes.size(), Pipe::kCapacity - out_->bytes.size());
    out_->bytes.append(bytes.substr(0, n));
    if (n > 0) out_->cv.SignalAll();
    return n;
  }

  Status Read(ByteBuffer* in, int timeout_ms) override {
    MutexLock l(&in_->mu);
    const int64_t deadline = MonoMs() + timeout_ms;
    while ((in_->bytes.empty() || in_->stalled) && !in_->closed) {
      const int64_t left = deadline - MonoMs();
      if (left <= 0) return Status::Timeout("recv from " + peer_ + ": nothing arrived");
      in_->cv.WaitFor(&in_->mu, std::chrono::milliseconds(left));
    }
    if (in_->bytes.empty() || in_->stalled) {
      return Status::Unavailable("connection closed by " + peer_);
    }
    in->append(in_->bytes);
    in_->bytes.clear();
    in_->cv.SignalAll();
    return Status::OK();
  }

  const std::string& peer() const override { return peer_; }
  void Shutdown() override {
    in_->Close();
    out_->Close();
  }

 private:
  std::shared_ptr<Pipe> in_, out_;
  std::string peer_;
};

}  // namespace

class LoopbackNetwork {
 public:
  // A listener's queue of connections not yet accepted.
  struct Backlog {
    Mutex mu;
    CondVar cv;
    std::deque<std::unique_ptr<ByteStream>> pending GUARDED_BY(mu);
  };

  std::shared_ptr<Backlog> Listen(const std::string& bind, int* port) {
    MutexLock l(&mu_);
    if (*port == 0) *port = next_port_++;
    const std::string address = bind + ":" + std::to_string(*port);
    if (listeners_.count(address)) return nullptr;
    auto b = std::make_shared<Backlog>();
    listeners_[address] = b;
    return b;
  }
  void Unlisten(const std::string& address) {
    MutexLock l(&mu_);
    listeners_.erase(address);
  }
  // The connector's end of a new connection to `address`, or null if nothing
  // listens there; the acceptor's end waits in the listener's backlog.
  std::unique_ptr<ByteStream> Connect(const std::string& address) {
    MutexLock l(&mu_);
    auto it = listeners_.find(address);
    if (it == listeners_.end()) return nullptr;
    auto up = std::make_shared<Pipe>(), down = std::make_shared<Pipe>();
    up->Stall(stalled_);
    down->Stall(stalled_);
    const std::string client = "loopback-peer-" + std::to_string(next_client_++);
    pipes_.push_back(up);
    pipes_.push_back(down);
    {
      MutexLock bl(&it->second->mu);
      it->second->pending.push_back(std::make_unique<LoopbackStream>(up, down, client));
      it->second->cv.SignalAll();
    }
    return std::make_unique<LoopbackStream>(down, up, address);
  }
  void CutAll() {
    MutexLock l(&mu_);
    for (auto& weak : pipes_) {
      if (auto p = weak.lock()) p->Close();
    }
    pipes_.clear();
  }
  void StallAll(bool on) {
    MutexLock l(&mu_);
    stalled_ = on;
    for (auto& weak : pipes_) {
      if (auto p = weak.lock()) p->Stall(on);
    }
  }

 private:
  Mutex mu_;
  int next_port_ GUARDED_BY(mu_) = 1;
  uint64_t next_client_ GUARDED_BY(mu_) = 1;
  std::map<std::string, std::shared_ptr<Backlog>> listeners_ GUARDED_BY(mu_);
  std::vector<std::weak_ptr<Pipe>> pipes_ GUARDED_BY(mu_);
  bool stalled_ GUARDED_BY(mu_) = false;
};

namespace {

class LoopbackListener final : public Listener {
 public:
  LoopbackListener(std::shared_ptr<LoopbackNetwork> net, std::string address, int port,
                   std::shared_ptr<LoopbackNetwork::Backlog> backlog,
                   const TransportOptions& options)
      : net_(std::move(net)),
        address_(std::move(address)),
        port_(port),
        backlog_(std::move(backlog)),
        options_(options) {}
  ~LoopbackListener() override { net_->Unlisten(address_); }

  StatusOr<std::unique_ptr<Channel>> AcceptPending(int timeout_ms) override {
    MutexLock l(&backlog_->mu);
    const int64_t deadline = MonoMs() + timeout_ms;
    while (backlog_->pending.empty()) {
      const int64_t left = deadline - MonoMs();
      if (left <= 0) return Status::NotFound("no peer connected");
      backlog_->cv.WaitFor(&backlog_->mu, std::chrono::milliseconds(left));
    }
    std::unique_ptr<ByteStream> s = std::move(backlog_->pending.front());
    backlog_->pending.pop_front();
    return std::unique_ptr<Channel>(std::make_unique<StreamChannel>(std::move(s), options_));
  }
  int port() const override { return port_; }

 private:
  std::shared_ptr<LoopbackNetwork> net_;
  std::string address_;
  int port_;
  std::shared_ptr<LoopbackNetwork::Backlog> backlog_;
  TransportOptions options_;
};

class LoopbackTransport final : public Transport {
 public:
  LoopbackTransport(std::shared_ptr<LoopbackNetwork> net, const TransportOptions& options)
      : net_(std::move(net)), options_(options) {}
  std::string name() const override { return "loopback"; }

  StatusOr<std::unique_ptr<Channel>> Connect(const std::string& address, int) override {
    std::unique_ptr<ByteStream> s = net_->Connect(address);
    if (!s) return Status::Unavailable("connect to " + address + ": Connection refused");
    auto ch = std::make_unique<StreamChannel>(std::move(s), options_);
    FAHA_RETURN_IF_ERROR(ch->AuthenticateToPeer());
    return std::unique_ptr<Channel>(std::move(ch));
  }
  StatusOr<std::unique_ptr<Listener>> Listen(const std::string& bind, int port) override {
    auto backlog = net_->Listen(bind, &port);
    if (!backlog) {
      return Status::IOError("listen " + bind + ":" + std::to_string(port) +
                             ": Address already in use");
    }
    return std::unique_ptr<Listener>(std::make_unique<LoopbackListener>(
        net_, bind + ":" + std::to_string(port), port, std::move(backlog), options_));
  }

 private:
  std::shared_ptr<LoopbackNetwork> net_;
  TransportOptions options_;
};

}  // namespace

std::shared_ptr<LoopbackNetwork> MakeLoopbackNetwork() {
  return std::make_shared<LoopbackNetwork>();
}

std::unique_ptr<Transport> MakeLoopbackTransport(std::shared_ptr<LoopbackNetwork> network,
                                                 const TransportOptions& options) {
  return std::make_unique<LoopbackTransport>(std::move(network), options);
}

void CutLoopbackConnections(LoopbackNetwork* network) { network->CutAll(); }

void StallLoopbackConnections(LoopbackNetwork* network, bool stalled) {
  network->StallAll(stalled);
}

}  // namespace faha::rdma
