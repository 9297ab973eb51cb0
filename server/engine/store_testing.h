// Test helpers for Store (tests only): a CompletionSink that collects the
// replies of committed writes, and WriteOps for SET and DEL.
#ifndef FAHA_SERVER_ENGINE_STORE_TESTING_H_
#define FAHA_SERVER_ENGINE_STORE_TESTING_H_

#include <gtest/gtest.h>

#include <chrono>
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
  // Waits until n replies arrived; returns every reply so far. A reply that
  // has not come within `timeout_s` is a test failure, and stands in the
  // result as an error, so that a write never answered fails the test
  // instead of hanging it.
  std::vector<Completion> WaitFor(size_t n, int timeout_s = 60) {
    MutexLock l(&mu_);
    cv_.WaitFor(&mu_, std::chrono::seconds(timeout_s),
                [&]() REQUIRES(mu_) { return got_.size() >= n; });
    std::vector<Completion> got = got_;
    if (got.size() < n) {
      ADD_FAILURE() << n - got.size() << " of " << n << " writes were not answered within "
                    << timeout_s << " s";
      got.resize(n, Completion{0, WriteResult::Error("ERR no reply (test timeout)"), 0});
    }
    return got;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<Completion> got_;
};

inline WriteOp SetOp(const std::string& k, const std::string& v, int64_t expire_at_ms = 0) {
  WriteOp op;
  op.kind = WriteOp::Kind::kPut;
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

// WriteEvals for engine tests (the commands' own are tested in
// server/commands/cmd_write_test.cc): they see a key as the committing thread
// does, earlier writes of the same group included.

// Appends op.args[1] to op.args[0]'s value (keeping its expiry); replies with the new length.
inline WriteResult AppendEval(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  cur.value.append(op.args[1]);
  w.Put(op.args[0], cur.value, cur.expire_at_ms);
  return WriteResult::Int(static_cast<int64_t>(cur.value.size()));
}

inline WriteOp AppendOp(const std::string& k, const std::string& suffix) {
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = AppendEval;
  op.args = {k, suffix};
  return op;
}

// Gives op.args[0] the expiry op.expire_at_ms (0: none), keeping its value;
// one at or before now deletes it. Replies 1, or 0 if the key is absent.
inline WriteResult ExpireEval(const WriteOp& op, WriteContext& w) {
  KeyState cur = w.Get(op.args[0], true);
  if (!cur.exists) return WriteResult::Int(0);
  if (op.expire_at_ms != 0 && op.expire_at_ms <= w.NowMs()) {
    w.Delete(op.args[0]);
  } else {
    w.Put(op.args[0], cur.value, op.expire_at_ms);
  }
  return WriteResult::Int(1);
}

inline WriteOp ExpireOp(const std::string& k, int64_t expire_at_ms) {
  WriteOp op;
  op.kind = WriteOp::Kind::kEval;
  op.eval = ExpireEval;
  op.args = {k};
  op.expire_at_ms = expire_at_ms;
  return op;
}

}  // namespace faha::testing

#endif  // FAHA_SERVER_ENGINE_STORE_TESTING_H_
