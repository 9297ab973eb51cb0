// ReplicationHook: what the engine's write path asks of a replicated
// primary's replicator (server/replication/ implements it). The engine never
// includes replication/: this interface is the seam, so the dependency runs
// one way (replication -> engine).
#ifndef FAHA_SERVER_ENGINE_REPLICATION_HOOK_H_
#define FAHA_SERVER_ENGINE_REPLICATION_HOOK_H_

#include <cstdint>
#include <memory>
#include <string>

#include "faha/status.h"
#include "nvm/log_format.h"

namespace faha {

class ReplicationHook {
 public:
  virtual ~ReplicationHook() = default;
  // The committing thread (the sequencer, or an I/O thread committing inline,
  // which passes deadline 0: never waits): waits until one more batch may be
  // shipped; Unavailable at the deadline (MonoUs), saying why. A failure of
  // this or WaitDurable is the writes' NOREPLICAS (WriteResult::NoReplicas
  // adds the word).
  virtual Status WaitWritable(int64_t deadline_us) = 0;
  // Bytes before a batch's payload in the buffer handed to Ship: room for a
  // replication frame's header (40 bytes) and the batch's header.
  static constexpr size_t kShipHeadRoom = 40 + sizeof(nvm::BatchHeader);
  // The committing thread: hands one batch to every backup. `frame` holds
  // kShipHeadRoom bytes of room, then the batch's payload: Ship fills in the
  // headers and keeps it as the frame, not copied. Returns the frame, to read
  // the payload from.
  virtual std::shared_ptr<const std::string> Ship(const nvm::BatchHeader& header,
                                                  std::string frame) = 0;
  // The committing thread: the buffer of a frame no backup is sent any more,
  // for the next batch to be built in (its memory is warm; BatchBuilder::Release
  // empties it), or an empty string.
  virtual std::string SpareBuffer() = 0;
  // Committer: waits until every in-sync backup holds LSNs below end_lsn
  // durably (0: no deadline); Unavailable, saying why, if it cannot.
  virtual Status WaitDurable(uint64_t end_lsn, int64_t deadline_us) = 0;
  // Committer: LSNs below end_lsn are visible; their frames may be dropped.
  virtual void Committed(uint64_t end_lsn) = 0;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_REPLICATION_HOOK_H_
