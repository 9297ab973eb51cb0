// Starting a child process, written once for the test harness, the etcd test
// fixture and the failover drill.
#ifndef FAHA_COMMON_PROCESS_H_
#define FAHA_COMMON_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "faha/status.h"

namespace faha {

struct SpawnOptions {
  // stdout and stderr are appended to this file; empty: inherited.
  std::string log_path;
  // The child gets SIGKILL when the process that spawned it dies (a test or
  // drill that crashes leaves no server behind).
  bool die_with_parent = true;
  // RLIMIT_NOFILE (soft and hard) of the child; 0: inherited.
  uint64_t open_files_limit = 0;
};

// Starts argv (argv[0] searched in PATH when it has no '/'). Everything the
// child needs is prepared before fork(): between fork and exec it makes only
// async-signal-safe calls. Returns the child's pid; an exec failure shows as
// exit status 127.
StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

}  // namespace faha

#endif  // FAHA_COMMON_PROCESS_H_
