// Write evaluation: a queued write against the committed state and the
// batches still in flight (the overlay), producing its records and reply.
#include <string>

#include "nvm/record_iterator.h"
#include "server/engine/namespaces.h"
#include "server/engine/store.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

void Store::MergeInFlight_st(const SeqInFlight& b) {
  inflight_overlay_.Merge(std::string_view(log_->RecordPtr(b.base_location), b.bytes),
                          b.base_location);
}

bool Store::LookupInFlight_st(std::string_view key, bool want_value, int64_t now_ms,
                              KeyState* out) {
  if (seq_inflight_.empty()) return false;
  if (!inflight_valid_) {
    inflight_overlay_.Reset();
    for (const auto& b : seq_inflight_) MergeInFlight_st(b);
    inflight_valid_ = true;
  }
  *out = KeyState{};
  uint64_t location = 0;
  switch (inflight_overlay_.Find(key, &location)) {
    case KeyOverlay::Says::kNothing:
      return false;
    case KeyOverlay::Says::kDeleted:
      return true;
    case KeyOverlay::Says::kAt:
      break;
  }
  RecordView r = log_->ReadRecord(location);
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return true;
  out->exists = true;
  out->expire_at_ms = r.expire_at_ms;
  out->location = location;
  if (want_value) out->value.assign(r.value);
  return true;
}

KeyState Store::Lookup_st(std::string_view key, bool want_value, int64_t now_ms) {
  KeyState c;
  if (overlay_.Hides(key)) return c;
  // The hot layer's maintenance may run meanwhile: read as a reader does.
  ReadGuard guard = LockForRead();
  keys_.Read(key, want_value, now_ms, &c);
  return c;
}

void Store::Put_st(nvm::BatchBuilder* batch, std::string_view key, std::string_view value,
                   int64_t expire_at_ms) {
  size_t off = batch->Add(RecordType::kPut, key, value, expire_at_ms);
  if (overlay_valid_) overlay_.Put(key, off);
}

void Store::Delete_st(nvm::BatchBuilder* batch, std::string_view key) {
  batch->Add(RecordType::kDelete, key, {}, 0);
  if (overlay_valid_) overlay_.Delete(key);
}

void Store::BuildOverlay_st(const nvm::BatchBuilder& batch) {
  overlay_.Reset(overlay_.flushes());
  overlay_.Merge(batch.payload(), 0);
  overlay_valid_ = true;
}

KeyState Store::Current_st(std::string_view key, bool want_value, const nvm::BatchBuilder& batch,
                           int64_t now_ms) {
  if (!overlay_valid_) BuildOverlay_st(batch);
  KeyState c;
  uint64_t offset = 0;
  switch (overlay_.Find(key, &offset)) {
    case KeyOverlay::Says::kNothing:
      if (LookupInFlight_st(key, want_value, now_ms, &c)) return c;
      return Lookup_st(key, want_value, now_ms);
    case KeyOverlay::Says::kDeleted:
      return c;
    case KeyOverlay::Says::kAt:
      break;
  }
  RecordView r;
  size_t n;
  nvm::DecodeRecord(batch.payload().data() + offset, batch.bytes() - offset, &r, &n);
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return c;
  c.exists = true;
  c.expire_at_ms = r.expire_at_ms;
  c.location = KeyState::kInGroup | offset;
  if (want_value) c.value.assign(r.value);
  return c;
}

class Store::BatchContext final : public WriteContext {
 public:
  BatchContext(Store* store, nvm::BatchBuilder* batch, int64_t now_ms)
      : store_(store), batch_(batch), now_ms_(now_ms) {}
  KeyState Get(std::string_view key, bool want_value) override {
    store_->commit_role_.Assert();
    return store_->Current_st(key, want_value, *batch_, now_ms_);
  }
  void Put(std::string_view key, std::string_view value, int64_t expire_at_ms) override {
    store_->commit_role_.Assert();
    store_->Put_st(batch_, key, value, expire_at_ms);
  }
  void Delete(std::string_view key) override {
    store_->commit_role_.Assert();
    store_->Delete_st(batch_, key);
  }
  int64_t NowMs() const override { return now_ms_; }
  WriteResult Evaluate(const WriteOp& op) override {
    store_->commit_role_.Assert();
    return store_->Evaluate_st(op, batch_, now_ms_);
  }

 private:
  Store* store_;
  nvm::BatchBuilder* batch_;
  int64_t now_ms_;
};

WriteResult Store::Evaluate_st(const WriteOp& op, nvm::BatchBuilder* batch, int64_t now_ms) {
  if (failed_.load(std::memory_order_relaxed)) {
    return WriteResult::IoError("the log failed earlier; this node refuses writes until restart");
  }
  switch (op.kind) {
    case WriteOp::Kind::kPut:
      Put_st(batch, op.args[0], op.args[1], op.expire_at_ms);
      return WriteResult::Ok();
    case WriteOp::Kind::kMSet:
      for (size_t i = 0; i + 1 < op.args.size(); i += 2)
        Put_st(batch, op.args[i], op.args[i + 1], 0);
      return WriteResult::Ok();
    case WriteOp::Kind::kDelete: {
      int64_t n = 0;
      for (const auto& key : op.args) {
        if (Current_st(key, false, *batch, now_ms).exists) {
          Delete_st(batch, key);
          n++;
        }
      }
      return WriteResult::Int(n);
    }
    case WriteOp::Kind::kFlushAll: {
      // Functions and the database map are not data: FLUSHALL keeps them, as
      // Redis does (their keys are written again after the flush, in the
      // same batch).
      const KeyState functions = Current_st(ns::kFunctionsKey, true, *batch, now_ms);
      const KeyState map = Current_st(ns::kDbMapKey, true, *batch, now_ms);
      batch->Add(RecordType::kFlushAll, {}, {}, 0);
      overlay_.FlushAll();
      overlay_valid_ = true;
      if (functions.exists) Put_st(batch, ns::kFunctionsKey, functions.value, 0);
      if (map.exists) Put_st(batch, ns::kDbMapKey, map.value, 0);
      return WriteResult::Ok();
    }
    case WriteOp::Kind::kFlushDb:
      if (op.number < 0 || op.number >= ns::kMaxDatabases) break;
      if (!overlay_valid_) BuildOverlay_st(*batch);
      batch->Add(RecordType::kFlushDb, ns::DbPrefix(static_cast<int>(op.number)), {}, 0);
      overlay_.FlushNamespace(static_cast<int>(op.number));
      return WriteResult::Ok();
    case WriteOp::Kind::kEval: {
      if (op.eval == nullptr) break;
      BatchContext context(this, batch, now_ms);
      return op.eval(op, context);
    }
  }
  return WriteResult::Error("ERR internal: unknown write");
}

}  // namespace faha
