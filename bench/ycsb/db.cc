#include "bench/ycsb/db.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/net.h"
#include "common/resp.h"
#include "faha/client.h"

namespace faha::ycsb {

namespace {

// libfaha: native protocol over TCP or RDMA.
class NativeDB final : public DB {
 public:
  explicit NativeDB(std::unique_ptr<Client> c) : c_(std::move(c)) {}
  Status Read(const std::string& key, std::string* value) override { return c_->Get(key, value); }
  Status Update(const std::string& key, std::string_view value) override {
    return c_->Put(key, value);
  }
  Status Insert(const std::string& key, std::string_view value) override {
    return c_->Put(key, value);
  }

 private:
  std::unique_ptr<Client> c_;
};

// One blocking RESP connection.
class RespConn {
 public:
  ~RespConn() {
    if (fd_ >= 0) close(fd_);
  }
  Status Connect(const std::string& host, int port, int timeout_ms) {
    timeout_ms_ = timeout_ms;
    net::ConnectOptions o;
    o.timeout_ms = timeout_ms;
    o.nonblocking = false;
    auto fd = net::ConnectTcp(host, port, o);
    if (!fd.ok()) return fd.status();
    fd_ = *fd;
    return Status::OK();
  }
  // Sends the commands in one write, then reads one reply per command.
  using Command = std::vector<std::string_view>;
  Status Call(const std::vector<Command>& cmds, std::vector<resp::Reply>* replies) {
    if (!broken_.ok()) return broken_;
    Status s = CallOnce(cmds, replies);
    // A reply may still be on its way: the connection is out of step for good.
    if (!s.ok()) broken_ = Status::Unavailable("connection unusable after: " + s.ToString());
    return s;
  }

 private:
  Status CallOnce(const std::vector<Command>& cmds, std::vector<resp::Reply>* replies) {
    out_.clear();
    for (const auto& cmd : cmds) {
      resp::AppendArray(&out_, static_cast<int64_t>(cmd.size()));
      for (std::string_view a : cmd) resp::AppendBulk(&out_, a);
    }
    size_t off = 0;
    while (off < out_.size()) {
      ssize_t n = send(fd_, out_.data() + off, out_.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::Unavailable(std::string("send: ") + strerror(errno));
      off += static_cast<size_t>(n);
    }
    replies->clear();
    for (size_t i = 0; i < cmds.size(); i++) {
      resp::Reply r;
      FAHA_RETURN_IF_ERROR(ReadReply(&r));
      replies->push_back(std::move(r));
    }
    return Status::OK();
  }

  Status Fill() {
    in_.erase(0, pos_);
    pos_ = 0;
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms_);
    if (rc == 0) return Status::Timeout("no reply within " + std::to_string(timeout_ms_) + " ms");
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n == 0) return Status::Unavailable("the server closed the connection");
    if (n < 0) return Status::Unavailable(std::string("recv: ") + strerror(errno));
    in_.append(buf, static_cast<size_t>(n));
    return Status::OK();
  }
  // One reply, by the project's RESP reply parser.
  Status ReadReply(resp::Reply* r) {
    while (true) {
      size_t used = 0;
      std::string error;
      switch (resp::ParseReply(std::string_view(in_).substr(pos_), r, &used, &error)) {
        case resp::ParseResult::kOk:
          pos_ += used;
          return Status::OK();
        case resp::ParseResult::kError:
          return Status::Protocol("bad reply: " + error);
        case resp::ParseResult::kNeedMore:
          FAHA_RETURN_IF_ERROR(Fill());
      }
    }
  }

  int fd_ = -1;
  int timeout_ms_ = 10000;
  Status broken_;
  std::string in_, out_;
  size_t pos_ = 0;
};

// How a RESP write is made durable before it counts as done.
struct RespDurability {
  int64_t waitaof_local = 0, waitaof_replicas = 0;  // WAITAOF (Redis >= 7.2) if either > 0
  int64_t wait_replicas = 0;                        // else WAIT (any Redis) if > 0
  int timeout_ms = 10000;
};

class RespDB final : public DB {
 public:
  RespDB(std::unique_ptr<RespConn> c, const RespDurability& d) : c_(std::move(c)), d_(d) {
    const std::string tmo = std::to_string(d_.timeout_ms);
    if (d_.waitaof_local > 0 || d_.waitaof_replicas > 0) {
      wait_ = {"WAITAOF", std::to_string(d_.waitaof_local), std::to_string(d_.waitaof_replicas),
               tmo};
    } else if (d_.wait_replicas > 0) {
      wait_ = {"WAIT", std::to_string(d_.wait_replicas), tmo};
    }
  }
  Status Read(const std::string& key, std::string* value) override {
    FAHA_RETURN_IF_ERROR(c_->Call({{"GET", key}}, &r_));
    using T = resp::Reply::Type;
    if (r_[0].type == T::kError) return Status::ServerError(r_[0].str);
    if (r_[0].type == T::kNil) return Status::NotFound(key);
    if (r_[0].type != T::kBulk) return Status::Protocol("GET answered with " + r_[0].Render());
    *value = std::move(r_[0].str);
    return Status::OK();
  }
  Status Update(const std::string& key, std::string_view value) override { return Set(key, value); }
  Status Insert(const std::string& key, std::string_view value) override { return Set(key, value); }

 private:
  Status Set(const std::string& key, std::string_view value) {
    std::vector<RespConn::Command> cmds = {{"SET", key, value}};
    if (!wait_.empty()) cmds.emplace_back(wait_.begin(), wait_.end());
    FAHA_RETURN_IF_ERROR(c_->Call(cmds, &r_));
    using T = resp::Reply::Type;
    if (r_[0].type == T::kError) return Status::ServerError(r_[0].str);
    if (r_[0].type != T::kSimple) return Status::Protocol("SET answered with " + r_[0].Render());
    if (wait_.empty()) return Status::OK();
    const resp::Reply& w = r_[1];
    if (w.type == T::kError) return Status::ServerError(wait_[0] + ": " + w.str);
    const bool reached = wait_[0] == "WAIT" ? w.type == T::kInt && w.integer >= d_.wait_replicas
                                            : w.type == T::kArray && w.elements.size() == 2 &&
                                                  w.elements[0].integer >= d_.waitaof_local &&
                                                  w.elements[1].integer >= d_.waitaof_replicas;
    if (!reached) {
      return Status::ServerError(wait_[0] + " did not reach the required copies within " +
                                 std::to_string(d_.timeout_ms) + " ms");
    }
    return Status::OK();
  }

  std::unique_ptr<RespConn> c_;
  RespDurability d_;
  std::vector<std::string> wait_;  // WAIT/WAITAOF after each SET, or empty
  std::vector<resp::Reply> r_;
};

}  // namespace

StatusOr<DBFactory> MakeDBFactory(const Properties& props) {
  const std::string target = props.Get("target", "");
  if (target.empty()) {
    return Status::InvalidArgument(
        "no target: give -p target=native://HOST:PORT, rdma://HOST:PORT or resp://HOST:PORT");
  }
  auto timeout = props.GetInt("timeout.ms", 10000);
  if (!timeout.ok()) return timeout.status();
  const std::string password = props.Get("password", "");
  if (target.rfind("resp://", 0) == 0) {
    std::string host;
    int port = 0;
    if (target.find(',') != std::string::npos ||
        !net::ParseHostPort(target.substr(7), &host, &port).ok()) {
      return Status::InvalidArgument("resp target must be resp://HOST:PORT");
    }
    RespDurability d;
    for (auto [name, out] : {std::pair{"redis.waitaof.local", &d.waitaof_local},
                             std::pair{"redis.waitaof.replicas", &d.waitaof_replicas},
                             std::pair{"redis.wait.replicas", &d.wait_replicas}}) {
      auto v = props.GetInt(name, 0);
      if (!v.ok()) return v.status();
      if (*v < 0) return Status::InvalidArgument(std::string("property ") + name + " must be >= 0");
      *out = *v;
    }
    if (d.waitaof_local > 1) return Status::InvalidArgument("redis.waitaof.local is 0 or 1");
    d.timeout_ms = static_cast<int>(*timeout);
    return DBFactory([host, port, d, password]() -> StatusOr<std::unique_ptr<DB>> {
      auto c = std::make_unique<RespConn>();
      // WAIT/WAITAOF give up after timeout.ms themselves; the socket waits a second more.
      FAHA_RETURN_IF_ERROR(c->Connect(host, port, d.timeout_ms + 1000));
      if (!password.empty()) {
        std::vector<resp::Reply> rep;
        FAHA_RETURN_IF_ERROR(c->Call({{"AUTH", password}}, &rep));
        if (rep[0].type == resp::Reply::Type::kError) return Status::Auth(rep[0].str);
      }
      return std::unique_ptr<DB>(new RespDB(std::move(c), d));
    });
  }
  const bool rdma = target.rfind("rdma://", 0) == 0;
  if (!rdma && target.rfind("native://", 0) != 0) {
    return Status::InvalidArgument("target " + target +
                                   " has no known scheme (native://, rdma://, resp://)");
  }
  ClientOptions o;
  o.address = target;
  o.password = password;
  o.op_timeout_ms = static_cast<int>(*timeout);
  o.follow_primary =
      target.find(',') != std::string::npos || props.Get("faha.follow_primary", "false") == "true";
  return DBFactory([o]() -> StatusOr<std::unique_ptr<DB>> {
    auto c = Client::Connect(o);
    if (!c.ok()) return c.status();
    return std::unique_ptr<DB>(new NativeDB(std::move(*c)));
  });
}

}  // namespace faha::ycsb
