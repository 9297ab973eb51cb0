// Numbered databases: SELECT, SWAPDB, MOVE, FLUSHDB, and how every other
// command's keys are put in the session's database (PrepareKeys). One log and
// one index hold them all, each database's keys behind its prefix
// (server/engine/namespaces.h); rows in server/commands/command_table.cc.
#include <cstdint>
#include <string>
#include <vector>

#include "common/resp.h"
#include "common/strings.h"
#include "server/commands/command_context.h"
#include "server/engine/namespaces.h"

namespace faha {

namespace {

constexpr std::string_view kReservedKey =
    "ERR keys that begin with the bytes \\xff\\x00FAHA are reserved for FaHA's own state";

// Where `row`'s keys are in `args`, by its legacy key range (Redis's first,
// last and step), or at argument 2 for OBJECT's subcommands. Scripts' keys
// are not here: their redis.call puts them in the script's database.
template <typename Fn>
void ForEachKey(const CommandRow& row, const std::vector<std::string_view>& args, Fn fn) {
  const int argc = static_cast<int>(args.size());
  if (row.flags & kCmdKeyAt2) {
    if (argc > 2) fn(2);
    return;
  }
  if (row.first_key <= 0) return;
  const int last = row.last_key < 0 ? argc + row.last_key : row.last_key;
  for (int i = row.first_key; i <= last && i < argc; i += row.key_step) fn(i);
}

}  // namespace

bool PrepareKeys(const CommandRow& row, const std::vector<std::string_view>& args, int ns,
                 KeyArgs* out, std::string* error) {
  // In every database: MOVE and COPY take a key to database 0 as it is.
  bool reserved = false;
  ForEachKey(row, args, [&](int i) { reserved = reserved || ns::IsReserved(args[i]); });
  if (reserved) {
    *error = kReservedKey;
    return false;
  }
  if (ns == 0) return true;
  const std::string prefix = ns::DbPrefix(ns);
  out->views = args;
  out->storage.reserve(args.size());
  ForEachKey(row, args, [&](int i) {
    out->storage.push_back(prefix + std::string(args[i]));
    out->views[i] = out->storage.back();
  });
  out->rewritten = true;
  return true;
}

bool ParseDb(uint32_t databases, std::string_view arg, int* db, std::string* error) {
  int64_t n = 0;
  if (!ParseInt64(arg, &n)) {
    *error = "ERR value is not an integer or out of range";
    return false;
  }
  if (n < 0 || n >= static_cast<int64_t>(databases)) {
    *error = "ERR DB index is out of range";
    return false;
  }
  *db = static_cast<int>(n);
  return true;
}

int PhysicalDbIn(std::string_view map, int db) {
  return ns::IsDbMap(map) ? static_cast<unsigned char>(map[static_cast<size_t>(db)]) : db;
}

int PhysicalDb(const CommandHost& host, int db) {
  const Store* store = host.store();
  return store == nullptr ? db : store->PhysicalDb(db);
}

std::string CanonicalDbMap(std::string_view map) {
  if (!ns::IsDbMap(map)) return {};
  for (int i = 0; i < ns::kMaxDatabases; i++) {
    if (static_cast<unsigned char>(map[static_cast<size_t>(i)]) != i) return std::string(map);
  }
  return {};
}

std::string DbMapSnapshot(const CommandHost& host) {
  Store* store = host.store();
  if (store == nullptr) return {};
  KeyState k;
  auto guard = store->LockForRead();
  store->Read(ns::kDbMapKey, true, &k);
  return CanonicalDbMap(k.value);
}

void KeepNamespace(int ns, std::vector<std::string>* keys) {
  const size_t strip = ns::DbPrefixSize(ns);
  size_t kept = 0;
  for (std::string& k : *keys) {
    if (ns::Of(k) != ns) continue;
    (*keys)[kept++] = strip == 0 ? std::move(k) : k.substr(strip);
  }
  keys->resize(kept);
}

namespace cmd {

namespace {

// MOVE: op.args = the key, its name in the other database. 1 if moved.
WriteResult EvalMove(const WriteOp& op, WriteContext& w) {
  KeyState src = w.Get(op.args[0], true);
  if (!src.exists || w.Get(op.args[1], false).exists) return WriteResult::Int(0);
  w.Put(op.args[1], src.value, src.expire_at_ms);
  w.Delete(op.args[0]);
  return WriteResult::Int(1);
}

// SWAPDB: op.number = the two logical databases (a * 256 + b).
WriteResult EvalSwapDb(const WriteOp& op, WriteContext& w) {
  KeyState map = w.Get(ns::kDbMapKey, true);
  if (!ns::IsDbMap(map.value)) {
    map.value.resize(ns::kMaxDatabases);
    for (int i = 0; i < ns::kMaxDatabases; i++) map.value[i] = static_cast<char>(i);
  }
  const auto a = static_cast<size_t>(op.number / ns::kMaxDatabases);
  const auto b = static_cast<size_t>(op.number % ns::kMaxDatabases);
  std::swap(map.value[a], map.value[b]);
  w.Put(ns::kDbMapKey, map.value, 0);
  return WriteResult::Ok();
}

}  // namespace

ExecStatus Select(CommandContext& c) {
  int db = 0;
  std::string error;
  if (!ParseDb(c.options().databases, c.args[1], &db, &error)) return c.Error(error);
  c.s->db = db;
  return c.Ok();
}

ExecStatus Move(CommandContext& c) {
  int db = 0;
  std::string error;
  if (!ParseDb(c.options().databases, c.args[2], &db, &error)) return c.Error(error);
  const int to = PhysicalDb(c.server, db);
  if (to == c.ns) return c.Error("ERR source and destination objects are the same");
  const std::string_view key = c.args[1].substr(ns::DbPrefixSize(c.ns));
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalMove;
  op.args = {c.args[1], ns::DbPrefix(to) + std::string(key)};
  return c.Submit(std::move(op));
}

ExecStatus SwapDb(CommandContext& c) {
  int64_t a = 0, b = 0;
  if (!ParseInt64(c.args[1], &a) || a < INT32_MIN || a > INT32_MAX) {
    return c.Error("ERR invalid first DB index");
  }
  if (!ParseInt64(c.args[2], &b) || b < INT32_MIN || b > INT32_MAX) {
    return c.Error("ERR invalid second DB index");
  }
  const int64_t dbs = c.options().databases;
  if (a < 0 || a >= dbs || b < 0 || b >= dbs) return c.Error("ERR DB index is out of range");
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalSwapDb;
  op.number = a * ns::kMaxDatabases + b;
  // The connection's next command must see the new map (SWAPDB's own reply
  // comes once it is applied): it waits for this write.
  c.s->barrier = true;
  return c.Submit(std::move(op));
}

ExecStatus FlushDb(CommandContext& c) {
  if (c.argc > 2 ||
      (c.argc == 2 && !EqNoCase(c.args[1], "sync") && !EqNoCase(c.args[1], "async"))) {
    return c.Error("ERR syntax error");
  }
  WriteOp op;
  op.kind = WriteOp::Kind::kFlushDb;
  op.number = c.ns;
  return c.Submit(std::move(op));
}

}  // namespace cmd

}  // namespace faha
