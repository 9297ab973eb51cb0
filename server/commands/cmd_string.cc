// String writes beyond SET: SETNX, MSETNX, APPEND, SETRANGE, INCRBYFLOAT and
// GETEX. Each handler checks its arguments and submits one WriteOp with the
// command's own evaluation (Eval*), which the committing thread runs against
// the keys as they are then; the reply comes once the write is durable.
// Rows in server/commands/command_table.cc.
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/clock.h"
#include "nvm/log_format.h"
#include "server/commands/command_context.h"
#include "server/commands/write_args.h"

namespace faha::cmd {

namespace {

constexpr const char* kNotFloat = "ERR value is not a valid float";

// A value that would outgrow --max_value_bytes (APPEND, SETRANGE).
std::string TooLongError(uint64_t max_value_bytes) {
  return "ERR string exceeds maximum allowed size (max_value_bytes " +
         std::to_string(max_value_bytes) + ")";
}

// SETNX: op.args = key, value. 1 if the key was absent and is set.
WriteResult EvalSetNx(const WriteOp& op, WriteContext& w) {
  if (w.Get(op.args[0], false).exists) return WriteResult::Int(0);
  w.Put(op.args[0], op.args[1], 0);
  return WriteResult::Int(1);
}

// MSETNX: op.args = key, value, ... Sets them all if none exists (1), else none (0).
WriteResult EvalMSetNx(const WriteOp& op, WriteContext& w) {
  for (size_t i = 0; i + 1 < op.args.size(); i += 2) {
    if (w.Get(op.args[i], false).exists) return WriteResult::Int(0);
  }
  for (size_t i = 0; i + 1 < op.args.size(); i += 2) w.Put(op.args[i], op.args[i + 1], 0);
  return WriteResult::Int(1);
}

// APPEND: op.args = key, suffix; op.number = --max_value_bytes. The new
// length; the expiry is kept.
WriteResult EvalAppend(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  if (cur.value.size() + op.args[1].size() > static_cast<uint64_t>(op.number)) {
    return WriteResult::Error(TooLongError(static_cast<uint64_t>(op.number)));
  }
  cur.value.append(op.args[1]);
  w.Put(op.args[0], cur.value, cur.expire_at_ms);
  return WriteResult::Int(static_cast<int64_t>(cur.value.size()));
}

// SETRANGE: op.args = key, value; op.number = the offset (the result fits
// --max_value_bytes: checked when queued). Zero bytes pad a gap; the new
// length; the expiry is kept. An empty value changes nothing.
WriteResult EvalSetRange(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  const std::string_view value = op.args[1];
  if (value.empty()) return WriteResult::Int(static_cast<int64_t>(cur.value.size()));
  const size_t offset = static_cast<size_t>(op.number);
  if (cur.value.size() < offset + value.size()) cur.value.resize(offset + value.size(), '\0');
  cur.value.replace(offset, value.size(), value);
  w.Put(op.args[0], cur.value, cur.expire_at_ms);
  return WriteResult::Int(static_cast<int64_t>(cur.value.size()));
}

// A float as Redis reads one (string2ld): what strtold takes, whole, no
// leading blank, no NaN, no overflow.
bool ParseLongDouble(std::string_view s, long double* v) {
  char buf[5 * 1024];
  if (s.empty() || s.size() >= sizeof(buf)) return false;
  memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  errno = 0;
  char* end = nullptr;
  const long double value = strtold(buf, &end);
  // The whole value (a NUL inside it ends strtold early: not a float).
  if (isspace(static_cast<unsigned char>(buf[0])) || end != buf + s.size() ||
      (errno == ERANGE &&
       (value == HUGE_VALL || value == -HUGE_VALL || std::fpclassify(value) == FP_ZERO)) ||
      std::isnan(value)) {
    return false;
  }
  *v = value;
  return true;
}

// A long double as Redis writes INCRBYFLOAT's result: 17 decimals, trailing
// zeros (and a trailing point) dropped, "-0" as "0".
std::string FormatLongDouble(long double v) {
  char buf[5 * 1024];
  int n = snprintf(buf, sizeof(buf), "%.17Lf", v);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(buf)) return "0";
  if (strchr(buf, '.') != nullptr) {
    while (buf[n - 1] == '0') n--;
    if (buf[n - 1] == '.') n--;
  }
  if (n == 2 && buf[0] == '-' && buf[1] == '0') return "0";
  return std::string(buf, static_cast<size_t>(n));
}

// INCRBYFLOAT: op.args = key, increment. The new value; the expiry is kept.
WriteResult EvalIncrByFloat(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  long double v = 0, incr = 0;
  if ((cur.exists && !ParseLongDouble(cur.value, &v)) || !ParseLongDouble(op.args[1], &incr)) {
    return WriteResult::Error(kNotFloat);
  }
  v += incr;
  if (std::isnan(v) || std::isinf(v)) {
    return WriteResult::Error("ERR increment would produce NaN or Infinity");
  }
  std::string out = FormatLongDouble(v);
  w.Put(op.args[0], out, cur.expire_at_ms);
  return WriteResult::Bulk(std::move(out));
}

// GETEX's options, as bits of WriteOp::flags.
constexpr uint32_t kGetExExpire = 1, kGetExPersist = 2;

// GETEX: op.args = key; with kGetExExpire, op.expire_at_ms is the new expiry
// (at or before now: the key goes); with kGetExPersist the expiry goes. The
// value, or nil.
WriteResult EvalGetEx(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  if (!cur.exists) return WriteResult::Nil();
  if (op.flags & kGetExExpire) {
    if (op.expire_at_ms <= w.NowMs()) {
      w.Delete(op.args[0]);
    } else {
      w.Put(op.args[0], cur.value, op.expire_at_ms);
    }
  } else if ((op.flags & kGetExPersist) && cur.expire_at_ms != 0) {
    w.Put(op.args[0], cur.value, 0);
  }
  return WriteResult::Bulk(std::move(cur.value));
}

WriteOp EvalOp(WriteEval eval, std::initializer_list<std::string_view> args) {
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = eval;
  op.args = args;
  return op;
}

}  // namespace

ExecStatus SetNx(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[2], &st)) return st;
  return c.Submit(EvalOp(EvalSetNx, {c.args[1], c.args[2]}));
}

ExecStatus MSetNx(CommandContext& c) {
  ExecStatus st;
  if (PairsRefused(c, &st)) return st;
  WriteOp op = EvalOp(EvalMSetNx, {});
  for (int i = 1; i < c.argc; i++) op.args.emplace_back(c.args[i]);
  return c.Submit(std::move(op));
}

ExecStatus Append(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, c.args[2], &st)) return st;
  WriteOp op = EvalOp(EvalAppend, {c.args[1], c.args[2]});
  op.number = static_cast<int64_t>(c.options().max_value_bytes);
  return c.Submit(std::move(op));
}

ExecStatus SetRange(CommandContext& c) {
  int64_t offset = 0;
  if (!ParseInt64(c.args[2], &offset)) return c.Error(kNotInteger);
  if (offset < 0) return c.Error("ERR offset is out of range");
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  const uint64_t max = c.options().max_value_bytes;
  if (!c.args[3].empty() && (static_cast<uint64_t>(offset) > max ||
                             c.args[3].size() > max - static_cast<uint64_t>(offset))) {
    return c.Error(TooLongError(max));
  }
  WriteOp op = EvalOp(EvalSetRange, {c.args[1], c.args[3]});
  op.number = offset;
  return c.Submit(std::move(op));
}

ExecStatus IncrByFloat(CommandContext& c) {
  long double incr = 0;
  if (!ParseLongDouble(c.args[2], &incr)) return c.Error(kNotFloat);
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  return c.Submit(EvalOp(EvalIncrByFloat, {c.args[1], c.args[2]}));
}

ExecStatus GetEx(CommandContext& c) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st)) return st;
  WriteOp op = EvalOp(EvalGetEx, {c.args[1]});
  std::string unit;
  std::string_view expire;
  for (int i = 2; i < c.argc; i++) {
    std::string o = Lower(c.args[i]);
    if ((o == "ex" || o == "px" || o == "exat" || o == "pxat") && op.flags == 0 && i + 1 < c.argc) {
      op.flags = kGetExExpire;
      unit = o;
      expire = c.args[++i];
    } else if (o == "persist" && op.flags == 0) {
      op.flags = kGetExPersist;
    } else {
      return c.Error("ERR syntax error");
    }
  }
  if (op.flags == kGetExExpire) {
    int64_t v = 0;
    if (!ParseInt64(expire, &v)) return c.Error(kNotInteger);
    if (!SetExpireAt(unit, v, WallMs(), &op.expire_at_ms)) {
      return c.Error("ERR invalid expire time in 'getex' command");
    }
  }
  return c.Submit(std::move(op));
}

}  // namespace faha::cmd
