// Functions in the script engine (FUNCTION LOAD and FCALL,
// server/commands/cmd_function.cc): a library's code runs once in the shared
// interpreter, with its own globals and a `redis` that can only register
// functions; the functions it registers stay compiled in the registry,
// under the library's name with its code, until another code arrives.
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "server/commands/script_engine.h"
#include "server/commands/script_lua.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

namespace faha {

namespace {

// What redis.register_function adds to while a library loads (else null).
std::vector<FunctionInfo>* g_registering = nullptr;

constexpr int64_t kLoadTimeoutMs = 500;  // Redis's limit for a library's code

[[noreturn]] void Raise(lua_State* L, const char* msg) {
  lua_pushstring(L, msg);
  lua_error(L);
  abort();  // lua_error does not return
}

bool ValidName(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s) {
    if (!isalnum(static_cast<unsigned char>(ch)) && ch != '_') return false;
  }
  return true;
}

// The flags of a register_function table, from the table at `index`.
uint32_t ParseFlags(lua_State* L, int index) {
  static const std::pair<const char*, uint32_t> kFlags[] = {
      {"no-writes", FunctionInfo::kNoWrites},
      {"allow-oom", FunctionInfo::kAllowOom},
      {"allow-stale", FunctionInfo::kAllowStale},
      {"no-cluster", FunctionInfo::kNoCluster},
      {"allow-cross-slot-keys", FunctionInfo::kAllowCrossSlotKeys},
  };
  uint32_t flags = 0;
  const int n = static_cast<int>(lua_objlen(L, index));
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, index, i);
    const char* name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : nullptr;
    uint32_t bit = 0;
    for (const auto& [flag, value] : kFlags) {
      if (name != nullptr && strcmp(name, flag) == 0) bit = value;
    }
    if (bit == 0) Raise(L, "unknown flag given");
    flags |= bit;
    lua_pop(L, 1);
  }
  return flags;
}

// register_function{function_name=, callback=, flags=, description=}: its
// flags; leaves the name, the callback and the description (or nil) on the
// stack. Raises Lua errors: no C++ object with a destructor lives here.
uint32_t ReadNamedArguments(lua_State* L) {
  uint32_t flags = 0;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    const char* key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(key, "function_name") == 0) {
      if (lua_type(L, -1) != LUA_TSTRING) {
        Raise(L, "function_name argument given to redis.register_function must be a string");
      }
    } else if (strcmp(key, "callback") == 0) {
      if (!lua_isfunction(L, -1)) {
        Raise(L, "callback argument given to redis.register_function must be a function");
      }
    } else if (strcmp(key, "description") == 0) {
      if (lua_type(L, -1) != LUA_TSTRING) {
        Raise(L, "description argument given to redis.register_function must be a string");
      }
    } else if (strcmp(key, "flags") == 0) {
      if (!lua_istable(L, -1)) {
        Raise(L,
              "flags argument to redis.register_function must be a table representing "
              "function flags");
      }
      flags = ParseFlags(L, lua_gettop(L));
    } else {
      Raise(L, "unknown argument given to redis.register_function");
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "function_name");
  if (lua_isnil(L, -1)) Raise(L, "redis.register_function must get a function name argument");
  lua_getfield(L, 1, "callback");
  if (lua_isnil(L, -1)) Raise(L, "redis.register_function must get a callback argument");
  lua_getfield(L, 1, "description");
  return flags;
}

// Adds the function to what the library registered; false if out of memory.
bool Record(std::string_view name, const char* description, size_t description_len,
            uint32_t flags) noexcept {
  try {
    FunctionInfo info;
    info.name.assign(name);
    info.has_description = description != nullptr;
    if (description != nullptr) info.description.assign(description, description_len);
    info.flags = flags;
    g_registering->push_back(std::move(info));
    return true;
  } catch (const std::bad_alloc&) {
    return false;
  }
}

// The error text of a failed protected call ({err = ...} or a string).
std::string ErrorText(lua_State* L) {
  std::string err = "unknown error";
  if (lua_istable(L, -1)) {
    lua_pushliteral(L, "err");
    lua_rawget(L, -2);
    if (lua_isstring(L, -1)) err = lua_tostring(L, -1);
    lua_pop(L, 1);
  } else if (lua_isstring(L, -1)) {
    err = std::string("ERR ") + lua_tostring(L, -1);
  }
  return err;
}

// Pushes function `fn` of library `name` compiled from `code`; false (and
// nothing pushed) if the registry has no such library with that code.
bool PushFunction(lua_State* L, const std::string& name, const std::string& code,
                  const std::string& fn) {
  const int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_libraries");
  lua_getfield(L, -1, name.c_str());
  bool found = false;
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "code");
    lua_pushlstring(L, code.data(), code.size());
    if (lua_rawequal(L, -1, -2)) {
      lua_getfield(L, -3, "fns");
      lua_getfield(L, -1, fn.c_str());
      found = lua_isfunction(L, -1);
      if (found) lua_replace(L, top + 1);
    }
  }
  lua_settop(L, found ? top + 1 : top);
  return found;
}

void PushList(lua_State* L, const std::vector<std::string>& list) {
  lua_createtable(L, static_cast<int>(list.size()), 0);
  for (size_t i = 0; i < list.size(); i++) {
    lua_pushlstring(L, list[i].data(), list[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

}  // namespace

namespace lua {

int LuaRegisterFunction(lua_State* L) {
  if (g_registering == nullptr) {
    Raise(L, "redis.register_function can only be called on FUNCTION LOAD command");
  }
  uint32_t flags = 0;
  if (lua_gettop(L) == 1 && lua_istable(L, 1)) {
    flags = ReadNamedArguments(L);
  } else if (lua_gettop(L) == 2) {
    if (lua_type(L, 1) != LUA_TSTRING) {
      Raise(L, "first argument to redis.register_function must be a string");
    }
    if (!lua_isfunction(L, 2)) {
      Raise(L, "second argument to redis.register_function must be a function");
    }
    lua_pushnil(L);  // no description
  } else {
    Raise(L, "wrong number of arguments to redis.register_function");
  }
  // The name, the callback and the description are the top three values.
  size_t n = 0;
  const char* name = lua_tolstring(L, -3, &n);
  const std::string_view view(name, n);
  // (Redis 7.0 gives the library's wording for a function's name.)
  if (!ValidName(view)) {
    Raise(L,
          "Library names can only contain letters, numbers, or underscores(_) and must be at "
          "least one character long");
  }
  for (const FunctionInfo& f : *g_registering) {
    if (std::string_view(f.name) == view) Raise(L, "Function already exists in the library");
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_loading");
  lua_pushvalue(L, -4);
  lua_pushvalue(L, -4);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  size_t description_len = 0;
  const char* description = lua_isnil(L, -1) ? nullptr : lua_tolstring(L, -1, &description_len);
  if (!Record(view, description, description_len, flags)) Raise(L, "not enough memory");
  return 0;
}

}  // namespace lua

bool ScriptEngine::LoadLibrary(const std::string& name, const std::string& code,
                               std::vector<FunctionInfo>* functions, std::string* error,
                               uint64_t memory_limit_bytes) {
  lua_State* L = State();
  lua_settop(L, 0);
  // Lua does not skip the "#!lua" line: it is blanked, so lines keep their
  // numbers (and a precompiled chunk cannot follow it).
  std::string body = code;
  body.erase(0, std::min(body.find('\n'), body.size()));
  if (luaL_loadbuffer(L, body.data(), body.size(), lua::kFunctionSource) != 0) {
    *error = std::string("ERR Error compiling function: ") + lua_tostring(L, -1);
    lua_settop(L, 0);
    return false;
  }
  lua::IsolateGlobals(L);
  lua_getfenv(L, -1);  // the library's globals: its redis can only register
  lua_pushliteral(L, "redis");
  lua::PushLoadTimeRedis(L);
  lua_rawset(L, -3);
  lua_insert(L, 1);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_loading");
  lua_pushcfunction(L, lua::MessageHandler);
  lua_insert(L, 2);
  functions->clear();
  g_registering = functions;
  ScriptCall call;
  call.sha = name;
  call.function = true;
  lua::Run run{&call, nullptr};
  run.deadline_ms = WallMs() + kLoadTimeoutMs;
  lua::SetRun(&run);
  kill_.store(false);
  running_since_ms_.store(WallMs());
  SetMemoryLimit(memory_limit_bytes);
  const int status = lua_pcall(L, 0, 0, 2);
  SetMemoryLimit(0);
  running_since_ms_.store(0);
  lua::SetRun(nullptr);
  lua::ResetHook(L);
  g_registering = nullptr;
  if (run.killed) {
    *error = "ERR Error registering functions: killed by FUNCTION KILL";
  } else if (run.timed_out) {
    *error = "ERR Error registering functions: ERR FUNCTION LOAD timeout";
  } else if (status != 0) {
    *error = "ERR Error registering functions: " + ErrorText(L);
  } else if (functions->empty()) {
    *error = "ERR No functions registered";
  }
  if (!error->empty()) {
    lua_settop(L, 0);
    return false;
  }
  // From now on the library's functions see the whole redis API.
  lua_pushliteral(L, "redis");
  lua_pushnil(L);
  lua_rawset(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_libraries");
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, code.data(), code.size());
  lua_setfield(L, -2, "code");
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_loading");
  lua_setfield(L, -2, "fns");
  lua_setfield(L, -2, name.c_str());
  lua_settop(L, 0);
  return true;
}

void ScriptEngine::DropCompiledLibraries() {
  if (lua_ == nullptr) return;
  lua_newtable(lua_);
  lua_setfield(lua_, LUA_REGISTRYINDEX, "faha_libraries");
}

WriteResult ScriptEngine::CallFunction(const std::string& name, const std::string& code,
                                       const ScriptCall& call, WriteContext& w,
                                       uint64_t memory_limit_bytes) {
  lua_State* L = State();
  lua_settop(L, 0);
  if (!PushFunction(L, name, code, call.sha)) {
    // Loaded by another node (a backup before failover), or restored: compile it now.
    std::vector<FunctionInfo> functions;
    std::string error;
    if (!LoadLibrary(name, code, &functions, &error, memory_limit_bytes)) {
      return WriteResult::Error(error);
    }
    if (!PushFunction(L, name, code, call.sha)) return WriteResult::Error("ERR Function not found");
  }
  PushList(L, call.keys);
  PushList(L, call.args);
  return Invoke(call, w, memory_limit_bytes, 2);
}

}  // namespace faha
