#include "server/commands/commands.h"

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <climits>
#include <fstream>

#include "common/clock.h"
#include "common/resp.h"
#include "server/commands/command_context.h"
#include "server/commands/host.h"
#include "server/commands/script_engine.h"

namespace faha {

using namespace std::literals;
namespace {

uint64_t RssBytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

void InfoLine(std::string* t, const std::string& key, const std::string& value) {
  *t += key + ":" + value + "\r\n";
}

std::string Fixed2(double v) {
  char b[32];
  snprintf(b, sizeof(b), "%.2f", v);
  return b;
}

// INFO persistence's lines that are not metrics: the log and its recovery.
void AppendPersistenceInfo(const ServerOptions& opt, Store* store, std::string* t) {
  const nvm::RecoveryReport& r = opt.recovery;
  InfoLine(t, "log_dir", opt.data_dir);
  InfoLine(t, "log_granularity", store->log().Granularity());
  InfoLine(t, "log_segment_bytes", std::to_string(store->log().segment_bytes()));
  // Cleaned or truncated segments that replies still send big values from.
  InfoLine(t, "log_retired_held_bytes", std::to_string(store->log().RetiredHeldBytes()));
  InfoLine(t, "log_failed", store->failed() ? "1" : "0");
  InfoLine(t, "recovery_keys", std::to_string(opt.recovered_keys));
  InfoLine(t, "recovery_records", std::to_string(r.records));
  InfoLine(t, "recovery_seconds", Fixed2(r.seconds));
  InfoLine(t, "recovery_keys_per_sec",
           r.seconds > 0 ? Fixed2(static_cast<double>(opt.recovered_keys) / r.seconds) : "0");
  InfoLine(t, "recovery_torn_tail", r.torn_tail ? "1" : "0");
  InfoLine(t, "recovery_dropped_corrupt", r.dropped_corrupt ? "1" : "0");
  InfoLine(t, "aof_enabled", "0");
  InfoLine(t, "rdb_changes_since_last_save", "0");
}

}  // namespace

bool Commands::PasswordMatches(std::string_view given) const {
  const std::string& want = server_->options().requirepass;
  // Constant time in the length of the given password.
  unsigned char diff = given.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); i++) {
    diff |= static_cast<unsigned char>(given[i] ^ (i < want.size() ? want[i] : 0));
  }
  return diff == 0;
}

void Commands::AppendResult(std::string* out, const WriteResult& r) {
  switch (r.kind) {
    case WriteResult::Kind::kOk:
      resp::AppendSimple(out, "OK");
      break;
    case WriteResult::Kind::kNil:
      resp::AppendNil(out);
      break;
    case WriteResult::Kind::kInt:
      resp::AppendInt(out, r.integer);
      break;
    case WriteResult::Kind::kBulk:
      resp::AppendBulk(out, r.str);
      break;
    case WriteResult::Kind::kError:
      resp::AppendError(out, r.str);
      break;
    case WriteResult::Kind::kRaw:
      out->append(r.str);
      break;
  }
}

ExecStatus Commands::Submit(Session* s, WriteOp op, CompletionSink* sink) {
  op.start_us = s->start_us;
  op.client_id = s->client_id;
  op.client_seq = s->client_id != 0 ? s->write_seq : 0;
  server_->metrics()->ops[static_cast<int>(OpClass::kWrite)].fetch_add(1,
                                                                       std::memory_order_relaxed);
  outbox_->push_back(Store::Write{std::move(op), sink, s->conn_id});
  s->pending_writes++;
  return ExecStatus::kSubmitted;
}

std::string_view Refusal::code() const {
  switch (kind) {
    case Kind::kNone:
      return {};
    case Kind::kMoved:
      return "MOVED";
    case Kind::kTryAgain:
      return "TRYAGAIN";
    case Kind::kReadOnly:
      return "READONLY";
    case Kind::kStaleRead:
      return "STALEREAD";
  }
  return {};
}

std::string Refusal::RespText() const {
  std::string t(code());
  t += kind == Kind::kMoved ? " 0 " : " ";
  return t + text;
}

faha::Refusal Commands::Refusal(const Session& s, bool write) const {
  const ServerOptions& opt = server_->options();
  const ReplicationRole* repl = opt.replication;
  if (repl == nullptr) return {};
  const bool stale_ok = s.stale_reads || opt.stale_reads;
  faha::Refusal why = repl->Refusal(write, stale_ok);
  if (why.refused() || !repl->is_backup()) return why;
  if (write) {
    std::string primary = repl->primary_address();
    return {faha::Refusal::Kind::kReadOnly,
            "You can't write against a read only backup" +
                (primary.empty() ? std::string() : " (primary: " + primary + ")")};
  }
  if (!stale_ok) {
    return {faha::Refusal::Kind::kStaleRead,
            "this node is a backup and may lag its primary; send READONLY on this connection "
            "(or start it with --stale_reads) to read anyway"};
  }
  return {};
}

namespace {
// A Redis memory argument: digits with an optional unit (k/m/g = 1000s,
// kb/mb/gb = 1024s, any case). False if malformed or out of range.
bool ParseMemory(std::string_view s, uint64_t* v) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') digits++;
  if (digits == 0 || digits > 19) return false;
  uint64_t n = 0;
  for (size_t i = 0; i < digits; i++) n = n * 10 + static_cast<uint64_t>(s[i] - '0');
  const std::string unit = Lower(s.substr(digits));
  uint64_t mul = 1;
  if (unit == "k")
    mul = 1000;
  else if (unit == "kb")
    mul = 1024;
  else if (unit == "m")
    mul = 1000 * 1000;
  else if (unit == "mb")
    mul = 1024 * 1024;
  else if (unit == "g")
    mul = 1000 * 1000 * 1000;
  else if (unit == "gb")
    mul = 1024 * 1024 * 1024;
  else if (!unit.empty())
    return false;
  if (n > UINT64_MAX / mul) return false;
  *v = n * mul;
  return true;
}
}  // namespace

// CONFIG SET of the client limits (the rest of the configuration is flags).
// Every pair is checked before any is applied, as Redis does.
ExecStatus Commands::ConfigSet(const std::vector<std::string_view>& args, std::string* out) {
  const int argc = static_cast<int>(args.size());
  if (argc < 4 || argc % 2 != 0) {
    resp::AppendError(out, "ERR wrong number of arguments for 'config|set' command");
    return ExecStatus::kReplied;
  }
  struct Change {
    std::atomic<uint64_t>* u64 = nullptr;
    std::atomic<uint32_t>* u32 = nullptr;
    uint64_t value = 0;
  };
  ClientLimits& lim = server_->client_limits();
  std::vector<Change> changes;
  for (int i = 2; i < argc; i += 2) {
    const std::string param = Lower(args[i]);
    const std::string_view value = args[i + 1];
    auto failed = [&](const std::string& why) {
      resp::AppendError(
          out, "ERR CONFIG SET failed (possibly related to argument '" + param + "') - " + why);
      return ExecStatus::kReplied;
    };
    uint64_t n = 0;
    if (param == "maxmemory-clients") {
      if (!ParseMemory(value, &n)) return failed("argument must be a memory value");
      changes.push_back({&lim.maxmemory_clients, nullptr, n});
    } else if (param == "timeout") {
      if (!ParseMemory(value, &n) ||
          value.find_first_not_of("0123456789") != std::string_view::npos || n > UINT32_MAX) {
        return failed("argument couldn't be parsed into an integer");
      }
      changes.push_back({nullptr, &lim.timeout_s, n});
    } else if (param == "client-output-buffer-limit") {
      std::vector<std::string> words;
      std::string w;
      for (char ch : value) {
        if (ch == ' ') {
          if (!w.empty()) words.push_back(w);
          w.clear();
        } else {
          w += ch;
        }
      }
      if (!w.empty()) words.push_back(w);
      if (words.size() % 4 != 0 || words.empty()) return failed("wrong number of arguments");
      for (size_t k = 0; k < words.size(); k += 4) {
        const std::string cls = Lower(words[k]);
        uint64_t hard, soft, secs;
        if (cls != "normal") {
          return failed("FaHA has only normal clients (no replica or pubsub class)");
        }
        if (!ParseMemory(words[k + 1], &hard) || !ParseMemory(words[k + 2], &soft) ||
            !ParseMemory(words[k + 3], &secs) || secs > UINT32_MAX) {
          return failed("invalid memory or seconds");
        }
        changes.push_back({&lim.output_hard_bytes, nullptr, hard});
        changes.push_back({&lim.output_soft_bytes, nullptr, soft});
        changes.push_back({nullptr, &lim.output_soft_seconds, secs});
      }
    } else {
      resp::AppendError(out, "ERR Unknown option or number of arguments for CONFIG SET - '" +
                                 std::string(args[i].substr(0, 64)) +
                                 "' (FaHA sets maxmemory-clients, client-output-buffer-limit and "
                                 "timeout; the rest is command-line flags)");
      return ExecStatus::kReplied;
    }
  }
  for (const Change& c : changes) {
    if (c.u64 != nullptr) c.u64->store(c.value);
    if (c.u32 != nullptr) c.u32->store(static_cast<uint32_t>(c.value));
  }
  resp::AppendSimple(out, "OK");
  return ExecStatus::kReplied;
}

namespace {
void CountError(Metrics* m) { m->errors.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

bool Commands::ScriptBusy(const CommandRow& row, const std::vector<std::string_view>& args) const {
  const int64_t since = ScriptEngine::Get().running_since_ms();
  if (since == 0 || WallMs() - since < server_->options().busy_reply_threshold_ms) return false;
  if (row.redis_flags.find("allow_busy") != std::string_view::npos) return false;
  if (row.name == "function" && args.size() == 2 && EqNoCase(args[1], "stats")) return false;
  return !((row.name == "script" || row.name == "function") && args.size() == 2 &&
           EqNoCase(args[1], "kill"));
}

namespace {
// A script has run too long: BUSY. Inside MULTI the transaction aborts, and
// EXEC refused discards it, as Redis's refusals do.
ExecStatus Busy(CommandContext& c, bool queueing) {
  Session* s = c.s;
  std::string busy =
      "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
  if (s->in_multi && c.row.name == "exec") {
    if (!c.may_reply) return ExecStatus::kBlocked;
    s->ClearMulti();
    busy = "EXECABORT Transaction discarded because of: " + busy;
  }
  const ExecStatus st = c.Error(busy);
  if (queueing && st == ExecStatus::kReplied) s->multi_dirty = true;
  return st;
}
}  // namespace

ExecStatus CommandContext::Error(std::string_view msg) const {
  if (!may_reply) return ExecStatus::kBlocked;
  resp::AppendError(out, msg);
  CountError(metrics());
  return ExecStatus::kReplied;
}

ExecStatus CommandContext::WrongArgs() const {
  return Error("ERR wrong number of arguments for '" + std::string(row.name) + "' command");
}

ExecStatus CommandContext::Ok() const {
  resp::AppendSimple(out, "OK");
  return ExecStatus::kReplied;
}

ExecStatus CommandContext::Submit(WriteOp op) const {
  if (captured != nullptr) {
    *captured = std::move(op);
    return ExecStatus::kSubmitted;
  }
  return commands.Submit(s, std::move(op), sink);
}

bool CommandContext::ReadKey(std::string_view key, bool want_value, KeyState* state) const {
  if (txn == nullptr) return store()->Read(key, want_value, state);
  *state = txn->Get(key, want_value);
  return state->exists;
}

int64_t CommandContext::NowMs() const { return txn != nullptr ? txn->NowMs() : WallMs(); }

// The one path every RESP and native command takes: the row's checks
// (arity, authentication, reply order, where data may be served), then its
// handler.
ExecStatus Commands::Execute(Session* s, const std::vector<std::string_view>& args,
                             std::string* out, CompletionSink* sink) {
  Metrics* m = server_->metrics();
  s->op_class = OpClass::kOther;
  s->refused = {};
  if (args.empty()) {
    // An empty inline line: Redis ignores it.
    return s->pending_writes == 0 ? ExecStatus::kReplied : ExecStatus::kBlocked;
  }
  if (s->barrier) {
    if (s->pending_writes > 0) return ExecStatus::kBlocked;
    s->barrier = false;
  }
  const CommandRow* row = FindCommand(args[0]);
  // Inside MULTI, a command refused before it could be queued aborts the
  // transaction, as Redis's does.
  const bool queueing = s->in_multi && (!row || !(row->flags & kCmdNotQueued));
  // Any immediate reply must wait for earlier pending writes (reply order),
  // unless it reads no data and the I/O thread sends it after theirs.
  const bool reads_no_data =
      queueing || (row != nullptr && (row->name == "multi" || row->name == "discard"));
  const bool may_reply = s->pending_writes == 0 || (s->deferring && reads_no_data);
  if (!row) {
    if (!may_reply) return ExecStatus::kBlocked;
    std::string msg = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                      "', with args beginning with: ";
    for (size_t i = 1; i < args.size() && i < 4; i++) {
      msg += "'" + std::string(args[i].substr(0, 64)) + "' ";
    }
    resp::AppendError(out, msg);
    CountError(m);
    if (queueing) s->multi_dirty = true;
    return ExecStatus::kReplied;
  }
  const int argc = static_cast<int>(args.size());
  CommandContext c{*this, *server_, s, args, argc, *row, out, sink, may_reply};
  const bool bad_arity =
      (row->arity > 0 && argc != row->arity) || (row->arity < 0 && argc < -row->arity);
  if (bad_arity || (!(row->flags & kCmdNoAuth) && !s->authed)) {
    std::string msg =
        bad_arity ? "ERR wrong number of arguments for '" + std::string(row->name) + "' command"
                  : "NOAUTH Authentication required.";
    if (row->name == "exec") {
      // EXEC itself refused: the transaction is discarded, as Redis does.
      if (!may_reply) return ExecStatus::kBlocked;
      s->ClearMulti();
      if (msg.rfind("ERR ", 0) == 0) msg.erase(0, 4);
      msg = "EXECABORT Transaction discarded because of: " + msg;
    }
    const ExecStatus st = c.Error(msg);
    if (queueing && st == ExecStatus::kReplied) s->multi_dirty = true;
    return st;
  }
  if (ScriptBusy(*row, args)) return Busy(c, queueing);
  // The keys in the session's database, from here on.
  KeyArgs keyed;
  std::string key_error;
  const int ns = PhysicalDb(*server_, queueing ? s->multi_db : s->db);
  if (!PrepareKeys(*row, args, ns, &keyed, &key_error)) {
    const ExecStatus st = c.Error(key_error);
    if (queueing && st == ExecStatus::kReplied) s->multi_dirty = true;
    return st;
  }
  return Run(c, keyed.Of(args), ns, queueing);
}

ExecStatus Commands::Run(const CommandContext& checked, const std::vector<std::string_view>& args,
                         int ns, bool queueing) {
  Session* s = checked.s;
  const CommandRow* row = &checked.row;
  CommandContext c{*this,        *server_,         s, args, checked.argc, *row, checked.out,
                   checked.sink, checked.may_reply};
  c.ns = ns;
  if (queueing) return cmd::Queue(c);
  if (!row->write() && !(row->flags & kCmdMaySubmit) && !c.may_reply) return ExecStatus::kBlocked;
  if (row->flags & (kCmdWrite | kCmdKeyRead | kCmdDataRead)) {
    const faha::Refusal why = Refusal(*s, row->write());
    if (why.refused()) {
      const ExecStatus st = c.Error(why.RespText());
      if (st == ExecStatus::kReplied) s->refused = why;
      return st;
    }
  }
  s->op_class = row->op_class();
  Metrics* m = server_->metrics();
  if (row->write()) {
    // Submit counts a write once queued; one refused at once (bad arguments)
    // is timed as an immediate reply.
    const ExecStatus st = row->handler(c);
    if (st != ExecStatus::kSubmitted) s->op_class = OpClass::kOther;
    return st;
  }
  m->ops[static_cast<int>(s->op_class)].fetch_add(1, std::memory_order_relaxed);
  if (!(row->flags & (kCmdKeyRead | kCmdDataRead))) return row->handler(c);
  Store::ReadGuard guard = server_->store()->LockForRead();
  return row->handler(c);
}

ExecStatus Commands::ExecuteTransaction(Session* s,
                                        const std::vector<std::vector<std::string_view>>& commands,
                                        std::string* out, CompletionSink* sink) {
  static const CommandRow* const exec = FindCommand("exec");
  static const std::vector<std::string_view> exec_args = {"exec"};
  if (s->barrier) {  // after a SWAPDB, as Execute
    if (s->pending_writes > 0) return ExecStatus::kBlocked;
    s->barrier = false;
  }
  s->op_class = OpClass::kOther;
  s->refused = {};
  CommandContext c{*this, *server_, s, exec_args, 1, *exec, out, sink, s->pending_writes == 0};
  return cmd::RunTransaction(c, commands);
}

void Commands::Info(std::string_view section, std::string* out) const {
  const ServerOptions& opt = server_->options();
  Store* store = server_->store();
  const Metrics& m = *server_->metrics();
  const bool all = section == "default"sv || section == "all"sv || section == "everything"sv;
  std::string t;
  auto line = [&](const std::string& k, const std::string& v) { InfoLine(&t, k, v); };
  // Each section: its header, what is not a metric, then its metrics
  // (server/metrics/metrics.cc, the same list /metrics shows).
  auto begin = [&](std::string_view name, std::string_view title) {
    if (!all && section != name) return false;
    t.append("# ").append(title).append("\r\n");
    return true;
  };
  auto end = [&](std::string_view name) {
    AppendInfoMetrics(m, name, &t);
    t += "\r\n";
  };
  if (begin("server", "Server")) {
    line("redis_version", "7.0.0");
    line("faha_version", kVersion);
    line("redis_mode", "standalone");
    line("process_id", std::to_string(getpid()));
    line("tcp_port", std::to_string(server_->bound_port()));
    line("uptime_in_seconds", std::to_string((WallMs() - server_->start_ms()) / 1000));
    line("io_threads", std::to_string(opt.io_threads));
    line("metrics_port", std::to_string(opt.metrics_port));
    line("rdma", opt.rdma_info.empty() ? "off" : opt.rdma_info);
    end("server");
  }
  if (begin("clients", "Clients")) {
    line("maxclients", std::to_string(opt.max_clients));
    end("clients");
  }
  if (begin("memory", "Memory")) {
    const uint64_t keys = store->KeyCount();
    line("used_memory_rss", std::to_string(RssBytes()));
    line("index_bytes_per_key",
         keys ? Fixed2(static_cast<double>(store->IndexMemoryBytes()) / keys) : "0");
    line("hot_cache_budget", std::to_string(store->hot().budget()));
    line("log_mapped_bytes", std::to_string(store->log().file_bytes()));
    end("memory");
  }
  if (begin("persistence", "Persistence")) {
    AppendPersistenceInfo(opt, store, &t);
    end("persistence");
  }
  if (begin("stats", "Stats")) {
    uint64_t total = 0;
    for (int c = 0; c < kOpClasses; c++) total += m.ops[c].load();
    line("total_commands_processed", std::to_string(total));
    line("expired_keys", std::to_string(server_->expired_keys()));
    end("stats");
  }
  if (begin("replication", "Replication")) {
    if (opt.replication) {
      opt.replication->AppendInfo(&t);
    } else {
      t += "role:primary\r\nbackups:0\r\nconnected_slaves:0\r\n";
    }
    t += "\r\n";
  }
  if (begin("keyspace", "Keyspace")) {
    for (uint32_t db = 0; db < opt.databases; db++) {
      const int n = store->PhysicalDb(static_cast<int>(db));
      if (store->KeyCount(n) == 0) continue;
      line("db" + std::to_string(db), "keys=" + std::to_string(store->KeyCount(n)) + ",expires=" +
                                          std::to_string(store->KeysWithExpiry(n)) + ",avg_ttl=0");
    }
  }
  resp::AppendBulk(out, t);
}

}  // namespace faha
