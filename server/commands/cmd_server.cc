// Server commands: COMMAND, CONFIG, INFO, ROLE, FAHA.DIGEST. Rows in
// server/commands/command_table.cc.
#include <fnmatch.h>

#include <algorithm>
#include <cstdio>

#include "common/resp.h"
#include "server/commands/command_context.h"

namespace faha::cmd {

ExecStatus Command(CommandContext& c) {
  std::string sub = c.argc > 1 ? Lower(c.args[1]) : "";
  const std::vector<CommandRow>& table = CommandTable();
  if (sub == "count") {
    resp::AppendInt(c.out, static_cast<int64_t>(table.size()));
  } else if (sub == "docs") {
    resp::AppendArray(c.out, 0);  // clients fall back to their built-in help
  } else if (sub.empty()) {
    resp::AppendArray(c.out, static_cast<int64_t>(table.size()));
    for (const CommandRow& row : table) AppendCommandInfo(row, c.out);
  } else if (sub == "info") {
    resp::AppendArray(c.out, c.argc - 2);
    for (int i = 2; i < c.argc; i++) {
      const CommandRow* row = FindCommand(c.args[i]);
      if (row == nullptr) {
        resp::AppendNil(c.out);
      } else {
        AppendCommandInfo(*row, c.out);
      }
    }
  } else {
    return c.Error("ERR unknown subcommand '" + std::string(c.args[1].substr(0, 64)) +
                   "'. Try COMMAND, COMMAND COUNT, COMMAND INFO or COMMAND DOCS.");
  }
  return ExecStatus::kReplied;
}

namespace {
// The parameters CONFIG GET answers, with their values now.
std::vector<std::pair<std::string, std::string>> ConfigValues(const CommandContext& c) {
  const ServerOptions& opt = c.options();
  return {
      {"save", ""},
      {"appendonly", "no"},
      {"appendfsync", "always"},
      {"port", std::to_string(c.server.bound_port())},
      {"bind", opt.bind},
      {"dir", opt.data_dir},
      {"maxclients", std::to_string(opt.max_clients)},
      {"maxmemory", "0"},
      {"databases", "1"},
      {"proto-max-bulk-len", std::to_string(opt.max_value_bytes)},
      {"maxmemory-clients", std::to_string(opt.limits.maxmemory_clients.load())},
      {"client-output-buffer-limit", "normal " +
                                         std::to_string(opt.limits.output_hard_bytes.load()) + " " +
                                         std::to_string(opt.limits.output_soft_bytes.load()) + " " +
                                         std::to_string(opt.limits.output_soft_seconds.load())},
      {"timeout", std::to_string(opt.limits.timeout_s.load())},
  };
}
}  // namespace

ExecStatus Config(CommandContext& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "set") return c.commands.ConfigSet(c.args, c.out);
  if (sub != "get" || c.argc < 3) {
    return c.Error("ERR CONFIG " + std::string(c.args[1].substr(0, 32)) +
                   " is not supported; FaHA is configured by command-line flags (CONFIG GET "
                   "answers; CONFIG SET changes the client limits)");
  }
  const std::vector<std::pair<std::string, std::string>> values = ConfigValues(c);
  std::vector<std::pair<std::string, std::string>> hits;
  for (int i = 2; i < c.argc; i++) {
    std::string pat = Lower(c.args[i]);
    for (const auto& kv : values) {
      if (fnmatch(pat.c_str(), kv.first.c_str(), 0) == 0 &&
          std::find(hits.begin(), hits.end(), kv) == hits.end()) {
        hits.push_back(kv);
      }
    }
  }
  resp::AppendArray(c.out, static_cast<int64_t>(hits.size() * 2));
  for (const auto& [k, v] : hits) {
    resp::AppendBulk(c.out, k);
    resp::AppendBulk(c.out, v);
  }
  return ExecStatus::kReplied;
}

ExecStatus Info(CommandContext& c) {
  c.commands.Info(c.argc > 1 ? Lower(c.args[1]) : "default", c.out);
  return ExecStatus::kReplied;
}

ExecStatus Role(CommandContext& c) {
  if (c.options().replication) {
    c.options().replication->AppendRole(c.out);
    return ExecStatus::kReplied;
  }
  resp::AppendArray(c.out, 3);
  resp::AppendBulk(c.out, "primary");
  resp::AppendInt(c.out, static_cast<int64_t>(c.store()->committed_lsn()));
  resp::AppendArray(c.out, 0);
  return ExecStatus::kReplied;
}

// [committed LSN, digest of the committed batches, digest of the data, keys]:
// equal on a primary and its backups once they have applied the same LSN.
ExecStatus FahaDigest(CommandContext& c) {
  auto guard = c.store()->LockForRead();
  auto d = c.store()->ComputeDigest();
  if (!d.ok()) return c.Error("ERR cannot compute digest: " + d.status().message());
  char hex[17];
  resp::AppendArray(c.out, 4);
  resp::AppendInt(c.out, static_cast<int64_t>(d->lsn));
  snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(d->log_digest));
  resp::AppendBulk(c.out, hex);
  snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(d->data_digest));
  resp::AppendBulk(c.out, hex);
  resp::AppendInt(c.out, static_cast<int64_t>(d->keys));
  return ExecStatus::kReplied;
}

}  // namespace faha::cmd
