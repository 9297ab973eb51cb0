// faha-server: a durable key-value server: a single node, or the primary or a
// backup of a replicated cluster. Flags are documented in docs/flags.md and by
// --help; the node is built and run by faha::Node (server/node/node.h).
#include <gflags/gflags.h>

#include <cstdio>
#include <vector>

#include "common/logging.h"
#include "server/node/flags.h"
#include "server/node/node.h"

int main(int argc, char** argv) {
  // A deposed primary re-executes itself with the same arguments.
  std::vector<char*> original_argv(argv, argv + argc);
  original_argv.push_back(nullptr);
  gflags::SetUsageMessage("durable key-value server; see docs/flags.md");
  gflags::SetVersionString("0.1.0");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1) {
    fprintf(stderr, "faha-server: unexpected argument '%s' (flags start with --)\n", argv[1]);
    return 2;
  }
  if (FLAGS_log_level == "debug")
    faha::SetLogLevel(faha::LogLevel::kDebug);
  else if (FLAGS_log_level == "warn")
    faha::SetLogLevel(faha::LogLevel::kWarn);
  else if (FLAGS_log_level == "error")
    faha::SetLogLevel(faha::LogLevel::kError);
  else if (FLAGS_log_level != "info") {
    fprintf(stderr, "faha-server: --log_level must be debug, info, warn or error\n");
    return 2;
  }
  if (!faha::ValidateFlags()) return 2;
  return faha::Node(std::move(original_argv)).Run();
}
