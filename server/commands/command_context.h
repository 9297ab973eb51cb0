// What a command handler (server/cmd_*.cc) is given: the command's arguments,
// the client's session, the reply buffer and the server it runs in.
#ifndef FAHA_SERVER_COMMANDS_COMMAND_CONTEXT_H_
#define FAHA_SERVER_COMMANDS_COMMAND_CONTEXT_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "server/commands/command_table.h"
#include "server/commands/commands.h"
#include "server/commands/host.h"

namespace faha {

struct ScriptCall;

struct CommandContext {
  Commands& commands;
  CommandHost& server;
  Session* s;
  const std::vector<std::string_view>& args;  // args[0] is the name as sent
  int argc;
  const CommandRow& row;
  std::string* out;
  CompletionSink* sink;
  // False while the connection's earlier writes are pending: an immediate
  // reply (an error included) must wait for them, so Error gives kBlocked.
  bool may_reply;
  // Inside a transaction (server/commands/cmd_multi.cc). A write's op goes
  // to `captured` instead of the store, to be evaluated with the rest; a read
  // runs on the committing thread and reads through `txn`, seeing the
  // transaction's own writes.
  WriteOp* captured = nullptr;
  WriteContext* txn = nullptr;
  // The physical database (server/engine/namespaces.h) its keys are in:
  // `args` name them with its prefix already.
  int ns = 0;

  const ServerOptions& options() const { return server.options(); }
  Store* store() const { return server.store(); }
  Metrics* metrics() const { return server.metrics(); }
  std::string_view name() const { return row.name; }

  // Appends an error reply (counted in INFO's errors).
  ExecStatus Error(std::string_view msg) const;
  // Redis's "wrong number of arguments" error for this command.
  ExecStatus WrongArgs() const;
  ExecStatus Ok() const;
  // Queues a write; its reply comes through the sink once it is durable.
  ExecStatus Submit(WriteOp op) const;
  // A key as this command sees it: committed (the caller holds a read
  // guard), or as the transaction it runs in sees it. False if absent or expired.
  bool ReadKey(std::string_view key, bool want_value, KeyState* state) const;
  // The clock a read compares expiry times with (the transaction's, inside one).
  int64_t NowMs() const;
};

inline constexpr const char* kVersion = "0.1.0";

// A command's arguments with its keys put in a database (server/commands/cmd_db.cc).
struct KeyArgs {
  std::vector<std::string> storage;
  std::vector<std::string_view> views;
  bool rewritten = false;
  const std::vector<std::string_view>& Of(const std::vector<std::string_view>& args) const {
    return rewritten ? views : args;
  }
};
// Puts the keys of `args` (a command of `row`) in physical database `ns`: for
// database 0 they stay as they are, and one FaHA reserves is refused (false,
// *error set).
bool PrepareKeys(const CommandRow& row, const std::vector<std::string_view>& args, int ns,
                 KeyArgs* out, std::string* error);
// A logical database number below `databases`, else Redis's error.
bool ParseDb(uint32_t databases, std::string_view arg, int* db, std::string* error);
// The physical database logical database `db` names now (itself without a store).
int PhysicalDb(const CommandHost& host, int db);
// The committed database map ("" for the identity): a transaction whose keys
// were put in their databases with one map checks, when it runs, that the
// map is still the same (else a SWAPDB came in between).
std::string DbMapSnapshot(const CommandHost& host);
// A map's value as DbMapSnapshot gives it ("" for the identity or none).
std::string CanonicalDbMap(std::string_view map);
// The same in the database map `map` (ns::kDbMapKey's value; empty: the identity).
int PhysicalDbIn(std::string_view map, int db);
// Keeps the keys of namespace `ns`, without its prefix (KEYS, SCAN, RANDOMKEY).
void KeepNamespace(int ns, std::vector<std::string>* keys);

namespace cmd {
// SELECT (server/commands/cmd_db.cc): MULTI and scripts treat it apart.
ExecStatus Select(CommandContext& c);
// Inside MULTI: queues the command for EXEC, or refuses it (EXEC then aborts).
ExecStatus Queue(CommandContext& c);
// The native protocol's transaction: `commands` as one EXEC, refused whole
// (EXECABORT) if one is unknown, has the wrong arity or may not run here.
ExecStatus RunTransaction(CommandContext& c,
                          const std::vector<std::vector<std::string_view>>& commands);
// A script's redis.call, on the committing thread: runs `args` against `w`
// and appends its RESP reply (an error reply if the command may not run in
// a script).
// EVAL's and FCALL's arguments (server/commands/cmd_script.cc): numkeys
// (`bad_numkeys` if it is no integer), then the keys and args into *call.
// False, with the error reply given in *st, if they are wrong.
bool ParseScriptCall(CommandContext& c, std::string_view bad_numkeys, ScriptCall* call,
                     ExecStatus* st);
// Submits `call` as a slow write evaluated by `eval` under the script memory limit.
ExecStatus SubmitScriptCall(CommandContext& c, std::shared_ptr<ScriptCall> call, WriteEval eval);
// `db` is the script's logical database, which SELECT changes.
void RunInScript(CommandHost* host, const std::vector<std::string_view>& args, WriteContext& w,
                 bool read_only, int* db, std::string* out);
}  // namespace cmd

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_COMMAND_CONTEXT_H_
