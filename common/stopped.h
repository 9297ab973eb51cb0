// For tests that stop a process with SIGSTOP: kill() returns before the stop
// has reached every thread. The signal stops the process through the one
// thread that takes it, which then stops the others; until it runs, they run
// on (and may, for example, still answer a request). WaitAllThreadsStopped
// polls /proc until every thread of pid is in state T.
#ifndef FAHA_COMMON_STOPPED_H_
#define FAHA_COMMON_STOPPED_H_

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace faha {

// The state letter of one thread, /proc/PID/task/TID ('R', 'S', 'D', 'T', ...),
// or '?' if the thread is gone or its stat cannot be read.
inline char ThreadState(const std::filesystem::path& task) {
  std::ifstream in(task / "stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');  // the thread's name may hold spaces
  if (paren == std::string::npos || paren + 2 >= stat.size()) return '?';
  return stat[paren + 2];
}

inline bool AllThreadsStopped(pid_t pid) {
  std::error_code ec;
  int threads = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ThreadState(it->path()) != 'T') return false;
    threads++;
  }
  return !ec && threads > 0;
}

// False if some thread still runs after timeout_ms.
inline bool WaitAllThreadsStopped(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!AllThreadsStopped(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace faha

#endif  // FAHA_COMMON_STOPPED_H_
