#include "server/commands/active_expiry.h"

#include "common/clock.h"
#include "server/commands/host.h"
#include "server/engine/store.h"

namespace faha {

namespace {

constexpr size_t kSampleSlots = 256;
constexpr int64_t kPassBudgetUs = 25000;

// op.args = keys found expired: each is deleted if, when evaluated, it still
// is (absent to a reader); a key written meanwhile stays.
WriteResult EvalDeleteExpired(const WriteOp& op, WriteContext& w) {
  int64_t n = 0;
  for (std::string_view key : op.args) {
    if (w.Get(key, false).exists) continue;
    w.Delete(key);
    n++;
  }
  return WriteResult::Int(n);
}

}  // namespace

void ActiveExpiry::Start(CommandHost* host) {
  host_ = host;
  thread_.Start("faha-expire", std::chrono::milliseconds(100), [this] { Pass(); });
}

size_t ActiveExpiry::Pass() {
  const ReplicationRole* role = host_->options().replication;
  if (role != nullptr && role->is_backup()) return 0;  // its primary's deletions come
  Store* store = host_->store();
  // Nothing can expire: no pass over the index (each sampled slot reads its
  // record from the log). Redis keeps its volatile keys apart to the same end.
  if (store->KeysWithExpiry() == 0) return 0;
  const int64_t start = MonoUs();
  size_t queued = 0;
  while (MonoUs() - start < kPassBudgetUs) {
    std::vector<std::string> keys;
    size_t sampled = 0;
    cursor_ = store->ScanExpired(cursor_, kSampleSlots, WallMs(), &keys, &sampled);
    if (!keys.empty()) {
      WriteOp op;
      op.kind = WriteOp::Kind::kEval;
      op.eval = EvalDeleteExpired;
      for (const auto& k : keys) op.args.push_back(k);
      store->Submit(std::move(op), this, 0);
      queued += keys.size();
    }
    // Another sample only while expired keys are dense (Redis: > 25%).
    if (cursor_ == 0 || keys.size() * 4 <= sampled) break;
  }
  return queued;
}

void ActiveExpiry::Deliver(std::vector<Completion>* completions) {
  for (const Completion& c : *completions) {
    if (c.result.kind == WriteResult::Kind::kInt) {
      expired_.fetch_add(static_cast<uint64_t>(c.result.integer), std::memory_order_relaxed);
    }
  }
}

}  // namespace faha
