// ReplicationHook: what the engine's write path asks of a replicated
// primary's replicator (server/replication/ implements it). The engine never
// includes replication/: this interface is the seam, so the dependency runs
// one way (replication -> engine).
#ifndef FAHA_SERVER_ENGINE_REPLICATION_HOOK_H_
#define FAHA_SERVER_ENGINE_REPLICATION_HOOK_H_

#include <cstdint>
#include <string_view>

#include "faha/status.h"
#include "nvm/log_format.h"

namespace faha {

class ReplicationHook {
 public:
  virtual ~ReplicationHook() = default;
  // Sequencer: waits until one more batch may be shipped; Unavailable at the
  // deadline (MonoUs), saying why. A failure of this or WaitDurable is the
  // writes' NOREPLICAS (WriteResult::NoReplicas adds the word).
  virtual Status WaitWritable(int64_t deadline_us) = 0;
  // Sequencer: hands one batch, framed with its header, to every backup.
  virtual void Ship(const nvm::BatchHeader& header, std::string_view payload) = 0;
  // Committer: waits until every in-sync backup holds LSNs below end_lsn
  // durably (0: no deadline); Unavailable, saying why, if it cannot.
  virtual Status WaitDurable(uint64_t end_lsn, int64_t deadline_us) = 0;
  // Committer: LSNs below end_lsn are visible; their frames may be dropped.
  virtual void Committed(uint64_t end_lsn) = 0;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_REPLICATION_HOOK_H_
