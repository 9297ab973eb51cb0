// IoThread's input, protocols and output: reading a connection, parsing RESP
// and native frames, running each command (Commands::Execute), encoding
// replies and completions, and writing them out in order.
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
#include "server/net/io_thread.h"

namespace faha {

namespace {
// Whether the native protocol has a code of its own for `why` (else it is an
// error with Redis's text).
bool HasNativeCode(const Refusal& why) {
  return why.kind == Refusal::Kind::kMoved || why.kind == Refusal::Kind::kTryAgain ||
         why.kind == Refusal::Kind::kReadOnly;
}

// The native protocol's encoding of a refusal: MOVED carries the primary's
// HOST:PORT alone, TRYAGAIN and READONLY their own codes; the others are
// errors with Redis's text.
void EncodeNativeRefusal(std::string* out, uint64_t request_id, const Refusal& why) {
  switch (why.kind) {
    case Refusal::Kind::kMoved:
      native::EncodeResponse(out, native::Code::kMoved, request_id, why.text);
      return;
    case Refusal::Kind::kTryAgain:
      native::EncodeResponse(out, native::Code::kTryAgain, request_id, why.RespText());
      return;
    case Refusal::Kind::kReadOnly:
      native::EncodeResponse(out, native::Code::kReadOnly, request_id, why.RespText());
      return;
    case Refusal::Kind::kNone:
    case Refusal::Kind::kStaleRead:
      break;
  }
  native::EncodeResponse(out, native::Code::kError, request_id, why.RespText());
}

// The native code of a write's error: NOREPLICAS and IOERR have their own.
native::Code NativeErrorCode(const WriteResult& r) {
  switch (r.code) {
    case WriteResult::ErrorCode::kNoReplicas:
      return native::Code::kNoReplicas;
    case WriteResult::ErrorCode::kIoError:
      return native::Code::kIoError;
    case WriteResult::ErrorCode::kOther:
      break;
  }
  return native::Code::kError;
}
}  // namespace

void IoThread::EncodeCompletion(Connection* c, const Completion& comp, int64_t now_us) {
  if (c->pending.empty()) return;  // cannot happen: one PendingReply per submitted write
  PendingReply pr = std::move(c->pending.front());
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
        native::EncodeResponse(&c->out, NativeErrorCode(r), pr.request_id, r.str);
      } else {
        native::EncodeResponse(&c->out, native::Code::kOk, pr.request_id, {},
                               r.kind == WriteResult::Kind::kInt ? r.integer : 0, stamp);
      }
      break;
    case PendingReply::Kind::kNativeCommand: {
      if (r.kind == WriteResult::Kind::kError && r.code != WriteResult::ErrorCode::kOther) {
        native::EncodeResponse(&c->out, NativeErrorCode(r), pr.request_id, r.str);
        break;
      }
      std::string body;
      Commands::AppendResult(&body, r);
      native::EncodeResponse(&c->out, native::Code::kOk, pr.request_id, body, 0, stamp);
      break;
    }
    case PendingReply::Kind::kReady:
      break;  // cannot happen: these are sent below, never popped for a completion
  }
  // The replies given meanwhile that come right after this one.
  while (!c->pending.empty() && c->pending.front().kind == PendingReply::Kind::kReady) {
    c->out.append(c->pending.front().text);
    c->pending.pop_front();
  }
}

size_t IoThread::InputCap(const Connection* c) const {
  // Before AUTH only small commands parse (resp::kPreauthArgs arguments of
  // resp::kPreauthBulkBytes): no reason to buffer more than that.
  if (!c->session.authed) return kPreauthInputCap;
  return std::max<size_t>(server_->options_.max_batch_bytes,
                          static_cast<size_t>(server_->options_.max_value_bytes) +
                              server_->options_.max_key_bytes) +
         (64 << 10);
}

void IoThread::OnReadable(Connection* c) {
  uint64_t id = c->id;
  bool eof = false;
  while (c->in.size() - c->in_pos < InputCap(c)) {
    if (c->in_pos > 0 && c->in_pos == c->in.size()) {
      c->in.clear();
      c->in_pos = 0;
    }
    // Up to kReadChunk at a time: into the connection's buffer as far as it
    // has room, the rest into the thread's scratch buffer and appended (the
    // buffer grows by what arrived, not ahead of it).
    const size_t in_place = std::min(c->in.room(), kReadChunk);
    iovec iov[2] = {{c->in.end(), in_place}, {read_buf_.get(), kReadChunk - in_place}};
    ssize_t n = readv(c->fd, iov, 2);
    if (n > 0) {
      c->last_io_us = MonoUs();
      const size_t got = static_cast<size_t>(n);
      c->in.Commit(std::min(got, in_place));
      if (got > in_place) c->in.append(read_buf_.get(), got - in_place);
      if (got < kReadChunk) break;
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

void IoThread::NoteIncomplete(Connection* c, bool incomplete) {
  if (incomplete && !c->incomplete) c->command_since_us = MonoUs();
  c->incomplete = incomplete;
}

void IoThread::ProcessInput(Connection* c) {
  if (c->closing || server_->draining_.load(std::memory_order_relaxed)) return;
  const ServerOptions& opt = server_->options_;
  const uint64_t hard = opt.limits.output_hard_bytes.load(std::memory_order_relaxed);
  while (c->in_pos < c->in.size() && !c->closing) {
    if (c->pending.size() >= opt.max_pipeline) break;  // writes and replies waiting for them
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
    c->in.EraseFront(c->in_pos);
    c->in_pos = 0;
  }
}

void IoThread::ProtocolError(Connection* c, const std::string& msg) {
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

bool IoThread::StepResp(Connection* c) {
  const ServerOptions& opt = server_->options_;
  resp::ParseLimits limits;
  limits.max_bulk_bytes = std::max(opt.max_value_bytes, opt.max_key_bytes);
  limits.unauthenticated = !c->session.authed;
  size_t consumed = 0;
  std::string err;
  std::string_view view(c->in.data() + c->in_pos, c->in.size() - c->in_pos);
  resp::ParseResult r = resp::ParseCommand(view, limits, &args_, &consumed, &err, &unescaped_);
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
  // With writes pending, a reply that reads no data may still be given: it
  // waits in `pending` for theirs (Session::deferring).
  c->session.deferring = c->session.pending_writes > 0;
  deferred_.clear();
  ExecStatus st =
      commands_.Execute(&c->session, args_, c->session.deferring ? &deferred_ : &c->out, this);
  c->session.deferring = false;
  TakeHeld(c);
  if (c->session.output_over_limit) c->closing = true;  // Flush closes it for the limit
  if (st == ExecStatus::kBlocked) return false;
  c->in_pos += consumed;
  if (st == ExecStatus::kSubmitted) {
    c->pending.push_back({PendingReply::Kind::kResp, 0});
  } else {
    if (c->session.pending_writes > 0) {
      c->pending.push_back({PendingReply::Kind::kReady, 0, std::move(deferred_)});
    } else if (!deferred_.empty()) {
      c->out.append(deferred_);  // an EXEC answered at once after the last write's reply
    }
    RecordLatency(c->session, t0);
    AfterReply(c);
  }
  return true;
}

void IoThread::RecordLatency(const Session& s, int64_t t0) {
  server_->metrics()->op_latency_us[static_cast<int>(s.op_class)].Record(
      static_cast<uint64_t>(MonoUs() - t0));
}

void IoThread::AfterReply(Connection* c) {
  if (c->session.shutdown) {
    c->session.shutdown = false;
    FAHA_LOG_INFO("SHUTDOWN requested by client %llu", static_cast<unsigned long long>(c->id));
    server_->RequestShutdown();
  }
  if (c->session.close_after_reply) c->closing = true;
}

void IoThread::NativeClientId(Connection* c, const native::Request& req) {
  if (req.arg == 0) {
    native::EncodeResponse(&c->out, native::Code::kError, req.request_id,
                           "ERR a client id must be nonzero");
    server_->metrics()->errors.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  c->session.client_id = static_cast<uint64_t>(req.arg);
  native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, {});
}

bool IoThread::NativeOp(Connection* c, const native::Request& req, int64_t t0) {
  // The op as the Redis command it is, so it takes the one path every command
  // takes (its row's checks, refusals, metrics, latency class; its handler).
  std::string ttl;
  switch (req.op) {
    case native::Op::kPing:
      args_ = {"PING"};
      break;
    case native::Op::kAuth:
      args_ = {"AUTH", req.value};
      break;
    case native::Op::kGet:
      args_ = {"GET", req.key};
      break;
    case native::Op::kPut:
      args_ = {"SET", req.key, req.value};
      if (req.arg != 0) {
        ttl = std::to_string(req.arg);
        args_.insert(args_.end(), {"PX", ttl});
      }
      break;
    case native::Op::kDelete:
      args_ = {"DEL", req.key};
      break;
    default:
      return true;  // not one of these (the caller dispatches the others)
  }
  reply_.clear();
  ExecStatus st = commands_.Execute(&c->session, args_, &reply_, this);
  InlineHeld(&c->session, &reply_);  // a GET's value goes into one response frame
  if (st == ExecStatus::kBlocked) return false;
  if (st == ExecStatus::kSubmitted) {
    c->pending.push_back({req.op == native::Op::kPut      ? PendingReply::Kind::kNativePut
                          : req.op == native::Op::kDelete ? PendingReply::Kind::kNativeDelete
                                                          : PendingReply::Kind::kNativeCommand,
                          req.request_id});
    return true;
  }
  EncodeNativeReply(c, req, reply_);
  RecordLatency(c->session, t0);
  AfterReply(c);
  return true;
}

void IoThread::EncodeNativeReply(Connection* c, const native::Request& req,
                                 std::string_view reply) {
  if (HasNativeCode(c->session.refused)) {
    EncodeNativeRefusal(&c->out, req.request_id, c->session.refused);
    return;
  }
  resp::ScalarReply r;
  if (!resp::ViewScalarReply(reply, &r)) {
    native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, reply);
    return;
  }
  switch (r.type) {
    case '-':
      // A failed AUTH answers NOAUTH's code; any other error is an error.
      native::EncodeResponse(
          &c->out, req.op == native::Op::kAuth ? native::Code::kNoAuth : native::Code::kError,
          req.request_id, r.payload);
      return;
    case '$':
      native::EncodeResponse(&c->out, r.nil ? native::Code::kNotFound : native::Code::kOk,
                             req.request_id, r.payload);
      return;
    case '+':
      // PING's PONG is the body; AUTH's OK is implied by the code.
      native::EncodeResponse(&c->out, native::Code::kOk, req.request_id,
                             req.op == native::Op::kPing ? r.payload : std::string_view());
      return;
    default:
      native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, r.payload);
  }
}

bool IoThread::NativeCommand(Connection* c, const native::Request& req, int64_t t0,
                             bool may_reply) {
  std::string body;
  ExecStatus st;
  if (req.op == native::Op::kTransaction) {
    std::vector<std::vector<std::string_view>> commands;
    if (!native::DecodeTransaction(req.value, &commands)) {
      if (may_reply) ProtocolError(c, "malformed transaction");
      return false;
    }
    st = commands_.ExecuteTransaction(&c->session, commands, &body, this);
  } else {
    std::vector<std::string_view> args;
    if (!native::DecodeArgs(req.value, &args)) {
      if (may_reply) ProtocolError(c, "malformed argument list");
      return false;
    }
    st = commands_.Execute(&c->session, args, &body, this);
  }
  InlineHeld(&c->session, &body);  // the body goes into one response frame
  if (st == ExecStatus::kBlocked) return false;
  if (st == ExecStatus::kSubmitted) {
    c->pending.push_back({PendingReply::Kind::kNativeCommand, req.request_id});
  } else if (HasNativeCode(c->session.refused)) {
    EncodeNativeRefusal(&c->out, req.request_id, c->session.refused);
    RecordLatency(c->session, t0);
  } else {
    native::EncodeResponse(&c->out, native::Code::kOk, req.request_id, body);
    RecordLatency(c->session, t0);
    AfterReply(c);
  }
  return true;
}

bool IoThread::StepNative(Connection* c) {
  const ServerOptions& opt = server_->options_;
  native::Limits limits{opt.max_key_bytes, opt.max_value_bytes,
                        static_cast<uint32_t>(std::min<size_t>(opt.max_batch_bytes, UINT32_MAX))};
  if (!c->session.authed) {
    // As for RESP before AUTH: nothing bigger than a password.
    limits.max_key_bytes = std::min<uint32_t>(limits.max_key_bytes, resp::kPreauthBulkBytes);
    limits.max_value_bytes = std::min<uint32_t>(limits.max_value_bytes, resp::kPreauthBulkBytes);
    limits.max_transaction_bytes = limits.max_value_bytes;
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
  const bool is_command = req.op == native::Op::kCommand || req.op == native::Op::kTransaction;
  if (!is_write && !is_command && !may_reply) return false;
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
  switch (req.op) {
    case native::Op::kClientId:
      NativeClientId(c, req);
      break;
    case native::Op::kCommand:
    case native::Op::kTransaction:
      if (!NativeCommand(c, req, t0, may_reply)) return false;
      break;
    default:
      if (!NativeOp(c, req, t0)) return false;
      break;
  }
  c->in_pos += consumed;
  return true;
}

void IoThread::InlineHeld(Session* s, std::string* body) {
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

void IoThread::TakeHeld(Connection* c) {
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

void IoThread::QueueChunk(Connection* c, OutChunk chunk) {
  c->queued_bytes += chunk.data().size();
  c->queued_memory += chunk.memory();
  c->queued.push_back(std::move(chunk));
}

ssize_t IoThread::WriteOut(Connection* c) {
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

void IoThread::Flush(Connection* c) {
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
      c->in.Release();
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

}  // namespace faha
