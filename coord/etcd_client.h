// EtcdClient: a blocking etcd v3 client that speaks to etcd's JSON gateway
// (POST /v3/kv/*, /v3/lease/*) over HTTP with libcurl: gets, prefix scans,
// puts, deletes, a one-txn compare-and-swap, and leases. Every call is one or
// more HTTP round trips bounded in total by the timeout given to Create(); with
// several endpoints, a call moves to the next endpoint only when retrying
// cannot apply it twice (the request never left, or the call is idempotent).
// Errors: Unavailable = etcd could not be reached (a write was not sent, so
// not applied); Timeout = a write's outcome is unknown (sent but unanswered in
// time, or etcd said "request timed out" / "leader changed"); otherwise the
// Status carries etcd's own message (NotFound, InvalidArgument, ...); Protocol
// = the gateway's answer was not understood. Nothing throws.
// Thread-safe: all calls serialize on one mutex around a single CURL easy
// handle, so a client may be shared, but calls from different threads queue
// behind each other.
#ifndef FAHA_COORD_ETCD_CLIENT_H_
#define FAHA_COORD_ETCD_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "coord/coordinator.h"
#include "faha/status.h"

namespace faha::coord {

class EtcdClient final : public Coordinator {
 public:
  // endpoints: "http://127.0.0.1:2379", or a comma-separated list tried in
  // order; after a failover, later calls start at the endpoint that answered.
  // Every call is bounded by timeout_ms (> 0). Does not contact etcd.
  static StatusOr<std::unique_ptr<EtcdClient>> Create(const std::string& endpoints, int timeout_ms);
  ~EtcdClient() override;
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Grants a lease of ttl_s (> 0) seconds; *granted_ttl_s (if non-null) = the
  // TTL etcd actually granted (etcd raises it to its minimum, about 1.5
  // election timeouts). Returns the lease ID.
  StatusOr<int64_t> GrantLease(int64_t ttl_s, int64_t* granted_ttl_s) override;
  // One keepalive round trip; returns the remaining TTL in seconds (the full
  // granted TTL again). NotFound if the lease no longer exists (expired or revoked).
  StatusOr<int64_t> KeepAliveOnce(int64_t lease_id) override;
  // Revokes the lease, deleting its keys; OK also if the lease was already gone.
  Status RevokeLease(int64_t lease_id) override;
  // Remaining TTL in seconds, or NotFound if the lease is gone.
  StatusOr<int64_t> LeaseTimeToLive(int64_t lease_id);

  // The key, or std::nullopt if absent.
  StatusOr<std::optional<KeyValue>> Get(const std::string& key) override;
  // All keys that start with `prefix`, in key order ("" = every key).
  StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix) override;
  // Plain put (lease 0 = none). NotFound if `lease` does not exist.
  Status Put(const std::string& key, const std::string& value, int64_t lease) override;
  Status Put(const std::string& key, const std::string& value) { return Put(key, value, 0); }
  // Atomic compare-and-swap in one etcd txn: writes `value` (with `lease`, 0 =
  // none) iff the key's mod_revision equals expected_mod_revision, where 0 means
  // "the key must not exist". Returns true if written. If the compare failed,
  // returns false and, when `current` is non-null, fills it with the key's
  // value as of that txn (std::nullopt if absent).
  StatusOr<bool> CompareAndSwap(const std::string& key, int64_t expected_mod_revision,
                                const std::string& value, int64_t lease,
                                std::optional<KeyValue>* current) override;
  // Deletes the key; OK also if it was absent.
  Status Delete(const std::string& key) override;

  // The endpoint last used (the first one before any call). The reference
  // stays valid for the client's lifetime.
  const std::string& endpoint() const;

 private:
  struct CurlHandle;  // the libcurl easy handle and its header list
  // Whether a failed call may be sent again to the next endpoint: kAlways for
  // calls that are harmless to repeat, kIfNotSent for writes.
  enum class Retry { kIfNotSent, kAlways };

  EtcdClient(std::vector<std::string> endpoints, int timeout_ms, std::unique_ptr<CurlHandle> curl);

  // POSTs `request` to `path` (e.g. "/v3/kv/range"), starting at the
  // endpoint last used and failing over as `retry` allows, and returns etcd's
  // response object if etcd answered 200 without an error. A `streaming`
  // endpoint's answer is the first message of the stream, unwrapped from its
  // {"result": ...} envelope.
  StatusOr<nlohmann::json> Call(std::string_view path, const nlohmann::json& request, Retry retry,
                                bool streaming = false);

  const std::vector<std::string> endpoints_;
  const int timeout_ms_;
  mutable Mutex mu_;
  std::unique_ptr<CurlHandle> curl_ GUARDED_BY(mu_);
  size_t current_ GUARDED_BY(mu_) = 0;  // index into endpoints_ of the endpoint last used
};

}  // namespace faha::coord

#endif  // FAHA_COORD_ETCD_CLIENT_H_
