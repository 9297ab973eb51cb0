// Thread helpers.
#ifndef FAHA_COMMON_THREADS_H_
#define FAHA_COMMON_THREADS_H_

#include <pthread.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace faha {

// Names the calling thread (top, perf and gdb show it); at most 15 bytes kept.
inline void SetThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

// A named thread that runs `tick` every `interval` until Stop (log cleaning,
// active expiry), or (StartPaced) waits whatever its tick returns before the
// next one (the hot layer's maintenance, which backs off while idle). A long
// tick may ask stopping() to end early.
class PeriodicThread {
 public:
  PeriodicThread() = default;
  ~PeriodicThread() { Stop(); }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  void Start(std::string name, std::chrono::milliseconds interval, std::function<void()> tick) {
    StartPaced(std::move(name), interval, [interval, tick = std::move(tick)] {
      tick();
      return interval;
    });
  }
  // The first tick after `first`; each later one after what the last returned.
  void StartPaced(std::string name, std::chrono::milliseconds first,
                  std::function<std::chrono::milliseconds()> tick) {
    thread_ = std::thread([this, name = std::move(name), first, tick = std::move(tick)] {
      SetThreadName(name);
      std::chrono::milliseconds wait = first;
      MutexLock l(&mu_);
      while (!cv_.WaitFor(&mu_, wait, [&]() REQUIRES(mu_) { return stopping_; })) {
        l.Unlock();
        wait = tick();
        l.Lock();
      }
    });
  }
  // Wakes the thread and joins it once its tick returns.
  void Stop() {
    {
      MutexLock l(&mu_);
      stopping_ = true;
    }
    cv_.SignalAll();
    if (thread_.joinable()) thread_.join();
  }
  bool stopping() {
    MutexLock l(&mu_);
    return stopping_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace faha

#endif  // FAHA_COMMON_THREADS_H_
