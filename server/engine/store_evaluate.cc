// Write evaluation: a queued write against the committed state and the
// batches still in flight (the overlay), producing its records and reply.
#include <string>

#include "nvm/record_iterator.h"
#include "server/engine/store.h"

namespace faha {

using nvm::RecordType;
using nvm::RecordView;

void Store::MergeInFlight_st(const SeqInFlight& b) {
  const char* base = log_->RecordPtr(b.base_location);
  nvm::RecordIterator it(base, b.bytes);
  for (RecordView rec; it.Next(&rec);) {
    if (rec.type == RecordType::kPut) {
      inflight_overlay_[std::string(rec.key)] = b.base_location + it.offset();
    } else if (rec.type == RecordType::kDelete) {
      inflight_overlay_[std::string(rec.key)] = kInFlightDeleted;
    } else if (rec.type == RecordType::kFlushAll) {
      inflight_overlay_.clear();
      inflight_flushed_ = true;
    }
  }
}

bool Store::LookupInFlight_st(std::string_view key, bool want_value, int64_t now_ms,
                              KeyState* out) {
  if (seq_inflight_.empty()) return false;
  if (!inflight_valid_) {
    inflight_overlay_.clear();
    inflight_flushed_ = false;
    for (const auto& b : seq_inflight_) MergeInFlight_st(b);
    inflight_valid_ = true;
  }
  *out = KeyState{};
  auto it = inflight_overlay_.find(std::string(key));
  if (it == inflight_overlay_.end()) return inflight_flushed_;
  if (it->second == kInFlightDeleted) return true;
  RecordView r = log_->ReadRecord(it->second);
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return true;
  out->exists = true;
  out->expire_at_ms = r.expire_at_ms;
  if (want_value) out->value.assign(r.value);
  return true;
}

KeyState Store::Lookup_st(std::string_view key, bool want_value, int64_t now_ms) {
  KeyState c;
  if (overlay_flushed_) return c;
  // The hot layer's maintenance may run meanwhile: read as a reader does.
  ReadGuard guard = LockForRead();
  Resolved r;
  if (!Resolve(key, HashKey(key), &r)) return c;
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return c;
  c.exists = true;
  c.expire_at_ms = r.expire_at_ms;
  if (want_value) c.value.assign(r.value);
  return c;
}

void Store::Put_st(nvm::BatchBuilder* batch, std::string_view key, std::string_view value,
                   int64_t expire_at_ms) {
  size_t off = batch->Add(RecordType::kPut, key, value, expire_at_ms);
  if (overlay_valid_) overlay_[std::string(key)] = off;
}

void Store::Delete_st(nvm::BatchBuilder* batch, std::string_view key) {
  batch->Add(RecordType::kDelete, key, {}, 0);
  if (overlay_valid_) overlay_[std::string(key)] = kDeleted;
}

void Store::BuildOverlay_st(const nvm::BatchBuilder& batch) {
  overlay_.clear();
  nvm::RecordIterator it(batch.payload());
  for (RecordView r; it.Next(&r);) {
    if (r.type == RecordType::kPut) {
      overlay_[std::string(r.key)] = it.offset();
    } else if (r.type == RecordType::kDelete) {
      overlay_[std::string(r.key)] = kDeleted;
    } else if (r.type == RecordType::kFlushAll) {
      overlay_.clear();  // overlay_flushed_ is already set
    }
  }
  overlay_valid_ = true;
}

KeyState Store::Current_st(std::string_view key, bool want_value, const nvm::BatchBuilder& batch,
                           int64_t now_ms) {
  if (!overlay_valid_) BuildOverlay_st(batch);
  auto it = overlay_.find(std::string(key));
  if (it == overlay_.end()) {
    KeyState c;
    if (!overlay_flushed_ && LookupInFlight_st(key, want_value, now_ms, &c)) return c;
    return Lookup_st(key, want_value, now_ms);
  }
  KeyState c;
  if (it->second == kDeleted) return c;
  RecordView r;
  size_t n;
  nvm::DecodeRecord(batch.payload().data() + it->second, batch.bytes() - it->second, &r, &n);
  if (r.expire_at_ms != 0 && r.expire_at_ms <= now_ms) return c;
  c.exists = true;
  c.expire_at_ms = r.expire_at_ms;
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
    case WriteOp::Kind::kFlushAll:
      batch->Add(RecordType::kFlushAll, {}, {}, 0);
      overlay_.clear();
      overlay_valid_ = true;
      overlay_flushed_ = true;
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
