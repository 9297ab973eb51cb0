// WriteQueue: the writes submitted and not yet taken, and who may commit.
// One group commits at a time: the thread that takes a group (the sequencer,
// or a submitting thread when nobody is committing, as leveldb's first writer
// does) is "committing" until it gives that back. On a single node up to
// max_syncing groups may be written and syncing at once; tickets keep their
// publication in the order they were written.
// Thread-safety: every method takes the queue's own lock, held by nothing else.
#ifndef FAHA_SERVER_ENGINE_WRITE_QUEUE_H_
#define FAHA_SERVER_ENGINE_WRITE_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "server/engine/write_op.h"

namespace faha {

struct QueuedWrite {
  WriteOp op;
  CompletionSink* sink;
  uint64_t conn_id;
};

class WriteQueue {
 public:
  // A group taken holds about max_group_bytes of writes (at least one).
  explicit WriteQueue(size_t max_group_bytes) : max_group_bytes_(max_group_bytes) {}

  // Before any write: whether a submitting thread may commit inline (the
  // Store always lets it; a replicated primary's puts a group it may not ship
  // at once back, PutBack), and how many written groups may sync at once.
  void Configure(bool inline_commit, uint32_t max_syncing);

  void Push(QueuedWrite w);
  // Queues all of *writes in order (one lock, at most one wake-up) and
  // clears it. True when the caller is to commit *group itself: it is
  // committing now. After Stop() the writes are dropped, never answered.
  bool PushAll(std::vector<QueuedWrite>* writes, std::vector<QueuedWrite>* group);
  // The sequencer: waits until a group may be committed and takes it (the
  // caller is committing then), or until a sync is asked for (RequestSync:
  // true with *group empty, and the caller is not committing). False once
  // stopping and nothing is queued.
  bool TakeGroup(std::vector<QueuedWrite>* group);
  // A replicated primary's last batch waits for a sync that its committer
  // cannot make at once (busy with an earlier batch): wakes the sequencer
  // to make it.
  void RequestSync();
  // The committing thread cut its group short: `rest` goes back in front.
  void PutBack(std::vector<QueuedWrite>* rest);
  // The committing thread is done; the sequencer wakes if writes wait.
  void ReleaseCommitting();

  // Single node: the committing thread wrote its group and gives committing
  // back to sync it; returns the group's ticket.
  uint64_t BeginSync();
  // Waits until every group written before `ticket` is published.
  void WaitTurn(uint64_t ticket);
  // The group of the current ticket is published (or failed) and answered.
  void EndSync();

  // No group is taken from now on once the queue is empty.
  void Stop();
  // Waits until nobody commits and nothing syncs.
  void WaitIdle();

 private:
  // Takes the queued writes that fit a group; an inline committer stops
  // before a slow one.
  void TakeQueued_l(std::vector<QueuedWrite>* group, bool inline_commit) REQUIRES(mu_);

  const size_t max_group_bytes_;
  Mutex mu_;
  CondVar cv_;          // the sequencer waits here
  CondVar publish_cv_;  // syncing groups wait for their turn, Stop for idle
  std::deque<QueuedWrite> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  bool committing_ GUARDED_BY(mu_) = false;
  bool inline_commit_ GUARDED_BY(mu_) = false;
  bool sync_wanted_ GUARDED_BY(mu_) = false;
  uint32_t max_syncing_ GUARDED_BY(mu_) = 1;
  uint32_t syncing_ GUARDED_BY(mu_) = 0;
  uint64_t next_ticket_ GUARDED_BY(mu_) = 0;
  uint64_t published_ticket_ GUARDED_BY(mu_) = 0;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_WRITE_QUEUE_H_
