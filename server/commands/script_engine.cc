#include "server/commands/script_engine.h"

#include <openssl/evp.h>

#include <limits>

#include "common/clock.h"
#include "common/strings.h"
#include "server/commands/script_lua.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

namespace faha {

namespace {
lua::Memory g_memory;
}  // namespace

ScriptEngine& ScriptEngine::Get() {
  static ScriptEngine* engine = new ScriptEngine();
  return *engine;
}

std::string ScriptEngine::Sha1Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), digest, &n, EVP_sha1(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < n; i++) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

std::string ScriptEngine::Load(std::string_view body) {
  std::string sha = Sha1Hex(body);
  MutexLock l(&mu_);
  scripts_.try_emplace(sha, body);
  return sha;
}

bool ScriptEngine::Find(std::string_view sha, std::string* body) const {
  const std::string key = Lower(sha);
  MutexLock l(&mu_);
  auto it = scripts_.find(key);
  if (it == scripts_.end()) return false;
  *body = it->second;
  return true;
}

void ScriptEngine::Flush() {
  MutexLock l(&mu_);
  scripts_.clear();
  generation_.fetch_add(1);
}

bool ScriptEngine::Kill() {
  if (running_since_ms_.load() == 0) return false;
  kill_.store(true);
  return true;
}

bool ScriptEngine::Compiles(std::string_view body, std::string* error) {
  if (!body.empty() && body[0] == LUA_SIGNATURE[0]) {
    *error = "ERR Error compiling script (new function): user_script:1: bytecode is refused";
    return false;
  }
  // A throwaway interpreter: the shared one is the committing thread's.
  lua_State* L = luaL_newstate();
  if (L == nullptr) {
    *error = "ERR out of memory compiling the script";
    return false;
  }
  const bool ok = luaL_loadbuffer(L, body.data(), body.size(), lua::kSource) == 0;
  if (!ok) {
    *error = std::string("ERR Error compiling script (new function): ") + lua_tostring(L, -1);
  }
  lua_close(L);
  return ok;
}

bool ScriptEngine::PushCompiled(const ScriptCall& call, std::string* error) {
  lua_State* L = lua_;
  const uint64_t generation = generation_.load();
  if (compiled_generation_ != generation) {
    // SCRIPT FLUSH: the compiled functions go too.
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "faha_scripts");
    compiled_generation_ = generation;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_scripts");
  lua_getfield(L, -1, call.sha.c_str());
  if (!lua_isnil(L, -1)) {
    lua_remove(L, -2);
    return true;
  }
  lua_pop(L, 1);
  const bool bytecode = !call.body.empty() && call.body[0] == LUA_SIGNATURE[0];
  if (bytecode || luaL_loadbuffer(L, call.body.data(), call.body.size(), lua::kSource) != 0) {
    *error = "ERR Error compiling script (new function): " +
             std::string(bytecode ? "user_script:1: bytecode is refused" : lua_tostring(L, -1));
    lua_settop(L, 0);
    return false;
  }
  lua::IsolateGlobals(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, call.sha.c_str());
  lua_remove(L, -2);
  return true;
}

void ScriptEngine::SetMemoryLimit(uint64_t bytes) { g_memory.limit = bytes; }

lua_State* ScriptEngine::State() {
  if (lua_ == nullptr) {
    lua_ = lua::OpenSandbox(&g_memory);
    lua_newtable(lua_);
    lua_setfield(lua_, LUA_REGISTRYINDEX, "faha_scripts");
    lua_newtable(lua_);
    lua_setfield(lua_, LUA_REGISTRYINDEX, "faha_libraries");
    compiled_generation_ = generation_.load();
  }
  return lua_;
}

WriteResult ScriptEngine::Run(const ScriptCall& call, WriteContext& w,
                              uint64_t memory_limit_bytes) {
  lua_State* L = State();
  lua_settop(L, 0);
  std::string error;
  if (!PushCompiled(call, &error)) return WriteResult::Error(error);
  lua::SetKeysAndArgv(L, call);
  return Invoke(call, w, memory_limit_bytes, 0);
}

WriteResult ScriptEngine::Invoke(const ScriptCall& call, WriteContext& w,
                                 uint64_t memory_limit_bytes, int nargs) {
  lua_State* L = lua_;
  lua_pushcfunction(L, lua::MessageHandler);
  lua_insert(L, -2 - nargs);
  lua::Run run{&call, &w};
  run.db = call.db;
  lua::SetRun(&run);
  kill_.store(false);
  running_since_ms_.store(WallMs());
  // The limit holds while the script runs, where running out of memory is
  // the script's error; outside a protected call it would abort the server.
  g_memory.limit = memory_limit_bytes;
  const int status = lua_pcall(L, nargs, 1, -2 - nargs);
  std::string out;
  // The reply is converted still under the limit and the kill hook.
  const bool converted = status == 0 && lua::AppendValue(L, &out);
  g_memory.limit = 0;
  running_since_ms_.store(0);
  lua::SetRun(nullptr);
  lua::ResetHook(L);
  WriteResult result;
  if (run.killed) {
    result = WriteResult::Error(
        "ERR Script killed by user with SCRIPT KILL: nothing it wrote was applied");
    result.undo = true;
  } else if (status != 0) {
    result = WriteResult::Error(FailureText(call));
  } else {
    (void)converted;  // an error reply when not
    result = WriteResult::Raw(std::move(out));
  }
  lua_settop(L, 0);
  if (g_memory.used > memory_limit_bytes / 2) lua_gc(L, LUA_GCCOLLECT, 0);
  return result;
}

std::string ScriptEngine::FailureText(const ScriptCall& call) {
  // {err = ..., line = ...} from the message handler, or the string of a
  // memory error (which skips the handler).
  lua_State* L = lua_;
  std::string err = "ERR script failed";
  int line = 0;
  if (lua_istable(L, -1)) {  // the message handler's plain table: raw reads
    lua_pushliteral(L, "err");
    lua_rawget(L, -2);
    if (lua_isstring(L, -1)) err = lua_tostring(L, -1);
    lua_pushliteral(L, "line");
    lua_rawget(L, -3);
    // The handler's own number; a cast of one outside int's range would be
    // undefined, so anything odd reads as line 0.
    const lua_Number n = lua_tonumber(L, -1);
    if (n >= 0 && n <= std::numeric_limits<int>::max()) line = static_cast<int>(n);
  } else if (lua_isstring(L, -1)) {
    err = std::string("ERR ") + lua_tostring(L, -1);
  }
  for (char& ch : err) {
    if (ch == '\r' || ch == '\n') ch = ' ';
  }
  return err + " script: " + call.sha + ", on @user_" + (call.function ? "function:" : "script:") +
         std::to_string(line) + ".";
}

}  // namespace faha
