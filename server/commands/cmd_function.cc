// Functions: FUNCTION LOAD, LIST, DELETE, FLUSH, DUMP, RESTORE, STATS, KILL,
// HELP, and FCALL, FCALL_RO. Every library lives in one key of FaHA's own
// namespace (ns::kFunctionsKey, server/engine/namespaces.h), so libraries are
// in the log: durable, replicated, kept by log cleaning and by FLUSHALL, and
// there after a restart or a failover. A change of libraries is a write that
// reads that key and writes it again on the committing thread; FCALL reads it
// there too, so a library loaded by an earlier write of a pipeline is seen.
// Rows in server/commands/command_table.cc.
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/glob.h"
#include "common/resp.h"
#include "common/strings.h"
#include "server/commands/command_context.h"
#include "server/commands/dump_payload.h"
#include "server/commands/script_engine.h"
#include "server/engine/namespaces.h"

namespace faha::cmd {

namespace {

struct Library {
  std::string code;
  std::vector<FunctionInfo> functions;
};
using Libraries = std::map<std::string, Library>;  // by name

void PutString(std::string* out, std::string_view s) {
  const auto n = static_cast<uint32_t>(s.size());
  out->append(reinterpret_cast<const char*>(&n), 4);
  out->append(s);
}

bool GetString(std::string_view* in, std::string* s) {
  uint32_t n = 0;
  if (in->size() < 4) return false;
  memcpy(&n, in->data(), 4);
  if (in->size() - 4 < n) return false;
  s->assign(in->substr(4, n));
  in->remove_prefix(4 + n);
  return true;
}

// The key's value: per library its name, code and functions (name, flags,
// description), little-endian lengths.
std::string Encode(const Libraries& libs) {
  std::string out;
  for (const auto& [name, lib] : libs) {
    PutString(&out, name);
    PutString(&out, lib.code);
    PutString(&out, std::to_string(lib.functions.size()));
    for (const FunctionInfo& f : lib.functions) {
      PutString(&out, f.name);
      PutString(&out, std::to_string(f.flags));
      PutString(&out, f.has_description ? "1" + f.description : "0");
    }
  }
  return out;
}

bool Decode(std::string_view in, Libraries* libs) {
  libs->clear();
  while (!in.empty()) {
    std::string name, count;
    Library lib;
    int64_t n = 0;
    if (!GetString(&in, &name) || !GetString(&in, &lib.code) || !GetString(&in, &count) ||
        !ParseInt64(count, &n) || n < 0 || n > 1 << 20) {
      return false;
    }
    for (int64_t i = 0; i < n; i++) {
      FunctionInfo f;
      std::string flags, desc;
      int64_t bits = 0;
      if (!GetString(&in, &f.name) || !GetString(&in, &flags) || !ParseInt64(flags, &bits) ||
          !GetString(&in, &desc) || desc.empty()) {
        return false;
      }
      f.flags = static_cast<uint32_t>(bits);
      f.has_description = desc[0] == '1';
      f.description = desc.substr(1);
      lib.functions.push_back(std::move(f));
    }
    (*libs)[name] = std::move(lib);
  }
  return true;
}

// The libraries as the committing thread sees them (false: unreadable).
bool ReadLibraries(WriteContext& w, Libraries* libs) {
  const KeyState k = w.Get(ns::kFunctionsKey, true);
  return Decode(k.exists ? std::string_view(k.value) : std::string_view(), libs);
}

void WriteLibraries(WriteContext& w, const Libraries& libs) {
  if (libs.empty()) {
    w.Delete(ns::kFunctionsKey);
  } else {
    w.Put(ns::kFunctionsKey, Encode(libs), 0);
  }
}

const WriteResult kUnreadable = WriteResult::Error("ERR the stored function libraries are damaged");

// The library name in the "#!lua name=<name>" first line, else Redis's error.
bool ParseShebang(std::string_view code, std::string* name, std::string* error) {
  if (code.substr(0, 2) != "#!") {
    *error = "ERR Missing library metadata";
    return false;
  }
  const std::string_view line = code.substr(2, code.find('\n') - 2);
  std::vector<std::string_view> words;
  for (size_t i = 0; i < line.size();) {
    const size_t end = std::min(line.find(' ', i), line.size());
    if (end > i) words.push_back(line.substr(i, end - i));
    i = end + 1;
  }
  name->clear();
  bool ok = !words.empty() && EqNoCase(words[0], "lua");
  for (size_t i = 1; i < words.size() && ok; i++) {
    ok = words[i].substr(0, 5) == "name=" && name->empty();
    if (ok) name->assign(words[i].substr(5));
  }
  ok = ok && !name->empty();
  for (char ch : *name) ok = ok && (isalnum(static_cast<unsigned char>(ch)) || ch == '_');
  if (!ok) *error = "ERR Invalid library metadata";
  return ok;
}

// Loads `code` into `libs` (replacing a library of its name if `replace`).
WriteResult AddLibrary(const std::string& code, bool replace, uint64_t memory, Libraries* libs,
                       std::string* name) {
  std::string error;
  if (!ParseShebang(code, name, &error)) return WriteResult::Error(error);
  if (libs->count(*name) != 0 && !replace) {
    return WriteResult::Error("ERR Library '" + *name + "' already exists");
  }
  Library lib;
  lib.code = code;
  if (!ScriptEngine::Get().LoadLibrary(*name, code, &lib.functions, &error, memory)) {
    return WriteResult::Error(error);
  }
  for (const auto& [other, held] : *libs) {
    if (other == *name) continue;
    for (const FunctionInfo& f : held.functions) {
      for (const FunctionInfo& mine : lib.functions) {
        if (f.name == mine.name)
          return WriteResult::Error("ERR Function " + f.name + " already exists");
      }
    }
  }
  (*libs)[*name] = std::move(lib);
  return WriteResult::Ok();
}

// FUNCTION LOAD: op.args = code; op.flags = 1 for REPLACE; op.number = memory.
WriteResult EvalLoad(const WriteOp& op, WriteContext& w) {
  Libraries libs;
  if (!ReadLibraries(w, &libs)) return kUnreadable;
  std::string name;
  WriteResult r = AddLibrary(std::string(op.args[0]), op.flags != 0,
                             static_cast<uint64_t>(op.number), &libs, &name);
  if (r.kind == WriteResult::Kind::kError) {
    ScriptEngine::Get().DropCompiledLibraries();
    return r;
  }
  WriteLibraries(w, libs);
  return WriteResult::Bulk(name);
}

WriteResult EvalDelete(const WriteOp& op, WriteContext& w) {
  Libraries libs;
  if (!ReadLibraries(w, &libs)) return kUnreadable;
  if (libs.erase(std::string(op.args[0])) == 0) return WriteResult::Error("ERR Library not found");
  ScriptEngine::Get().DropCompiledLibraries();
  WriteLibraries(w, libs);
  return WriteResult::Ok();
}

WriteResult EvalFlush(const WriteOp&, WriteContext& w) {
  ScriptEngine::Get().DropCompiledLibraries();
  w.Delete(ns::kFunctionsKey);
  return WriteResult::Ok();
}

// FUNCTION RESTORE: op.args = the libraries' code; op.flags = 0 APPEND, 1
// REPLACE, 2 FLUSH. All or nothing.
WriteResult EvalRestore(const WriteOp& op, WriteContext& w) {
  Libraries libs;
  if (!ReadLibraries(w, &libs)) return kUnreadable;
  ScriptEngine::Get().DropCompiledLibraries();
  if (op.flags == 2) libs.clear();
  for (const auto& code : op.args) {
    std::string name;
    Libraries before = libs;
    std::string error;
    if (op.flags == 0 && ParseShebang(code, &name, &error) && libs.count(name) != 0) {
      return WriteResult::Error("ERR Library " + name + " already exists");
    }
    WriteResult r =
        AddLibrary(std::string(code), true, static_cast<uint64_t>(op.number), &libs, &name);
    if (r.kind == WriteResult::Kind::kError) return r;
  }
  WriteLibraries(w, libs);
  return WriteResult::Ok();
}

// FCALL and FCALL_RO: the payload is the call, op.number the memory limit.
WriteResult EvalFCall(const WriteOp& op, WriteContext& w) {
  Libraries libs;
  if (!ReadLibraries(w, &libs)) return kUnreadable;
  ScriptCall call = static_cast<const ScriptCall&>(*op.payload);
  for (const auto& [name, lib] : libs) {
    for (const FunctionInfo& f : lib.functions) {
      if (f.name != call.sha) continue;
      const bool no_writes = (f.flags & FunctionInfo::kNoWrites) != 0;
      if (call.read_only && !no_writes) {
        return WriteResult::Error(
            "ERR Can not execute a script with write flag using *_ro command.");
      }
      call.read_only = no_writes;
      return ScriptEngine::Get().CallFunction(name, lib.code, call, w,
                                              static_cast<uint64_t>(op.number));
    }
  }
  return WriteResult::Error("ERR Function not found");
}

// The committed libraries, for the subcommands that only read them.
bool ReadCommitted(CommandContext& c, Libraries* libs) {
  KeyState k;
  {
    auto guard = c.store()->LockForRead();
    c.ReadKey(ns::kFunctionsKey, true, &k);
  }
  return Decode(k.exists ? std::string_view(k.value) : std::string_view(), libs);
}

void AppendFunction(std::string* out, const FunctionInfo& f) {
  static const std::pair<uint32_t, const char*> kFlags[] = {
      {FunctionInfo::kNoWrites, "no-writes"},
      {FunctionInfo::kAllowOom, "allow-oom"},
      {FunctionInfo::kAllowStale, "allow-stale"},
      {FunctionInfo::kNoCluster, "no-cluster"},
      {FunctionInfo::kAllowCrossSlotKeys, "allow-cross-slot-keys"},
  };
  resp::AppendArray(out, 6);
  resp::AppendBulk(out, "name");
  resp::AppendBulk(out, f.name);
  resp::AppendBulk(out, "description");
  if (f.has_description) {
    resp::AppendBulk(out, f.description);
  } else {
    resp::AppendNil(out);
  }
  resp::AppendBulk(out, "flags");
  int n = 0;
  for (const auto& [bit, name] : kFlags) n += (f.flags & bit) != 0 ? 1 : 0;
  resp::AppendArray(out, n);
  for (const auto& [bit, name] : kFlags) {
    if (f.flags & bit) resp::AppendSimple(out, name);
  }
}

// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]
ExecStatus List(CommandContext& c) {
  bool with_code = false;
  std::string_view pattern;
  bool have_pattern = false;
  for (int i = 2; i < c.argc; i++) {
    if (EqNoCase(c.args[i], "withcode") && !with_code) {
      with_code = true;
    } else if (EqNoCase(c.args[i], "libraryname") && !have_pattern) {
      if (i + 1 >= c.argc) return c.Error("ERR library name argument was not given");
      pattern = c.args[++i];
      have_pattern = true;
    } else {
      return c.Error("ERR Unknown argument " + std::string(c.args[i]));
    }
  }
  Libraries libs;
  if (!ReadCommitted(c, &libs)) return c.Error(kUnreadable.str);
  std::string body;
  int count = 0;
  for (const auto& [name, lib] : libs) {
    if (have_pattern && !GlobMatch(pattern, name)) continue;
    count++;
    resp::AppendArray(&body, with_code ? 8 : 6);
    resp::AppendBulk(&body, "library_name");
    resp::AppendBulk(&body, name);
    resp::AppendBulk(&body, "engine");
    resp::AppendBulk(&body, "LUA");
    resp::AppendBulk(&body, "functions");
    resp::AppendArray(&body, static_cast<int64_t>(lib.functions.size()));
    for (const FunctionInfo& f : lib.functions) AppendFunction(&body, f);
    if (with_code) {
      resp::AppendBulk(&body, "library_code");
      resp::AppendBulk(&body, lib.code);
    }
  }
  resp::AppendArray(c.out, count);
  c.out->append(body);
  return ExecStatus::kReplied;
}

ExecStatus Stats(CommandContext& c) {
  Libraries libs;
  if (!ReadCommitted(c, &libs)) return c.Error(kUnreadable.str);
  size_t functions = 0;
  for (const auto& [name, lib] : libs) functions += lib.functions.size();
  resp::AppendArray(c.out, 4);
  resp::AppendBulk(c.out, "running_script");
  const int64_t since = ScriptEngine::Get().running_since_ms();
  if (since == 0) {
    resp::AppendNil(c.out);
  } else {
    // (FaHA does not say which script or function runs.)
    resp::AppendArray(c.out, 2);
    resp::AppendBulk(c.out, "duration_ms");
    resp::AppendInt(c.out, WallMs() - since);
  }
  resp::AppendBulk(c.out, "engines");
  resp::AppendArray(c.out, 2);
  resp::AppendBulk(c.out, "LUA");
  resp::AppendArray(c.out, 4);
  resp::AppendBulk(c.out, "libraries_count");
  resp::AppendInt(c.out, static_cast<int64_t>(libs.size()));
  resp::AppendBulk(c.out, "functions_count");
  resp::AppendInt(c.out, static_cast<int64_t>(functions));
  return ExecStatus::kReplied;
}

ExecStatus Dump(CommandContext& c) {
  Libraries libs;
  if (!ReadCommitted(c, &libs)) return c.Error(kUnreadable.str);
  std::vector<std::string> codes;
  for (const auto& [name, lib] : libs) codes.push_back(lib.code);
  resp::AppendBulk(c.out, DumpFunctions(codes));
  return ExecStatus::kReplied;
}

ExecStatus Help(CommandContext& c) {
  static const char* const kHelp[] = {
      "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "LOAD [REPLACE] <FUNCTION CODE>",
      "    Load a library (its first line: #!lua name=<library name>).",
      "DELETE <LIBRARY NAME>",
      "    Delete a library and its functions.",
      "KILL",
      "    Stop the function or script running now (nothing it wrote is applied).",
      "FLUSH [ASYNC|SYNC]",
      "    Delete every library.",
      "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
      "    The libraries, their functions and flags (and code).",
      "STATS",
      "    Whether a function runs, and how many libraries and functions there are.",
      "DUMP",
      "    Every library as a payload for FUNCTION RESTORE.",
      "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
      "    Load the libraries of a payload (APPEND: refused if one exists).",
      "HELP",
      "    Print this help.",
  };
  resp::AppendArray(c.out, static_cast<int64_t>(std::size(kHelp)));
  for (const char* line : kHelp) resp::AppendSimple(c.out, line);
  return ExecStatus::kReplied;
}

// The subcommands that write: checked now, evaluated on the committing thread.
ExecStatus SubmitChange(CommandContext& c, const std::string& sub) {
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.number = static_cast<int64_t>(c.options().script_memory_bytes);
  op.slow = true;  // runs a library's code
  if (sub == "load") {
    const bool replace = c.argc == 4;
    if (replace && !EqNoCase(c.args[2], "replace")) {
      return c.Error("ERR Unknown option given: " + std::string(c.args[2]));
    }
    op.eval = EvalLoad;
    op.flags = replace ? 1 : 0;
    op.args = {c.args[c.argc - 1]};
  } else if (sub == "delete") {
    op.eval = EvalDelete;
    op.args = {c.args[2]};
  } else if (sub == "flush") {
    if (c.argc == 3 && !EqNoCase(c.args[2], "sync") && !EqNoCase(c.args[2], "async")) {
      return c.Error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
    }
    op.eval = EvalFlush;
  } else {  // restore
    uint32_t policy = 0;
    if (c.argc == 4) {
      const std::string p = Lower(c.args[3]);
      policy = p == "append" ? 0 : p == "replace" ? 1 : p == "flush" ? 2 : 3;
      if (policy == 3) {
        return c.Error(
            "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.");
      }
    }
    std::vector<std::string> codes;
    std::string error;
    if (!RestoreFunctions(c.args[2], c.options().max_value_bytes, &codes, &error))
      return c.Error(error);
    op.eval = EvalRestore;
    op.flags = policy;
    for (const std::string& code : codes) op.args.push_back(code);
  }
  const Refusal why = c.commands.Refusal(*c.s, true);
  if (why.refused()) return c.Error(why.RespText());
  return c.Submit(std::move(op));
}

}  // namespace

ExecStatus Function(CommandContext& c) {
  const std::string sub = Lower(c.args[1]);
  struct Arity {
    const char* name;
    int min, max;
  };
  static const Arity kArity[] = {{"load", 3, 4},    {"delete", 3, 3},      {"flush", 2, 3},
                                 {"restore", 3, 4}, {"list", 2, 99999999}, {"stats", 2, 2},
                                 {"dump", 2, 2},    {"kill", 2, 2},        {"help", 2, 2}};
  const Arity* arity = nullptr;
  for (const Arity& a : kArity) {
    if (sub == a.name) arity = &a;
  }
  if (arity == nullptr) {
    return c.Error("ERR unknown subcommand '" + std::string(c.args[1].substr(0, 128)) +
                   "'. Try FUNCTION HELP.");
  }
  if (c.argc < arity->min || c.argc > arity->max) {
    return c.Error("ERR wrong number of arguments for 'function|" + sub + "' command");
  }
  if (sub == "load" || sub == "delete" || sub == "flush" || sub == "restore") {
    return SubmitChange(c, sub);
  }
  // The rest answers now, after the connection's pending writes.
  if (!c.may_reply) return ExecStatus::kBlocked;
  if (sub == "kill") {
    if (!ScriptEngine::Get().Kill()) return c.Error("NOTBUSY No scripts in execution right now.");
    return c.Ok();
  }
  if (sub == "list") return List(c);
  if (sub == "stats") return Stats(c);
  if (sub == "dump") return Dump(c);
  return Help(c);
}

ExecStatus FCall(CommandContext& c) {
  auto call = std::make_shared<ScriptCall>();
  ExecStatus st;
  if (!ParseScriptCall(c, "ERR Bad number of keys provided", call.get(), &st)) return st;
  call->function = true;
  call->sha.assign(c.args[1]);
  call->read_only = c.name() == "fcall_ro";
  return SubmitScriptCall(c, std::move(call), EvalFCall);
}

}  // namespace faha::cmd
