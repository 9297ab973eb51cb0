// Committer: a replicated primary's batches once the committing thread has
// shipped and written them, in LSN order (thread faha-committer). Each is
// made durable in our own log first if the committing thread left that to
// us (Persist: it went back to its connections while we sync, and a failed
// sync answers the batch and every later one -IOERR); then it waits until
// the in-sync backups hold it; then it is published (made
// visible to readers) and its writes answered. A batch not covered within
// --repl_timeout_ms is answered NOREPLICAS (outcome unknown) and stays
// queued: it is published if the backups catch up. While the oldest batch
// waits, the ones behind it are answered in order once their own wait is
// over (checked every 100 ms), so a stalled batch keeps no later writer
// waiting much longer than the timeout. A reply that was an error already
// (a refusal, -IOERR) stays that error.
// See docs/architecture.md, "Write path: group commit".
#ifndef FAHA_SERVER_ENGINE_COMMITTER_H_
#define FAHA_SERVER_ENGINE_COMMITTER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "faha/status.h"
#include "server/engine/replication_hook.h"
#include "server/engine/write_op.h"

namespace faha {

class Committer {
 public:
  struct Batch {
    uint64_t end_lsn;        // LSN after the batch's last record
    uint64_t base_location;  // of its payload in the log
    size_t bytes;            // 0: no records (writes that changed nothing, or refused ones)
    int64_t shipped_us;
    Replies replies;
    bool replied = false;  // an error went out already (outcome unknown to the client)
    uint64_t first_lsn = 0;
    size_t unsynced_bytes = 0;  // of the batch in our own log, written but not yet durable
    bool persisted = false;     // Persist returned OK for it
  };
  // Makes a covered batch visible, on the committer thread, in LSN order.
  using Publish = std::function<void(const Batch&)>;
  // Makes a batch durable in our own log (unsynced_bytes), or says why it is
  // not (an earlier one failed): called once for every batch, in LSN order.
  using Persist = std::function<Status(const Batch&)>;

  Committer(ReplicationHook* repl, int timeout_ms, Publish publish, Persist persist)
      : repl_(repl),
        timeout_us_(static_cast<int64_t>(timeout_ms) * 1000),
        publish_(std::move(publish)),
        persist_(std::move(persist)) {}
  ~Committer() { Finish(); }
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  void Start();
  // Queues a batch behind the others (the committing thread, in LSN order).
  // True if none was queued or in hand: the committer takes this one next.
  bool Queue(Batch b);
  // Nothing more will be queued: waits for every batch to be covered or
  // answered, then stops the thread. What was never covered stays in the
  // log; a restart ships it to the backups again.
  void Finish();

 private:
  void Loop_ct();
  void AnswerInDoubt_ct(Batch* b, const std::string& why);
  void AnswerExpired_ct(const std::string& why);
  void AnswerFailed_ct(Batch* b, const Status& why);

  ReplicationHook* const repl_;
  const int64_t timeout_us_;
  const Publish publish_;
  const Persist persist_;
  Mutex mu_;
  CondVar cv_;
  // Only the committer thread pops; push_back keeps references valid.
  std::deque<Batch> batches_ GUARDED_BY(mu_);
  bool done_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_COMMITTER_H_
