// Keyspace commands: RENAME, RENAMENX and COPY (writes: each evaluated on the
// committing thread against the keys as they are then), KEYS and RANDOMKEY
// (reads of the whole keyspace), OBJECT (ENCODING, REFCOUNT, IDLETIME, FREQ,
// HELP) and LCS (reads of named keys). Rows in server/commands/command_table.cc.
#include <algorithm>
#include <random>
#include <vector>

#include "common/clock.h"
#include "common/glob.h"
#include "common/resp.h"
#include "server/commands/command_context.h"
#include "server/commands/dump_payload.h"
#include "server/commands/write_args.h"
#include "server/engine/namespaces.h"

namespace faha::cmd {

namespace {

constexpr uint32_t kCopyReplace = 1;

// RENAME and RENAMENX: op.args = source, destination; op.flags = 1 for NX.
// The value and its expiry move; an error if the source is absent.
WriteResult EvalRename(const WriteOp& op, WriteContext& w) {
  const std::string_view from = op.args[0], to = op.args[1];
  KeyState src = w.Get(from, true);
  if (!src.exists) return WriteResult::Error("ERR no such key");
  const bool nx = op.flags != 0;
  if (from == to) return nx ? WriteResult::Int(0) : WriteResult::Ok();
  if (nx && w.Get(to, false).exists) return WriteResult::Int(0);
  w.Put(to, src.value, src.expire_at_ms);
  w.Delete(from);
  return nx ? WriteResult::Int(1) : WriteResult::Ok();
}

// COPY: op.args = source, destination; op.flags = kCopyReplace. 1 if copied.
WriteResult EvalCopy(const WriteOp& op, WriteContext& w) {
  KeyState src = w.Get(op.args[0], true);
  if (!src.exists) return WriteResult::Int(0);
  if (!(op.flags & kCopyReplace) && w.Get(op.args[1], false).exists) return WriteResult::Int(0);
  w.Put(op.args[1], src.value, src.expire_at_ms);
  return WriteResult::Int(1);
}

constexpr uint32_t kRestoreReplace = 1;
constexpr uint32_t kRestoreRefused = 2;  // args[1] is the error, given after BUSYKEY's

// RESTORE: op.args = key, value; op.expire_at_ms = its expiry (0: none,
// -1: already past); op.flags as above.
WriteResult EvalRestore(const WriteOp& op, WriteContext& w) {
  const bool exists = w.Get(op.args[0], false).exists;
  if (exists && !(op.flags & kRestoreReplace)) {
    return WriteResult::Error("BUSYKEY Target key name already exists.");
  }
  if (op.flags & kRestoreRefused) return WriteResult::Error(std::string(op.args[1]));
  const int64_t at = op.expire_at_ms;
  if (at < 0 || (at != 0 && at <= w.NowMs())) {
    // Expired already: Redis replies OK and leaves no key.
    if (exists) w.Delete(op.args[0]);
    return WriteResult::Ok();
  }
  w.Put(op.args[0], op.args[1], at);
  return WriteResult::Ok();
}

ExecStatus SubmitPair(CommandContext& c, WriteEval eval, uint32_t flags) {
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || KeyTooLong(c, c.args[2], &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = eval;
  op.flags = flags;
  op.args = {c.args[1], c.args[2]};
  return c.Submit(std::move(op));
}

// Every live key, in index order (what SCAN would give over a whole pass).
std::vector<std::string> AllKeys(CommandContext& c) {
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  do {
    cursor = c.store()->Scan(cursor, 1024, &keys);
  } while (cursor != 0);
  KeepNamespace(c.ns, &keys);
  return keys;
}

// How Redis would store a string value: "int" if it reads as a 64-bit
// integer written canonically, "embstr" up to 44 bytes, else "raw".
std::string_view EncodingOf(const std::string& v, int64_t* as_int) {
  if (v.size() <= 20 && ParseInt64(v, as_int) && std::to_string(*as_int) == v) return "int";
  return v.size() <= 44 ? "embstr" : "raw";
}

}  // namespace

ExecStatus Rename(CommandContext& c) {
  return SubmitPair(c, EvalRename, c.name() == "renamenx" ? 1 : 0);
}

// COPY source destination [DB destination-db] [REPLACE]: database 0 only.
ExecStatus Copy(CommandContext& c) {
  uint32_t flags = 0;
  int to = c.ns;
  for (int i = 3; i < c.argc; i++) {
    if (EqNoCase(c.args[i], "replace")) {
      flags |= kCopyReplace;
    } else if (EqNoCase(c.args[i], "db") && i + 1 < c.argc) {
      int db = 0;
      std::string error;
      if (!ParseDb(c.options().databases, c.args[++i], &db, &error)) return c.Error(error);
      to = PhysicalDb(c.server, db);
    } else {
      return c.Error("ERR syntax error");
    }
  }
  // The destination's name in its database (the dispatcher put it in ours).
  const std::string dest = ns::DbPrefix(to) + std::string(c.args[2].substr(ns::DbPrefixSize(c.ns)));
  if (c.args[1] == dest) return c.Error("ERR source and destination objects are the same");
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || KeyTooLong(c, dest, &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalCopy;
  op.flags = flags;
  op.args = {c.args[1], dest};
  return c.Submit(std::move(op));
}

// DUMP key: Redis's payload (server/commands/dump_payload.h), nil if absent.
ExecStatus Dump(CommandContext& c) {
  KeyState k;
  if (!c.ReadKey(c.args[1], true, &k)) {
    resp::AppendNil(c.out);
  } else {
    resp::AppendBulk(c.out, DumpString(k.value));
  }
  return ExecStatus::kReplied;
}

// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]
ExecStatus Restore(CommandContext& c) {
  bool replace = false, abs_ttl = false, idle = false, freq = false;
  for (int i = 4; i < c.argc; i++) {
    int64_t n = 0;
    if (EqNoCase(c.args[i], "replace")) {
      replace = true;
    } else if (EqNoCase(c.args[i], "absttl")) {
      abs_ttl = true;
    } else if (EqNoCase(c.args[i], "idletime") && i + 1 < c.argc && !freq) {
      if (!ParseInt64(c.args[++i], &n)) return c.Error(kNotInteger);
      if (n < 0) return c.Error("ERR Invalid IDLETIME value, must be >= 0");
      idle = true;  // (FaHA keeps no idle time: accepted and ignored)
    } else if (EqNoCase(c.args[i], "freq") && i + 1 < c.argc && !idle) {
      if (!ParseInt64(c.args[++i], &n)) return c.Error(kNotInteger);
      if (n < 0 || n > 255) return c.Error("ERR Invalid FREQ value, must be >= 0 and <= 255");
      freq = true;
    } else {
      return c.Error("ERR syntax error");
    }
  }
  // A bad TTL or payload is refused after the key is found absent, as Redis does.
  int64_t ttl = 0;
  std::string value, error;
  if (!ParseInt64(c.args[2], &ttl)) {
    error = kNotInteger;
  } else if (ttl < 0) {
    error = "ERR Invalid TTL value, must be >= 0";
  } else {
    RestoreString(c.args[3], c.options().max_value_bytes, &value, &error);
  }
  ExecStatus st;
  if (KeyTooLong(c, c.args[1], &st) || ValueTooLong(c, value, &st)) return st;
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalRestore;
  op.flags = (replace ? kRestoreReplace : 0) | (error.empty() ? 0 : kRestoreRefused);
  if (!error.empty()) value = error;
  if (ttl != 0) {
    const int64_t now = WallMs();
    op.expire_at_ms = abs_ttl ? ttl : (ttl > INT64_MAX - now ? INT64_MAX : now + ttl);
    if (op.expire_at_ms <= now) op.expire_at_ms = -1;
  }
  op.args = {c.args[1], value};
  return c.Submit(std::move(op));
}

ExecStatus Keys(CommandContext& c) {
  const std::string_view pattern = c.args[1];
  std::vector<std::string> keys = AllKeys(c);
  if (pattern != "*") {
    keys.erase(std::remove_if(keys.begin(), keys.end(),
                              [&](const std::string& k) { return !GlobMatch(pattern, k); }),
               keys.end());
  }
  resp::AppendArray(c.out, static_cast<int64_t>(keys.size()));
  for (const auto& k : keys) resp::AppendBulk(c.out, k);
  return ExecStatus::kReplied;
}

// RANDOMKEY: a key from a random place in the index, or nil.
ExecStatus RandomKey(CommandContext& c) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::vector<std::string> keys;
  for (int tries = 0; tries < 4 && keys.empty(); tries++) {
    c.store()->Scan(tries < 3 ? rng() : 0, 16, &keys);
    KeepNamespace(c.ns, &keys);
  }
  if (keys.empty()) keys = AllKeys(c);
  if (keys.empty()) {
    resp::AppendNil(c.out);
  } else {
    resp::AppendBulk(c.out, keys[rng() % keys.size()]);
  }
  return ExecStatus::kReplied;
}

// OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key, OBJECT HELP.
ExecStatus Object(CommandContext& c) {
  const std::string sub = Lower(c.args[1]);
  if (sub == "help" && c.argc == 2) {
    static const char* const kHelp[] = {
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    };
    resp::AppendArray(c.out, static_cast<int64_t>(std::size(kHelp)));
    for (const char* line : kHelp) resp::AppendSimple(c.out, line);
    return ExecStatus::kReplied;
  }
  const bool known = sub == "encoding" || sub == "refcount" || sub == "idletime" || sub == "freq";
  if (!known) {
    return c.Error("ERR unknown subcommand '" + std::string(c.args[1].substr(0, 128)) +
                   "'. Try OBJECT HELP.");
  }
  if (c.argc != 3) return c.Error("ERR wrong number of arguments for 'object|" + sub + "' command");
  KeyState k;
  if (!c.ReadKey(c.args[2], true, &k)) {
    resp::AppendNil(c.out);
    return ExecStatus::kReplied;
  }
  int64_t v = 0;
  const std::string_view encoding = EncodingOf(k.value, &v);
  if (sub == "encoding") {
    resp::AppendBulk(c.out, encoding);
  } else if (sub == "refcount") {
    // Redis shares the integers 0..9999 (OBJ_SHARED_REFCOUNT).
    resp::AppendInt(c.out, encoding == "int" && v >= 0 && v < 10000 ? INT32_MAX : 1);
  } else if (sub == "idletime") {
    resp::AppendInt(c.out, 0);  // FaHA keeps no access times (docs/redis-compat.md)
  } else {
    return c.Error(
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
        "that when switching between policies at runtime LRU and LFU data will take some time "
        "to adjust.");
  }
  return ExecStatus::kReplied;
}

namespace {

struct LcsOptions {
  bool len_only = false, idx = false, with_len = false;
  int64_t min_len = 0;
};

// The LCS of a and b, and with o.idx its matching ranges as RESP (a's range,
// b's range, the length if asked), walked back from the end as Redis 7.0
// does, so the ranges come in Redis's order. `table` holds the lengths.
void WalkLcs(const std::string& a, const std::string& b, const LcsOptions& o, std::string* lcs,
             std::string* matches, int64_t* nmatches) {
  const size_t alen = a.size(), blen = b.size();
  std::vector<uint32_t> table((alen + 1) * (blen + 1), 0);
  auto at = [&](size_t i, size_t j) -> uint32_t& { return table[j * (alen + 1) + i]; };
  for (size_t i = 1; i <= alen; i++) {
    for (size_t j = 1; j <= blen; j++) {
      at(i, j) = a[i - 1] == b[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
    }
  }
  uint32_t left = at(alen, blen);
  lcs->assign(left, '\0');
  size_t i = alen, j = blen;
  size_t a_start = alen, a_end = 0, b_start = 0, b_end = 0;
  while (i > 0 && j > 0) {
    bool emit = false;
    if (a[i - 1] == b[j - 1]) {
      (*lcs)[left - 1] = a[i - 1];
      if (a_start == alen) {
        a_start = a_end = i - 1;
        b_start = b_end = j - 1;
      } else if (a_start == i && b_start == j) {
        a_start--;
        b_start--;
      } else {
        emit = true;
      }
      if (a_start == 0 || b_start == 0) emit = true;
      left--;
      i--;
      j--;
    } else {
      at(i - 1, j) > at(i, j - 1) ? i-- : j--;
      if (a_start != alen) emit = true;
    }
    if (!emit) continue;
    const size_t match_len = a_end - a_start + 1;
    if (o.idx && (o.min_len == 0 || match_len >= static_cast<size_t>(o.min_len))) {
      resp::AppendArray(matches, o.with_len ? 3 : 2);
      for (auto [from, to] : {std::pair{a_start, a_end}, std::pair{b_start, b_end}}) {
        resp::AppendArray(matches, 2);
        resp::AppendInt(matches, static_cast<int64_t>(from));
        resp::AppendInt(matches, static_cast<int64_t>(to));
      }
      if (o.with_len) resp::AppendInt(matches, static_cast<int64_t>(match_len));
      (*nmatches)++;
    }
    a_start = alen;
  }
}

}  // namespace

// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest
// common subsequence of the two values (absent keys are empty).
ExecStatus Lcs(CommandContext& c) {
  LcsOptions o;
  for (int i = 3; i < c.argc; i++) {
    if (EqNoCase(c.args[i], "idx")) {
      o.idx = true;
    } else if (EqNoCase(c.args[i], "len")) {
      o.len_only = true;
    } else if (EqNoCase(c.args[i], "withmatchlen")) {
      o.with_len = true;
    } else if (EqNoCase(c.args[i], "minmatchlen") && i + 1 < c.argc) {
      if (!ParseInt64(c.args[++i], &o.min_len)) return c.Error(kNotInteger);
      o.min_len = std::max<int64_t>(o.min_len, 0);
    } else {
      return c.Error("ERR syntax error");
    }
  }
  if (o.idx && o.len_only) {
    return c.Error("ERR If you want both the length and indexes, please just use IDX.");
  }
  KeyState ka, kb;
  c.ReadKey(c.args[1], true, &ka);
  c.ReadKey(c.args[2], true, &kb);
  // The table has (alen+1)*(blen+1) cells of 4 bytes: bounded, as Redis bounds it.
  constexpr uint64_t kMaxCells = 64ull << 20;
  if ((ka.value.size() + 1) * (kb.value.size() + 1) > kMaxCells) {
    return c.Error("ERR Insufficient memory, transient memory for LCS exceeds FaHA's limit of " +
                   std::to_string(kMaxCells * 4 >> 20) + " MiB");
  }
  std::string lcs, matches;
  int64_t nmatches = 0;
  WalkLcs(ka.value, kb.value, o, &lcs, &matches, &nmatches);
  if (o.idx) {
    resp::AppendArray(c.out, 4);
    resp::AppendBulk(c.out, "matches");
    resp::AppendArray(c.out, nmatches);
    c.out->append(matches);
    resp::AppendBulk(c.out, "len");
    resp::AppendInt(c.out, static_cast<int64_t>(lcs.size()));
  } else if (o.len_only) {
    resp::AppendInt(c.out, static_cast<int64_t>(lcs.size()));
  } else {
    resp::AppendBulk(c.out, lcs);
  }
  return ExecStatus::kReplied;
}

}  // namespace faha::cmd
