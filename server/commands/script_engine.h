// Lua scripts (EVAL and friends, server/commands/cmd_script.cc): the script
// cache, which any thread reads and fills, and the one Lua 5.1 interpreter,
// which only the committing thread uses, one script at a time, inside the
// evaluation of the script's write. A script's redis.call() runs the command
// against that write's WriteContext, so everything the script writes lands
// in one log batch with the rest of it: durable, replicated and visible
// together, or, if the script is killed, not at all.
//
// Redis's sandbox: the base, table, string and math libraries and redis.*,
// no os/io/debug/package, no dofile/loadfile/print/setfenv, loadstring
// refuses bytecode, and globals can be neither created nor read when absent.
// The interpreter's memory is capped (--script_memory_mb); a script runs
// until it ends or SCRIPT KILL stops it.
#ifndef FAHA_SERVER_COMMANDS_SCRIPT_ENGINE_H_
#define FAHA_SERVER_COMMANDS_SCRIPT_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "server/engine/write_op.h"

struct lua_State;

namespace faha {

class CommandHost;

// One script run: what EVAL's write carries to the committing thread.
struct ScriptCall final : EvalPayload {
  CommandHost* host = nullptr;
  std::string sha;  // lower-case hex SHA-1 of body
  std::string body;
  std::vector<std::string> keys, args;
  bool read_only = false;  // EVAL_RO, EVALSHA_RO: writes are refused
  int db = 0;              // the client's logical database when it was called
  bool function = false;   // FCALL: `sha` is the function's name
};

// A function a library registered (FUNCTION LOAD), with Redis's flags.
struct FunctionInfo {
  enum Flag : uint32_t {
    kNoWrites = 1,
    kAllowOom = 2,
    kAllowStale = 4,
    kNoCluster = 8,
    kAllowCrossSlotKeys = 16,
  };
  std::string name;
  std::string description;
  bool has_description = false;
  uint32_t flags = 0;
};

class ScriptEngine {
 public:
  // The process's engine (one server per process).
  static ScriptEngine& Get();

  // SCRIPT LOAD and EVAL: remembers `body`; returns its SHA-1 in hex.
  std::string Load(std::string_view body);
  // SCRIPT LOAD: whether `body` compiles, else Redis's error.
  static bool Compiles(std::string_view body, std::string* error);
  // EVALSHA: the body of `sha` (any case), if loaded.
  bool Find(std::string_view sha, std::string* body) const;
  // SCRIPT FLUSH: forgets every script.
  void Flush();

  // Runs a script on the committing thread: its reply, or an error reply.
  // A killed script's records are dropped (WriteResult::undo).
  WriteResult Run(const ScriptCall& call, WriteContext& w, uint64_t memory_limit_bytes);

  // FUNCTION LOAD, on the committing thread: runs library `name`'s `code`
  // and returns the functions it registered, or false with Redis's error.
  // The library is kept compiled for FCALL.
  bool LoadLibrary(const std::string& name, const std::string& code,
                   std::vector<FunctionInfo>* functions, std::string* error,
                   uint64_t memory_limit_bytes);
  // Forgets every compiled library (FUNCTION DELETE, FLUSH, RESTORE, a failed
  // LOAD): FCALL compiles a library again from the code it finds.
  void DropCompiledLibraries();
  // FCALL of function `call.sha` of library `name` (whose code is `code`).
  WriteResult CallFunction(const std::string& name, const std::string& code, const ScriptCall& call,
                           WriteContext& w, uint64_t memory_limit_bytes);

  // When the running script started (WallMs), 0 if none runs: BUSY.
  int64_t running_since_ms() const { return running_since_ms_.load(); }
  // SCRIPT KILL: asks the running script to stop. False if none runs.
  bool Kill();
  bool kill_requested() const {
    return kill_.load(std::memory_order_relaxed) || stopping_.load(std::memory_order_relaxed);
  }
  // The server stops: every script from now on is killed.
  void StopAll() { stopping_.store(true); }

  static std::string Sha1Hex(std::string_view data);

 private:
  ScriptEngine() = default;
  // Pushes the compiled function of `call` (compiling it the first time),
  // or sets *error to Redis's compile error.
  bool PushCompiled(const ScriptCall& call, std::string* error);
  // Redis's error reply for the failed script whose error is on the stack.
  std::string FailureText(const ScriptCall& call);
  // The interpreter, opened the first time.
  lua_State* State();
  // Its allocations past this fail (0: no limit).
  static void SetMemoryLimit(uint64_t bytes);
  // Calls the function under its `nargs` arguments on the stack as `call`'s
  // script, under the memory limit and SCRIPT KILL: its reply.
  WriteResult Invoke(const ScriptCall& call, WriteContext& w, uint64_t memory_limit_bytes,
                     int nargs);

  mutable Mutex mu_;
  std::unordered_map<std::string, std::string> scripts_ GUARDED_BY(mu_);
  std::atomic<uint64_t> generation_{1};  // bumped by Flush: compiled functions go too

  // The committing thread's, one script at a time.
  lua_State* lua_ = nullptr;
  uint64_t compiled_generation_ = 0;
  std::atomic<int64_t> running_since_ms_{0};
  std::atomic<bool> kill_{false};
  std::atomic<bool> stopping_{false};
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_SCRIPT_ENGINE_H_
