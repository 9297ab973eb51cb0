#include <cstdint>
#include <limits>
#include <string>

#include "common/resp.h"
#include "server/commands/script_lua.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

namespace faha::lua {

namespace {

constexpr int kMaxReplyDepth = 200;
constexpr size_t kMaxReplyElements = 1 << 20;

// A Lua number as Redis's integer reply: truncated toward zero. Redis casts
// the double in C, which is undefined outside int64_t's range; on x86 the
// cast gives INT64_MIN for NaN, infinities and anything out of range, and so
// does this, without the undefined behaviour.
int64_t LuaNumberToInteger(lua_Number d) {
  constexpr double kTwo63 = 9223372036854775808.0;
  if (!(d >= -kTwo63 && d < kTwo63)) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(d);
}

// The value at the top of the stack as a RESP reply, as Redis converts a
// script's return value.
void AppendLuaValue(lua_State* L, std::string* out, int depth, size_t* budget) {
  if (depth > kMaxReplyDepth || !lua_checkstack(L, 4)) {
    resp::AppendError(out, "ERR reached lua stack limit");
    return;
  }
  if (*budget == 0) return;  // the caller answers the error
  (*budget)--;
  switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, -1, &n);
      resp::AppendBulk(out, std::string_view(s, n));
      return;
    }
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, -1)) {
        resp::AppendInt(out, 1);
      } else {
        resp::AppendNil(out);
      }
      return;
    case LUA_TNUMBER:
      resp::AppendInt(out, LuaNumberToInteger(lua_tonumber(L, -1)));
      return;
    case LUA_TTABLE:
      break;
    default:
      resp::AppendNil(out);
      return;
  }
  // Raw reads: a metamethod of the script's would run outside its pcall.
  lua_pushliteral(L, "err");
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    std::string err = lua_tostring(L, -1);
    for (char& ch : err) {
      if (ch == '\r' || ch == '\n') ch = ' ';
    }
    resp::AppendError(out, err);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "ok");
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    std::string ok = lua_tostring(L, -1);
    for (char& ch : ok) {
      if (ch == '\r' || ch == '\n') ch = ' ';
    }
    resp::AppendSimple(out, ok);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  std::string items;
  int n = 0;
  for (;; n++) {
    lua_rawgeti(L, -1, n + 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    AppendLuaValue(L, &items, depth + 1, budget);
    lua_pop(L, 1);
    if (*budget == 0) return;
  }
  resp::AppendArray(out, n);
  out->append(items);
}

struct Conversion {
  std::string* out;
  bool too_big = false;
};

// lua_cpcall's function: the script's return value (in the registry) as RESP.
int ConvertProtected(lua_State* L) {
  auto* conversion = static_cast<Conversion*>(lua_touserdata(L, 1));
  lua_getfield(L, LUA_REGISTRYINDEX, "faha_return");
  size_t budget = kMaxReplyElements;
  AppendLuaValue(L, conversion->out, 0, &budget);
  conversion->too_big = budget == 0;
  return 0;
}
}  // namespace

bool AppendValue(lua_State* L, std::string* out) {
  // Protected, and still under the kill hook: converting a table can run
  // long (one that holds itself) or fail (memory).
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_return");
  Conversion conversion{out};
  const int status = lua_cpcall(L, ConvertProtected, &conversion);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "faha_return");
  if (status == 0 && !conversion.too_big) return true;
  out->clear();
  resp::AppendError(out, conversion.too_big
                             ? "ERR the script's reply has more than " +
                                   std::to_string(kMaxReplyElements) +
                                   " elements (a table that holds itself?)"
                             : "ERR the script's reply could not be converted (out of memory or "
                               "killed)");
  return status == 0;
}

// Pushes a table {err = msg}.
void PushErrorTable(lua_State* L, std::string_view msg) {
  lua_newtable(L);
  lua_pushlstring(L, msg.data(), msg.size());
  lua_setfield(L, -2, "err");
}

// A parsed RESP reply as Redis gives it to Lua: integers as numbers, bulk
// strings as strings, nil as false, status {ok=...}, error {err=...}.
void PushReply(lua_State* L, const resp::Reply& r, bool resp3) {
  lua_checkstack(L, 4);
  switch (r.type) {
    case resp::Reply::Type::kInt:
      lua_pushnumber(L, static_cast<lua_Number>(r.integer));
      break;
    case resp::Reply::Type::kBulk:
      lua_pushlstring(L, r.str.data(), r.str.size());
      break;
    case resp::Reply::Type::kNil:
      if (resp3) {
        lua_pushnil(L);
      } else {
        lua_pushboolean(L, 0);
      }
      break;
    case resp::Reply::Type::kSimple:
      lua_newtable(L);
      lua_pushlstring(L, r.str.data(), r.str.size());
      lua_setfield(L, -2, "ok");
      break;
    case resp::Reply::Type::kError:
      PushErrorTable(L, r.str);
      break;
    case resp::Reply::Type::kArray:
      lua_createtable(L, static_cast<int>(r.elements.size()), 0);
      for (size_t i = 0; i < r.elements.size(); i++) {
        PushReply(L, r.elements[i], resp3);
        lua_rawseti(L, -2, static_cast<int>(i + 1));
      }
      break;
  }
}

}  // namespace faha::lua
