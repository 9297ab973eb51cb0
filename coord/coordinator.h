// Coordinator: the strongly consistent store a cluster node is coordinated
// through: keys with revisions, a one-key compare-and-swap, and leases whose
// keys vanish when they expire. EtcdClient (etcd_client.h) is the one the
// product uses; MemoryCoordinator (memory_coordinator.h) is the in-process one
// of tests. The semantics are etcd's v3 ones, as EtcdClient documents them.
#ifndef FAHA_COORD_COORDINATOR_H_
#define FAHA_COORD_COORDINATOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "faha/status.h"

namespace faha::coord {

// One key as etcd stores it. Keys and values are arbitrary bytes.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;  // 0: not attached to a lease
};

class Coordinator {
 public:
  virtual ~Coordinator() = default;
  // Grants a lease of ttl_s (> 0) seconds; *granted_ttl_s (if non-null) = the
  // TTL actually granted. Returns the lease ID.
  virtual StatusOr<int64_t> GrantLease(int64_t ttl_s, int64_t* granted_ttl_s) = 0;
  // Renews the lease; returns its TTL. NotFound if it expired or was revoked.
  virtual StatusOr<int64_t> KeepAliveOnce(int64_t lease_id) = 0;
  // Revokes the lease, deleting its keys; OK also if it was already gone.
  virtual Status RevokeLease(int64_t lease_id) = 0;
  // The key, or std::nullopt if absent.
  virtual StatusOr<std::optional<KeyValue>> Get(const std::string& key) = 0;
  // All keys that start with `prefix`, in key order.
  virtual StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix) = 0;
  // Plain put (lease 0 = none). NotFound if `lease` does not exist.
  virtual Status Put(const std::string& key, const std::string& value, int64_t lease) = 0;
  // Writes `value` (with `lease`) iff the key's mod_revision equals
  // expected_mod_revision (0: the key must not exist); true if written. If
  // not, *current (when non-null) gets the key as it is (nullopt if absent).
  virtual StatusOr<bool> CompareAndSwap(const std::string& key, int64_t expected_mod_revision,
                                        const std::string& value, int64_t lease,
                                        std::optional<KeyValue>* current) = 0;
  // Deletes the key; OK also if it was absent.
  virtual Status Delete(const std::string& key) = 0;
};

}  // namespace faha::coord

#endif  // FAHA_COORD_COORDINATOR_H_
