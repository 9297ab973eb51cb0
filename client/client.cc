#include "faha/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>
#include <thread>

#include "common/native_protocol.h"
#include "common/net.h"
#include "common/resp.h"
#include "rdma/verbs.h"

namespace faha {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status ParseAddress(std::string address, std::string* host, int* port, bool* rdma = nullptr) {
  const std::string kScheme = "native://", kRdma = "rdma://";
  if (rdma) *rdma = false;
  if (address.rfind(kScheme, 0) == 0) {
    address = address.substr(kScheme.size());
  } else if (address.rfind(kRdma, 0) == 0) {
    address = address.substr(kRdma.size());
    if (rdma) *rdma = true;
  }
  if (address.find("://") != std::string::npos) {
    return Status::InvalidArgument("unsupported address scheme in '" + address +
                                   "' (use native://HOST:PORT for TCP or rdma://HOST:PORT)");
  }
  FAHA_RETURN_IF_ERROR(net::ParseHostPort(address, host, port));
  if (host->empty()) *host = "127.0.0.1";
  return Status::OK();
}

Reply FromResp(const resp::Reply& r) {
  Reply out;
  out.type = static_cast<Reply::Type>(static_cast<int>(r.type));
  out.str = r.str;
  out.integer = r.integer;
  for (const auto& e : r.elements) out.elements.push_back(FromResp(e));
  return out;
}

resp::Reply ToResp(const Reply& r) {
  resp::Reply out;
  out.type = static_cast<resp::Reply::Type>(static_cast<int>(r.type));
  out.str = r.str;
  out.integer = r.integer;
  for (const auto& e : r.elements) out.elements.push_back(ToResp(e));
  return out;
}

// A response's code as a Status; the body is only the message.
Status ErrorStatus(native::Code code, std::string_view body) {
  switch (code) {
    case native::Code::kNoAuth:
      return Status::Auth(body);
    case native::Code::kReadOnly:
      return Status::ReadOnly(body);
    case native::Code::kBusy:
      return Status::Busy(body);
    default:
      return Status::ServerError(body);
  }
}

// A COMMAND refused or failed with a code of its own (MOVED, TRYAGAIN,
// READONLY, NOREPLICAS, IOERR) is still a Redis error reply to the caller of
// Command(); MOVED's body is the address alone, the others carry their text.
bool CommandErrorReply(const native::Response& r, Reply* reply) {
  switch (r.code) {
    case native::Code::kMoved:
      reply->type = Reply::Type::kError;
      reply->str = "MOVED 0 " + std::string(r.body);
      return true;
    case native::Code::kTryAgain:
    case native::Code::kReadOnly:
    case native::Code::kNoReplicas:
    case native::Code::kIoError:
      reply->type = Reply::Type::kError;
      reply->str = std::string(r.body);
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string Reply::ToString() const { return ToResp(*this).Render(); }

struct Client::Impl {
  ClientOptions options;
  std::vector<std::string> seeds;  // follow_primary: the listed nodes
  size_t seed_next = 0;
  std::string connected;  // address of the current connection
  std::string moved_to;   // a MOVED reply named the primary
  std::string retry_why;  // why requests wait for a retry
  uint64_t stamp = 0;     // commit stamp of the reply being delivered
  uint64_t retries = 0, reconnects = 0;
  int fd = -1;
  std::unique_ptr<rdma::VerbsStream> verbs;  // rdma:// connections
  Status broken;                             // non-OK once the connection failed
  uint64_t next_id = 1;
  std::string out;
  std::string in;
  size_t in_pos = 0;
  struct Waiter {
    uint64_t id;
    std::function<void(const Status&, const native::Response&)> done;
    std::string request;  // follow_primary: the encoded request, to re-send
  };
  std::deque<Waiter> waiters;
  std::deque<Waiter> retry;  // follow_primary: to re-send on the next connection

  ~Impl() {
    if (fd >= 0) close(fd);
  }

  Status Dial() { return DialTo(options.address, options.connect_timeout_ms); }

  Status DialTo(const std::string& address, int timeout_ms) {
    if (fd >= 0) close(fd);
    fd = -1;
    verbs.reset();
    in.clear();
    in_pos = 0;
    connected = address;
    std::string host;
    int port = 0;
    bool use_rdma = false;
    FAHA_RETURN_IF_ERROR(ParseAddress(address, &host, &port, &use_rdma));
    if (use_rdma) {
      rdma::VerbsOptions vo;  // no keepalive: an idle client reads nothing
      auto s = rdma::VerbsConnect(host, port,
                                  rdma::EncodeConnectData(rdma::ConnectKind::kClient, ""), vo,
                                  // rdma_cm setup takes longer than a TCP connect
                                  std::max(timeout_ms, options.connect_timeout_ms));
      if (!s.ok()) return s.status().WithPrefix("connect to " + connected + ": ");
      verbs = std::move(*s);
      return Status::OK();
    }
    net::ConnectOptions co;
    co.timeout_ms = timeout_ms;
    auto s = net::ConnectTcp(host, port, co);
    if (!s.ok()) return s.status();
    fd = *s;
    return Status::OK();
  }

  void Enqueue(native::Op op, std::string_view key, std::string_view value, int64_t arg,
               std::function<void(const Status&, const native::Response&)> done) {
    uint64_t id = next_id++;
    size_t at = out.size();
    native::EncodeRequest(&out, op, id, key, value, arg);
    waiters.push_back(
        {id, std::move(done), options.follow_primary ? out.substr(at) : std::string()});
  }

  // follow_primary: whether a reply asks for the request to go elsewhere or
  // again later; records where and why.
  bool Retryable(const native::Response& r) {
    std::string_view body = r.body;
    if (r.code == native::Code::kMoved) {
      moved_to = std::string(body);
      retry_why = "MOVED to " + moved_to;
      return true;
    }
    if (r.code == native::Code::kTryAgain || r.code == native::Code::kReadOnly ||
        r.code == native::Code::kNoReplicas) {
      retry_why = std::string(body.substr(0, 300));
      return true;
    }
    return false;
  }

  // follow_primary: Flush, re-sending what needs it to the primary until
  // everything is answered or failover_timeout_ms passes.
  Status FlushFollowing() {
    const int64_t deadline = NowMs() + options.failover_timeout_ms;
    // Short and capped low: a failover ends at an unknown moment, and a
    // refused request costs a node one round trip.
    int backoff_ms = 10;
    Status last;
    while (true) {
      last = broken.ok() ? FlushOnce() : broken;
      if (retry.empty() && last.ok()) return Status::OK();
      if (!last.ok()) retry_why = last.ToString();
      if (NowMs() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(backoff_ms * 2, 50);
      // Where to: the node a MOVED named, else the next listed node.
      std::string target = moved_to;
      moved_to.clear();
      if (target.empty()) {
        target = seeds[seed_next % seeds.size()];
        seed_next++;
      }
      broken = Status::OK();
      Status d = DialTo(target, options.failover_connect_timeout_ms);
      if (d.ok()) d = SendClientId();
      if (!d.ok()) {
        broken = d;
        retry_why = d.ToString();
        continue;
      }
      reconnects++;
      // Re-send in the original order, before anything queued since.
      std::deque<Waiter> again;
      again.swap(retry);
      std::string resend;
      for (auto& w : again) resend += w.request;
      retries += again.size();
      out.insert(0, resend);
      for (auto it = again.rbegin(); it != again.rend(); ++it) waiters.push_front(std::move(*it));
    }
    Status fail =
        Status::Unavailable("no primary answered within failover_timeout_ms (" +
                            std::to_string(options.failover_timeout_ms) + " ms): " + retry_why);
    native::Response none{};
    for (auto* q : {&retry, &waiters}) {
      while (!q->empty()) {
        auto w = std::move(q->front());
        q->pop_front();
        w.done(fail, none);
      }
    }
    out.clear();
    return fail;
  }

  // Names this connection (follow_primary), synchronously.
  Status SendClientId() {
    std::string req;
    native::EncodeRequest(&req, native::Op::kClientId, 0, {}, {},
                          static_cast<int64_t>(options.client_id));
    if (!options.password.empty()) {
      std::string auth;
      native::EncodeRequest(&auth, native::Op::kAuth, 0, {}, options.password);
      req = auth + req;
    }
    std::deque<Waiter> saved;
    saved.swap(waiters);
    std::string saved_out;
    saved_out.swap(out);
    Status result;
    out = req;
    int expect = options.password.empty() ? 1 : 2;
    for (int i = 0; i < expect; i++) {
      waiters.push_back({0,
                         [&](const Status& st, const native::Response& r) {
                           if (!st.ok())
                             result = st;
                           else if (r.code != native::Code::kOk && result.ok())
                             result = ErrorStatus(r.code, r.body);
                         },
                         {}});
    }
    following_ = false;
    Status f = FlushOnce();
    following_ = true;
    waiters.swap(saved);
    out.swap(saved_out);
    if (!f.ok()) return f;
    return result;
  }
  bool following_ = false;

  Status Fail(Status s) {
    if (broken.ok()) broken = s;
    if (following_) {
      // Everything unanswered goes to the next primary.
      if (fd >= 0) close(fd);
      fd = -1;
      verbs.reset();
      while (!waiters.empty()) {
        retry.push_back(std::move(waiters.front()));
        waiters.pop_front();
      }
      out.clear();
      return broken;
    }
    if (fd >= 0) {
      close(fd);
      fd = -1;
    }
    verbs.reset();
    native::Response none{};
    while (!waiters.empty()) {
      auto w = std::move(waiters.front());
      waiters.pop_front();
      w.done(broken, none);
    }
    out.clear();
    return broken;
  }

  // The same exchange over a verbs stream: send everything, then read replies.
  Status FlushVerbs() {
    Status s = verbs->Write(out, options.op_timeout_ms);
    if (!s.ok()) return Fail(s.WithPrefix(options.address + ": "));
    while (!waiters.empty()) {
      s = verbs->Read(&in, options.op_timeout_ms);
      if (s.code() == Status::Code::kTimeout) {
        return Fail(Status::Timeout("no reply from " + options.address + " within " +
                                    std::to_string(options.op_timeout_ms) + " ms"));
      }
      if (!s.ok()) return Fail(s.WithPrefix(options.address + ": "));
      s = Drain();
      if (!s.ok()) return Fail(s);
    }
    out.clear();
    return Status::OK();
  }

  Status Flush() {
    if (following_) return FlushFollowing();
    return FlushOnce();
  }

  Status FlushOnce() {
    if (!broken.ok()) return Fail(broken);
    if (verbs) return FlushVerbs();
    size_t out_pos = 0;
    int64_t deadline = NowMs() + options.op_timeout_ms;
    while (out_pos < out.size() || !waiters.empty()) {
      // Send without asking first: the socket is non-blocking and its buffer is
      // almost always free, so a request costs send + poll + recv, not two polls.
      if (out_pos < out.size()) {
        ssize_t n = send(fd, out.data() + out_pos, out.size() - out_pos, MSG_NOSIGNAL);
        if (n > 0) {
          out_pos += static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return Fail(Status::Unavailable("send to " + options.address + ": " + strerror(errno)));
        }
      }
      short events = POLLIN;
      if (out_pos < out.size()) events |= POLLOUT;
      pollfd p{fd, events, 0};
      int wait = static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
      int rc = poll(&p, 1, wait);
      if (rc < 0 && errno == EINTR) continue;
      if (rc == 0) {
        return Fail(Status::Timeout("no reply from " + options.address + " within " +
                                    std::to_string(options.op_timeout_ms) + " ms"));
      }
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[64 << 10];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0) {
          return Fail(
              Status::Unavailable("connection to " + options.address + " closed by server"));
        }
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          return Fail(Status::Unavailable("recv from " + options.address + ": " + strerror(errno)));
        }
        in.append(buf, static_cast<size_t>(n));
        Status s = Drain();
        if (!s.ok()) return Fail(s);
        deadline = NowMs() + options.op_timeout_ms;  // progress
      }
    }
    out.clear();
    return Status::OK();
  }

  Status Drain() {
    while (true) {
      std::string_view view(in.data() + in_pos, in.size() - in_pos);
      if (!view.empty() && view[0] == '-') {
        // A RESP error before any native reply: the server refused the
        // connection (for example max_clients) before it knew our protocol.
        size_t nl = view.find('\n');
        if (nl == std::string_view::npos) return Status::OK();
        return Status::Unavailable("server refused the connection: " +
                                   std::string(view.substr(1, nl > 2 ? nl - 2 : 0)));
      }
      native::Response r;
      size_t consumed = 0;
      std::string err;
      native::DecodeResult d = native::DecodeResponse(view, 1u << 31, &r, &consumed, &err);
      if (d == native::DecodeResult::kNeedMore) break;
      if (d == native::DecodeResult::kError) return Status::Protocol(err);
      if (waiters.empty() || r.request_id != waiters.front().id) {
        // request_id 0 is the server's word on a protocol error before closing.
        if (r.request_id == 0 && r.code != native::Code::kOk) {
          return Status::Protocol(std::string(r.body));
        }
        return Status::Protocol("reply for request " + std::to_string(r.request_id) +
                                " out of order");
      }
      auto w = std::move(waiters.front());
      waiters.pop_front();
      in_pos += consumed;
      if (following_ && Retryable(r)) {
        retry.push_back(std::move(w));
        continue;
      }
      stamp = r.stamp;
      w.done(Status::OK(), r);
    }
    if (in_pos == in.size()) {
      in.clear();
      in_pos = 0;
    }
    return Status::OK();
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.follow_primary) {
    size_t start = 0;
    while (start <= options.address.size()) {
      size_t comma = options.address.find(',', start);
      if (comma == std::string::npos) comma = options.address.size();
      if (comma > start) impl->seeds.push_back(options.address.substr(start, comma - start));
      start = comma + 1;
    }
    if (impl->seeds.empty()) return Status::InvalidArgument("no address given");
    if (impl->options.client_id == 0) {
      std::random_device rd;
      impl->options.client_id = (uint64_t{rd()} << 32 | rd()) | 1;
    }
    // The first node that answers; requests find the primary from there.
    Status last;
    for (const auto& a : impl->seeds) {
      impl->seed_next++;
      last = impl->DialTo(a, impl->options.connect_timeout_ms);
      if (last.ok()) last = impl->SendClientId();
      if (last.ok()) break;
      impl->broken = Status::OK();
    }
    if (!last.ok()) return last;
    impl->following_ = true;
    return std::unique_ptr<Client>(new Client(std::move(impl)));
  }
  FAHA_RETURN_IF_ERROR(impl->Dial());
  std::unique_ptr<Client> c(new Client(std::move(impl)));
  if (!options.password.empty()) {
    Status auth;
    c->impl_->Enqueue(native::Op::kAuth, {}, options.password, 0,
                      [&](const Status& s, const native::Response& r) {
                        if (!s.ok()) {
                          auth = s;
                        } else if (r.code != native::Code::kOk) {
                          auth = Status::Auth(r.body);
                        }
                      });
    FAHA_RETURN_IF_ERROR(c->impl_->Flush());
    if (!auth.ok()) return auth;
  } else {
    FAHA_RETURN_IF_ERROR(c->Ping());
  }
  return c;
}

const std::string& Client::address() const {
  return impl_->connected.empty() ? impl_->options.address : impl_->connected;
}
uint64_t Client::last_commit_epoch() const { return native::StampEpoch(impl_->stamp); }
uint64_t Client::last_commit_lsn() const { return native::StampLsn(impl_->stamp); }
uint64_t Client::retries() const { return impl_->retries; }
uint64_t Client::reconnects() const { return impl_->reconnects; }
size_t Client::queued() const { return impl_->waiters.size(); }
Status Client::Flush() { return impl_->Flush(); }

void Client::GetAsync(std::string_view key, GetCallback done) {
  impl_->Enqueue(native::Op::kGet, key, {}, 0,
                 [done = std::move(done)](const Status& s, const native::Response& r) {
                   if (!s.ok()) return done(s, {});
                   if (r.code == native::Code::kOk) return done(Status::OK(), r.body);
                   if (r.code == native::Code::kNotFound) return done(Status::NotFound(), {});
                   done(ErrorStatus(r.code, r.body), {});
                 });
}

void Client::PutAsync(std::string_view key, std::string_view value, DoneCallback done,
                      const PutOptions& options) {
  impl_->Enqueue(native::Op::kPut, key, value, options.ttl_ms,
                 [done = std::move(done)](const Status& s, const native::Response& r) {
                   if (!s.ok()) return done(s);
                   done(r.code == native::Code::kOk ? Status::OK() : ErrorStatus(r.code, r.body));
                 });
}

void Client::DeleteAsync(std::string_view key, DoneCallback done) {
  impl_->Enqueue(native::Op::kDelete, key, {}, 0,
                 [done = std::move(done)](const Status& s, const native::Response& r) {
                   if (!s.ok()) return done(s);
                   if (r.code != native::Code::kOk) return done(ErrorStatus(r.code, r.body));
                   done(r.arg ? Status::OK() : Status::NotFound());
                 });
}

Status Client::Ping() {
  Status result;
  impl_->Enqueue(native::Op::kPing, {}, {}, 0, [&](const Status& s, const native::Response& r) {
    result =
        !s.ok() ? s : (r.code == native::Code::kOk ? Status::OK() : ErrorStatus(r.code, r.body));
  });
  Status f = Flush();
  return f.ok() ? result : f;
}

Status Client::Get(std::string_view key, std::string* value) {
  Status result;
  GetAsync(key, [&](const Status& s, std::string_view v) {
    result = s;
    if (s.ok()) value->assign(v);
  });
  Status f = Flush();
  return f.ok() ? result : f;
}

Status Client::Put(std::string_view key, std::string_view value, const PutOptions& options) {
  Status result;
  PutAsync(
      key, value, [&](const Status& s) { result = s; }, options);
  Status f = Flush();
  return f.ok() ? result : f;
}

Status Client::Delete(std::string_view key, bool* existed) {
  Status result;
  DeleteAsync(key, [&](const Status& s) { result = s; });
  Status f = Flush();
  if (!f.ok()) return f;
  if (existed) *existed = result.ok();
  return result.IsNotFound() ? Status::OK() : result;
}

StatusOr<Reply> Client::Command(const std::vector<std::string>& args) {
  if (args.empty()) return Status::InvalidArgument("empty command");
  std::string body;
  native::EncodeArgs(&body, args);
  return RespRequest(native::Op::kCommand, body);
}

StatusOr<Reply> Client::Transaction(const std::vector<std::vector<std::string>>& commands) {
  for (const auto& args : commands) {
    if (args.empty()) return Status::InvalidArgument("empty command in a transaction");
  }
  std::string body;
  native::EncodeTransaction(&body, commands);
  return RespRequest(native::Op::kTransaction, body);
}

StatusOr<Reply> Client::RespRequest(native::Op op, std::string_view body) {
  Status result;
  Reply reply;
  impl_->Enqueue(op, {}, body, 0, [&](const Status& s, const native::Response& r) {
    if (!s.ok()) {
      result = s;
      return;
    }
    if (CommandErrorReply(r, &reply)) return;
    if (r.code != native::Code::kOk) {
      result = ErrorStatus(r.code, r.body);
      return;
    }
    resp::Reply rr;
    size_t consumed = 0;
    std::string err;
    if (resp::ParseReply(r.body, &rr, &consumed, &err) != resp::ParseResult::kOk) {
      result = Status::Protocol("malformed command reply: " + err);
      return;
    }
    reply = FromResp(rr);
  });
  Status f = Flush();
  if (!f.ok()) return f;
  if (!result.ok()) return result;
  return reply;
}

}  // namespace faha
