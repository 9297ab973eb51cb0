// Redis's Lua API inside Debian's Lua 5.1, for ScriptEngine
// (script_engine.h): the sandboxed interpreter (base, table, string, math,
// cjson, bit, redis.*), a script's own globals, and the conversions between
// RESP replies and Lua values, as Redis 7.0 makes them. Only the committing
// thread calls these, for the one script it runs.
#ifndef FAHA_SERVER_COMMANDS_SCRIPT_LUA_H_
#define FAHA_SERVER_COMMANDS_SCRIPT_LUA_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "common/resp.h"

struct lua_State;

namespace faha {

struct ScriptCall;
class WriteContext;

namespace lua {

inline constexpr const char* kSource = "@user_script";
inline constexpr const char* kFunctionSource = "@user_function";  // a library's code

// The interpreter's bytes; allocations past `limit` (0: none) fail.
struct Memory {
  size_t used = 0;
  size_t limit = 0;
};

// The script being run, for redis.call.
struct Run {
  const ScriptCall* call;
  WriteContext* w;
  bool killed = false;  // stopped by SCRIPT KILL (or the server stopping)
  bool resp3 = false;   // redis.setresp(3)
  int db = 0;           // the logical database its redis.call uses (SELECT changes it)
  // FUNCTION LOAD: past this WallMs the library's code is stopped (0: never).
  int64_t deadline_ms = 0;
  bool timed_out = false;
};

// A new sandboxed interpreter whose memory `memory` counts.
lua_State* OpenSandbox(Memory* memory);
// Gives the function on top of the stack its own globals: reads fall
// through to the shared ones (an absent one is an error), writes are refused.
void IsolateGlobals(lua_State* L);
// Pushes the `redis` table a library's code sees while FUNCTION LOAD runs it:
// register_function, log and the constants, nothing that touches data.
void PushLoadTimeRedis(lua_State* L);
// redis.register_function (server/commands/script_function.cc).
int LuaRegisterFunction(lua_State* L);
// Sets KEYS and ARGV in the globals of the function on top of the stack.
void SetKeysAndArgv(lua_State* L, const ScriptCall& call);
// While `run` is being run (null after).
void SetRun(Run* run);
// Sets the hook that stops a killed script back to its rate (after a kill it
// fires at every instruction).
void ResetHook(lua_State* L);
// The message handler of a script's pcall: every error becomes a table
// {err = ..., line = ...}, a Lua error's text with Redis's ERR code.
int MessageHandler(lua_State* L);
// A command's reply as Redis gives it to Lua: integers as numbers, bulk
// strings as strings, nil as false (nil with resp3), status {ok=...}, error
// {err=...} (server/commands/script_reply.cc, as the two below).
void PushReply(lua_State* L, const resp::Reply& r, bool resp3);
// Pushes a table {err = msg}.
void PushErrorTable(lua_State* L, std::string_view msg);
// The value on top of the stack (popped) as a RESP reply, as Redis converts
// a script's return value; an error reply (and false if the conversion
// failed: out of memory or killed) when it cannot be converted.
bool AppendValue(lua_State* L, std::string* out);

}  // namespace lua
}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_SCRIPT_LUA_H_
