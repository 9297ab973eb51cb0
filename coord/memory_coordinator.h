// MemoryCoordinator: an in-process Coordinator for tests, with etcd's
// semantics (revisions, compare-and-swap, leases whose keys vanish when they
// expire) and a clock the test may drive: leases expire when now_ms() passes
// their deadline, checked at every call. Unavailable() makes every call fail
// as an unreachable etcd does, until Available().
// Thread-safe: one mutex around the whole state; share one between nodes.
#ifndef FAHA_COORD_MEMORY_COORDINATOR_H_
#define FAHA_COORD_MEMORY_COORDINATOR_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/mutex.h"
#include "coord/coordinator.h"

namespace faha::coord {

class MemoryCoordinator {
 public:
  // now_ms: the clock leases expire by (MonoMs if null).
  explicit MemoryCoordinator(std::function<int64_t()> now_ms = nullptr);

  // A client of this coordinator, as a node holds an EtcdClient.
  std::unique_ptr<Coordinator> Connect();
  void SetUnavailable(bool unavailable);

  StatusOr<int64_t> GrantLease(int64_t ttl_s, int64_t* granted_ttl_s);
  StatusOr<int64_t> KeepAliveOnce(int64_t lease_id);
  Status RevokeLease(int64_t lease_id);
  StatusOr<std::optional<KeyValue>> Get(const std::string& key);
  StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix);
  Status Put(const std::string& key, const std::string& value, int64_t lease);
  StatusOr<bool> CompareAndSwap(const std::string& key, int64_t expected_mod_revision,
                                const std::string& value, int64_t lease,
                                std::optional<KeyValue>* current);
  Status Delete(const std::string& key);

 private:
  struct Lease {
    int64_t ttl_s;
    int64_t deadline_ms;
  };
  Status CheckLocked() REQUIRES(mu_);  // expires leases; Unavailable if cut off
  void WriteLocked(const std::string& key, const std::string& value, int64_t lease) REQUIRES(mu_);
  void DropLeaseLocked(int64_t lease_id) REQUIRES(mu_);

  std::function<int64_t()> now_ms_;
  Mutex mu_;
  bool unavailable_ GUARDED_BY(mu_) = false;
  int64_t revision_ GUARDED_BY(mu_) = 1;
  int64_t next_lease_ GUARDED_BY(mu_) = 1000;
  std::map<std::string, KeyValue> kv_ GUARDED_BY(mu_);
  std::map<int64_t, Lease> leases_ GUARDED_BY(mu_);
};

}  // namespace faha::coord

#endif  // FAHA_COORD_MEMORY_COORDINATOR_H_
