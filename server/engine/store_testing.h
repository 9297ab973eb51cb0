// Test helpers for Store (tests only): a CompletionSink that collects the
// replies of committed writes, and WriteOps for SET and DEL.
#ifndef FAHA_SERVER_ENGINE_STORE_TESTING_H_
#define FAHA_SERVER_ENGINE_STORE_TESTING_H_

#include <string>
#include <vector>

#include "common/mutex.h"
#include "server/engine/store.h"

namespace faha::testing {

class Collect : public CompletionSink {
 public:
  void Deliver(std::vector<Completion>* c) override {
    MutexLock l(&mu_);
    for (auto& x : *c) got_.push_back(std::move(x));
    cv_.SignalAll();
  }
  // Waits until n replies arrived; returns every reply so far.
  std::vector<Completion> WaitFor(size_t n) {
    MutexLock l(&mu_);
    cv_.Wait(&mu_, [&]() REQUIRES(mu_) { return got_.size() >= n; });
    return got_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<Completion> got_;
};

inline WriteOp SetOp(const std::string& k, const std::string& v, int64_t expire_at_ms = 0) {
  WriteOp op;
  op.kind = WriteOp::Kind::kSet;
  op.args = {k, v};
  op.expire_at_ms = expire_at_ms;
  return op;
}

inline WriteOp DelOp(const std::string& k) {
  WriteOp op;
  op.kind = WriteOp::Kind::kDelete;
  op.args = {k};
  return op;
}

}  // namespace faha::testing

#endif  // FAHA_SERVER_ENGINE_STORE_TESTING_H_
