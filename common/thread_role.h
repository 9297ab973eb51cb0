// ThreadRole: a part that one thread at a time plays, such as the store's
// committing thread or the thread that publishes batches. For clang's
// -Wthread-safety it is a capability: what only that thread may touch is
// GUARDED_BY the role and what only it may call REQUIRES it, checked at
// compile time. At run time, in builds without NDEBUG (the sanitizer builds
// in which CI runs every test), Take() records the thread, a second Take()
// before Give() aborts, and Assert() aborts unless its caller holds the role;
// each abort names the role. Release builds compile all of it to nothing.
// Thread-safe: any thread may call any member.
#ifndef FAHA_COMMON_THREAD_ROLE_H_
#define FAHA_COMMON_THREAD_ROLE_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/thread_annotations.h"

namespace faha {

class CAPABILITY("role") ThreadRole {
 public:
  explicit constexpr ThreadRole(const char* name) : name_(name) {}
  ThreadRole(const ThreadRole&) = delete;
  ThreadRole& operator=(const ThreadRole&) = delete;

  // The calling thread now plays the role; no other thread may hold it.
  void Take() ACQUIRE() {
#ifndef NDEBUG
    TakeChecked();
#endif
  }
  // The calling thread stops playing the role.
  void Give() RELEASE() {
#ifndef NDEBUG
    GiveChecked();
#endif
  }
  // For a role held for the length of a call, where no code names the
  // hand-off between threads (the log's writer is the store's committing
  // thread, or a backup's receiving one): takes the role unless the calling
  // thread holds it already (calls that nest), and gives it back at the end
  // of the scope if it took it. Checked at run time only.
  class Scope {
   public:
    explicit Scope(ThreadRole* role) {
#ifndef NDEBUG
      if (role->owner_.load(std::memory_order_acquire) != Self()) {
        role->TakeChecked();
        role_ = role;
      }
#else
      (void)role;
#endif
    }
    ~Scope() {
#ifndef NDEBUG
      if (role_ != nullptr) role_->GiveChecked();
#endif
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
#ifndef NDEBUG
    ThreadRole* role_ = nullptr;
#endif
  };

  // Aborts unless the calling thread holds the role; tells the analysis it does.
  void Assert() const ASSERT_CAPABILITY(this) {
#ifndef NDEBUG
    if (owner_.load(std::memory_order_acquire) != Self())
      Die("used by a thread that does not hold it");
#endif
  }

 private:
#ifndef NDEBUG
  // A nonzero number that differs between live threads: the address of a thread_local.
  static uintptr_t Self() {
    static thread_local char tag;
    return reinterpret_cast<uintptr_t>(&tag);
  }
  void TakeChecked() {
    uintptr_t none = 0;
    if (!owner_.compare_exchange_strong(none, Self(), std::memory_order_acq_rel)) {
      Die("taken while another thread holds it");
    }
  }
  void GiveChecked() {
    if (owner_.exchange(0, std::memory_order_acq_rel) != Self()) {
      Die("given back by a thread that does not hold it");
    }
  }
  [[noreturn]] void Die(const char* what) const {
    fprintf(stderr, "FATAL: thread role '%s' %s\n", name_, what);
    abort();
  }
  std::atomic<uintptr_t> owner_{0};
#endif
  [[maybe_unused]] const char* name_;
};

}  // namespace faha

#endif  // FAHA_COMMON_THREAD_ROLE_H_
