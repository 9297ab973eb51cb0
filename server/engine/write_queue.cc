// WriteQueue (write_queue.h).
#include "server/engine/write_queue.h"

#include "nvm/log_format.h"

namespace faha {

void WriteQueue::Configure(bool inline_commit, uint32_t max_syncing) {
  MutexLock l(&mu_);
  inline_commit_ = inline_commit;
  max_syncing_ = max_syncing;
}

void WriteQueue::Push(QueuedWrite w) {
  {
    MutexLock l(&mu_);
    queue_.push_back(std::move(w));
  }
  cv_.Signal();
}

void WriteQueue::TakeQueued_l(std::vector<QueuedWrite>* group, bool inline_commit) {
  size_t bytes = 0;
  while (!queue_.empty()) {
    if (inline_commit && queue_.front().op.slow) break;  // for the sequencer
    size_t op_bytes = 64;
    for (const auto& a : queue_.front().op.args) op_bytes += a.size() + sizeof(nvm::RecordHeader);
    if (!group->empty() && bytes + op_bytes > max_group_bytes_) break;
    bytes += op_bytes;
    group->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

bool WriteQueue::PushAll(std::vector<QueuedWrite>* writes, std::vector<QueuedWrite>* group) {
  if (writes->empty()) return false;
  {
    MutexLock l(&mu_);
    if (stopping_) {
      writes->clear();
      return false;
    }
    for (auto& w : *writes) queue_.push_back(std::move(w));
    writes->clear();
    // Whoever is committing takes these next (the sequencer) or hands them
    // on when done (an inline committer): no wake-up needed meanwhile. The
    // same when as many syncs as the log allows are in flight: the first to
    // finish wakes the sequencer.
    if (committing_ || syncing_ >= max_syncing_) return false;
    if (inline_commit_) {
      // Nobody is committing: this thread commits the group itself instead
      // of waking the sequencer and being woken back (two thread hand-offs
      // per write).
      committing_ = true;
      TakeQueued_l(group, /*inline_commit=*/true);
      if (!group->empty()) return true;
      committing_ = false;  // a slow write first: the sequencer's
    }
  }
  cv_.Signal();
  return false;
}

bool WriteQueue::TakeGroup(std::vector<QueuedWrite>* group) {
  MutexLock l(&mu_);
  cv_.Wait(&mu_, [&]() REQUIRES(mu_) {
    return sync_wanted_ ||
           (!committing_ && syncing_ < max_syncing_ && (stopping_ || !queue_.empty()));
  });
  if (sync_wanted_) {
    sync_wanted_ = false;
    return true;  // *group empty: the caller syncs
  }
  if (queue_.empty()) return false;  // stopping, and everything is committed
  committing_ = true;
  TakeQueued_l(group, /*inline_commit=*/false);
  return true;
}

void WriteQueue::RequestSync() {
  {
    MutexLock l(&mu_);
    sync_wanted_ = true;
  }
  cv_.Signal();
}

void WriteQueue::PutBack(std::vector<QueuedWrite>* rest) {
  MutexLock l(&mu_);
  for (size_t j = rest->size(); j > 0; j--) queue_.push_front(std::move((*rest)[j - 1]));
  rest->clear();
}

void WriteQueue::ReleaseCommitting() {
  bool more;
  {
    MutexLock l(&mu_);
    committing_ = false;
    more = !queue_.empty() || stopping_;
  }
  // Writes that arrived meanwhile go to the sequencer: an inline committer
  // returns to send its replies rather than wait for one more sync.
  if (more) cv_.Signal();
}

uint64_t WriteQueue::BeginSync() {
  uint64_t ticket;
  bool waiting;
  {
    MutexLock l(&mu_);
    ticket = next_ticket_++;
    syncing_++;
    committing_ = false;
    waiting = !queue_.empty() && syncing_ < max_syncing_;
  }
  if (waiting) cv_.Signal();  // the sequencer may take the next group meanwhile
  return ticket;
}

void WriteQueue::WaitTurn(uint64_t ticket) {
  MutexLock l(&mu_);
  publish_cv_.Wait(&mu_, [&]() REQUIRES(mu_) { return published_ticket_ == ticket; });
}

void WriteQueue::EndSync() {
  // Notified under the lock: once WaitIdle sees syncing_ reach 0 the queue
  // may be destroyed, condition variables included.
  MutexLock l(&mu_);
  published_ticket_++;
  syncing_--;
  if (syncing_ > 0 || stopping_) publish_cv_.SignalAll();  // a later group, or WaitIdle
  if ((!queue_.empty() && !committing_) || stopping_) cv_.Signal();
}

void WriteQueue::Stop() {
  {
    MutexLock l(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
}

void WriteQueue::WaitIdle() {
  MutexLock l(&mu_);
  publish_cv_.Wait(&mu_, [&]() REQUIRES(mu_) { return !committing_ && syncing_ == 0; });
}

}  // namespace faha
