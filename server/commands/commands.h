// Commands: executes one Redis-style command (RESP arguments) against the
// store on behalf of a client session. Reads reply at once; writes become a
// WriteOp submitted to the store, whose reply comes later through the
// connection's CompletionSink. Stateless apart from the session passed in;
// each call runs on the I/O thread that owns the session.
#ifndef FAHA_SERVER_COMMANDS_COMMANDS_H_
#define FAHA_SERVER_COMMANDS_COMMANDS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/commands/command_table.h"
#include "server/commands/role.h"
#include "server/engine/store.h"
#include "server/metrics/metrics.h"

namespace faha {

class CommandHost;

// Commands kept for later (MULTI's queue), every argument in one buffer:
// queueing a command costs no allocation once the buffers have grown.
class CommandList {
 public:
  void Add(const CommandRow* row, const std::vector<std::string_view>& args, int ns = 0) {
    ns_.push_back(static_cast<uint16_t>(ns));
    for (std::string_view a : args) {
      bytes_.append(a);
      arg_ends_.push_back(static_cast<uint32_t>(bytes_.size()));
    }
    cmd_ends_.push_back(static_cast<uint32_t>(arg_ends_.size()));
    rows_.push_back(row);
  }
  size_t size() const { return cmd_ends_.size(); }
  const CommandRow* row(size_t i) const { return rows_[i]; }
  // The physical database its keys are in (they carry its prefix).
  int ns(size_t i) const { return ns_[i]; }
  // The arguments of command i, viewing this list.
  void Get(size_t i, std::vector<std::string_view>* args) const {
    args->clear();
    const uint32_t first = i == 0 ? 0 : cmd_ends_[i - 1];
    for (uint32_t a = first; a < cmd_ends_[i]; a++) {
      const uint32_t begin = a == 0 ? 0 : arg_ends_[a - 1];
      args->push_back(std::string_view(bytes_).substr(begin, arg_ends_[a] - begin));
    }
  }
  // Empties the list; a big one gives its memory back.
  void Clear() {
    if (bytes_.capacity() > (64u << 10)) {
      *this = CommandList();
      return;
    }
    bytes_.clear();
    arg_ends_.clear();
    cmd_ends_.clear();
    rows_.clear();
    ns_.clear();
  }

 private:
  std::string bytes_;
  std::vector<uint32_t> arg_ends_;
  std::vector<uint32_t> cmd_ends_;  // past each command's last argument in arg_ends_
  std::vector<const CommandRow*> rows_;
  std::vector<uint16_t> ns_;
};

struct Session {
  uint64_t conn_id = 0;
  bool authed = false;
  bool native = false;
  std::string name;
  uint32_t pending_writes = 0;  // submitted, reply not yet sent
  // Set by the I/O thread while writes are pending and the reply goes to a
  // buffer sent after theirs: commands whose reply reads no data (MULTI,
  // DISCARD, a command queued in MULTI) may then reply instead of waiting.
  bool deferring = false;
  int64_t start_us = 0;  // arrival of the command being executed (MonoUs)
  bool close_after_reply = false;
  bool shutdown = false;     // SHUTDOWN was accepted
  bool stale_reads = false;  // READONLY: this connection may read from a backup
  int db = 0;                // SELECT: the logical database
  // Inside MULTI: the database the next queued command's keys go to (a
  // queued SELECT changes it; the session's own changes at EXEC).
  int multi_db = 0;
  std::string multi_map;  // DbMapSnapshot at MULTI
  // Set by a write the connection's next command must not overtake (SWAPDB):
  // that command waits until every pending write has been answered.
  bool barrier = false;
  // Native kClientId: writes are de-duplicated by (client_id, write_seq), where
  // write_seq is the request id of the write being executed.
  uint64_t client_id = 0;
  uint64_t write_seq = 0;
  // Reply bytes this client may still be given before its output limit (set
  // by the I/O thread before each command). A command that would pass it
  // stops building its reply and sets output_over_limit: the client is closed.
  size_t output_budget = SIZE_MAX;
  bool output_over_limit = false;
  // Big values a reply sends from the log rather than a copy: each goes into
  // the reply at byte `at` of the output buffer, and its `hold` keeps the log
  // mapping it views alive until it is sent. The I/O thread takes them after
  // each command; `held_bytes` counts their bytes meanwhile.
  struct HeldValue {
    size_t at;
    std::string_view bytes;
    std::shared_ptr<const void> hold;
  };
  std::vector<HeldValue> held;
  size_t held_bytes = 0;
  // The class of the command being executed (its latency is recorded under it).
  OpClass op_class = OpClass::kOther;
  // MULTI: the commands queued until EXEC or DISCARD (copies), and whether
  // one was refused while queueing (EXEC then aborts).
  bool in_multi = false;
  bool multi_dirty = false;
  CommandList multi_queue;
  // WATCH: each key with its state when watched; EXEC aborts if one changed.
  std::vector<std::pair<std::string, KeyState>> watched;
  // Bytes the two hold, counted in the client's memory (--maxmemory_clients).
  size_t multi_bytes = 0;
  void ClearMulti() {
    in_multi = multi_dirty = false;
    multi_queue.Clear();
    watched.clear();
    multi_bytes = 0;
  }
  // Why the command just executed was refused (MOVED, TRYAGAIN, READONLY,
  // STALEREAD), kNone if it was not: a protocol with codes for these (native)
  // encodes the code rather than the RESP text.
  Refusal refused;
};

class Commands {
 public:
  // Writes are appended to *outbox; the caller hands them to Store::SubmitAll
  // once per burst of input.
  Commands(CommandHost* server, std::vector<Store::Write>* outbox)
      : server_(server), outbox_(outbox) {}
  ExecStatus Execute(Session* s, const std::vector<std::string_view>& args, std::string* out,
                     CompletionSink* sink);
  // The native protocol's transaction: `commands` as MULTI ... EXEC.
  ExecStatus ExecuteTransaction(Session* s,
                                const std::vector<std::vector<std::string_view>>& commands,
                                std::string* out, CompletionSink* sink);
  // CONFIG SET: the client limits only (ClientLimits).
  ExecStatus ConfigSet(const std::vector<std::string_view>& args, std::string* out);
  // Whether this node may run a data command (a write, or a key read) for
  // session `s` now: kNone, MOVED/TRYAGAIN (failover), READONLY or
  // STALEREAD (a backup).
  faha::Refusal Refusal(const Session& s, bool write) const;
  // Checks a password in constant time against --requirepass.
  bool PasswordMatches(std::string_view given) const;
  // Encodes a write's reply as RESP.
  static void AppendResult(std::string* out, const WriteResult& r);
  // Queues a write for the store (the caller's outbox); the reply comes
  // through `sink`.
  ExecStatus Submit(Session* s, WriteOp op, CompletionSink* sink);
  // INFO `section` (lower case), as a bulk string.
  void Info(std::string_view section, std::string* out) const;

 private:
  // While a script has run past --busy_reply_threshold_ms, commands other
  // than SCRIPT KILL and the allow_busy ones get BUSY.
  bool ScriptBusy(const CommandRow& row, const std::vector<std::string_view>& args) const;
  // Execute's second half, once the row's checks passed: queues the command
  // (MULTI) or runs it, with `args` whose keys are in physical database `ns`.
  ExecStatus Run(const CommandContext& checked, const std::vector<std::string_view>& args, int ns,
                 bool queueing);

  CommandHost* server_;
  std::vector<Store::Write>* outbox_;
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_COMMANDS_H_
