// The command table: one row per command, holding both how FaHA runs it (its
// handler and behaviour flags) and what Redis 7.0's COMMAND INFO says about
// it (arity, flags, key positions, ACL categories, tips, key spec). Dispatch,
// arity and authentication checks, the latency class, COMMAND, COMMAND COUNT
// and COMMAND INFO all read the same row, so they cannot disagree.
//
// Adding a command touches two files: its handler, a function of
// CommandContext in the server/cmd_*.cc file of its group, and its row (and
// the handler's declaration next to it) in server/commands/command_table.cc.
#ifndef FAHA_SERVER_COMMANDS_COMMAND_TABLE_H_
#define FAHA_SERVER_COMMANDS_COMMAND_TABLE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/metrics/metrics.h"

namespace faha {

struct CommandContext;

enum class ExecStatus {
  kReplied,    // a reply was appended to *out
  kSubmitted,  // a write was submitted; the reply comes through the sink
  kBlocked,    // would reply now but earlier writes are pending: retry later, nothing done
};

using CommandHandler = ExecStatus (*)(CommandContext& c);

// How FaHA runs a command (Redis's own flags, below, are what COMMAND INFO
// reports; these are what the dispatcher acts on).
enum CommandFlag : uint32_t {
  kCmdWrite = 1u << 0,     // builds a write: its reply comes once it is durable
  kCmdNoAuth = 1u << 1,    // runs before AUTH
  kCmdKeyRead = 1u << 2,   // reads keys: refused where data may be stale (a backup)
  kCmdDataRead = 1u << 3,  // reads the keyspace without naming a key (DBSIZE): likewise
  // Refused inside MULTI (and EXEC then aborts): it reads the whole keyspace,
  // which a transaction, evaluated against the keys it names, cannot see; or
  // Redis refuses it there too (SHUTDOWN).
  kCmdNoMulti = 1u << 4,
  kCmdNotQueued = 1u << 5,  // runs at once inside MULTI: EXEC, DISCARD, MULTI, WATCH, QUIT
  // Not a write, but may submit one (EXEC): pipelined behind the connection's
  // pending writes like one; its handler holds back any reply it gives at once.
  kCmdMaySubmit = 1u << 6,
  // Its one key is argument 2 (OBJECT's subcommands; Redis lists no key range).
  kCmdKeyAt2 = 1u << 7,
};

// A Redis 7.0 key specification that begins at argument `begin_index` and
// takes a range of keys, or as many as an argument says (keynum).
struct KeySpec {
  std::string_view flags;  // e.g. "RO access"; empty: the command has no key spec
  int last_key = 0;        // Redis's find_keys range: lastkey, keystep, limit 0
  int key_step = 1;
  std::string_view notes;
  int begin_index = 1;
  // find_keys of type keynum instead of range: the argument after begin_index
  // counts the keys that follow it (EVAL's numkeys: keynumidx 0, firstkey 1).
  bool keynum = false;
};

struct CommandRow {
  std::string_view name;  // lower case
  int arity;              // Redis's convention: > 0 exact, < 0 at least -arity
  uint32_t flags;         // CommandFlag bits
  CommandHandler handler;
  // COMMAND INFO, as Redis 7.0 reports it:
  std::string_view redis_flags;  // space-separated, e.g. "readonly fast"
  int first_key = 0;
  int last_key = 0;
  int key_step = 0;
  std::string_view acl_categories;  // space-separated, e.g. "@read @string @fast"
  std::string_view tips;            // space-separated
  KeySpec key_spec = {};
  KeySpec key_spec2 = {};  // a second one (RENAME's destination), if flags are set

  bool write() const { return (flags & kCmdWrite) != 0; }
  // The class its latency and count are recorded under (INFO, /metrics).
  OpClass op_class() const {
    return write() ? OpClass::kWrite : (flags & kCmdKeyRead) ? OpClass::kRead : OpClass::kOther;
  }
};

const std::vector<CommandRow>& CommandTable();
// The row of `name` (any case), or nullptr.
const CommandRow* FindCommand(std::string_view name);
// Appends the row's COMMAND INFO entry (Redis 7.0's ten fields; FaHA lists no
// subcommands).
void AppendCommandInfo(const CommandRow& row, std::string* out);

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_COMMAND_TABLE_H_
