// Active expiry: keys whose time has passed leave the keyspace (DBSIZE, INFO,
// memory, and the log once the cleaner reclaims their records) without being
// read. As Redis's expire cycle: every 100 ms a thread samples the index from
// where it stopped, and deletes what it found expired, for at most 25 ms a
// pass while more than a quarter of a sample was expired. The deletions are
// ordinary writes (durable, and replicated to the backups, which never expire
// keys themselves): a key written meanwhile is left alone, since each deletion
// checks, when it is evaluated, that the key is still expired. Writes never
// wait for it: it only queues writes.
#ifndef FAHA_SERVER_COMMANDS_ACTIVE_EXPIRY_H_
#define FAHA_SERVER_COMMANDS_ACTIVE_EXPIRY_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/threads.h"
#include "server/engine/write_op.h"

namespace faha {

class CommandHost;

class ActiveExpiry final : public CompletionSink {
 public:
  ActiveExpiry() = default;
  ~ActiveExpiry() override { Stop(); }
  void Start(CommandHost* host);
  void Stop() { thread_.Stop(); }
  // Keys deleted so far (INFO's expired_keys counts these and none read expired).
  uint64_t expired() const { return expired_.load(std::memory_order_relaxed); }
  // One pass (also for tests): returns the keys whose deletion it queued.
  size_t Pass();

  void Deliver(std::vector<Completion>* completions) override;

 private:
  CommandHost* host_ = nullptr;
  uint64_t cursor_ = 0;  // the thread's
  std::atomic<uint64_t> expired_{0};
  PeriodicThread thread_;
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_ACTIVE_EXPIRY_H_
