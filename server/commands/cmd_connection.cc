// Connection commands: PING, ECHO, AUTH, HELLO, QUIT, SELECT, SHUTDOWN, TIME,
// CLIENT, READONLY/READWRITE. Rows in server/commands/command_table.cc.
#include <chrono>

#include "common/resp.h"
#include "server/commands/command_context.h"

namespace faha::cmd {

namespace {
constexpr const char* kWrongPass = "WRONGPASS invalid username-password pair or user is disabled.";
}  // namespace

ExecStatus Ping(CommandContext& c) {
  if (c.argc > 2) return c.WrongArgs();
  if (c.argc == 2) {
    resp::AppendBulk(c.out, c.args[1]);
  } else {
    resp::AppendSimple(c.out, "PONG");
  }
  return ExecStatus::kReplied;
}

ExecStatus Echo(CommandContext& c) {
  resp::AppendBulk(c.out, c.args[1]);
  return ExecStatus::kReplied;
}

ExecStatus Auth(CommandContext& c) {
  if (c.argc > 3) return c.WrongArgs();
  if (c.options().requirepass.empty()) {
    return c.Error(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?");
  }
  bool user_ok = c.argc == 2 || c.args[1] == "default";
  if (user_ok && c.commands.PasswordMatches(c.args[c.argc - 1])) {
    c.s->authed = true;
    return c.Ok();
  }
  c.metrics()->auth_failures.fetch_add(1, std::memory_order_relaxed);
  return c.Error(kWrongPass);
}

namespace {
void AppendHello(const CommandContext& c) {
  std::string* out = c.out;
  resp::AppendArray(out, 14);
  resp::AppendBulk(out, "server");
  resp::AppendBulk(out, "faha");
  resp::AppendBulk(out, "version");
  resp::AppendBulk(out, kVersion);
  resp::AppendBulk(out, "proto");
  resp::AppendInt(out, 2);
  resp::AppendBulk(out, "id");
  resp::AppendInt(out, static_cast<int64_t>(c.s->conn_id));
  resp::AppendBulk(out, "mode");
  resp::AppendBulk(out, "standalone");
  resp::AppendBulk(out, "role");
  resp::AppendBulk(out, "primary");
  resp::AppendBulk(out, "modules");
  resp::AppendArray(out, 0);
}
// A client name, as Redis takes one: printable ASCII without spaces (empty
// clears it).
bool ValidClientName(std::string_view name) {
  for (char ch : name) {
    if (ch < '!' || ch > '~') return false;
  }
  return true;
}

constexpr const char* kBadClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";

}  // namespace

ExecStatus Hello(CommandContext& c) {
  int i = 1;
  std::string_view name;
  bool set_name = false;
  if (c.argc >= 2) {
    int64_t ver = 0;
    if (!ParseInt64(c.args[1], &ver)) {
      return c.Error("ERR Protocol version is not an integer or out of range");
    }
    if (ver != 2) return c.Error("NOPROTO unsupported protocol version (this server speaks RESP2)");
    i = 2;
  }
  for (; i < c.argc; i++) {
    if (EqNoCase(c.args[i], "auth") && i + 2 < c.argc) {
      if (c.options().requirepass.empty() || c.args[i + 1] != "default" ||
          !c.commands.PasswordMatches(c.args[i + 2])) {
        c.metrics()->auth_failures.fetch_add(1, std::memory_order_relaxed);
        return c.Error(kWrongPass);
      }
      c.s->authed = true;
      i += 2;
    } else if (EqNoCase(c.args[i], "setname") && i + 1 < c.argc) {
      name = c.args[++i];
      set_name = true;
    } else {
      return c.Error("ERR Syntax error in HELLO option '" + std::string(c.args[i].substr(0, 64)) +
                     "'");
    }
  }
  if (!c.s->authed) {
    return c.Error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
        "RESP protocol version at the same time");
  }
  if (set_name && !ValidClientName(name)) return c.Error(kBadClientName);
  if (set_name) c.s->name = std::string(name);
  AppendHello(c);
  return ExecStatus::kReplied;
}

ExecStatus Quit(CommandContext& c) {
  c.s->close_after_reply = true;
  return c.Ok();
}

ExecStatus Shutdown(CommandContext& c) {
  c.s->shutdown = true;
  c.s->close_after_reply = true;
  return c.Ok();
}

ExecStatus Time(CommandContext& c) {
  int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  resp::AppendArray(c.out, 2);
  resp::AppendBulk(c.out, std::to_string(us / 1000000));
  resp::AppendBulk(c.out, std::to_string(us % 1000000));
  return ExecStatus::kReplied;
}

ExecStatus Client(CommandContext& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "setname" && c.argc == 3) {
    if (!ValidClientName(c.args[2])) return c.Error(kBadClientName);
    c.s->name = std::string(c.args[2]);
    return c.Ok();
  }
  if (sub == "getname") {
    if (c.s->name.empty()) {
      resp::AppendNil(c.out);
    } else {
      resp::AppendBulk(c.out, c.s->name);
    }
  } else if (sub == "id") {
    resp::AppendInt(c.out, static_cast<int64_t>(c.s->conn_id));
  } else if (sub == "setinfo" && c.argc == 4) {
    return c.Ok();
  } else {
    return c.Error("ERR unknown subcommand or wrong number of arguments for 'client|" +
                   std::string(c.args[1].substr(0, 64)) + "'");
  }
  return ExecStatus::kReplied;
}

// READONLY and READWRITE.
ExecStatus ReadOnly(CommandContext& c) {
  c.s->stale_reads = c.name() == "readonly";
  return c.Ok();
}

}  // namespace faha::cmd
