// Writes: SET, SETEX/PSETEX, GETSET, DEL/UNLINK, MSET, INCR/DECR/INCRBY/DECRBY, EXPIRE and its
// variants, PERSIST, FLUSHALL/FLUSHDB. Each checks its arguments and submits
// one WriteOp; the reply comes once the write is durable. Rows in
// server/commands/command_table.cc.
#include <climits>

#include "common/clock.h"
#include "nvm/log_format.h"
#include "server/commands/command_context.h"

namespace faha::cmd {

namespace {

constexpr const char* kNotInteger = "ERR value is not an integer or out of range";

// The first of `keys` longer than --max_key_bytes gives an error reply.
bool KeyTooLong(const CommandContext& c, std::string_view key, ExecStatus* st) {
  if (key.size() <= c.options().max_key_bytes) return false;
  *st = c.Error("ERR key is longer than max_key_bytes (" +
                std::to_string(c.options().max_key_bytes) + ")");
  return true;
}

bool ValueTooLong(const CommandContext& c, std::string_view value, ExecStatus* st) {
  if (value.size() <= c.options().max_value_bytes) return false;
  *st = c.Error("ERR value is longer than max_value_bytes (" +
                std::to_string(c.options().max_value_bytes) + ")");
  return true;
}

// A write whose records cannot fit one log batch is refused before it is queued.
bool TooBigForBatch(const CommandContext& c, uint64_t record_bytes, ExecStatus* st) {
  if (record_bytes <= c.options().max_batch_bytes) return false;
  *st = c.Error("ERR this write is larger than one log batch (--max_batch_kb=" +
                std::to_string(c.options().max_batch_bytes >> 10) + "); split it");
  return true;
}

// SET's EX/PX/EXAT/PXAT argument `v` as an absolute time in ms; false if invalid.
bool SetExpireAt(std::string_view option, int64_t v, int64_t now, int64_t* at) {
  if (v <= 0) return false;
  if (option == "ex" || option == "exat") {
    if (v > INT64_MAX / 1000) return false;
    v *= 1000;
  }
  if (option == "ex" || option == "px") {
    if (v > INT64_MAX - now) return false;
    v += now;
  }
  *at = v;
  return true;
}

}  // namespace

ExecStatus Set(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[2], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kSet;
  const int64_t now = WallMs();
  bool have_expire = false;
  for (int i = 3; i < c.argc; i++) {
    std::string o = Lower(c.args[i]);
    if (o == "nx" && !op.xx) {
      op.nx = true;
    } else if (o == "xx" && !op.nx) {
      op.xx = true;
    } else if (o == "get") {
      op.get_old = true;
    } else if (o == "keepttl" && !have_expire) {
      op.keep_ttl = true;
    } else if ((o == "ex" || o == "px" || o == "exat" || o == "pxat") && !have_expire &&
               !op.keep_ttl && i + 1 < c.argc) {
      int64_t v = 0;
      if (!ParseInt64(c.args[++i], &v)) return c.Error(kNotInteger);
      if (!SetExpireAt(o, v, now, &op.expire_at_ms)) {
        return c.Error("ERR invalid expire time in 'set' command");
      }
      have_expire = true;
    } else {
      return c.Error("ERR syntax error");
    }
  }
  op.args = {std::string(c.args[1]), std::string(c.args[2])};
  return c.Submit(std::move(op));
}

// SETEX and PSETEX: SET with EX (seconds) or PX (milliseconds).
ExecStatus SetEx(CommandContext& c) {
  int64_t v = 0;
  if (!ParseInt64(c.args[2], &v)) return c.Error(kNotInteger);
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[3], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kSet;
  if (!SetExpireAt(c.name() == "setex" ? "ex" : "px", v, WallMs(), &op.expire_at_ms)) {
    return c.Error("ERR invalid expire time in '" + std::string(c.name()) + "' command");
  }
  op.args = {std::string(c.args[1]), std::string(c.args[3])};
  return c.Submit(std::move(op));
}

// GETSET: SET key value GET.
ExecStatus GetSet(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[2], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kSet;
  op.get_old = true;
  op.args = {std::string(c.args[1]), std::string(c.args[2])};
  return c.Submit(std::move(op));
}

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
  if (c.argc % 2 != 1) return c.WrongArgs();
  ExecStatus st;
  uint64_t record_bytes = 0;
  for (int i = 1; i < c.argc; i += 2) {
    if (KeyTooLong(c, c.args[i], &st) || ValueTooLong(c, c.args[i + 1], &st)) return st;
    record_bytes += nvm::RecordSize(c.args[i].size(), c.args[i + 1].size());
  }
  if (TooBigForBatch(c, record_bytes, &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kMSet;
  for (int i = 1; i < c.argc; i++) op.args.emplace_back(c.args[i]);
  return c.Submit(std::move(op));
}

// INCR, DECR, INCRBY and DECRBY.
ExecStatus IncrBy(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kIncrBy;
  op.delta = 1;
  if (c.argc == 3 && !ParseInt64(c.args[2], &op.delta)) return c.Error(kNotInteger);
  if (c.name()[0] == 'd') {
    if (op.delta == INT64_MIN) return c.Error("ERR decrement would overflow");
    op.delta = -op.delta;
  }
  op.args = {std::string(c.args[1])};
  return c.Submit(std::move(op));
}

namespace {

// EXPIRE's NX/XX/GT/LT options into op->expire_if; false (and an error reply
// in *st) if one is unknown or they conflict.
bool ParseExpireIf(CommandContext& c, WriteOp* op, ExecStatus* st) {
  using If = WriteOp::ExpireIf;
  for (int i = 3; i < c.argc; i++) {
    std::string o = Lower(c.args[i]);
    If cond = o == "nx"   ? If::kNoExpiry
              : o == "xx" ? If::kHasExpiry
              : o == "gt" ? If::kGreater
              : o == "lt" ? If::kLess
                          : If::kAlways;
    if (cond == If::kAlways) {
      *st = c.Error("ERR Unsupported option " + std::string(c.args[i].substr(0, 32)));
      return false;
    }
    if (op->expire_if != If::kAlways && op->expire_if != cond) {
      bool gtlt = (cond == If::kGreater || cond == If::kLess) &&
                  (op->expire_if == If::kGreater || op->expire_if == If::kLess);
      *st = c.Error(gtlt ? "ERR GT and LT options at the same time are not compatible"
                         : "ERR NX and XX, GT or LT options at the same time are not compatible");
      return false;
    }
    op->expire_if = cond;
  }
  return true;
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
  op.kind = WriteOp::Kind::kExpire;
  op.expire_at_ms = v <= 0 ? 1 : v;  // <= now means delete; keep it non-zero
  if (!ParseExpireIf(c, &op, &st)) return st;
  op.args = {std::string(c.args[1])};
  return c.Submit(std::move(op));
}

ExecStatus Persist(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kPersist;
  op.args = {std::string(c.args[1])};
  return c.Submit(std::move(op));
}

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
