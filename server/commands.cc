#include "server/commands.h"

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstring>
#include <fstream>
#include <optional>
#include <unordered_map>

#include "common/clock.h"
#include "common/resp.h"
#include "nvm/log_format.h"
#include "server/server.h"

namespace faha {

using namespace std::literals;
namespace {

constexpr const char* kVersion = "0.1.0";
constexpr size_t kMaxReplyBytes = 256 << 20;

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool EqNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool ParseInt(std::string_view s, int64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

struct Spec {
  int arity;  // Redis convention: >0 exact, <0 at least -arity
  bool write;
  bool needs_auth;
};

const std::vector<std::pair<std::string, Spec>>& Table() {
  static const std::vector<std::pair<std::string, Spec>> t = {
      {"ping", {-1, false, false}},    {"echo", {2, false, true}},
      {"auth", {-2, false, false}},    {"hello", {-1, false, false}},
      {"quit", {-1, false, false}},    {"select", {2, false, true}},
      {"get", {2, false, true}},       {"mget", {-2, false, true}},
      {"exists", {-2, false, true}},   {"ttl", {2, false, true}},
      {"pttl", {2, false, true}},      {"type", {2, false, true}},
      {"strlen", {2, false, true}},    {"dbsize", {1, false, true}},
      {"scan", {-2, false, true}},     {"info", {-1, false, true}},
      {"role", {1, false, true}},      {"command", {-1, false, true}},
      {"config", {-2, false, true}},   {"client", {-2, false, true}},
      {"time", {1, false, true}},      {"set", {-3, true, true}},
      {"del", {-2, true, true}},       {"unlink", {-2, true, true}},
      {"mset", {-3, true, true}},      {"incr", {2, true, true}},
      {"decr", {2, true, true}},       {"incrby", {3, true, true}},
      {"decrby", {3, true, true}},     {"expire", {-3, true, true}},
      {"pexpire", {-3, true, true}},   {"expireat", {-3, true, true}},
      {"pexpireat", {-3, true, true}}, {"persist", {2, true, true}},
      {"flushall", {-1, true, true}},  {"flushdb", {-1, true, true}},
      {"shutdown", {-1, false, true}}, {"readonly", {1, false, true}},
      {"readwrite", {1, false, true}}, {"faha.digest", {1, false, true}},
  };
  return t;
}

const Spec* Lookup(const std::string& name) {
  static const std::unordered_map<std::string, const Spec*> by_name = [] {
    std::unordered_map<std::string, const Spec*> m;
    for (const auto& [n, spec] : Table()) m.emplace(n, &spec);
    return m;
  }();
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : it->second;
}

// Commands that read keys (the ones a backup answers only when asked to).
bool IsKeyRead(std::string_view name) {
  return name == "get"sv || name == "mget"sv || name == "exists"sv || name == "ttl"sv ||
         name == "pttl"sv || name == "scan"sv || name == "strlen"sv || name == "type"sv;
}

void WrongArgs(std::string* out, const std::string& name) {
  resp::AppendError(out, "ERR wrong number of arguments for '" + name + "' command");
}

uint64_t RssBytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

bool Commands::PasswordMatches(std::string_view given) const {
  const std::string& want = server_->options().requirepass;
  // Constant time in the length of the given password.
  unsigned char diff = given.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); i++) {
    diff |= static_cast<unsigned char>(given[i] ^ (i < want.size() ? want[i] : 0));
  }
  return diff == 0;
}

void Commands::AppendResult(std::string* out, const WriteResult& r) {
  switch (r.kind) {
    case WriteResult::Kind::kOk:
      resp::AppendSimple(out, "OK");
      break;
    case WriteResult::Kind::kNil:
      resp::AppendNil(out);
      break;
    case WriteResult::Kind::kInt:
      resp::AppendInt(out, r.integer);
      break;
    case WriteResult::Kind::kBulk:
      resp::AppendBulk(out, r.str);
      break;
    case WriteResult::Kind::kError:
      resp::AppendError(out, r.str);
      break;
  }
}

ExecStatus Commands::Submit(Session* s, WriteOp op, CompletionSink* sink) {
  op.start_us = s->start_us;
  op.client_id = s->client_id;
  op.client_seq = s->client_id != 0 ? s->write_seq : 0;
  server_->metrics()->ops[static_cast<int>(OpClass::kWrite)].fetch_add(1,
                                                                       std::memory_order_relaxed);
  outbox_->push_back(Store::Write{std::move(op), sink, s->conn_id});
  s->pending_writes++;
  return ExecStatus::kSubmitted;
}

std::string Commands::Refusal(const Session& s, bool write) const {
  const ServerOptions& opt = server_->options();
  const ReplicationRole* repl = opt.replication;
  if (repl == nullptr) return {};
  const bool stale_ok = s.stale_reads || opt.stale_reads;
  std::string why = repl->Refusal(write, stale_ok);
  if (!why.empty() || !repl->is_backup()) return why;
  if (write) {
    std::string primary = repl->primary_address();
    return "READONLY You can't write against a read only backup" +
           (primary.empty() ? std::string() : " (primary: " + primary + ")");
  }
  if (!stale_ok) {
    return "STALEREAD this node is a backup and may lag its primary; send READONLY on this "
           "connection (or start it with --stale_reads) to read anyway";
  }
  return {};
}

namespace {
// A Redis memory argument: digits with an optional unit (k/m/g = 1000s,
// kb/mb/gb = 1024s, any case). False if malformed or out of range.
bool ParseMemory(std::string_view s, uint64_t* v) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') digits++;
  if (digits == 0 || digits > 19) return false;
  uint64_t n = 0;
  for (size_t i = 0; i < digits; i++) n = n * 10 + static_cast<uint64_t>(s[i] - '0');
  const std::string unit = Lower(s.substr(digits));
  uint64_t mul = 1;
  if (unit == "k")
    mul = 1000;
  else if (unit == "kb")
    mul = 1024;
  else if (unit == "m")
    mul = 1000 * 1000;
  else if (unit == "mb")
    mul = 1024 * 1024;
  else if (unit == "g")
    mul = 1000 * 1000 * 1000;
  else if (unit == "gb")
    mul = 1024 * 1024 * 1024;
  else if (!unit.empty())
    return false;
  if (n > UINT64_MAX / mul) return false;
  *v = n * mul;
  return true;
}
}  // namespace

// CONFIG SET of the client limits (the rest of the configuration is flags).
// Every pair is checked before any is applied, as Redis does.
ExecStatus Commands::ConfigSet(const std::vector<std::string_view>& args, std::string* out) {
  const int argc = static_cast<int>(args.size());
  if (argc < 4 || argc % 2 != 0) {
    resp::AppendError(out, "ERR wrong number of arguments for 'config|set' command");
    return ExecStatus::kReplied;
  }
  struct Change {
    std::atomic<uint64_t>* u64 = nullptr;
    std::atomic<uint32_t>* u32 = nullptr;
    uint64_t value = 0;
  };
  ClientLimits& lim = server_->client_limits();
  std::vector<Change> changes;
  for (int i = 2; i < argc; i += 2) {
    const std::string param = Lower(args[i]);
    const std::string_view value = args[i + 1];
    auto failed = [&](const std::string& why) {
      resp::AppendError(
          out, "ERR CONFIG SET failed (possibly related to argument '" + param + "') - " + why);
      return ExecStatus::kReplied;
    };
    uint64_t n = 0;
    if (param == "maxmemory-clients") {
      if (!ParseMemory(value, &n)) return failed("argument must be a memory value");
      changes.push_back({&lim.maxmemory_clients, nullptr, n});
    } else if (param == "timeout") {
      if (!ParseMemory(value, &n) ||
          value.find_first_not_of("0123456789") != std::string_view::npos || n > UINT32_MAX) {
        return failed("argument couldn't be parsed into an integer");
      }
      changes.push_back({nullptr, &lim.timeout_s, n});
    } else if (param == "client-output-buffer-limit") {
      std::vector<std::string> words;
      std::string w;
      for (char ch : value) {
        if (ch == ' ') {
          if (!w.empty()) words.push_back(w);
          w.clear();
        } else {
          w += ch;
        }
      }
      if (!w.empty()) words.push_back(w);
      if (words.size() % 4 != 0 || words.empty()) return failed("wrong number of arguments");
      for (size_t k = 0; k < words.size(); k += 4) {
        const std::string cls = Lower(words[k]);
        uint64_t hard, soft, secs;
        if (cls != "normal") {
          return failed("FaHA has only normal clients (no replica or pubsub class)");
        }
        if (!ParseMemory(words[k + 1], &hard) || !ParseMemory(words[k + 2], &soft) ||
            !ParseMemory(words[k + 3], &secs) || secs > UINT32_MAX) {
          return failed("invalid memory or seconds");
        }
        changes.push_back({&lim.output_hard_bytes, nullptr, hard});
        changes.push_back({&lim.output_soft_bytes, nullptr, soft});
        changes.push_back({nullptr, &lim.output_soft_seconds, secs});
      }
    } else {
      resp::AppendError(out, "ERR Unknown option or number of arguments for CONFIG SET - '" +
                                 std::string(args[i].substr(0, 64)) +
                                 "' (FaHA sets maxmemory-clients, client-output-buffer-limit and "
                                 "timeout; the rest is command-line flags)");
      return ExecStatus::kReplied;
    }
  }
  for (const Change& c : changes) {
    if (c.u64 != nullptr) c.u64->store(c.value);
    if (c.u32 != nullptr) c.u32->store(static_cast<uint32_t>(c.value));
  }
  resp::AppendSimple(out, "OK");
  return ExecStatus::kReplied;
}

ExecStatus Commands::Execute(Session* s, const std::vector<std::string_view>& args,
                             std::string* out, CompletionSink* sink) {
  const ServerOptions& opt = server_->options();
  Store* store = server_->store();
  Metrics* m = server_->metrics();
  const bool may_reply = s->pending_writes == 0;
  // Any immediate reply must wait for earlier pending writes (reply order).
#define REPLY_NOW()                              \
  do {                                           \
    if (!may_reply) return ExecStatus::kBlocked; \
  } while (0)

  if (args.empty()) {
    REPLY_NOW();
    return ExecStatus::kReplied;  // empty inline line: Redis ignores it
  }
  std::string name = Lower(args[0]);
  const Spec* spec = Lookup(name);
  if (!spec) {
    REPLY_NOW();
    std::string msg = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                      "', with args beginning with: ";
    for (size_t i = 1; i < args.size() && i < 4; i++) {
      msg += "'" + std::string(args[i].substr(0, 64)) + "' ";
    }
    resp::AppendError(out, msg);
    m->errors.fetch_add(1, std::memory_order_relaxed);
    return ExecStatus::kReplied;
  }
  const int argc = static_cast<int>(args.size());
  if ((spec->arity > 0 && argc != spec->arity) || (spec->arity < 0 && argc < -spec->arity)) {
    REPLY_NOW();
    WrongArgs(out, name);
    m->errors.fetch_add(1, std::memory_order_relaxed);
    return ExecStatus::kReplied;
  }
  if (spec->needs_auth && !s->authed) {
    REPLY_NOW();
    resp::AppendError(out, "NOAUTH Authentication required.");
    m->errors.fetch_add(1, std::memory_order_relaxed);
    return ExecStatus::kReplied;
  }
  if (!spec->write) REPLY_NOW();
  auto error = [&](const std::string& msg) {
    if (!may_reply) return ExecStatus::kBlocked;
    resp::AppendError(out, msg);
    m->errors.fetch_add(1, std::memory_order_relaxed);
    return ExecStatus::kReplied;
  };
  auto key_ok = [&](std::string_view k) { return k.size() <= opt.max_key_bytes; };
  const std::string key_too_long =
      "ERR key is longer than max_key_bytes (" + std::to_string(opt.max_key_bytes) + ")";
  const std::string value_too_long =
      "ERR value is longer than max_value_bytes (" + std::to_string(opt.max_value_bytes) + ")";
  const std::string too_big_for_batch =
      "ERR this write is larger than one log batch (--max_batch_kb=" +
      std::to_string(opt.max_batch_bytes >> 10) + "); split it";
  if (spec->write || IsKeyRead(name) || name == "dbsize"sv) {
    std::string why = Refusal(*s, spec->write);
    if (!why.empty()) return error(why);
  }
  if (!spec->write) {
    m->ops[static_cast<int>(IsKeyRead(name) ? OpClass::kRead : OpClass::kOther)].fetch_add(
        1, std::memory_order_relaxed);
  }

  // ---- connection and server commands ----
  if (name == "ping"sv) {
    if (argc > 2) return (WrongArgs(out, name), ExecStatus::kReplied);
    if (argc == 2) {
      resp::AppendBulk(out, args[1]);
    } else {
      resp::AppendSimple(out, "PONG");
    }
    return ExecStatus::kReplied;
  }
  if (name == "echo"sv) {
    resp::AppendBulk(out, args[1]);
    return ExecStatus::kReplied;
  }
  if (name == "auth"sv) {
    if (argc > 3) return (WrongArgs(out, name), ExecStatus::kReplied);
    if (opt.requirepass.empty()) {
      return error(
          "ERR AUTH <password> called without any password configured for the default user. "
          "Are you sure your configuration is correct?");
    }
    bool user_ok = argc == 2 || args[1] == "default";
    if (user_ok && PasswordMatches(args[argc - 1])) {
      s->authed = true;
      resp::AppendSimple(out, "OK");
      return ExecStatus::kReplied;
    }
    m->auth_failures.fetch_add(1, std::memory_order_relaxed);
    return error("WRONGPASS invalid username-password pair or user is disabled.");
  }
  if (name == "hello"sv) {
    int i = 1;
    if (argc >= 2) {
      int64_t ver = 0;
      if (!ParseInt(args[1], &ver))
        return error("ERR Protocol version is not an integer or out of range");
      if (ver != 2) return error("NOPROTO unsupported protocol version (this server speaks RESP2)");
      i = 2;
    }
    for (; i < argc; i++) {
      if (EqNoCase(args[i], "auth") && i + 2 < argc) {
        if (opt.requirepass.empty() || args[i + 1] != "default" || !PasswordMatches(args[i + 2])) {
          m->auth_failures.fetch_add(1, std::memory_order_relaxed);
          return error("WRONGPASS invalid username-password pair or user is disabled.");
        }
        s->authed = true;
        i += 2;
      } else if (EqNoCase(args[i], "setname") && i + 1 < argc) {
        s->name = std::string(args[++i]);
      } else {
        return error("ERR Syntax error in HELLO option '" + std::string(args[i].substr(0, 64)) +
                     "'");
      }
    }
    if (!s->authed)
      return error(
          "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
          "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
          "RESP protocol version at the same time");
    resp::AppendArray(out, 14);
    resp::AppendBulk(out, "server");
    resp::AppendBulk(out, "faha");
    resp::AppendBulk(out, "version");
    resp::AppendBulk(out, kVersion);
    resp::AppendBulk(out, "proto");
    resp::AppendInt(out, 2);
    resp::AppendBulk(out, "id");
    resp::AppendInt(out, static_cast<int64_t>(s->conn_id));
    resp::AppendBulk(out, "mode");
    resp::AppendBulk(out, "standalone");
    resp::AppendBulk(out, "role");
    resp::AppendBulk(out, "primary");
    resp::AppendBulk(out, "modules");
    resp::AppendArray(out, 0);
    return ExecStatus::kReplied;
  }
  if (name == "quit"sv) {
    resp::AppendSimple(out, "OK");
    s->close_after_reply = true;
    return ExecStatus::kReplied;
  }
  if (name == "select"sv) {
    if (args[1] != "0") return error("ERR DB index is out of range (FaHA has one database, 0)");
    resp::AppendSimple(out, "OK");
    return ExecStatus::kReplied;
  }
  if (name == "shutdown"sv) {
    s->shutdown = true;
    s->close_after_reply = true;
    resp::AppendSimple(out, "OK");
    return ExecStatus::kReplied;
  }
  if (name == "time"sv) {
    int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    resp::AppendArray(out, 2);
    resp::AppendBulk(out, std::to_string(us / 1000000));
    resp::AppendBulk(out, std::to_string(us % 1000000));
    return ExecStatus::kReplied;
  }
  if (name == "client"sv) {
    std::string sub = Lower(args[1]);
    if (sub == "setname" && argc == 3) {
      s->name = std::string(args[2]);
      resp::AppendSimple(out, "OK");
    } else if (sub == "getname") {
      if (s->name.empty()) {
        resp::AppendNil(out);
      } else {
        resp::AppendBulk(out, s->name);
      }
    } else if (sub == "id") {
      resp::AppendInt(out, static_cast<int64_t>(s->conn_id));
    } else if (sub == "setinfo" && argc == 4) {
      resp::AppendSimple(out, "OK");
    } else {
      return error("ERR unknown subcommand or wrong number of arguments for 'client|" +
                   std::string(args[1].substr(0, 64)) + "'");
    }
    return ExecStatus::kReplied;
  }
  if (name == "command"sv) {
    std::string sub = argc > 1 ? Lower(args[1]) : "";
    if (sub == "count") {
      resp::AppendInt(out, static_cast<int64_t>(Table().size()));
    } else if (sub == "docs") {
      resp::AppendArray(out, 0);  // clients fall back to their built-in help
    } else if (sub.empty() || sub == "info") {
      std::vector<std::pair<std::string, Spec>> picked;
      if (sub.empty()) {
        picked = Table();
      } else {
        for (int i = 2; i < argc; i++) {
          const Spec* sp = Lookup(Lower(args[i]));
          picked.emplace_back(Lower(args[i]), sp ? *sp : Spec{0, false, false});
        }
      }
      resp::AppendArray(out, static_cast<int64_t>(picked.size()));
      for (const auto& [n, sp] : picked) {
        if (sp.arity == 0) {
          resp::AppendNilArray(out);
          continue;
        }
        bool has_key = n != "ping"sv && n != "echo"sv && n != "auth"sv && n != "hello"sv &&
                       n != "quit"sv && n != "select"sv && n != "dbsize"sv && n != "scan"sv &&
                       n != "info"sv && n != "role"sv && n != "command"sv && n != "config"sv &&
                       n != "client"sv && n != "time"sv && n != "flushall"sv && n != "flushdb"sv &&
                       n != "shutdown"sv && n != "readonly"sv && n != "readwrite"sv &&
                       n != "faha.digest"sv;
        int last =
            (n == "mget"sv || n == "del"sv || n == "unlink"sv || n == "exists"sv || n == "mset"sv)
                ? -1
                : 1;
        resp::AppendArray(out, 6);
        resp::AppendBulk(out, n);
        resp::AppendInt(out, sp.arity);
        resp::AppendArray(out, 1);
        resp::AppendSimple(out, sp.write ? "write" : "readonly");
        resp::AppendInt(out, has_key ? 1 : 0);
        resp::AppendInt(out, has_key ? last : 0);
        resp::AppendInt(out, has_key ? (n == "mset"sv ? 2 : 1) : 0);
      }
    } else {
      return error("ERR unknown subcommand '" + std::string(args[1].substr(0, 64)) +
                   "'. Try COMMAND, COMMAND COUNT, COMMAND INFO or COMMAND DOCS.");
    }
    return ExecStatus::kReplied;
  }
  if (name == "config"sv) {
    std::string sub = Lower(args[1]);
    if (sub == "set") return ConfigSet(args, out);
    if (sub != "get" || argc < 3) {
      return error("ERR CONFIG " + std::string(args[1].substr(0, 32)) +
                   " is not supported; FaHA is configured by command-line flags (CONFIG GET "
                   "answers; CONFIG SET changes the client limits)");
    }
    const std::vector<std::pair<std::string, std::string>> values = {
        {"save", ""},
        {"appendonly", "no"},
        {"appendfsync", "always"},
        {"port", std::to_string(server_->bound_port())},
        {"bind", opt.bind},
        {"dir", opt.data_dir},
        {"maxclients", std::to_string(opt.max_clients)},
        {"maxmemory", "0"},
        {"databases", "1"},
        {"proto-max-bulk-len", std::to_string(opt.max_value_bytes)},
        {"maxmemory-clients", std::to_string(opt.limits.maxmemory_clients.load())},
        {"client-output-buffer-limit",
         "normal " + std::to_string(opt.limits.output_hard_bytes.load()) + " " +
             std::to_string(opt.limits.output_soft_bytes.load()) + " " +
             std::to_string(opt.limits.output_soft_seconds.load())},
        {"timeout", std::to_string(opt.limits.timeout_s.load())},
    };
    std::vector<std::pair<std::string, std::string>> hits;
    for (int i = 2; i < argc; i++) {
      std::string pat = Lower(args[i]);
      for (const auto& kv : values) {
        if (fnmatch(pat.c_str(), kv.first.c_str(), 0) == 0 &&
            std::find(hits.begin(), hits.end(), kv) == hits.end()) {
          hits.push_back(kv);
        }
      }
    }
    resp::AppendArray(out, static_cast<int64_t>(hits.size() * 2));
    for (const auto& [k, v] : hits) {
      resp::AppendBulk(out, k);
      resp::AppendBulk(out, v);
    }
    return ExecStatus::kReplied;
  }
  if (name == "info"sv) {
    Info(argc > 1 ? Lower(args[1]) : "default", out);
    return ExecStatus::kReplied;
  }
  if (name == "role"sv) {
    if (opt.replication) {
      opt.replication->AppendRole(out);
      return ExecStatus::kReplied;
    }
    resp::AppendArray(out, 3);
    resp::AppendBulk(out, "primary");
    resp::AppendInt(out, static_cast<int64_t>(store->committed_lsn()));
    resp::AppendArray(out, 0);
    return ExecStatus::kReplied;
  }
  if (name == "readonly"sv || name == "readwrite"sv) {
    s->stale_reads = name == "readonly"sv;
    resp::AppendSimple(out, "OK");
    return ExecStatus::kReplied;
  }
  if (name == "faha.digest"sv) {
    // [committed LSN, digest of the committed batches, digest of the data, keys]:
    // equal on a primary and its backups once they have applied the same LSN.
    auto guard = store->LockForRead();
    auto d = store->ComputeDigest();
    if (!d.ok()) return error("ERR cannot compute digest: " + d.status().message());
    char hex[17];
    resp::AppendArray(out, 4);
    resp::AppendInt(out, static_cast<int64_t>(d->lsn));
    snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(d->log_digest));
    resp::AppendBulk(out, hex);
    snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(d->data_digest));
    resp::AppendBulk(out, hex);
    resp::AppendInt(out, static_cast<int64_t>(d->keys));
    return ExecStatus::kReplied;
  }

  // ---- reads ----
  std::optional<Store::ReadGuard> read_guard;
  if (!spec->write) read_guard.emplace(store->LockForRead());
  std::string copy;
  auto append_value = [&](std::string_view key) {
    std::string_view value;
    std::shared_ptr<const void> hold;
    bool hit = store->GetHeld(key, &copy, &value, &hold);
    (hit ? m->keyspace_hits : m->keyspace_misses).fetch_add(1, std::memory_order_relaxed);
    if (!hit) {
      resp::AppendNil(out);
    } else if (hold == nullptr) {
      resp::AppendBulk(out, value);
    } else {
      // Sent from the log where it lies: no copy (a big MGET costs lookups,
      // not hundreds of MiB of memcpy and page faults on the I/O thread).
      resp::AppendBulkHeader(out, value.size());
      s->held.push_back({out->size(), value, std::move(hold)});
      s->held_bytes += value.size();
      out->append("\r\n");
    }
  };
  // Bytes of reply since `start`, held values included.
  const size_t held_before = s->held_bytes;
  auto reply_bytes = [&](size_t start) {
    return out->size() - start + (s->held_bytes - held_before);
  };
  // Drops what was built since `start` (held values too).
  auto drop_reply = [&](size_t start) {
    out->resize(start);
    while (!s->held.empty() && s->held.back().at > start) {
      s->held_bytes -= s->held.back().bytes.size();
      s->held.pop_back();
    }
  };
  if (name == "get"sv) {
    append_value(args[1]);
    return ExecStatus::kReplied;
  }
  if (name == "mget"sv) {
    const size_t start = out->size();
    resp::AppendArray(out, argc - 1);
    for (int i = 1; i < argc; i++) {
      if (reply_bytes(start) > s->output_budget) {
        drop_reply(start);  // the client is closed: no point building the rest
        s->output_over_limit = true;
        return ExecStatus::kReplied;
      }
      if (reply_bytes(start) > kMaxReplyBytes) {
        drop_reply(start);
        return error("ERR reply larger than " + std::to_string(kMaxReplyBytes >> 20) +
                     " MiB; ask for fewer keys");
      }
      append_value(args[i]);
    }
    return ExecStatus::kReplied;
  }
  if (name == "strlen"sv) {
    std::string v;
    store->Get(args[1], &v);
    resp::AppendInt(out, static_cast<int64_t>(v.size()));
    return ExecStatus::kReplied;
  }
  if (name == "exists"sv) {
    int64_t n = 0;
    for (int i = 1; i < argc; i++) n += store->Exists(args[i]) ? 1 : 0;
    resp::AppendInt(out, n);
    return ExecStatus::kReplied;
  }
  if (name == "type"sv) {
    resp::AppendSimple(out, store->Exists(args[1]) ? "string" : "none");
    return ExecStatus::kReplied;
  }
  if (name == "ttl"sv || name == "pttl"sv) {
    int64_t ms = store->PttlMs(args[1]);
    if (ms >= 0 && name == "ttl"sv) ms = (ms + 500) / 1000;
    resp::AppendInt(out, ms);
    return ExecStatus::kReplied;
  }
  if (name == "dbsize"sv) {
    resp::AppendInt(out, static_cast<int64_t>(store->KeyCount()));
    return ExecStatus::kReplied;
  }
  if (name == "scan"sv) {
    uint64_t cursor = 0;
    {
      auto [p, ec] = std::from_chars(args[1].data(), args[1].data() + args[1].size(), cursor);
      if (ec != std::errc() || p != args[1].data() + args[1].size())
        return error("ERR invalid cursor");
    }
    std::string pattern;
    int64_t count = 10;
    bool type_match = true;
    for (int i = 2; i < argc; i++) {
      if (EqNoCase(args[i], "match") && i + 1 < argc) {
        pattern = std::string(args[++i]);
      } else if (EqNoCase(args[i], "count") && i + 1 < argc) {
        if (!ParseInt(args[++i], &count) || count < 1)
          return error("ERR value is not an integer or out of range");
      } else if (EqNoCase(args[i], "type") && i + 1 < argc) {
        type_match = EqNoCase(args[++i], "string");
      } else {
        return error("ERR syntax error");
      }
    }
    std::vector<std::string> keys;
    uint64_t next = store->Scan(cursor, static_cast<size_t>(count), &keys);
    if (!type_match) keys.clear();
    if (!pattern.empty()) {
      keys.erase(std::remove_if(keys.begin(), keys.end(),
                                [&](const std::string& k) {
                                  return fnmatch(pattern.c_str(), k.c_str(), 0) != 0;
                                }),
                 keys.end());
    }
    resp::AppendArray(out, 2);
    resp::AppendBulk(out, std::to_string(next));
    resp::AppendArray(out, static_cast<int64_t>(keys.size()));
    for (const auto& k : keys) resp::AppendBulk(out, k);
    return ExecStatus::kReplied;
  }

  // ---- writes ----
  WriteOp op;
  const int64_t now = spec->write ? WallMs() : 0;  // for relative expiry times
  if (name == "set"sv) {
    op.kind = WriteOp::Kind::kSet;
    if (!key_ok(args[1])) return error(key_too_long);
    if (args[2].size() > opt.max_value_bytes) return error(value_too_long);
    bool have_expire = false;
    for (int i = 3; i < argc; i++) {
      std::string o = Lower(args[i]);
      if (o == "nx" && !op.xx) {
        op.nx = true;
      } else if (o == "xx" && !op.nx) {
        op.xx = true;
      } else if (o == "get") {
        op.get_old = true;
      } else if (o == "keepttl" && !have_expire) {
        op.keep_ttl = true;
      } else if ((o == "ex" || o == "px" || o == "exat" || o == "pxat") && !have_expire &&
                 !op.keep_ttl && i + 1 < argc) {
        int64_t v = 0;
        if (!ParseInt(args[++i], &v)) return error("ERR value is not an integer or out of range");
        if (v <= 0) return error("ERR invalid expire time in 'set' command");
        if (o == "ex" || o == "exat") {
          if (v > INT64_MAX / 1000) return error("ERR invalid expire time in 'set' command");
          v *= 1000;
        }
        if ((o == "ex" || o == "px")) {
          if (v > INT64_MAX - now) return error("ERR invalid expire time in 'set' command");
          v += now;
        }
        op.expire_at_ms = v;
        have_expire = true;
      } else {
        return error("ERR syntax error");
      }
    }
    op.args = {std::string(args[1]), std::string(args[2])};
    return Submit(s, std::move(op), sink);
  }
  if (name == "del"sv || name == "unlink"sv) {
    op.kind = WriteOp::Kind::kDelete;
    uint64_t record_bytes = 0;
    for (int i = 1; i < argc; i++) {
      if (!key_ok(args[i])) return error(key_too_long);
      record_bytes += nvm::RecordSize(args[i].size(), 0);
    }
    if (record_bytes > opt.max_batch_bytes) return error(too_big_for_batch);
    for (int i = 1; i < argc; i++) op.args.emplace_back(args[i]);
    return Submit(s, std::move(op), sink);
  }
  if (name == "mset"sv) {
    if (argc % 2 != 1) return error("ERR wrong number of arguments for 'mset' command");
    op.kind = WriteOp::Kind::kMSet;
    for (int i = 1; i < argc; i += 2) {
      if (!key_ok(args[i])) return error(key_too_long);
      if (args[i + 1].size() > opt.max_value_bytes) return error(value_too_long);
    }
    uint64_t record_bytes = 0;
    for (int i = 1; i < argc; i += 2)
      record_bytes += nvm::RecordSize(args[i].size(), args[i + 1].size());
    if (record_bytes > opt.max_batch_bytes) return error(too_big_for_batch);
    for (int i = 1; i < argc; i++) op.args.emplace_back(args[i]);
    return Submit(s, std::move(op), sink);
  }
  if (name == "incr"sv || name == "decr"sv || name == "incrby"sv || name == "decrby"sv) {
    op.kind = WriteOp::Kind::kIncrBy;
    if (!key_ok(args[1])) return error(key_too_long);
    op.delta = 1;
    if (argc == 3 && !ParseInt(args[2], &op.delta)) {
      return error("ERR value is not an integer or out of range");
    }
    if (name[0] == 'd') {
      if (op.delta == INT64_MIN) return error("ERR decrement would overflow");
      op.delta = -op.delta;
    }
    op.args = {std::string(args[1])};
    return Submit(s, std::move(op), sink);
  }
  if (name == "expire"sv || name == "pexpire"sv || name == "expireat"sv || name == "pexpireat"sv) {
    op.kind = WriteOp::Kind::kExpire;
    if (!key_ok(args[1])) return error(key_too_long);
    int64_t v = 0;
    if (!ParseInt(args[2], &v)) return error("ERR value is not an integer or out of range");
    bool seconds = name == "expire"sv || name == "expireat"sv;
    bool relative = name == "expire"sv || name == "pexpire"sv;
    if (seconds) {
      if (v > INT64_MAX / 1000 || v < INT64_MIN / 1000) {
        return error("ERR invalid expire time in '" + name + "' command");
      }
      v *= 1000;
    }
    if (relative) {
      if ((v > 0 && v > INT64_MAX - now) || (v < 0 && v < INT64_MIN + now)) {
        return error("ERR invalid expire time in '" + name + "' command");
      }
      v += now;
    }
    op.expire_at_ms = v <= 0 ? 1 : v;  // <= now means delete; keep it non-zero
    for (int i = 3; i < argc; i++) {
      std::string o = Lower(args[i]);
      WriteOp::ExpireIf cond = o == "nx"   ? WriteOp::ExpireIf::kNoExpiry
                               : o == "xx" ? WriteOp::ExpireIf::kHasExpiry
                               : o == "gt" ? WriteOp::ExpireIf::kGreater
                               : o == "lt" ? WriteOp::ExpireIf::kLess
                                           : WriteOp::ExpireIf::kAlways;
      if (cond == WriteOp::ExpireIf::kAlways) {
        return error("ERR Unsupported option " + std::string(args[i].substr(0, 32)));
      }
      if (op.expire_if != WriteOp::ExpireIf::kAlways && op.expire_if != cond) {
        bool gtlt = (cond == WriteOp::ExpireIf::kGreater || cond == WriteOp::ExpireIf::kLess) &&
                    (op.expire_if == WriteOp::ExpireIf::kGreater ||
                     op.expire_if == WriteOp::ExpireIf::kLess);
        return error(gtlt ? "ERR GT and LT options at the same time are not compatible"
                          : "ERR NX and XX, GT or LT options at the same time are not compatible");
      }
      op.expire_if = cond;
    }
    op.args = {std::string(args[1])};
    return Submit(s, std::move(op), sink);
  }
  if (name == "persist"sv) {
    op.kind = WriteOp::Kind::kPersist;
    if (!key_ok(args[1])) return error(key_too_long);
    op.args = {std::string(args[1])};
    return Submit(s, std::move(op), sink);
  }
  if (name == "flushall"sv || name == "flushdb"sv) {
    if (argc > 2 || (argc == 2 && !EqNoCase(args[1], "sync") && !EqNoCase(args[1], "async"))) {
      return error("ERR syntax error");
    }
    op.kind = WriteOp::Kind::kFlushAll;
    return Submit(s, std::move(op), sink);
  }
#undef REPLY_NOW
  return error("ERR internal: command '" + name + "' has no handler");
}

void Commands::Info(std::string_view section, std::string* out) const {
  const ServerOptions& opt = server_->options();
  Store* store = server_->store();
  const Metrics& m = *server_->metrics();
  bool all = section == "default"sv || section == "all"sv || section == "everything"sv;
  std::string t;
  auto line = [&](const std::string& k, const std::string& v) { t += k + ":" + v + "\r\n"; };
  auto num = [](double v) {
    char b[32];
    snprintf(b, sizeof(b), "%.2f", v);
    return std::string(b);
  };
  if (all || section == "server"sv) {
    t += "# Server\r\n";
    line("redis_version", "7.0.0");
    line("faha_version", kVersion);
    line("redis_mode", "standalone");
    line("process_id", std::to_string(getpid()));
    line("tcp_port", std::to_string(server_->bound_port()));
    line("uptime_in_seconds", std::to_string((WallMs() - server_->start_ms()) / 1000));
    line("io_threads", std::to_string(opt.io_threads));
    line("metrics_port", std::to_string(opt.metrics_port));
    line("rdma", opt.rdma_info.empty() ? "off" : opt.rdma_info);
    t += "\r\n";
  }
  if (all || section == "clients"sv) {
    t += "# Clients\r\n";
    line("connected_clients", std::to_string(m.connections_current.load()));
    line("maxclients", std::to_string(opt.max_clients));
    t += "\r\n";
  }
  if (all || section == "memory"sv) {
    uint64_t keys = store->KeyCount();
    uint64_t idx = store->IndexMemoryBytes();
    t += "# Memory\r\n";
    line("used_memory_rss", std::to_string(RssBytes()));
    line("index_memory_bytes", std::to_string(idx));
    line("index_bytes_per_key", keys ? num(static_cast<double>(idx) / keys) : "0");
    line("hot_cache_bytes", std::to_string(store->hot().bytes()));
    line("hot_cache_budget", std::to_string(store->hot().budget()));
    line("hot_cache_keys", std::to_string(store->hot().size()));
    line("log_mapped_bytes", std::to_string(store->log().file_bytes()));
    t += "\r\n";
  }
  if (all || section == "persistence"sv) {
    const nvm::RecoveryReport& r = opt.recovery;
    t += "# Persistence\r\n";
    line("log_dir", opt.data_dir);
    line("log_granularity", store->log().Granularity());
    line("log_bytes", std::to_string(store->log().bytes_written()));
    line("log_segments", std::to_string(store->log().segment_count()));
    line("log_segment_bytes", std::to_string(store->log().segment_bytes()));
    // What the log occupies on the media, and what log cleaning did.
    line("log_file_bytes", std::to_string(store->log().file_bytes()));
    // Cleaned or truncated segments that replies still send big values from.
    line("log_retired_held_bytes", std::to_string(store->log().RetiredHeldBytes()));
    line("log_segments_cleaned", std::to_string(store->log().segments_cleaned()));
    line("clean_passes", std::to_string(m.clean_passes.load()));
    line("clean_records_moved", std::to_string(m.clean_records_moved.load()));
    line("clean_bytes_reclaimed", std::to_string(m.clean_bytes_reclaimed.load()));
    line("clean_expired_reclaimed", std::to_string(m.clean_expired_reclaimed.load()));
    line("clean_failures", std::to_string(m.clean_failures.load()));
    line("clean_misjudged", std::to_string(m.clean_misjudged.load()));
    line("committed_lsn", std::to_string(store->committed_lsn()));
    line("log_batches", std::to_string(m.batches.load()));
    line("log_records", std::to_string(m.batch_records.load()));
    line("inline_groups", std::to_string(m.inline_groups.load()));
    line("batch_bytes_avg", num(m.batch_bytes.Mean()));
    line("batch_ops_avg", num(m.batch_ops.Mean()));
    line("batch_ops_p99", std::to_string(m.batch_ops.Percentile(0.99)));
    line("persist_usec_p50", std::to_string(m.persist_us.Percentile(0.5)));
    line("persist_usec_p99", std::to_string(m.persist_us.Percentile(0.99)));
    line("log_failed", store->failed() ? "1" : "0");
    line("recovery_keys", std::to_string(opt.recovered_keys));
    line("recovery_records", std::to_string(r.records));
    line("recovery_seconds", num(r.seconds));
    line("recovery_keys_per_sec",
         r.seconds > 0 ? num(static_cast<double>(opt.recovered_keys) / r.seconds) : "0");
    line("recovery_torn_tail", r.torn_tail ? "1" : "0");
    line("recovery_dropped_corrupt", r.dropped_corrupt ? "1" : "0");
    line("aof_enabled", "0");
    line("rdb_changes_since_last_save", "0");
    t += "\r\n";
  }
  if (all || section == "stats"sv) {
    uint64_t total = 0;
    for (int c = 0; c < kOpClasses; c++) total += m.ops[c].load();
    t += "# Stats\r\n";
    line("total_connections_received", std::to_string(m.connections_total.load()));
    line("total_commands_processed", std::to_string(total));
    for (int c = 0; c < kOpClasses; c++) {
      std::string n = OpClassName(static_cast<OpClass>(c));
      line("ops_" + n, std::to_string(m.ops[c].load()));
      line("latency_" + n + "_usec_p50", std::to_string(m.op_latency_us[c].Percentile(0.5)));
      line("latency_" + n + "_usec_p99", std::to_string(m.op_latency_us[c].Percentile(0.99)));
    }
    line("keyspace_hits", std::to_string(m.keyspace_hits.load()));
    line("keyspace_misses", std::to_string(m.keyspace_misses.load()));
    // Reader lookups of present keys: from the hot layer (DRAM) or from the log.
    line("key_hot_hits", std::to_string(m.key_hot_hits.load()));
    line("key_log_reads", std::to_string(m.key_log_reads.load()));
    line("hot_promotions", std::to_string(m.hot_promotions.load()));
    line("hot_demotions", std::to_string(m.hot_demotions.load()));
    line("hot_updates", std::to_string(m.hot_updates.load()));
    line("rejected_connections", std::to_string(m.connections_rejected.load()));
    line("client_memory", std::to_string(m.client_memory_bytes.load()));
    line("clients_closed_output_limit", std::to_string(m.clients_closed_output_limit.load()));
    line("evicted_clients", std::to_string(m.clients_evicted_memory.load()));
    line("clients_closed_idle", std::to_string(m.clients_closed_idle.load()));
    line("clients_closed_preauth", std::to_string(m.clients_closed_preauth.load()));
    line("clients_closed_body_timeout", std::to_string(m.clients_closed_body.load()));
    line("accept_fd_exhausted", std::to_string(m.accept_fd_exhausted.load()));
    line("log_full_refusals", std::to_string(m.log_full_refusals.load()));
    line("rdma_connections_total", std::to_string(m.rdma_connections_total.load()));
    line("rdma_regions_exposed_total", std::to_string(m.rdma_regions_exposed_total.load()));
    line("rdma_log_regions_exposed_total", std::to_string(m.rdma_log_regions_exposed_total.load()));
    line("total_error_replies", std::to_string(m.errors.load()));
    line("protocol_errors", std::to_string(m.protocol_errors.load()));
    line("auth_failures", std::to_string(m.auth_failures.load()));
    line("duplicate_writes", std::to_string(m.duplicate_writes.load()));
    t += "\r\n";
  }
  if (all || section == "replication"sv) {
    t += "# Replication\r\n";
    if (opt.replication) {
      opt.replication->AppendInfo(&t);
    } else {
      t += "role:primary\r\nbackups:0\r\nconnected_slaves:0\r\n";
    }
    t += "\r\n";
  }
  if (all || section == "keyspace"sv) {
    t += "# Keyspace\r\n";
    if (store->KeyCount() > 0) {
      line("db0", "keys=" + std::to_string(store->KeyCount()) +
                      ",expires=" + std::to_string(store->KeysWithExpiry()) + ",avg_ttl=0");
    }
  }
  resp::AppendBulk(out, t);
}

}  // namespace faha
