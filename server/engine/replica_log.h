// ReplicaLog: what a backup's replication service asks of the engine: append
// the primary's batches byte for byte, persist and publish them, drop an
// uncommitted suffix, and learn what the primary committed. Store implements
// it; server/replication/ depends on this interface, not on the Store class.
#ifndef FAHA_SERVER_ENGINE_REPLICA_LOG_H_
#define FAHA_SERVER_ENGINE_REPLICA_LOG_H_

#include <cstdint>
#include <string_view>

#include "faha/status.h"
#include "nvm/log.h"

namespace faha {

class ReplicaLog {
 public:
  virtual ~ReplicaLog() = default;
  // This node is a backup from now on (cleaning judges by the commit hint).
  virtual void SetBackup() = 0;
  // Appends one batch as received; durable once PersistReplicated returns,
  // visible to readers once published. From the one applying thread.
  virtual StatusOr<nvm::Log::AppendResult> AppendReplicated(const nvm::BatchHeader& header,
                                                            std::string_view payload) = 0;
  virtual Status PersistReplicated() = 0;
  virtual void PublishReplicated(const nvm::Log::AppendResult& appended) = 0;
  // Drops the log from the batch at `lsn` on and rebuilds what depends on it.
  virtual Status TruncateLog(uint64_t lsn) = 0;
  // What the primary said is committed (its heartbeats).
  virtual void SetCommitHint(uint64_t committed_lsn) = 0;
  // The last LSN visible to readers.
  virtual uint64_t committed_lsn() const = 0;
  virtual const nvm::Log& log() const = 0;
  // A persist failed: the log's end may hold batches that are not durable,
  // so this node acknowledges nothing more and holds no copy to elect.
  virtual bool failed() const = 0;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_REPLICA_LOG_H_
