// Clocks: wall time in Unix milliseconds (for key expiry, which is logged as an
// absolute time so it survives restart) and a monotonic clock for latencies.
#ifndef FAHA_COMMON_CLOCK_H_
#define FAHA_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace faha {

inline int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
inline int64_t MonoNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t MonoUs() { return MonoNs() / 1000; }
inline int64_t MonoMs() { return MonoNs() / 1000000; }

}  // namespace faha

#endif  // FAHA_COMMON_CLOCK_H_
