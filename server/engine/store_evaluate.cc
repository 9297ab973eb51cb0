// Write evaluation: a queued write against the committed state and the
// batches still in flight (the overlay), producing its records and reply.
#include <pthread.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <optional>
#include <unordered_set>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/strings.h"
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

bool Store::LookupInFlight_st(std::string_view key, bool want_value, int64_t now_ms, Current* out) {
  if (seq_inflight_.empty()) return false;
  if (!inflight_valid_) {
    inflight_overlay_.clear();
    inflight_flushed_ = false;
    for (const auto& b : seq_inflight_) MergeInFlight_st(b);
    inflight_valid_ = true;
  }
  *out = Current{};
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

Store::Current Store::Lookup_st(std::string_view key, bool want_value, int64_t now_ms) {
  Current c;
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

Store::Current Store::Current_st(std::string_view key, bool want_value,
                                 const nvm::BatchBuilder& batch, int64_t now_ms) {
  if (!overlay_valid_) BuildOverlay_st(batch);
  auto it = overlay_.find(std::string(key));
  if (it == overlay_.end()) {
    Current c;
    if (!overlay_flushed_ && LookupInFlight_st(key, want_value, now_ms, &c)) return c;
    return Lookup_st(key, want_value, now_ms);
  }
  Current c;
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

// EXPIRE and its kin, with the NX/XX/GT/LT condition: 1 if the expiry was set.
WriteResult Store::EvaluateExpire_st(const WriteOp& op, nvm::BatchBuilder* batch, int64_t now_ms) {
  std::string_view key = op.args[0];
  Current cur = Current_st(key, true, *batch, now_ms);
  if (!cur.exists) return WriteResult::Int(0);
  const bool has = cur.expire_at_ms != 0;
  bool allowed = true;
  switch (op.expire_if) {
    case WriteOp::ExpireIf::kAlways:
      break;
    case WriteOp::ExpireIf::kNoExpiry:
      allowed = !has;
      break;
    case WriteOp::ExpireIf::kHasExpiry:
      allowed = has;
      break;
    case WriteOp::ExpireIf::kGreater:
      allowed = has && op.expire_at_ms > cur.expire_at_ms;
      break;
    case WriteOp::ExpireIf::kLess:
      allowed = !has || op.expire_at_ms < cur.expire_at_ms;
      break;
  }
  if (!allowed) return WriteResult::Int(0);
  if (op.expire_at_ms <= now_ms) {
    Delete_st(batch, key);
  } else {
    Put_st(batch, key, cur.value, op.expire_at_ms);
  }
  return WriteResult::Int(1);
}

WriteResult Store::Evaluate_st(const WriteOp& op, nvm::BatchBuilder* batch, int64_t now_ms) {
  if (failed_.load(std::memory_order_relaxed)) {
    return WriteResult::IoError("the log failed earlier; this node refuses writes until restart");
  }
  auto current = [&](std::string_view key, bool want_value) {
    return Current_st(key, want_value, *batch, now_ms);
  };

  switch (op.kind) {
    case WriteOp::Kind::kSet: {
      std::string_view key = op.args[0];
      bool need_state = op.nx || op.xx || op.keep_ttl || op.get_old;
      Current cur;
      if (need_state) cur = current(key, op.get_old);
      if ((op.nx && cur.exists) || (op.xx && !cur.exists)) {
        if (op.get_old) return cur.exists ? WriteResult::Bulk(cur.value) : WriteResult::Nil();
        return WriteResult::Nil();
      }
      Put_st(batch, key, op.args[1], op.keep_ttl ? cur.expire_at_ms : op.expire_at_ms);
      if (op.get_old)
        return cur.exists ? WriteResult::Bulk(std::move(cur.value)) : WriteResult::Nil();
      return WriteResult::Ok();
    }
    case WriteOp::Kind::kMSet:
      for (size_t i = 0; i + 1 < op.args.size(); i += 2)
        Put_st(batch, op.args[i], op.args[i + 1], 0);
      return WriteResult::Ok();
    case WriteOp::Kind::kDelete: {
      int64_t n = 0;
      for (const auto& key : op.args) {
        if (current(key, false).exists) {
          Delete_st(batch, key);
          n++;
        }
      }
      return WriteResult::Int(n);
    }
    case WriteOp::Kind::kIncrBy: {
      std::string_view key = op.args[0];
      Current cur = current(key, true);
      int64_t v = 0;
      if (cur.exists && !ParseInt64(cur.value, &v)) {
        return WriteResult::Error("ERR value is not an integer or out of range");
      }
      if ((op.delta > 0 && v > INT64_MAX - op.delta) ||
          (op.delta < 0 && v < INT64_MIN - op.delta)) {
        return WriteResult::Error("ERR increment or decrement would overflow");
      }
      v += op.delta;
      Put_st(batch, key, std::to_string(v), cur.expire_at_ms);
      return WriteResult::Int(v);
    }
    case WriteOp::Kind::kExpire:
      return EvaluateExpire_st(op, batch, now_ms);
    case WriteOp::Kind::kPersist: {
      std::string_view key = op.args[0];
      Current cur = current(key, true);
      if (!cur.exists || cur.expire_at_ms == 0) return WriteResult::Int(0);
      Put_st(batch, key, cur.value, 0);
      return WriteResult::Int(1);
    }
    case WriteOp::Kind::kFlushAll:
      batch->Add(RecordType::kFlushAll, {}, {}, 0);
      overlay_.clear();
      overlay_valid_ = true;
      overlay_flushed_ = true;
      return WriteResult::Ok();
  }
  return WriteResult::Error("ERR internal: unknown write");
}

}  // namespace faha
