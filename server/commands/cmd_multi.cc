// Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, and the native
// protocol's one-request transaction. Inside MULTI the dispatcher queues each
// command (Queue). EXEC turns the queue into one write whose evaluation runs
// every queued command in order on the committing thread, against the keys as
// the transaction itself leaves them: its records go into one log batch, so
// they become durable, replicated and visible together or not at all, and no
// other write is evaluated between them. Rows in server/commands/command_table.cc.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/resp.h"
#include "server/commands/command_context.h"
#include "server/engine/namespaces.h"

namespace faha::cmd {

namespace {

constexpr const char* kExecAbort = "EXECABORT Transaction discarded because of previous errors.";

// One queued command, made ready at EXEC on the connection's thread.
struct Step {
  enum class Kind : uint8_t {
    kReply,  // replied at EXEC already (an argument error, or a command that reads no key)
    kWrite,  // `op`, evaluated in order
    kRead,   // `row` with `args`, run in order against the transaction's keys
  };
  Kind kind = Kind::kReply;
  std::string reply;
  WriteOp op;
  const CommandRow* row = nullptr;
  std::vector<std::string> args;
  int ns = 0;  // the physical database its keys are in
};

struct Transaction final : EvalPayload {
  CommandHost* host = nullptr;
  std::string map;  // the database map its keys were put in with (DbMapSnapshot)
  std::vector<std::pair<std::string, KeyState>> watched;
  std::vector<Step> steps;
};

// Whether a watched key is not as it was when watched: written, deleted,
// expired, flushed (or moved by the log cleaner: a spurious abort, which the
// client retries as any other).
bool Changed(const KeyState& then, const KeyState& now) {
  if (then.exists != now.exists) return true;
  return then.exists && (then.location != now.location || then.expire_at_ms != now.expire_at_ms);
}

// Runs a read step on the committing thread: the handler reads through `w`.
void RunRead(const Transaction& t, const Step& step, WriteContext& w, std::string* out) {
  Session scratch;
  scratch.authed = true;
  Commands commands(t.host, nullptr);
  std::vector<std::string_view> args(step.args.begin(), step.args.end());
  CommandContext c{commands,  *t.host, &scratch, args, static_cast<int>(args.size()),
                   *step.row, out,     nullptr,  true};
  c.txn = &w;
  c.ns = step.ns;
  step.row->handler(c);
}

// EXEC's evaluation: WATCH first, then every step in order. The reply is
// the array of their replies, or a nil array if a watched key changed.
WriteResult EvalTransaction(const WriteOp& op, WriteContext& w) {
  const auto& t = static_cast<const Transaction&>(*op.payload);
  for (const auto& [key, then] : t.watched) {
    if (Changed(then, w.Get(key, false))) return WriteResult::Raw("*-1\r\n");
  }
  if (CanonicalDbMap(w.Get(ns::kDbMapKey, true).value) != t.map) {
    // A SWAPDB since MULTI: its keys may be in the wrong databases. A
    // watching client retries as after a watched key changed (Redis's SWAPDB
    // touches the keys watched in both); another gets an error.
    if (!t.watched.empty()) return WriteResult::Raw("*-1\r\n");
    return WriteResult::Error(
        "EXECABORT Transaction discarded because of: SWAPDB changed the databases while it was "
        "queued");
  }
  std::string out;
  out.reserve(8 + 8 * t.steps.size());
  resp::AppendArray(&out, static_cast<int64_t>(t.steps.size()));
  for (const Step& step : t.steps) {
    switch (step.kind) {
      case Step::Kind::kReply:
        out += step.reply;
        break;
      case Step::Kind::kWrite: {
        WriteResult r = w.Evaluate(step.op);
        // The log failed: nothing of the transaction becomes durable.
        if (r.code != WriteResult::ErrorCode::kOther) return r;
        if (r.undo) {
          // A script in it was killed: none of the transaction applies.
          WriteResult killed = WriteResult::Error(
              "EXECABORT Transaction discarded because of: a script in it was killed (" + r.str +
              ")");
          killed.undo = true;
          return killed;
        }
        Commands::AppendResult(&out, r);
        break;
      }
      case Step::Kind::kRead:
        RunRead(t, step, w, &out);
        break;
    }
  }
  return WriteResult::Raw(std::move(out));
}

// Turns the commands into steps and submits them as one write.
ExecStatus Run(CommandContext& c, const CommandList& commands,
               std::vector<std::pair<std::string, KeyState>> watched, std::string map) {
  if (commands.size() == 0 && watched.empty()) {
    if (!c.may_reply) return ExecStatus::kBlocked;
    resp::AppendArray(c.out, 0);
    return ExecStatus::kReplied;
  }
  auto t = std::make_shared<Transaction>();
  t->host = &c.server;
  t->watched = std::move(watched);
  t->map = std::move(map);
  t->steps.resize(commands.size());
  std::vector<std::string_view> args;
  for (size_t i = 0; i < commands.size(); i++) {
    commands.Get(i, &args);
    Step& step = t->steps[i];
    step.row = commands.row(i);
    step.ns = commands.ns(i);
    if (step.row->flags & kCmdKeyRead) {
      step.kind = Step::Kind::kRead;
      step.args.assign(args.begin(), args.end());
      continue;
    }
    // A write's handler checks its arguments now and hands over its op; any
    // other command has nothing to read from the keyspace and runs now.
    CommandContext sub{c.commands, c.server,    c.s,     args, static_cast<int>(args.size()),
                       *step.row,  &step.reply, nullptr, true};
    sub.captured = &step.op;
    sub.ns = step.ns;
    if (step.row->handler(sub) == ExecStatus::kSubmitted) step.kind = Step::Kind::kWrite;
  }
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = EvalTransaction;
  for (const Step& step : t->steps) op.slow |= step.kind == Step::Kind::kWrite && step.op.slow;
  op.payload = std::move(t);
  return c.Submit(std::move(op));
}

}  // namespace

ExecStatus Queue(CommandContext& c) {
  if (!c.may_reply) return ExecStatus::kBlocked;
  Session* s = c.s;
  auto reject = [&](const std::string& msg) {
    s->multi_dirty = true;
    return c.Error(msg);
  };
  if (c.row.flags & kCmdNoMulti) {
    if (c.row.flags & (kCmdKeyRead | kCmdDataRead)) {
      return reject(
          "ERR Command not allowed inside a transaction: FaHA evaluates a transaction "
          "against the keys it names, and '" +
          std::string(c.name()) + "' reads them all");
    }
    return reject("ERR Command not allowed inside a transaction");
  }
  if (c.row.flags & (kCmdWrite | kCmdKeyRead | kCmdDataRead)) {
    const Refusal why = c.commands.Refusal(*s, c.row.write());
    if (why.refused()) return reject(why.RespText());
  }
  size_t bytes = 64;
  for (std::string_view a : c.args) bytes += a.size() + 32;
  if (s->multi_bytes + bytes > c.options().max_batch_bytes) {
    return reject("ERR transaction larger than the log's batch limit (--max_batch_kb " +
                  std::to_string(c.options().max_batch_bytes >> 10) +
                  "): it must commit as one batch");
  }
  if (c.row.handler == Select) {
    // The commands queued after it name keys of that database.
    std::string ignored;
    ParseDb(c.options().databases, c.args[1], &s->multi_db, &ignored);
  }
  s->multi_queue.Add(&c.row, c.args, c.ns);
  s->multi_bytes += bytes;
  resp::AppendSimple(c.out, "QUEUED");
  return ExecStatus::kReplied;
}

ExecStatus Multi(CommandContext& c) {
  if (c.s->in_multi) return c.Error("ERR MULTI calls can not be nested");
  c.s->in_multi = true;
  c.s->multi_db = c.s->db;
  c.s->multi_map = DbMapSnapshot(c.server);
  return c.Ok();
}

ExecStatus Discard(CommandContext& c) {
  if (!c.s->in_multi) return c.Error("ERR DISCARD without MULTI");
  c.s->ClearMulti();
  return c.Ok();
}

ExecStatus Exec(CommandContext& c) {
  Session* s = c.s;
  if (!s->in_multi) return c.Error("ERR EXEC without MULTI");
  // The node may have stopped being a primary since the commands were queued.
  const Refusal why = c.commands.Refusal(*s, true);
  // A reply now waits for the connection's pending writes (nothing changes
  // meanwhile); a transaction to run is a write, pipelined behind them.
  const bool answer_now =
      s->multi_dirty || why.refused() || (s->multi_queue.size() == 0 && s->watched.empty());
  if (answer_now && !c.may_reply) return ExecStatus::kBlocked;
  if (s->multi_dirty) {
    s->ClearMulti();
    return c.Error(kExecAbort);
  }
  if (why.refused()) {
    s->ClearMulti();
    s->refused = why;
    return c.Error("EXECABORT Transaction discarded because of: " + why.RespText());
  }
  CommandList queued = std::move(s->multi_queue);
  std::vector<std::pair<std::string, KeyState>> watched = std::move(s->watched);
  std::string map = std::move(s->multi_map);
  s->ClearMulti();
  const ExecStatus st = Run(c, queued, std::move(watched), std::move(map));
  queued.Clear();
  s->multi_queue = std::move(queued);  // its buffers, for the next transaction
  return st;
}

ExecStatus Watch(CommandContext& c) {
  Session* s = c.s;
  if (s->in_multi) return c.Error("ERR WATCH inside MULTI is not allowed");
  for (int i = 1; i < c.argc; i++) {
    KeyState k;
    c.ReadKey(c.args[i], false, &k);
    s->multi_bytes += c.args[i].size() + sizeof(KeyState) + 32;
    s->watched.emplace_back(std::string(c.args[i]), std::move(k));
  }
  return c.Ok();
}

ExecStatus Unwatch(CommandContext& c) {
  if (!c.s->in_multi) {
    c.s->watched.clear();
    c.s->multi_bytes = 0;
  }
  return c.Ok();
}

ExecStatus RunTransaction(CommandContext& c,
                          const std::vector<std::vector<std::string_view>>& commands) {
  if (c.s->in_multi) return c.Error("ERR a native transaction cannot be sent inside MULTI");
  for (const auto& args : commands) {
    const CommandRow* row = args.empty() ? nullptr : FindCommand(args[0]);
    std::string why;
    if (row == nullptr) {
      why = "unknown command '" + std::string(args.empty() ? "" : args[0].substr(0, 128)) + "'";
    } else if (const int argc = static_cast<int>(args.size());
               (row->arity > 0 && argc != row->arity) || (row->arity < 0 && argc < -row->arity)) {
      why = "wrong number of arguments for '" + std::string(row->name) + "' command";
    } else if (row->flags & (kCmdNotQueued | kCmdNoMulti)) {
      why = "Command not allowed inside a transaction: '" + std::string(row->name) + "'";
    } else if (row->flags & (kCmdWrite | kCmdKeyRead | kCmdDataRead)) {
      const Refusal r = c.commands.Refusal(*c.s, row->write());
      if (r.refused()) {
        c.s->refused = r;
        return c.Error(r.RespText());
      }
    }
    if (!why.empty()) return c.Error("EXECABORT Transaction discarded because of: " + why);
  }
  CommandList list;
  std::string map = DbMapSnapshot(c.server);
  int db = c.s->db;  // a SELECT in it changes the database of the commands after it
  for (const auto& args : commands) {
    const CommandRow* row = FindCommand(args[0]);
    KeyArgs keyed;
    std::string error;
    const int ns = PhysicalDb(c.server, db);
    if (!PrepareKeys(*row, args, ns, &keyed, &error)) {
      return c.Error("EXECABORT Transaction discarded because of: " + error.substr(4));
    }
    if (row->handler == Select) ParseDb(c.options().databases, args[1], &db, &error);
    list.Add(row, keyed.Of(args), ns);
  }
  // As EXEC: the connection's WATCHed keys hold for it, and are forgotten.
  std::vector<std::pair<std::string, KeyState>> watched = std::move(c.s->watched);
  c.s->ClearMulti();
  return Run(c, list, std::move(watched), std::move(map));
}

void RunInScript(CommandHost* host, const std::vector<std::string_view>& args, WriteContext& w,
                 bool read_only, int* db, std::string* out) {
  const CommandRow* row = FindCommand(args[0]);
  const int argc = static_cast<int>(args.size());
  if (row == nullptr) {
    resp::AppendError(out, "ERR Unknown Redis command called from script");
    return;
  }
  if ((row->arity > 0 && argc != row->arity) || (row->arity < 0 && argc < -row->arity)) {
    resp::AppendError(out, "ERR Wrong number of args calling Redis command from script");
    return;
  }
  std::string error;
  if (row->handler == Select) {
    // The script's own database: the client's is not changed.
    if (!ParseDb(host->options().databases, args[1], db, &error)) {
      resp::AppendError(out, error);
    } else {
      resp::AppendSimple(out, "OK");
    }
    return;
  }
  // Keys and writes only, plus what reads nothing (PING, ECHO, TIME): a
  // command that reads the whole keyspace or the server's state does not
  // run on the committing thread.
  const bool harmless = row->name == "ping" || row->name == "echo" || row->name == "time";
  if (row->redis_flags.find("noscript") != std::string_view::npos || (row->flags & kCmdNoMulti) ||
      (!harmless && !(row->flags & (kCmdWrite | kCmdKeyRead)))) {
    resp::AppendError(out, "ERR This Redis command is not allowed from script");
    return;
  }
  if (read_only && row->write()) {
    resp::AppendError(out, "ERR Write commands are not allowed from read-only scripts.");
    return;
  }
  // The map as this script sees it (a SWAPDB earlier in its group included).
  const int ns = PhysicalDbIn(w.Get(ns::kDbMapKey, true).value, *db);
  KeyArgs keyed;
  if (!PrepareKeys(*row, args, ns, &keyed, &error)) {
    resp::AppendError(out, error);
    return;
  }
  Session scratch;
  scratch.authed = true;
  Commands commands(host, nullptr);
  CommandContext c{commands, *host, &scratch, keyed.Of(args), argc, *row, out, nullptr, true};
  c.ns = ns;
  if (!row->write()) {
    c.txn = &w;
    row->handler(c);
    return;
  }
  WriteOp op;
  c.captured = &op;
  if (row->handler(c) == ExecStatus::kSubmitted) Commands::AppendResult(out, w.Evaluate(op));
}

}  // namespace faha::cmd
