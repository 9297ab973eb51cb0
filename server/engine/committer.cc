// Committer (committer.h): the faha-committer thread.
#include "server/engine/committer.h"

#include <pthread.h>

#include <vector>

#include "common/clock.h"

namespace faha {

void Committer::Start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "faha-committer");
    Loop_ct();
  });
}

bool Committer::Queue(Batch b) {
  bool next;
  {
    MutexLock l(&mu_);
    next = batches_.empty();
    batches_.push_back(std::move(b));
  }
  cv_.Signal();
  return next;
}

void Committer::Finish() {
  {
    MutexLock l(&mu_);
    done_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

// A batch whose outcome is unknown (in our log, maybe on some backups, not
// covered in time): each reply that was not an error already becomes
// NOREPLICAS.
void Committer::AnswerInDoubt_ct(Batch* b, const std::string& why) {
  for (auto& [sink, completions] : b->replies) {
    for (auto& c : completions) {
      if (c.result.kind != WriteResult::Kind::kError) c.result = WriteResult::NoReplicas(why);
    }
  }
  DeliverAll(&b->replies);
  b->replied = true;
}

// The batches behind the oldest, in order, whose own wait is over (one
// without records at once: it only waited behind the others).
void Committer::AnswerExpired_ct(const std::string& why) {
  std::vector<Batch*> expired;
  const int64_t now = MonoUs();
  {
    MutexLock l(&mu_);
    for (size_t i = 1; i < batches_.size(); i++) {
      Batch* b = &batches_[i];
      if (b->replied) continue;
      if (b->bytes > 0 && now < b->shipped_us + timeout_us_) break;
      expired.push_back(b);
    }
  }
  for (Batch* b : expired) AnswerInDoubt_ct(b, why);
}

// A batch our own log failed to make durable, or one behind it: neither
// published nor acknowledged. Every reply becomes -IOERR, as on a single node
// (a reply may rest on the failed batch's writes).
void Committer::AnswerFailed_ct(Batch* b, const Status& why) {
  if (b->replied) return;
  for (auto& [sink, completions] : b->replies) {
    for (auto& c : completions) {
      c.result = WriteResult::IoError(
          "write not acknowledged, it may or may not survive a restart: " + why.ToString());
    }
  }
  DeliverAll(&b->replies);
  b->replied = true;
}

void Committer::Loop_ct() {
  while (true) {
    Batch* b;
    bool done;
    {
      MutexLock l(&mu_);
      cv_.Wait(&mu_, [&]() REQUIRES(mu_) { return done_ || !batches_.empty(); });
      if (batches_.empty()) return;
      b = &batches_.front();
      done = done_;
    }
    if (!b->persisted) {
      Status own = persist_ ? persist_(*b) : Status::OK();
      if (!own.ok()) {
        AnswerFailed_ct(b, own);
        MutexLock l(&mu_);
        batches_.pop_front();
        continue;
      }
      b->persisted = true;
    }
    // Once the oldest batch is answered, look at the ones behind it every
    // 100 ms; finishing, do not wait for it at all.
    const int64_t deadline =
        b->replied ? MonoUs() + (done ? 0 : 100000) : b->shipped_us + timeout_us_;
    // A batch without records only keeps its replies behind the earlier ones.
    Status s = b->bytes == 0 ? Status::OK() : repl_->WaitDurable(b->end_lsn, deadline);
    if (s.ok()) {
      if (b->bytes > 0) {
        publish_(*b);
        repl_->Committed(b->end_lsn);
      }
      if (!b->replied) DeliverAll(&b->replies);
    } else {
      if (!b->replied) AnswerInDoubt_ct(b, s.message());
      AnswerExpired_ct(s.message());
      if (!done) continue;
      // Finishing: what was never covered stays in the log.
    }
    MutexLock l(&mu_);
    batches_.pop_front();
  }
}

}  // namespace faha
