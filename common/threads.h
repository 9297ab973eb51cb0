// Thread helpers.
#ifndef FAHA_COMMON_THREADS_H_
#define FAHA_COMMON_THREADS_H_

#include <pthread.h>

#include <string>

namespace faha {

// Names the calling thread (top, perf and gdb show it); at most 15 bytes kept.
inline void SetThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace faha

#endif  // FAHA_COMMON_THREADS_H_
