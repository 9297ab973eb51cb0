// Scripts: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT. A script is one
// write: the committing thread runs it (ScriptEngine, server/commands/
// script_engine.h) against the keys as they are then, and its writes commit
// with it as one log batch. Rows in server/commands/command_table.cc.
#include <memory>
#include <string>

#include "common/resp.h"
#include "server/commands/command_context.h"
#include "server/commands/script_engine.h"

namespace faha::cmd {

namespace {

WriteResult EvalScript(const WriteOp& op, WriteContext& w) {
  const auto& call = static_cast<const ScriptCall&>(*op.payload);
  return ScriptEngine::Get().Run(call, w, static_cast<uint64_t>(op.number));
}

}  // namespace

bool ParseScriptCall(CommandContext& c, std::string_view bad_numkeys, ScriptCall* call,
                     ExecStatus* st) {
  int64_t numkeys = 0;
  if (!ParseInt64(c.args[2], &numkeys)) {
    *st = c.Error(bad_numkeys);
    return false;
  }
  if (numkeys < 0 || numkeys > c.argc - 3) {
    *st = c.Error(numkeys < 0 ? "ERR Number of keys can't be negative"
                              : "ERR Number of keys can't be greater than number of args");
    return false;
  }
  call->host = &c.server;
  call->db = c.s->db;
  for (int i = 3; i < c.argc; i++) {
    (i < 3 + numkeys ? call->keys : call->args).emplace_back(c.args[i]);
  }
  return true;
}

ExecStatus SubmitScriptCall(CommandContext& c, std::shared_ptr<ScriptCall> call, WriteEval eval) {
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = eval;
  op.number = static_cast<int64_t>(c.options().script_memory_bytes);
  op.payload = std::move(call);
  op.slow = true;  // the sequencer runs it, never a connection's thread
  return c.Submit(std::move(op));
}

// EVAL script numkeys key... arg..., and EVALSHA sha1 ...; the _RO forms
// refuse writes.
ExecStatus Eval(CommandContext& c) {
  auto call = std::make_shared<ScriptCall>();
  ExecStatus st;
  if (!ParseScriptCall(c, "ERR value is not an integer or out of range", call.get(), &st)) {
    return st;
  }
  const bool by_sha = c.name() == "evalsha" || c.name() == "evalsha_ro";
  call->read_only = c.name() == "eval_ro" || c.name() == "evalsha_ro";
  if (by_sha) {
    if (!ScriptEngine::Get().Find(c.args[1], &call->body)) {
      return c.Error("NOSCRIPT No matching script. Please use EVAL.");
    }
    call->sha = Lower(c.args[1]);
  } else {
    call->body.assign(c.args[1]);
    call->sha = ScriptEngine::Get().Load(call->body);
  }
  return SubmitScriptCall(c, std::move(call), EvalScript);
}

// SCRIPT LOAD, EXISTS, FLUSH, KILL, HELP.
ExecStatus Script(CommandContext& c) {
  const std::string sub = Lower(c.args[1]);
  ScriptEngine& engine = ScriptEngine::Get();
  if (sub == "load" && c.argc == 3) {
    std::string error;
    if (!ScriptEngine::Compiles(c.args[2], &error)) return c.Error(error);
    resp::AppendBulk(c.out, engine.Load(c.args[2]));
  } else if (sub == "exists" && c.argc >= 3) {
    resp::AppendArray(c.out, c.argc - 2);
    std::string body;
    for (int i = 2; i < c.argc; i++) resp::AppendInt(c.out, engine.Find(c.args[i], &body) ? 1 : 0);
  } else if (sub == "flush" && c.argc <= 3) {
    if (c.argc == 3 && !EqNoCase(c.args[2], "sync") && !EqNoCase(c.args[2], "async")) {
      return c.Error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
    }
    engine.Flush();
    return c.Ok();
  } else if (sub == "kill" && c.argc == 2) {
    if (!engine.Kill()) return c.Error("NOTBUSY No scripts in execution right now.");
    return c.Ok();
  } else if (sub == "help" && c.argc == 2) {
    static const char* const kHelp[] = {
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "EXISTS <sha1> [<sha1> ...]",
        "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Flush the Lua scripts cache.",
        "KILL",
        "    Kill the currently executing Lua script (FaHA: any script; none of its writes apply).",
        "LOAD <script>",
        "    Load a script into the scripts cache without executing it.",
        "HELP",
        "    Print this help.",
    };
    resp::AppendArray(c.out, static_cast<int64_t>(std::size(kHelp)));
    for (const char* line : kHelp) resp::AppendSimple(c.out, line);
  } else if (sub == "load" || sub == "exists" || sub == "flush" || sub == "kill" || sub == "help") {
    return c.Error("ERR wrong number of arguments for 'script|" + sub + "' command");
  } else {
    return c.Error("ERR unknown subcommand '" + std::string(c.args[1].substr(0, 128)) +
                   "'. Try SCRIPT HELP.");
  }
  return ExecStatus::kReplied;
}

}  // namespace faha::cmd
