// Proof that the thread-safety analysis is on and means something: this file
// compiles under clang's -Wthread-safety -Werror as it is, and must fail to
// when FAHA_PROBE_VIOLATION is defined (a guarded member read without its
// mutex, and a REQUIRES function called without it). tests/run.sh checks both.
#include "common/mutex.h"

namespace faha {

class Probe {
 public:
  int Read() {
    MutexLock l(&mu_);
    while (value_ == 0) cv_.Wait(&mu_);
    return ReadLocked();
  }
  void Write(int v) {
    MutexLock l(&mu_);
    value_ = v;
    cv_.SignalAll();
  }
#ifdef FAHA_PROBE_VIOLATION
  int Unlocked() { return value_ + ReadLocked(); }
#endif

 private:
  int ReadLocked() REQUIRES(mu_) { return value_; }

  Mutex mu_;
  CondVar cv_;
  int value_ GUARDED_BY(mu_) = 0;
};

}  // namespace faha

int main() {
  faha::Probe p;
  p.Write(1);
  return p.Read() == 1 ? 0 : 1;
}
