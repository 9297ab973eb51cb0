#include "server/commands/command_table.h"

#include <algorithm>
#include <cctype>
#include <unordered_map>

#include "common/resp.h"

namespace faha {

// The handlers, by file.
namespace cmd {
// server/commands/cmd_connection.cc
ExecStatus Ping(CommandContext& c);
ExecStatus Echo(CommandContext& c);
ExecStatus Auth(CommandContext& c);
ExecStatus Hello(CommandContext& c);
ExecStatus Quit(CommandContext& c);
ExecStatus Shutdown(CommandContext& c);
ExecStatus Time(CommandContext& c);
ExecStatus Client(CommandContext& c);
ExecStatus ReadOnly(CommandContext& c);
// server/commands/cmd_server.cc
ExecStatus Command(CommandContext& c);
ExecStatus Config(CommandContext& c);
ExecStatus Info(CommandContext& c);
ExecStatus Role(CommandContext& c);
ExecStatus FahaDigest(CommandContext& c);
// server/commands/cmd_read.cc
ExecStatus Get(CommandContext& c);
ExecStatus MGet(CommandContext& c);
ExecStatus StrLen(CommandContext& c);
ExecStatus Exists(CommandContext& c);
ExecStatus Type(CommandContext& c);
ExecStatus Ttl(CommandContext& c);
ExecStatus ExpireTime(CommandContext& c);
ExecStatus GetRange(CommandContext& c);
ExecStatus Touch(CommandContext& c);
ExecStatus DbSize(CommandContext& c);
ExecStatus Scan(CommandContext& c);
// server/commands/cmd_write.cc
ExecStatus Set(CommandContext& c);
ExecStatus SetEx(CommandContext& c);
ExecStatus GetSet(CommandContext& c);
ExecStatus GetDel(CommandContext& c);
ExecStatus Del(CommandContext& c);
ExecStatus MSet(CommandContext& c);
ExecStatus IncrBy(CommandContext& c);
ExecStatus Expire(CommandContext& c);
ExecStatus Persist(CommandContext& c);
ExecStatus FlushAll(CommandContext& c);
// server/commands/cmd_db.cc
ExecStatus Select(CommandContext& c);
ExecStatus Move(CommandContext& c);
ExecStatus SwapDb(CommandContext& c);
ExecStatus FlushDb(CommandContext& c);
// server/commands/cmd_string.cc
ExecStatus SetNx(CommandContext& c);
ExecStatus MSetNx(CommandContext& c);
ExecStatus Append(CommandContext& c);
ExecStatus SetRange(CommandContext& c);
ExecStatus IncrByFloat(CommandContext& c);
ExecStatus GetEx(CommandContext& c);
// server/commands/cmd_multi.cc
ExecStatus Multi(CommandContext& c);
ExecStatus Exec(CommandContext& c);
ExecStatus Discard(CommandContext& c);
ExecStatus Watch(CommandContext& c);
ExecStatus Unwatch(CommandContext& c);
// server/commands/cmd_keyspace.cc
ExecStatus Rename(CommandContext& c);
ExecStatus Copy(CommandContext& c);
ExecStatus Keys(CommandContext& c);
ExecStatus Dump(CommandContext& c);
ExecStatus Restore(CommandContext& c);
ExecStatus RandomKey(CommandContext& c);
ExecStatus Object(CommandContext& c);
ExecStatus Lcs(CommandContext& c);
// server/commands/cmd_script.cc
ExecStatus Eval(CommandContext& c);
ExecStatus Script(CommandContext& c);
// server/commands/cmd_function.cc
ExecStatus Function(CommandContext& c);
ExecStatus FCall(CommandContext& c);
}  // namespace cmd

namespace {

// Key specs and ACL categories that many rows share.
constexpr KeySpec kOneRO = {.flags = "RO"};
constexpr KeySpec kOneROAccess = {.flags = "RO access"};
constexpr KeySpec kOneRWUpdate = {.flags = "RW update"};
constexpr KeySpec kOneRWAccessUpdate = {.flags = "RW access update"};
constexpr KeySpec kAllRMDelete = {.flags = "RM delete", .last_key = -1};
constexpr std::string_view kConnection = "@fast @connection";
constexpr std::string_view kNoAuthFlags = "noscript loading stale fast no_auth allow_busy";
constexpr std::string_view kTxnFlags = "noscript loading stale fast allow_busy";
constexpr std::string_view kTransaction = "@fast @transaction";
constexpr std::string_view kScriptFlags =
    "noscript stale skip_monitor no_mandatory_keys movablekeys";
constexpr std::string_view kScriptRoFlags =
    "readonly noscript stale skip_monitor no_mandatory_keys movablekeys";
constexpr std::string_view kScripting = "@slow @scripting";
constexpr KeySpec kScriptRW = {
    .flags = "RW access update",
    .notes = "We cannot tell how the keys will be used so we assume the worst, RW and UPDATE",
    .begin_index = 2,
    .keynum = true};
constexpr KeySpec kScriptRO = {
    .flags = "RO access",
    .notes = "We cannot tell how the keys will be used so we assume the worst, RO and ACCESS",
    .begin_index = 2,
    .keynum = true};
constexpr std::string_view kKeyspaceRead = "@keyspace @read @fast";
constexpr std::string_view kKeyspaceWrite = "@keyspace @write @fast";
constexpr std::string_view kStringIncr = "@write @string @fast";
constexpr std::string_view kAllShardsAllSucceeded =
    "request_policy:all_shards response_policy:all_succeeded";
constexpr std::string_view kMultiShardSum = "request_policy:multi_shard response_policy:agg_sum";

// clang-format off
const std::vector<CommandRow> kTable = {
    // connection and server
    {.name = "ping", .arity = -1, .flags = kCmdNoAuth, .handler = cmd::Ping,
     .redis_flags = "fast", .acl_categories = kConnection, .tips = kAllShardsAllSucceeded},
    {.name = "echo", .arity = 2, .flags = 0, .handler = cmd::Echo,
     .redis_flags = "loading stale fast", .acl_categories = kConnection},
    {.name = "auth", .arity = -2, .flags = kCmdNoAuth, .handler = cmd::Auth,
     .redis_flags = kNoAuthFlags, .acl_categories = kConnection},
    {.name = "hello", .arity = -1, .flags = kCmdNoAuth, .handler = cmd::Hello,
     .redis_flags = kNoAuthFlags, .acl_categories = kConnection},
    {.name = "quit", .arity = -1, .flags = kCmdNoAuth | kCmdNotQueued, .handler = cmd::Quit,
     .redis_flags = kNoAuthFlags, .acl_categories = kConnection},
    {.name = "select", .arity = 2, .flags = 0, .handler = cmd::Select,
     .redis_flags = "loading stale fast", .acl_categories = kConnection},
    {.name = "shutdown", .arity = -1, .flags = kCmdNoMulti, .handler = cmd::Shutdown,
     .redis_flags = "admin noscript loading stale no_multi allow_busy",
     .acl_categories = "@admin @slow @dangerous"},
    {.name = "time", .arity = 1, .flags = 0, .handler = cmd::Time,
     .redis_flags = "loading stale fast", .acl_categories = "@fast",
     .tips = "nondeterministic_output"},
    {.name = "client", .arity = -2, .flags = 0, .handler = cmd::Client,
     .redis_flags = "", .acl_categories = "@slow"},
    {.name = "readonly", .arity = 1, .flags = 0, .handler = cmd::ReadOnly,
     .redis_flags = "loading stale fast", .acl_categories = kConnection},
    {.name = "readwrite", .arity = 1, .flags = 0, .handler = cmd::ReadOnly,
     .redis_flags = "loading stale fast", .acl_categories = kConnection},
    {.name = "command", .arity = -1, .flags = 0, .handler = cmd::Command,
     .redis_flags = "loading stale", .acl_categories = "@slow @connection",
     .tips = "nondeterministic_output_order"},
    {.name = "config", .arity = -2, .flags = 0, .handler = cmd::Config,
     .redis_flags = "", .acl_categories = "@slow"},
    {.name = "info", .arity = -1, .flags = 0, .handler = cmd::Info,
     .redis_flags = "loading stale", .acl_categories = "@slow @dangerous",
     .tips = "nondeterministic_output request_policy:all_shards response_policy:special"},
    {.name = "role", .arity = 1, .flags = 0, .handler = cmd::Role,
     .redis_flags = "noscript loading stale fast", .acl_categories = "@admin @fast @dangerous"},
    {.name = "faha.digest", .arity = 1, .flags = 0, .handler = cmd::FahaDigest,
     .redis_flags = "readonly", .acl_categories = "@read @slow"},
    // transactions
    {.name = "multi", .arity = 1, .flags = kCmdNotQueued, .handler = cmd::Multi,
     .redis_flags = kTxnFlags, .acl_categories = kTransaction},
    {.name = "exec", .arity = 1, .flags = kCmdNotQueued | kCmdMaySubmit, .handler = cmd::Exec,
     .redis_flags = "noscript loading stale skip_slowlog", .acl_categories = "@slow @transaction"},
    {.name = "discard", .arity = 1, .flags = kCmdNotQueued, .handler = cmd::Discard,
     .redis_flags = kTxnFlags, .acl_categories = kTransaction},
    {.name = "watch", .arity = -2, .flags = kCmdNotQueued | kCmdKeyRead, .handler = cmd::Watch,
     .redis_flags = kTxnFlags, .first_key = 1, .last_key = -1, .key_step = 1,
     .acl_categories = kTransaction, .key_spec = {.flags = "RO", .last_key = -1}},
    {.name = "unwatch", .arity = 1, .flags = 0, .handler = cmd::Unwatch,
     .redis_flags = kTxnFlags, .acl_categories = kTransaction},
    // keyspace
    {.name = "rename", .arity = 3, .flags = kCmdWrite, .handler = cmd::Rename,
     .redis_flags = "write", .first_key = 1, .last_key = 2, .key_step = 1,
     .acl_categories = "@keyspace @write @slow", .key_spec = {.flags = "RW access delete"},
     .key_spec2 = {.flags = "OW update", .begin_index = 2}},
    {.name = "renamenx", .arity = 3, .flags = kCmdWrite, .handler = cmd::Rename,
     .redis_flags = "write fast", .first_key = 1, .last_key = 2, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = {.flags = "RW access delete"},
     .key_spec2 = {.flags = "OW insert", .begin_index = 2}},
    {.name = "copy", .arity = -3, .flags = kCmdWrite, .handler = cmd::Copy,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = 2, .key_step = 1,
     .acl_categories = "@keyspace @write @slow", .key_spec = kOneROAccess,
     .key_spec2 = {.flags = "OW update", .begin_index = 2}},
    {.name = "dump", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::Dump,
     .redis_flags = "readonly", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@keyspace @read @slow", .tips = "nondeterministic_output",
     .key_spec = kOneROAccess},
    {.name = "restore", .arity = -4, .flags = kCmdWrite, .handler = cmd::Restore,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@keyspace @write @slow @dangerous", .key_spec = {.flags = "OW update"}},
    {.name = "keys", .arity = 2, .flags = kCmdDataRead | kCmdNoMulti, .handler = cmd::Keys,
     .redis_flags = "readonly", .acl_categories = "@keyspace @read @slow @dangerous",
     .tips = "request_policy:all_shards nondeterministic_output_order"},
    {.name = "randomkey", .arity = 1, .flags = kCmdDataRead | kCmdNoMulti,
     .handler = cmd::RandomKey, .redis_flags = "readonly",
     .acl_categories = "@keyspace @read @slow",
     .tips = "request_policy:all_shards nondeterministic_output"},
    {.name = "object", .arity = -2, .flags = kCmdKeyRead | kCmdKeyAt2, .handler = cmd::Object,
     .redis_flags = "", .acl_categories = "@slow"},
    {.name = "lcs", .arity = -3, .flags = kCmdKeyRead, .handler = cmd::Lcs,
     .redis_flags = "readonly", .first_key = 1, .last_key = 2, .key_step = 1,
     .acl_categories = "@read @string @slow", .key_spec = {.flags = "RO access", .last_key = 1}},
    // scripts
    {.name = "eval", .arity = -3, .flags = kCmdWrite, .handler = cmd::Eval,
     .redis_flags = kScriptFlags, .acl_categories = kScripting, .key_spec = kScriptRW},
    {.name = "evalsha", .arity = -3, .flags = kCmdWrite, .handler = cmd::Eval,
     .redis_flags = kScriptFlags, .acl_categories = kScripting,
     .key_spec = {.flags = "RW access update", .begin_index = 2, .keynum = true}},
    {.name = "eval_ro", .arity = -3, .flags = kCmdWrite, .handler = cmd::Eval,
     .redis_flags = kScriptRoFlags, .acl_categories = kScripting, .key_spec = kScriptRO},
    {.name = "evalsha_ro", .arity = -3, .flags = kCmdWrite, .handler = cmd::Eval,
     .redis_flags = kScriptRoFlags, .acl_categories = kScripting,
     .key_spec = {.flags = "RO access", .begin_index = 2, .keynum = true}},
    {.name = "script", .arity = -2, .flags = 0, .handler = cmd::Script,
     .redis_flags = "", .acl_categories = "@slow"},
    // FUNCTION: LOAD, DELETE, FLUSH and RESTORE submit a write; not in MULTI.
    {.name = "function", .arity = -2, .flags = kCmdNoMulti | kCmdMaySubmit,
     .handler = cmd::Function, .redis_flags = "", .acl_categories = "@slow"},
    {.name = "fcall", .arity = -3, .flags = kCmdWrite, .handler = cmd::FCall,
     .redis_flags = kScriptFlags, .acl_categories = kScripting, .key_spec = kScriptRW},
    {.name = "fcall_ro", .arity = -3, .flags = kCmdWrite, .handler = cmd::FCall,
     .redis_flags = kScriptRoFlags, .acl_categories = kScripting, .key_spec = kScriptRO},
    // reads
    {.name = "get", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::Get,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@read @string @fast", .key_spec = kOneROAccess},
    {.name = "mget", .arity = -2, .flags = kCmdKeyRead, .handler = cmd::MGet,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = -1, .key_step = 1,
     .acl_categories = "@read @string @fast", .tips = "request_policy:multi_shard",
     .key_spec = {.flags = "RO access", .last_key = -1}},
    {.name = "strlen", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::StrLen,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@read @string @fast", .key_spec = kOneRO},
    {.name = "exists", .arity = -2, .flags = kCmdKeyRead, .handler = cmd::Exists,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = -1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .tips = kMultiShardSum,
     .key_spec = {.flags = "RO", .last_key = -1}},
    {.name = "touch", .arity = -2, .flags = kCmdKeyRead, .handler = cmd::Touch,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = -1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .tips = kMultiShardSum,
     .key_spec = {.flags = "RO", .last_key = -1}},
    {.name = "type", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::Type,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .key_spec = kOneRO},
    {.name = "ttl", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::Ttl,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .tips = "nondeterministic_output", .key_spec = kOneROAccess},
    {.name = "pttl", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::Ttl,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .tips = "nondeterministic_output", .key_spec = kOneROAccess},
    {.name = "expiretime", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::ExpireTime,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .key_spec = kOneROAccess},
    {.name = "pexpiretime", .arity = 2, .flags = kCmdKeyRead, .handler = cmd::ExpireTime,
     .redis_flags = "readonly fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceRead, .key_spec = kOneROAccess},
    {.name = "getrange", .arity = 4, .flags = kCmdKeyRead, .handler = cmd::GetRange,
     .redis_flags = "readonly", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@read @string @slow", .key_spec = kOneROAccess},
    {.name = "substr", .arity = 4, .flags = kCmdKeyRead, .handler = cmd::GetRange,
     .redis_flags = "readonly", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@read @string @slow", .key_spec = kOneROAccess},
    {.name = "dbsize", .arity = 1, .flags = kCmdDataRead | kCmdNoMulti, .handler = cmd::DbSize,
     .redis_flags = "readonly fast", .acl_categories = kKeyspaceRead,
     .tips = "request_policy:all_shards response_policy:agg_sum"},
    {.name = "scan", .arity = -2, .flags = kCmdKeyRead | kCmdNoMulti, .handler = cmd::Scan,
     .redis_flags = "readonly", .acl_categories = "@keyspace @read @slow",
     .tips = "nondeterministic_output request_policy:special"},
    // writes
    {.name = "set", .arity = -3, .flags = kCmdWrite, .handler = cmd::Set,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@write @string @slow",
     .key_spec = {.flags = "RW access update variable_flags",
                  .notes = "RW and ACCESS due to the optional `GET` argument"}},
    {.name = "setex", .arity = 4, .flags = kCmdWrite, .handler = cmd::SetEx,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@write @string @slow", .key_spec = {.flags = "OW update"}},
    {.name = "psetex", .arity = 4, .flags = kCmdWrite, .handler = cmd::SetEx,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@write @string @slow", .key_spec = {.flags = "OW update"}},
    {.name = "getset", .arity = 3, .flags = kCmdWrite, .handler = cmd::GetSet,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = kOneRWAccessUpdate},
    {.name = "setnx", .arity = 3, .flags = kCmdWrite, .handler = cmd::SetNx,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = {.flags = "OW insert"}},
    {.name = "msetnx", .arity = -3, .flags = kCmdWrite, .handler = cmd::MSetNx,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = -1, .key_step = 2,
     .acl_categories = "@write @string @slow",
     .tips = "request_policy:multi_shard response_policy:agg_min",
     .key_spec = {.flags = "OW insert", .last_key = -1, .key_step = 2}},
    {.name = "append", .arity = 3, .flags = kCmdWrite, .handler = cmd::Append,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = {.flags = "RW insert"}},
    {.name = "setrange", .arity = 4, .flags = kCmdWrite, .handler = cmd::SetRange,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = "@write @string @slow", .key_spec = kOneRWUpdate},
    {.name = "incrbyfloat", .arity = 3, .flags = kCmdWrite, .handler = cmd::IncrByFloat,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = kOneRWAccessUpdate},
    {.name = "getex", .arity = -2, .flags = kCmdWrite, .handler = cmd::GetEx,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr,
     .key_spec = {.flags = "RW access update",
                  .notes = "RW and UPDATE because it changes the TTL"}},
    {.name = "getdel", .arity = 2, .flags = kCmdWrite, .handler = cmd::GetDel,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = {.flags = "RW access delete"}},
    {.name = "del", .arity = -2, .flags = kCmdWrite, .handler = cmd::Del,
     .redis_flags = "write", .first_key = 1, .last_key = -1, .key_step = 1,
     .acl_categories = "@keyspace @write @slow", .tips = kMultiShardSum,
     .key_spec = kAllRMDelete},
    {.name = "unlink", .arity = -2, .flags = kCmdWrite, .handler = cmd::Del,
     .redis_flags = "write fast", .first_key = 1, .last_key = -1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .tips = kMultiShardSum, .key_spec = kAllRMDelete},
    {.name = "mset", .arity = -3, .flags = kCmdWrite, .handler = cmd::MSet,
     .redis_flags = "write denyoom", .first_key = 1, .last_key = -1, .key_step = 2,
     .acl_categories = "@write @string @slow",
     .tips = "request_policy:multi_shard response_policy:all_succeeded",
     .key_spec = {.flags = "OW update", .last_key = -1, .key_step = 2}},
    {.name = "incr", .arity = 2, .flags = kCmdWrite, .handler = cmd::IncrBy,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = kOneRWAccessUpdate},
    {.name = "decr", .arity = 2, .flags = kCmdWrite, .handler = cmd::IncrBy,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = kOneRWAccessUpdate},
    {.name = "incrby", .arity = 3, .flags = kCmdWrite, .handler = cmd::IncrBy,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = kOneRWAccessUpdate},
    {.name = "decrby", .arity = 3, .flags = kCmdWrite, .handler = cmd::IncrBy,
     .redis_flags = "write denyoom fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kStringIncr, .key_spec = kOneRWAccessUpdate},
    {.name = "expire", .arity = -3, .flags = kCmdWrite, .handler = cmd::Expire,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = kOneRWUpdate},
    {.name = "pexpire", .arity = -3, .flags = kCmdWrite, .handler = cmd::Expire,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = kOneRWUpdate},
    {.name = "expireat", .arity = -3, .flags = kCmdWrite, .handler = cmd::Expire,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = kOneRWUpdate},
    {.name = "pexpireat", .arity = -3, .flags = kCmdWrite, .handler = cmd::Expire,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = kOneRWUpdate},
    {.name = "persist", .arity = 2, .flags = kCmdWrite, .handler = cmd::Persist,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = kOneRWUpdate},
    {.name = "flushall", .arity = -1, .flags = kCmdWrite, .handler = cmd::FlushAll,
     .redis_flags = "write", .acl_categories = "@keyspace @write @slow @dangerous",
     .tips = kAllShardsAllSucceeded},
    {.name = "flushdb", .arity = -1, .flags = kCmdWrite, .handler = cmd::FlushDb,
     .redis_flags = "write", .acl_categories = "@keyspace @write @slow @dangerous",
     .tips = kAllShardsAllSucceeded},
    {.name = "move", .arity = 3, .flags = kCmdWrite, .handler = cmd::Move,
     .redis_flags = "write fast", .first_key = 1, .last_key = 1, .key_step = 1,
     .acl_categories = kKeyspaceWrite, .key_spec = kOneRWAccessUpdate},
    // SWAPDB: not in MULTI or a script (FaHA refuses; the rest of a
    // transaction's keys were put in their databases when it was queued).
    {.name = "swapdb", .arity = 3, .flags = kCmdWrite | kCmdNoMulti, .handler = cmd::SwapDb,
     .redis_flags = "write fast", .acl_categories = "@keyspace @write @fast @dangerous"},
};
// clang-format on

// Appends the space-separated words of `words` as an array of simple
// strings, or of bulk strings (as Redis sends tips).
void AppendWords(std::string_view words, std::string* out, bool bulk = false) {
  std::vector<std::string_view> list;
  for (size_t i = 0; i < words.size();) {
    size_t j = words.find(' ', i);
    if (j == std::string_view::npos) j = words.size();
    if (j > i) list.push_back(words.substr(i, j - i));
    i = j + 1;
  }
  resp::AppendArray(out, static_cast<int64_t>(list.size()));
  for (std::string_view w : list) {
    if (bulk) {
      resp::AppendBulk(out, w);
    } else {
      resp::AppendSimple(out, w);
    }
  }
}

void AppendKeySpec(const KeySpec& k, std::string* out) {
  resp::AppendArray(out, k.notes.empty() ? 6 : 8);
  if (!k.notes.empty()) {
    resp::AppendBulk(out, "notes");
    resp::AppendBulk(out, k.notes);
  }
  resp::AppendBulk(out, "flags");
  AppendWords(k.flags, out);
  resp::AppendBulk(out, "begin_search");
  resp::AppendArray(out, 4);
  resp::AppendBulk(out, "type");
  resp::AppendBulk(out, "index");
  resp::AppendBulk(out, "spec");
  resp::AppendArray(out, 2);
  resp::AppendBulk(out, "index");
  resp::AppendInt(out, k.begin_index);
  resp::AppendBulk(out, "find_keys");
  resp::AppendArray(out, 4);
  resp::AppendBulk(out, "type");
  resp::AppendBulk(out, k.keynum ? "keynum" : "range");
  resp::AppendBulk(out, "spec");
  resp::AppendArray(out, 6);
  resp::AppendBulk(out, k.keynum ? "keynumidx" : "lastkey");
  resp::AppendInt(out, k.keynum ? 0 : k.last_key);
  resp::AppendBulk(out, k.keynum ? "firstkey" : "keystep");
  resp::AppendInt(out, k.keynum ? 1 : k.key_step);
  resp::AppendBulk(out, k.keynum ? "keystep" : "limit");
  resp::AppendInt(out, k.keynum ? k.key_step : 0);
}

}  // namespace

const std::vector<CommandRow>& CommandTable() { return kTable; }

const CommandRow* FindCommand(std::string_view name) {
  static const std::unordered_map<std::string, const CommandRow*> by_name = [] {
    std::unordered_map<std::string, const CommandRow*> m;
    for (const CommandRow& row : kTable) m.emplace(std::string(row.name), &row);
    return m;
  }();
  std::string lower(name.substr(0, 64));
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  auto it = by_name.find(lower);
  return it == by_name.end() || name.size() > 64 ? nullptr : it->second;
}

void AppendCommandInfo(const CommandRow& row, std::string* out) {
  resp::AppendArray(out, 10);
  resp::AppendBulk(out, row.name);
  resp::AppendInt(out, row.arity);
  AppendWords(row.redis_flags, out);
  resp::AppendInt(out, row.first_key);
  resp::AppendInt(out, row.last_key);
  resp::AppendInt(out, row.key_step);
  AppendWords(row.acl_categories, out);
  AppendWords(row.tips, out, /*bulk=*/true);
  if (row.key_spec.flags.empty()) {
    resp::AppendArray(out, 0);
  } else {
    resp::AppendArray(out, row.key_spec2.flags.empty() ? 1 : 2);
    AppendKeySpec(row.key_spec, out);
    if (!row.key_spec2.flags.empty()) AppendKeySpec(row.key_spec2, out);
  }
  resp::AppendArray(out, 0);  // subcommands
}

}  // namespace faha
