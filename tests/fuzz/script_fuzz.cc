// libFuzzer target: EVAL's interpreter on generated scripts. Each input byte
// picks a piece of Lua (redis.call and pcall of any command in the table
// with fuzzed arguments, errors raised and caught, deep and wide tables,
// cjson of fuzzed text, loadstring of fuzzed bytes, big strings past the
// memory cap, deep recursion, endless loops that a watchdog kills as SCRIPT
// KILL would); the rest of the input is ARGV[1] and raw Lua. The script runs
// as the committing thread runs it, against a keyspace in a map; one input in
// three runs as a function instead (FUNCTION LOAD of a library, then FCALL).
// Invariants: no crash or sanitizer report, and every reply is one whole
// RESP value.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/resp.h"
#include "server/commands/command_table.h"
#include "server/commands/commands_testing.h"
#include "server/commands/host.h"
#include "server/commands/script_engine.h"
#include "server/metrics/metrics.h"

namespace faha {
namespace {

// The watchdog: a script that runs past 50 ms is killed.
void Watchdog() {
  static std::atomic<bool> started{false};
  if (started.exchange(true)) return;
  std::thread([] {
    while (true) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const int64_t since = ScriptEngine::Get().running_since_ms();
      if (since != 0 && WallMs() - since > 50) ScriptEngine::Get().Kill();
    }
  }).detach();
}

std::string Quoted(std::string_view s) {
  std::string q = "'";
  for (unsigned char ch : s) {
    char buf[8];
    snprintf(buf, sizeof(buf), "\\%u", ch);
    q += buf;
  }
  return q + "'";
}

// The piece of Lua that byte `b` picks; `n` is a small number from the input.
std::string Piece(uint8_t b, uint32_t n, std::string_view arg) {
  const auto& table = CommandTable();
  const std::string name(table[b % table.size()].name);
  switch (b % 24) {
    case 0:
      return "redis.call('set', KEYS[1], ARGV[1])\n";
    case 1:
      return "redis.pcall('incr', KEYS[1])\n";
    case 2:
      return "local v = redis.call('get', KEYS[1])\n";
    case 3:
      return "redis.pcall('append', KEYS[1], string.rep('x', " + std::to_string(n) + "))\n";
    case 4:
      return "g" + std::to_string(n) + " = 1\n";
    case 5:
      return "local t = {} for i = 1, " + std::to_string(n) + " do t[i] = {i, 'x'} end return t\n";
    case 6:
      return "return {1, {2, 'x', {3}}, nil, {err = 'e'}, {ok = 'o'}, true, false, 1.5}\n";
    case 7:
      return "error('e" + std::to_string(n) + "')\n";
    case 8:
      return "error({err = 'X " + std::to_string(n) + "'})\n";
    case 9:
      return "return cjson.decode(ARGV[1])\n";
    case 10:
      return "return cjson.encode({ARGV[1], {a = KEYS[1]}})\n";
    case 11:
      return "return redis.pcall('" + name + "', ARGV[1], KEYS[1], '" + std::to_string(n) + "')\n";
    case 12:
      return "return redis.pcall('" + name + "')\n";
    case 13:
      return "local f = loadstring(ARGV[1]) if f then return f() end\n";
    case 14:
      return "local s = string.rep('a', " + std::to_string(n) + " * 1000000) return #s\n";
    case 15:
      return "while true do end\n";
    case 16:
      return "local function f(k) if k == 0 then return 0 end return 1 + f(k - 1) end return f(" +
             std::to_string(n * 100) + ")\n";
    case 17:
      return "return bit.band(" + std::to_string(n) + ", 7)\n";
    case 18:
      return "return redis.sha1hex(ARGV[1])\n";
    case 19:
      return "redis.setresp(" + std::to_string(2 + n % 3) + ")\n";
    case 20:
      return "local ok, e = pcall(redis.call, 'incr', ARGV[1]) return e\n";
    case 21:
      return "return redis.call('" + name + "', " + Quoted(arg.substr(0, 16)) + ")\n";
    case 22:
      return "return " + Quoted(arg.substr(0, 32)) + "\n";
    default:
      return std::string(arg.substr(0, n % 16)) + "\n";
  }
}

}  // namespace
}  // namespace faha

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace faha;
  Watchdog();
  static FakeHost host;
  static MapWriteContext keys;
  keys.max_keys_ = 10000;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t pieces = std::min<size_t>(size / 2, 8);
  const std::string_view arg = in.substr(pieces * 2);
  std::string body;
  for (size_t i = 0; i < pieces; i++) body += Piece(data[2 * i], data[2 * i + 1] % 64, arg);
  ScriptCall call;
  call.host = &host;
  call.body = body;
  call.sha = ScriptEngine::Sha1Hex(body);
  call.keys = {"k" + std::to_string(size % 4)};
  call.args = {std::string(arg)};
  call.read_only = size % 5 == 0;
  WriteResult r;
  if (size % 3 == 0) {
    // As a function: the same pieces as the body of a library's function
    // (FUNCTION LOAD runs the library's code, FCALL calls it).
    const std::string code =
        "#!lua name=fuzzlib\nredis.register_function('f', function(KEYS, ARGV)\n" + body + "\nend)";
    call.sha = "f";
    call.function = true;
    std::vector<FunctionInfo> functions;
    std::string error;
    if (ScriptEngine::Get().LoadLibrary("fuzzlib", code, &functions, &error, 16 << 20)) {
      r = ScriptEngine::Get().CallFunction("fuzzlib", code, call, keys, 16 << 20);
    }
  } else {
    r = ScriptEngine::Get().Run(call, keys, 16 << 20);
  }
  if (r.kind == WriteResult::Kind::kRaw) {
    resp::Reply reply;
    size_t consumed = 0;
    std::string error;
    if (resp::ParseReply(r.str, &reply, &consumed, &error) != resp::ParseResult::kOk ||
        consumed != r.str.size()) {
      abort();
    }
  }
  return 0;
}
