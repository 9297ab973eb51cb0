#include "server/commands/script_lua.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/clock.h"
#include "common/logging.h"
#include "common/resp.h"
#include "server/commands/command_context.h"
#include "server/commands/script_engine.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace faha::lua {

namespace {

// The interpreter's allocator: counts its bytes and refuses past the limit
// (the script then fails with "not enough memory"; the server does not).
void* Allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* m = static_cast<Memory*>(ud);
  if (nsize == 0) {
    free(ptr);
    m->used -= osize;
    return nullptr;
  }
  if (nsize > osize && m->limit != 0 && m->used + (nsize - osize) > m->limit) return nullptr;
  void* p = realloc(ptr, nsize);
  if (p == nullptr) return nullptr;
  m->used = m->used - osize + nsize;
  return p;
}

Run* g_run = nullptr;  // the committing thread's, for the script it runs

// The line of the innermost frame of the script (0 if none), and its
// "user_script:LINE: " into `where` (which may be null).
int ScriptLine(lua_State* L, char* where = nullptr, size_t size = 0) {
  lua_Debug ar;
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    const bool function = strcmp(ar.source, kFunctionSource) == 0;
    if ((function || strcmp(ar.source, kSource) == 0) && ar.currentline > 0) {
      if (where != nullptr) {
        snprintf(where, size, "user_%s:%d: ", function ? "function" : "script", ar.currentline);
      }
      return ar.currentline;
    }
  }
  if (where != nullptr && size > 0) where[0] = '\0';
  return 0;
}

// Raises `msg` at the script's current line. Lua unwinds with longjmp: no
// C++ object with a destructor may be alive in the frames it skips, so
// callers raise only from plain C frames.
[[noreturn]] void RaiseAt(lua_State* L, const char* msg, const char* arg = "",
                          const char* tail = "") {
  char where[48];
  ScriptLine(L, where, sizeof(where));
  lua_pushfstring(L, "%s%s%s%s", where, msg, arg, tail);
  lua_error(L);
  abort();  // lua_error does not return
}

int PushReplyProtected(lua_State* L) {
  PushReply(L, *static_cast<const resp::Reply*>(lua_touserdata(L, 1)),
            g_run != nullptr && g_run->resp3);
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_pushed");
  return 0;
}

// Runs the command of redis.call/pcall and pushes its reply; true if it
// is an error. Its C++ objects are gone when it returns (see RaiseAt).
bool CallCommand(lua_State* L) {
  const int argc = lua_gettop(L);
  std::string error;
  std::string reply;
  if (g_run == nullptr) {
    error = "ERR redis.call outside a running script";
  } else if (argc == 0) {
    error = "ERR Please specify at least one argument for this redis lib call";
  } else {
    std::vector<std::string> args;
    for (int i = 1; i <= argc && error.empty(); i++) {
      const int t = lua_type(L, i);
      if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        error = "ERR Lua redis lib command arguments must be strings or integers";
        break;
      }
      if (t == LUA_TNUMBER) {
        // Not lua_tolstring: its %.14g loses digits (Redis 7.0 writes %.17g).
        char buf[64];
        snprintf(buf, sizeof(buf), "%.17g", static_cast<double>(lua_tonumber(L, i)));
        args.emplace_back(buf);
        continue;
      }
      size_t n = 0;
      const char* s = lua_tolstring(L, i, &n);
      args.emplace_back(s, n);
    }
    if (error.empty()) {
      std::vector<std::string_view> views(args.begin(), args.end());
      cmd::RunInScript(g_run->call->host, views, *g_run->w, g_run->call->read_only, &g_run->db,
                       &reply);
    }
  }
  resp::Reply r;
  if (error.empty()) {
    size_t used = 0;
    std::string perr;
    if (resp::ParseReply(reply, &r, &used, &perr) != resp::ParseResult::kOk) {
      error = "ERR internal: a command's reply did not parse: " + perr;
    }
  }
  if (!error.empty()) {
    r.type = resp::Reply::Type::kError;
    r.str = error;
  }
  lua_settop(L, 0);
  // Pushed in a protected call: running out of memory there must not
  // unwind this frame, whose strings would leak.
  const bool is_error = r.type == resp::Reply::Type::kError;
  if (lua_cpcall(L, PushReplyProtected, &r) != 0) {
    lua_pushliteral(L, "ERR not enough memory for the reply of redis.call");
    return true;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_pushed");
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_pushed");
  return is_error;
}

// redis.pcall returns a command's error reply as {err = ...}; redis.call
// raises its text, as Redis does (a pcall in the script catches the
// string), remembered in the registry so that the message handler can tell
// it from a Lua error (which gets an ERR code).
int Call(lua_State* L, bool raise) {
  if (!CallCommand(L) || !raise) return 1;
  lua_getfield(L, -1, "err");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_call_error");
  lua_error(L);
  return 0;
}

int LuaCall(lua_State* L) { return Call(L, true); }
int LuaPcall(lua_State* L) { return Call(L, false); }

// An error reply's text as Redis 7.0 makes it: "-CODE message" keeps its
// code, anything else (a single word, or no leading '-') gets ERR.
void PushErrorReply(lua_State* L, std::string_view text) {
  std::string msg(text);
  if (!msg.empty() && msg[0] == '-') {
    const size_t space = msg.find(' ');
    msg = space == std::string::npos ? "ERR " + msg.substr(1) : msg.substr(1);
  } else {
    msg = "ERR " + msg;
  }
  while (!msg.empty() && (msg.back() == '\r' || msg.back() == '\n')) msg.pop_back();
  PushErrorTable(L, msg);
}

int LuaErrorReply(lua_State* L) {
  if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TSTRING) {
    PushErrorTable(L, "ERR wrong number or type of arguments");
    return 1;
  }
  size_t n = 0;
  const char* s = lua_tolstring(L, 1, &n);
  const std::string_view text(s, n);
  PushErrorReply(L, !text.empty() && text[0] == '-' ? text : "-" + std::string(text));
  return 1;
}

int LuaStatusReply(lua_State* L) {
  if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TSTRING) {
    PushErrorTable(L, "ERR wrong number or type of arguments");
    return 1;
  }
  lua_newtable(L);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "ok");
  return 1;
}

void PushSha1Hex(lua_State* L, std::string_view data) {
  const std::string hex = ScriptEngine::Sha1Hex(data);
  lua_pushlstring(L, hex.data(), hex.size());
}

int LuaSha1Hex(lua_State* L) {
  if (lua_gettop(L) != 1) RaiseAt(L, "wrong number of arguments");
  size_t n = 0;
  const char* s = lua_tolstring(L, 1, &n);
  PushSha1Hex(L, std::string_view(s == nullptr ? "" : s, n));
  return 1;
}

void LogMessage(lua_State* L) {
  std::string msg;
  for (int i = 2; i <= lua_gettop(L); i++) {
    size_t n = 0;
    const char* s = lua_tolstring(L, i, &n);
    if (s != nullptr) msg += (i > 2 ? " " : "") + std::string(s, n);
  }
  FAHA_LOG_INFO("script %.12s: %s", g_run ? g_run->call->sha.c_str() : "?", msg.c_str());
}

int LuaLog(lua_State* L) {
  if (lua_gettop(L) < 2) RaiseAt(L, "redis.log() requires two arguments or more.");
  if (!lua_isnumber(L, 1)) RaiseAt(L, "First argument must be a number (log level).");
  LogMessage(L);
  return 0;
}

// redis.setresp(2 or 3): how later replies convert (RESP3's null is nil,
// RESP2's is false; FaHA's string commands have no other RESP3 types).
int LuaSetResp(lua_State* L) {
  if (lua_gettop(L) != 1) RaiseAt(L, "redis.setresp() requires one argument.");
  const lua_Number v = lua_tonumber(L, 1);
  if (v != 2 && v != 3) RaiseAt(L, "RESP version must be 2 or 3.");
  if (g_run != nullptr) g_run->resp3 = v == 3;
  return 0;
}

int LuaTrue(lua_State* L) {
  lua_pushboolean(L, 1);
  return 1;
}

// loadstring without bytecode (a crafted chunk can corrupt memory).
int LuaLoadString(lua_State* L) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, 1, &n);
  const char* name = luaL_optstring(L, 2, s);
  if (n > 0 && s[0] == LUA_SIGNATURE[0]) {
    lua_pushnil(L);
    lua_pushstring(L, "loadstring: bytecode is refused");
    return 2;
  }
  if (luaL_loadbuffer(L, s, n, name) != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  // The chunk gets its caller's globals, not the shared ones.
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "f", &ar) && !lua_iscfunction(L, -1)) {
    lua_getfenv(L, -1);
    lua_setfenv(L, -3);
  }
  lua_settop(L, lua_gettop(L) - 1);
  return 1;
}

// A script's globals: reading an absent one, or writing any, is an error.
int EnvIndex(lua_State* L) {
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1)) return 1;
  const char* name = lua_tostring(L, 2);
  if (name == nullptr) name = "?";
  const bool library = strcmp(name, "struct") == 0 || strcmp(name, "cmsgpack") == 0 ||
                       strcmp(name, "cjson") == 0 || strcmp(name, "bit") == 0;
  RaiseAt(L, "Script attempted to access nonexistent global variable '", name,
          library ? "' (FaHA's Lua has this library only where Debian packages it for Lua 5.1: "
                    "cjson and bit; docs/redis-compat.md)"
                  : "'");
}

int EnvNewIndex(lua_State* L) { RaiseAt(L, "Attempt to modify a readonly table"); }

void CountHook(lua_State* L, lua_Debug*) {
  if (g_run != nullptr && g_run->deadline_ms != 0 && WallMs() > g_run->deadline_ms) {
    if (!g_run->timed_out) lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
    g_run->timed_out = true;
    lua_pushstring(L, "FUNCTION LOAD timeout");
    lua_error(L);
  }
  if (g_run != nullptr && ScriptEngine::Get().kill_requested()) {
    // From now on at every instruction: a pcall in the script that catches
    // this error cannot go on running.
    if (!g_run->killed) lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
    g_run->killed = true;
    lua_pushstring(L, "Script killed by user with SCRIPT KILL...");
    lua_error(L);
  }
}

void OpenLibrary(lua_State* L, lua_CFunction open, const char* name) {
  lua_pushcfunction(L, open);
  lua_pushstring(L, name);
  lua_call(L, 1, 0);
}

// Scripts share the libraries: each becomes a read-only view of itself (a
// script that set redis.call would set it for every later script), and the
// strings' metatable is hidden from getmetatable.
void ProtectLibraries(lua_State* L) {
  for (const char* name : {"redis", "string", "table", "math", "coroutine", "cjson", "bit"}) {
    lua_getglobal(L, name);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_newtable(L);  // the view
    lua_newtable(L);  // its metatable
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, EnvNewIndex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_setglobal(L, name);
    lua_pop(L, 1);
  }
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

// Debian's Lua 5.1 module `name` (lua-cjson, lua-bitop), as global `name`.
// Absent, scripts that use it get a clear error (EnvIndex).
void OpenModule(lua_State* L, const char* name, const char* open) {
  const std::string path = std::string("/usr/lib/x86_64-linux-gnu/lua/5.1/") + name + ".so";
  void* so = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  auto fn = so == nullptr ? nullptr : reinterpret_cast<lua_CFunction>(dlsym(so, open));
  if (fn == nullptr) {
    FAHA_LOG_WARN("scripts: no Lua library '%s' (%s): install Debian's lua-%s", name,
                  so == nullptr ? dlerror() : "no entry point",
                  strcmp(name, "bit") == 0 ? "bitop" : name);
    return;
  }
  lua_pushcfunction(L, fn);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  if (lua_istable(L, -1)) {
    lua_setglobal(L, name);
  } else {
    lua_pop(L, 1);
  }
}

}  // namespace

int MessageHandler(lua_State* L) {
  const int line = ScriptLine(L);
  if (!lua_istable(L, 1)) {
    lua_getfield(L, LUA_REGISTRYINDEX, "faha_call_error");
    const bool from_call = lua_rawequal(L, 1, -1) != 0;
    lua_pop(L, 1);
    const char* msg = lua_tostring(L, 1);
    lua_newtable(L);
    lua_pushfstring(L, "%s%s", from_call ? "" : "ERR ", msg ? msg : "unknown error");
    lua_setfield(L, -2, "err");
    lua_replace(L, 1);
  }
  lua_pushliteral(L, "line");
  lua_rawget(L, 1);
  const bool has_line = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!has_line) {
    lua_pushliteral(L, "line");
    lua_pushnumber(L, line);
    lua_rawset(L, 1);
  }
  lua_settop(L, 1);
  return 1;
}

void SetRun(Run* run) { g_run = run; }

void PushLoadTimeRedis(lua_State* L) {
  lua_newtable(L);
  lua_pushcfunction(L, LuaRegisterFunction);
  lua_setfield(L, -2, "register_function");
  lua_pushcfunction(L, LuaLog);
  lua_setfield(L, -2, "log");
  lua_getglobal(L, "redis");
  for (const char* name : {"LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING", "REDIS_VERSION",
                           "REDIS_VERSION_NUM"}) {
    lua_getfield(L, -1, name);
    lua_setfield(L, -3, name);
  }
  lua_pop(L, 1);
  lua_newtable(L);  // its metatable: an absent field is an error, as a global is
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_newtable(L);
  lua_pushcclosure(L, EnvIndex, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, EnvNewIndex);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
}

void ResetHook(lua_State* L) { lua_sethook(L, CountHook, LUA_MASKCOUNT, 10000); }

void IsolateGlobals(lua_State* L) {
  lua_newtable(L);  // the globals
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");  // _G is these, never the shared ones
  lua_newtable(L);            // their metatable
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_pushcclosure(L, EnvIndex, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, EnvNewIndex);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_setfenv(L, -2);
}

void SetKeysAndArgv(lua_State* L, const ScriptCall& call) {
  lua_getfenv(L, -1);
  for (const auto& [name, list] :
       {std::pair<const char*, const std::vector<std::string>*>{"KEYS", &call.keys},
        {"ARGV", &call.args}}) {
    lua_pushstring(L, name);
    lua_createtable(L, static_cast<int>(list->size()), 0);
    for (size_t i = 0; i < list->size(); i++) {
      lua_pushlstring(L, (*list)[i].data(), (*list)[i].size());
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
}

lua_State* OpenSandbox(Memory* memory) {
  lua_State* L = lua_newstate(Allocate, memory);
  OpenLibrary(L, luaopen_base, "");
  OpenLibrary(L, luaopen_table, LUA_TABLIBNAME);
  OpenLibrary(L, luaopen_string, LUA_STRLIBNAME);
  OpenLibrary(L, luaopen_math, LUA_MATHLIBNAME);
  for (const char* name : {"dofile", "loadfile", "print", "setfenv", "getfenv", "load", "module",
                           "require", "newproxy", "rawset"}) {
    lua_pushnil(L);
    lua_setglobal(L, name);
  }
  lua_pushcfunction(L, LuaLoadString);
  lua_setglobal(L, "loadstring");
  OpenModule(L, "cjson", "luaopen_cjson");
  OpenModule(L, "bit", "luaopen_bit");
  lua_newtable(L);
  const std::pair<const char*, lua_CFunction> functions[] = {
      {"call", LuaCall},
      {"pcall", LuaPcall},
      {"error_reply", LuaErrorReply},
      {"status_reply", LuaStatusReply},
      {"sha1hex", LuaSha1Hex},
      {"log", LuaLog},
      {"setresp", LuaSetResp},
      {"replicate_commands", LuaTrue},
      {"set_repl", LuaTrue},
  };
  for (const auto& [name, fn] : functions) {
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
  }
  const std::pair<const char*, int> constants[] = {
      {"LOG_DEBUG", 0},    {"LOG_VERBOSE", 1},
      {"LOG_NOTICE", 2},   {"LOG_WARNING", 3},
      {"REPL_NONE", 0},    {"REPL_SLAVE", 1},
      {"REPL_REPLICA", 1}, {"REPL_AOF", 2},
      {"REPL_ALL", 3},     {"REDIS_VERSION_NUM", 0x070000},
  };
  for (const auto& [name, value] : constants) {
    lua_pushnumber(L, value);
    lua_setfield(L, -2, name);
  }
  lua_pushstring(L, "7.0.0");
  lua_setfield(L, -2, "REDIS_VERSION");
  lua_setglobal(L, "redis");
  ProtectLibraries(L);
  // The compiled scripts, by SHA-1.
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_scripts");
  ResetHook(L);
  return L;
}

}  // namespace faha::lua
