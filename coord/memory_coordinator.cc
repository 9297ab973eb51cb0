// MemoryCoordinator (memory_coordinator.h).
#include "coord/memory_coordinator.h"

#include "common/clock.h"

namespace faha::coord {

namespace {
// What a node holds: calls go to the shared coordinator.
class MemoryClient final : public Coordinator {
 public:
  explicit MemoryClient(MemoryCoordinator* c) : c_(c) {}
  StatusOr<int64_t> GrantLease(int64_t ttl_s, int64_t* granted) override {
    return c_->GrantLease(ttl_s, granted);
  }
  StatusOr<int64_t> KeepAliveOnce(int64_t id) override { return c_->KeepAliveOnce(id); }
  Status RevokeLease(int64_t id) override { return c_->RevokeLease(id); }
  StatusOr<std::optional<KeyValue>> Get(const std::string& key) override { return c_->Get(key); }
  StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix) override {
    return c_->GetPrefix(prefix);
  }
  Status Put(const std::string& key, const std::string& value, int64_t lease) override {
    return c_->Put(key, value, lease);
  }
  StatusOr<bool> CompareAndSwap(const std::string& key, int64_t expected, const std::string& value,
                                int64_t lease, std::optional<KeyValue>* current) override {
    return c_->CompareAndSwap(key, expected, value, lease, current);
  }
  Status Delete(const std::string& key) override { return c_->Delete(key); }

 private:
  MemoryCoordinator* c_;
};
}  // namespace

MemoryCoordinator::MemoryCoordinator(std::function<int64_t()> now_ms)
    : now_ms_(now_ms ? std::move(now_ms) : [] { return MonoMs(); }) {}

std::unique_ptr<Coordinator> MemoryCoordinator::Connect() {
  return std::make_unique<MemoryClient>(this);
}

void MemoryCoordinator::SetUnavailable(bool unavailable) {
  MutexLock l(&mu_);
  unavailable_ = unavailable;
}

Status MemoryCoordinator::CheckLocked() {
  if (unavailable_) return Status::Unavailable("the coordinator is unreachable");
  const int64_t now = now_ms_();
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (it->second.deadline_ms <= now) DropLeaseLocked(it->first);
    it = next;
  }
  return Status::OK();
}

void MemoryCoordinator::DropLeaseLocked(int64_t lease_id) {
  leases_.erase(lease_id);
  bool changed = false;
  for (auto it = kv_.begin(); it != kv_.end();) {
    if (it->second.lease == lease_id) {
      it = kv_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) revision_++;
}

void MemoryCoordinator::WriteLocked(const std::string& key, const std::string& value,
                                    int64_t lease) {
  revision_++;
  KeyValue& kv = kv_[key];
  if (kv.create_revision == 0) kv.create_revision = revision_;
  kv.key = key;
  kv.value = value;
  kv.mod_revision = revision_;
  kv.lease = lease;
}

StatusOr<int64_t> MemoryCoordinator::GrantLease(int64_t ttl_s, int64_t* granted_ttl_s) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  if (ttl_s <= 0) return Status::InvalidArgument("a lease's TTL must be positive");
  const int64_t id = next_lease_++;
  leases_[id] = Lease{ttl_s, now_ms_() + ttl_s * 1000};
  if (granted_ttl_s) *granted_ttl_s = ttl_s;
  return id;
}

StatusOr<int64_t> MemoryCoordinator::KeepAliveOnce(int64_t lease_id) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return Status::NotFound("lease not found");
  it->second.deadline_ms = now_ms_() + it->second.ttl_s * 1000;
  return it->second.ttl_s;
}

Status MemoryCoordinator::RevokeLease(int64_t lease_id) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  DropLeaseLocked(lease_id);
  return Status::OK();
}

StatusOr<std::optional<KeyValue>> MemoryCoordinator::Get(const std::string& key) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  auto it = kv_.find(key);
  if (it == kv_.end()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(it->second);
}

StatusOr<std::vector<KeyValue>> MemoryCoordinator::GetPrefix(const std::string& prefix) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  std::vector<KeyValue> out;
  for (auto it = kv_.lower_bound(prefix); it != kv_.end() && it->first.starts_with(prefix); ++it) {
    out.push_back(it->second);
  }
  return out;
}

Status MemoryCoordinator::Put(const std::string& key, const std::string& value, int64_t lease) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  if (lease != 0 && !leases_.count(lease)) return Status::NotFound("lease not found");
  WriteLocked(key, value, lease);
  return Status::OK();
}

StatusOr<bool> MemoryCoordinator::CompareAndSwap(const std::string& key,
                                                 int64_t expected_mod_revision,
                                                 const std::string& value, int64_t lease,
                                                 std::optional<KeyValue>* current) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  if (lease != 0 && !leases_.count(lease)) return Status::NotFound("lease not found");
  auto it = kv_.find(key);
  const int64_t have = it == kv_.end() ? 0 : it->second.mod_revision;
  if (have != expected_mod_revision) {
    if (current) *current = it == kv_.end() ? std::nullopt : std::optional<KeyValue>(it->second);
    return false;
  }
  WriteLocked(key, value, lease);
  return true;
}

Status MemoryCoordinator::Delete(const std::string& key) {
  MutexLock l(&mu_);
  FAHA_RETURN_IF_ERROR(CheckLocked());
  if (kv_.erase(key)) revision_++;
  return Status::OK();
}

}  // namespace faha::coord
