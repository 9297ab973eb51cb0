// Reads: GET, MGET, STRLEN, EXISTS, TOUCH, TYPE, TTL/PTTL, EXPIRETIME/PEXPIRETIME, GETRANGE/SUBSTR,
// DBSIZE, SCAN. The dispatcher holds a read guard around each (a command sees every batch entirely
// or not at all). Rows in server/commands/command_table.cc.

#include <algorithm>
#include <charconv>

#include "common/glob.h"
#include "common/resp.h"
#include "server/commands/command_context.h"

namespace faha::cmd {

namespace {

constexpr size_t kMaxReplyBytes = 256 << 20;

// Appends the value of `key` (or nil) to the reply. A value read from the log
// is sent from where it lies, without a copy: a big MGET costs lookups, not
// hundreds of MiB of memcpy and page faults on the I/O thread.
void AppendValue(CommandContext& c, std::string_view key, std::string* copy) {
  std::string_view value;
  std::shared_ptr<const void> hold;
  bool hit;
  if (c.txn != nullptr) {
    KeyState k;
    hit = c.ReadKey(key, true, &k);
    *copy = std::move(k.value);
    value = *copy;
  } else {
    hit = c.store()->GetHeld(key, copy, &value, &hold);
  }
  (hit ? c.metrics()->keyspace_hits : c.metrics()->keyspace_misses)
      .fetch_add(1, std::memory_order_relaxed);
  if (!hit) {
    resp::AppendNil(c.out);
  } else if (hold == nullptr) {
    resp::AppendBulk(c.out, value);
  } else {
    resp::AppendBulkHeader(c.out, value.size());
    c.s->held.push_back({c.out->size(), value, std::move(hold)});
    c.s->held_bytes += value.size();
    c.out->append("\r\n");
  }
}

// Drops the reply built since `start` (held values too).
void DropReply(CommandContext& c, size_t start) {
  c.out->resize(start);
  while (!c.s->held.empty() && c.s->held.back().at > start) {
    c.s->held_bytes -= c.s->held.back().bytes.size();
    c.s->held.pop_back();
  }
}

}  // namespace

ExecStatus Get(CommandContext& c) {
  std::string copy;
  AppendValue(c, c.args[1], &copy);
  return ExecStatus::kReplied;
}

ExecStatus MGet(CommandContext& c) {
  const size_t start = c.out->size();
  const size_t held_before = c.s->held_bytes;
  // Bytes of reply so far, held values included.
  auto reply_bytes = [&] { return c.out->size() - start + (c.s->held_bytes - held_before); };
  std::string copy;
  resp::AppendArray(c.out, c.argc - 1);
  for (int i = 1; i < c.argc; i++) {
    if (reply_bytes() > c.s->output_budget) {
      DropReply(c, start);  // the client is closed: no point building the rest
      c.s->output_over_limit = true;
      return ExecStatus::kReplied;
    }
    if (reply_bytes() > kMaxReplyBytes) {
      DropReply(c, start);
      return c.Error("ERR reply larger than " + std::to_string(kMaxReplyBytes >> 20) +
                     " MiB; ask for fewer keys");
    }
    AppendValue(c, c.args[i], &copy);
  }
  return ExecStatus::kReplied;
}

ExecStatus StrLen(CommandContext& c) {
  KeyState k;
  c.ReadKey(c.args[1], true, &k);
  resp::AppendInt(c.out, static_cast<int64_t>(k.value.size()));
  return ExecStatus::kReplied;
}

ExecStatus Exists(CommandContext& c) {
  int64_t n = 0;
  KeyState k;
  for (int i = 1; i < c.argc; i++) n += c.ReadKey(c.args[i], false, &k) ? 1 : 0;
  resp::AppendInt(c.out, n);
  return ExecStatus::kReplied;
}

// TOUCH: how many of the keys exist (FaHA keeps no access times to update).
ExecStatus Touch(CommandContext& c) { return Exists(c); }

ExecStatus Type(CommandContext& c) {
  KeyState k;
  resp::AppendSimple(c.out, c.ReadKey(c.args[1], false, &k) ? "string" : "none");
  return ExecStatus::kReplied;
}

// TTL and PTTL.
ExecStatus Ttl(CommandContext& c) {
  KeyState k;
  int64_t ms = -2;
  if (c.ReadKey(c.args[1], false, &k)) {
    ms = k.expire_at_ms == 0 ? -1 : std::max<int64_t>(0, k.expire_at_ms - c.NowMs());
  }
  if (ms >= 0 && c.name() == "ttl") ms = (ms + 500) / 1000;
  resp::AppendInt(c.out, ms);
  return ExecStatus::kReplied;
}

// EXPIRETIME and PEXPIRETIME: when the key expires, in unix seconds (rounded,
// as Redis) or ms; -1 if it has no expiry, -2 if there is no key.
ExecStatus ExpireTime(CommandContext& c) {
  KeyState k;
  int64_t at = -2;
  if (c.ReadKey(c.args[1], false, &k)) at = k.expire_at_ms == 0 ? -1 : k.expire_at_ms;
  if (at > 0 && c.name() == "expiretime") at = (at + 500) / 1000;
  resp::AppendInt(c.out, at);
  return ExecStatus::kReplied;
}

// GETRANGE and SUBSTR: bytes start..end (inclusive) of the value, negative
// offsets counted from its end, clamped to it; "" for a missing key.
ExecStatus GetRange(CommandContext& c) {
  int64_t start = 0, end = 0;
  if (!ParseInt64(c.args[2], &start) || !ParseInt64(c.args[3], &end)) {
    return c.Error("ERR value is not an integer or out of range");
  }
  KeyState k;
  c.ReadKey(c.args[1], true, &k);
  const std::string& v = k.value;
  const int64_t len = static_cast<int64_t>(v.size());
  if (start < 0 && end < 0 && start > end) start = end = len;  // empty, as Redis
  if (start < 0) start = std::max<int64_t>(0, len + start);
  if (end < 0) end = std::max<int64_t>(0, len + end);
  end = std::min(end, len - 1);
  if (start > end || len == 0) {
    resp::AppendBulk(c.out, "");
  } else {
    resp::AppendBulk(c.out, std::string_view(v).substr(static_cast<size_t>(start),
                                                       static_cast<size_t>(end - start + 1)));
  }
  return ExecStatus::kReplied;
}

ExecStatus DbSize(CommandContext& c) {
  resp::AppendInt(c.out, static_cast<int64_t>(c.store()->KeyCount(c.ns)));
  return ExecStatus::kReplied;
}

ExecStatus Scan(CommandContext& c) {
  uint64_t cursor = 0;
  const std::string_view arg = c.args[1];
  auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), cursor);
  if (ec != std::errc() || p != arg.data() + arg.size()) return c.Error("ERR invalid cursor");
  std::string_view pattern;
  bool have_pattern = false;
  int64_t count = 10;
  bool type_match = true;
  for (int i = 2; i < c.argc; i++) {
    if (EqNoCase(c.args[i], "match") && i + 1 < c.argc) {
      pattern = c.args[++i];
      have_pattern = pattern != "*";  // Redis's shortcut: "*" filters nothing
    } else if (EqNoCase(c.args[i], "count") && i + 1 < c.argc) {
      if (!ParseInt64(c.args[++i], &count) || count < 1) {
        return c.Error("ERR value is not an integer or out of range");
      }
    } else if (EqNoCase(c.args[i], "type") && i + 1 < c.argc) {
      type_match = EqNoCase(c.args[++i], "string");
    } else {
      return c.Error("ERR syntax error");
    }
  }
  std::vector<std::string> keys;
  uint64_t next = c.store()->Scan(cursor, static_cast<size_t>(count), &keys);
  KeepNamespace(c.ns, &keys);
  if (!type_match) keys.clear();
  if (have_pattern) {
    keys.erase(std::remove_if(keys.begin(), keys.end(),
                              [&](const std::string& k) { return !GlobMatch(pattern, k); }),
               keys.end());
  }
  resp::AppendArray(c.out, 2);
  resp::AppendBulk(c.out, std::to_string(next));
  resp::AppendArray(c.out, static_cast<int64_t>(keys.size()));
  for (const auto& k : keys) resp::AppendBulk(c.out, k);
  return ExecStatus::kReplied;
}

}  // namespace faha::cmd
