// Writes: SET, SETEX/PSETEX, GETSET, GETDEL, DEL/UNLINK, MSET, INCR/DECR/INCRBY/DECRBY, EXPIRE and
// its variants, PERSIST, FLUSHALL/FLUSHDB. Each handler checks its arguments and submits one
// WriteOp: an engine primitive (put, delete, MSET, FLUSHALL) or the command's own evaluation (a
// WriteEval, named Eval*), which the committing thread runs against the keys as they are then; the
// reply comes once the write is durable. Rows in server/commands/command_table.cc.
#include <climits>

#include "common/clock.h"
#include "nvm/log_format.h"
#include "server/commands/command_context.h"
#include "server/commands/write_args.h"

namespace faha::cmd {

namespace {

// SET's options, as bits of WriteOp::flags.
constexpr uint32_t kSetNx = 1, kSetXx = 2, kSetGet = 4, kSetKeepTtl = 8;

// SET with conditions: op.args = key, value; op.flags = SetFlag bits.
WriteResult EvalSet(const WriteOp& op, WriteContext& w) {
  const std::string_view key = op.args[0];
  const bool get = (op.flags & kSetGet) != 0;
  KeyState cur = w.Get(key, get);
  if (((op.flags & kSetNx) && cur.exists) || ((op.flags & kSetXx) && !cur.exists)) {
    return get && cur.exists ? WriteResult::Bulk(std::move(cur.value)) : WriteResult::Nil();
  }
  w.Put(key, op.args[1], (op.flags & kSetKeepTtl) ? cur.expire_at_ms : op.expire_at_ms);
  if (!get) return WriteResult::Ok();
  return cur.exists ? WriteResult::Bulk(std::move(cur.value)) : WriteResult::Nil();
}

// A put of key, value: the engine's primitive unless `flags` need the current value.
WriteOp SetOp(std::string_view key, std::string_view value, int64_t expire_at_ms, uint32_t flags) {
  WriteOp op;
  op.kind = flags == 0 ? WriteOp::Kind::kPut : WriteOp::Kind::kEval;
  op.eval = flags == 0 ? nullptr : EvalSet;
  op.flags = flags;
  op.expire_at_ms = expire_at_ms;
  op.args = {key, value};
  return op;
}

}  // namespace

ExecStatus Set(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[2], &st)) return st;
  const int64_t now = WallMs();
  uint32_t flags = 0;
  int64_t expire_at_ms = 0;
  bool have_expire = false;
  for (int i = 3; i < c.argc; i++) {
    std::string o = Lower(c.args[i]);
    if (o == "nx" && !(flags & kSetXx)) {
      flags |= kSetNx;
    } else if (o == "xx" && !(flags & kSetNx)) {
      flags |= kSetXx;
    } else if (o == "get") {
      flags |= kSetGet;
    } else if (o == "keepttl" && !have_expire) {
      flags |= kSetKeepTtl;
    } else if ((o == "ex" || o == "px" || o == "exat" || o == "pxat") && !have_expire &&
               !(flags & kSetKeepTtl) && i + 1 < c.argc) {
      int64_t v = 0;
      if (!ParseInt64(c.args[++i], &v)) return c.Error(kNotInteger);
      if (!SetExpireAt(o, v, now, &expire_at_ms)) {
        return c.Error("ERR invalid expire time in 'set' command");
      }
      have_expire = true;
    } else {
      return c.Error("ERR syntax error");
    }
  }
  return c.Submit(SetOp(c.args[1], c.args[2], expire_at_ms, flags));
}

// SETEX and PSETEX: SET with EX (seconds) or PX (milliseconds).
ExecStatus SetEx(CommandContext& c) {
  int64_t v = 0;
  if (!ParseInt64(c.args[2], &v)) return c.Error(kNotInteger);
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[3], &st)) return st;
  int64_t expire_at_ms = 0;
  if (!SetExpireAt(c.name() == "setex" ? "ex" : "px", v, WallMs(), &expire_at_ms)) {
    return c.Error("ERR invalid expire time in '" + std::string(c.name()) + "' command");
  }
  return c.Submit(SetOp(c.args[1], c.args[3], expire_at_ms, 0));
}

// GETSET: SET key value GET.
ExecStatus GetSet(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[2], &st)) return st;
  return c.Submit(SetOp(c.args[1], c.args[2], 0, kSetGet));
}

namespace {

// GETDEL: op.args = key. Its value (or nil), and the key is gone.
WriteResult EvalGetDel(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  if (!cur.exists) return WriteResult::Nil();
  w.Delete(op.args[0]);
  return WriteResult::Bulk(std::move(cur.value));
}

// A command of one key (args[1]) whose WriteEval does all of it.
ExecStatus SubmitKeyEval(CommandContext& c, WriteEval eval) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = eval;
  op.args = {c.args[1]};
  return c.Submit(std::move(op));
}

}  // namespace

ExecStatus GetDel(CommandContext& c) { return SubmitKeyEval(c, EvalGetDel); }

// DEL and UNLINK.
ExecStatus Del(CommandContext& c) {
  ExecStatus st;
  uint64_t record_bytes = 0;
  for (int i = 1; i < c.argc; i++) {
    if (KeyTooLong(c, c.args[i], &st)) return st;
    record_bytes += nvm::RecordSize(c.args[i].size(), 0);
  }
  if (TooBigForBatch(c, record_bytes, &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kDelete;
  for (int i = 1; i < c.argc; i++) op.args.emplace_back(c.args[i]);
  return c.Submit(std::move(op));
}

ExecStatus MSet(CommandContext& c) {
  ExecStatus st;
  if (PairsRefused(c, &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kMSet;
  for (int i = 1; i < c.argc; i++) op.args.emplace_back(c.args[i]);
  return c.Submit(std::move(op));
}

namespace {

// INCRBY: op.args = key; op.number = the delta. The expiry is kept.
WriteResult EvalIncrBy(const WriteOp& op, WriteContext& w) {
  const std::string_view key = op.args[0];
  KeyState cur = w.Get(key, true);
  int64_t v = 0;
  if (cur.exists && !ParseInt64(cur.value, &v)) return WriteResult::Error(kNotInteger);
  const int64_t delta = op.number;
  if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN - delta)) {
    return WriteResult::Error("ERR increment or decrement would overflow");
  }
  v += delta;
  w.Put(key, std::to_string(v), cur.expire_at_ms);
  return WriteResult::Int(v);
}

}  // namespace

// INCR, DECR, INCRBY and DECRBY.
ExecStatus IncrBy(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalIncrBy;
  op.number = 1;
  if (c.argc == 3 && !ParseInt64(c.args[2], &op.number)) return c.Error(kNotInteger);
  if (c.name()[0] == 'd') {
    if (op.number == INT64_MIN) return c.Error("ERR decrement would overflow");
    op.number = -op.number;
  }
  op.args = {c.args[1]};
  return c.Submit(std::move(op));
}

namespace {

// EXPIRE's NX / XX / GT / LT (Redis 7; no expiry counts as infinite), as bits
// of WriteOp::flags: XX may go with GT or LT, and then both must hold.
constexpr uint32_t kExpireNx = 1, kExpireXx = 2, kExpireGt = 4, kExpireLt = 8;

// EXPIRE and its kin: op.args = key; op.expire_at_ms = the new expiry (at or
// before now: delete); op.flags = ExpireIf bits. 1 if the expiry was set.
WriteResult EvalExpire(const WriteOp& op, WriteContext& w) {
  const std::string_view key = op.args[0];
  KeyState cur = w.Get(key, true);
  if (!cur.exists) return WriteResult::Int(0);
  const bool has = cur.expire_at_ms != 0;
  const uint32_t f = op.flags;
  if (((f & kExpireNx) && has) || ((f & kExpireXx) && !has) ||
      ((f & kExpireGt) && !(has && op.expire_at_ms > cur.expire_at_ms)) ||
      ((f & kExpireLt) && !(!has || op.expire_at_ms < cur.expire_at_ms))) {
    return WriteResult::Int(0);
  }
  if (op.expire_at_ms <= w.NowMs()) {
    w.Delete(key);
  } else {
    w.Put(key, cur.value, op.expire_at_ms);
  }
  return WriteResult::Int(1);
}

// EXPIRE's NX/XX/GT/LT options into op->flags; false (and Redis's error reply
// in *st) if one is unknown or they conflict.
bool ParseExpireIf(CommandContext& c, WriteOp* op, ExecStatus* st) {
  for (int i = 3; i < c.argc; i++) {
    std::string o = Lower(c.args[i]);
    const uint32_t bit = o == "nx"   ? kExpireNx
                         : o == "xx" ? kExpireXx
                         : o == "gt" ? kExpireGt
                         : o == "lt" ? kExpireLt
                                     : 0;
    if (bit == 0) {
      *st = c.Error("ERR Unsupported option " + std::string(c.args[i].substr(0, 32)));
      return false;
    }
    op->flags |= bit;
  }
  if ((op->flags & kExpireNx) && (op->flags & (kExpireXx | kExpireGt | kExpireLt))) {
    *st = c.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
    return false;
  }
  if ((op->flags & kExpireGt) && (op->flags & kExpireLt)) {
    *st = c.Error("ERR GT and LT options at the same time are not compatible");
    return false;
  }
  return true;
}

// PERSIST: op.args = key. 1 if an expiry was removed.
WriteResult EvalPersist(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  if (!cur.exists || cur.expire_at_ms == 0) return WriteResult::Int(0);
  w.Put(op.args[0], cur.value, 0);
  return WriteResult::Int(1);
}

}  // namespace

// EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT.
ExecStatus Expire(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  int64_t v = 0;
  if (!ParseInt64(c.args[2], &v)) return c.Error(kNotInteger);
  const std::string invalid = "ERR invalid expire time in '" + std::string(c.name()) + "' command";
  const bool seconds = c.name() == "expire" || c.name() == "expireat";
  const bool relative = c.name() == "expire" || c.name() == "pexpire";
  if (seconds) {
    if (v > INT64_MAX / 1000 || v < INT64_MIN / 1000) return c.Error(invalid);
    v *= 1000;
  }
  if (relative) {
    const int64_t now = WallMs();
    if ((v > 0 && v > INT64_MAX - now) || (v < 0 && v < INT64_MIN + now)) return c.Error(invalid);
    v += now;
  }
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalExpire;
  op.expire_at_ms = v <= 0 ? 1 : v;  // <= now means delete; keep it non-zero
  if (!ParseExpireIf(c, &op, &st)) return st;
  op.args = {c.args[1]};
  return c.Submit(std::move(op));
}

ExecStatus Persist(CommandContext& c) { return SubmitKeyEval(c, EvalPersist); }

// FLUSHALL and FLUSHDB.
ExecStatus FlushAll(CommandContext& c) {
  if (c.argc > 2 ||
      (c.argc == 2 && !EqNoCase(c.args[1], "sync") && !EqNoCase(c.args[1], "async"))) {
    return c.Error("ERR syntax error");
  }
  WriteOp op;
  op.kind = WriteOp::Kind::kFlushAll;
  return c.Submit(std::move(op));
}

}  // namespace faha::cmd
