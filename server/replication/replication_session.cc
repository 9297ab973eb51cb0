// A primary's session with one backup (Replicator): the HELLO and the check
// that the backup's log is a prefix of the primary's, catch-up from the log,
// shipping the ring of batches, heartbeats, and the acknowledgements.
#include <pthread.h>

#include <algorithm>
#include <cstring>

#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/net.h"
#include "common/resp.h"
#include "common/threads.h"
#include "server/replication/replication.h"

namespace faha {

using rdma::FrameType;

Status Replicator::CheckJoinPoint(uint64_t backup_next, uint64_t last_first, uint64_t last_checksum,
                                  uint64_t last_epoch, uint64_t* truncate_to) {
  *truncate_to = 0;
  bool cleaned = false;
  Status same = CheckPrefix(backup_next, last_first, last_checksum, &cleaned);
  if (!same.ok() && cleaned) {
    // Our log no longer holds that batch as it was: cleaning compacted it.
    // The backup starts over from our first LSN (a full copy).
    *truncate_to = 1;
    return same;
  }
  if (same.ok() || options_.history.empty() || backup_next <= 1 || last_epoch >= options_.epoch) {
    return same;
  }
  // The backup's log holds a suffix of an older epoch that was never
  // committed: batches of epoch e are ours only below the first LSN of the
  // epoch after e. Without a history reaching back to e: start over.
  uint64_t cut = 1;
  if (options_.history.front().first <= last_epoch) {
    for (const auto& [e, start] : options_.history) {
      if (e > last_epoch) {
        cut = start;
        break;
      }
    }
  }
  if (cut >= backup_next) cut = 1;
  *truncate_to = cut;
  return Status::InvalidArgument(
      "the backup's log (last batch at LSN " + std::to_string(last_first) + ", epoch " +
      std::to_string(last_epoch) + ") diverges from this primary's (" + same.message() +
      "); it must truncate its log to LSN " + std::to_string(cut) + " and catch up");
}

Status Replicator::CheckPrefix(uint64_t backup_next, uint64_t last_first, uint64_t last_checksum,
                               bool* cleaned) {
  *cleaned = false;
  {
    MutexLock l(&mu_);
    if (backup_next > ship_end_) {
      return Status::InvalidArgument(
          "the backup's log reaches LSN " + std::to_string(backup_next - 1) +
          ", beyond this primary's " + std::to_string(ship_end_ - 1) +
          ": it holds writes this primary does not have; wipe its data directory or promote it");
    }
    if (backup_next == 1) return Status::OK();
    for (const auto& s : ring_) {
      if (s.first_lsn == last_first) {
        nvm::BatchHeader h;
        std::memcpy(&h, s.frame->data() + sizeof(rdma::ReplFrameHeader), sizeof(h));
        if (h.checksum == last_checksum && s.end_lsn == backup_next) return Status::OK();
        return Status::InvalidArgument("the backup's batch at LSN " + std::to_string(last_first) +
                                       " differs from ours");
      }
    }
  }
  bool same = false, found = false;
  auto r = log_->ForEachBatch(
      last_first, last_first + 1, 1, [&](const nvm::BatchHeader& h, std::string_view) {
        found = true;
        *cleaned = nvm::IsCompacted(h);
        same = h.checksum == last_checksum && nvm::BatchEndLsn(h) == backup_next;
      });
  // Inside a batch of ours: a compacted one (ordinary batches are the same on
  // every node, and the backup's last batch was one of them).
  if (!r.ok() && r.status().code() == Status::Code::kNotFound) *cleaned = true;
  if (*cleaned) {
    return Status::InvalidArgument("the backup's log ends at LSN " +
                                   std::to_string(backup_next - 1) +
                                   ", in a part of this primary's log that log cleaning "
                                   "compacted since; it starts over with a full copy");
  }
  if (!r.ok() || !found || !same) {
    return Status::InvalidArgument(
        "the backup's log diverges from this primary's at LSN " + std::to_string(last_first) +
        (r.ok() ? "" : " (" + r.status().message() + ")") + "; wipe its data directory");
  }
  return Status::OK();
}

void Replicator::PeerLoop(Peer* peer) {
  SetThreadName("faha-repl-out");
  int backoff_ms = 50;
  std::string logged_error;
  while (true) {
    {
      MutexLock l(&mu_);
      if (stopping_) return;
      peer->state = "connecting";
      peer->kick = false;
      peer->session_dead = false;
    }
    Status s;
    auto ch = transport_->Connect(peer->address, options_.connect_timeout_ms);
    if (!ch.ok()) {
      s = ch.status();
    } else {
      // A session that ends at once (the backup refuses it: its log failed,
      // a stale epoch) is retried with the backoff, not every 50 ms.
      const int64_t started_us = MonoUs();
      s = RunSession(peer, ch->get());
      if (MonoUs() - started_us > 1000 * 1000) {
        backoff_ms = 50;
        logged_error.clear();  // a cause seen before a good session is news again
      }
    }
    {
      MutexLock l(&mu_);
      bool was_in_sync = peer->in_sync;
      peer->connected = false;
      // In cluster mode it stays in the set (commits wait for it) until
      // removed from the configuration.
      if (!cluster_mode()) peer->in_sync = false;
      if (peer->state != "dropped") peer->state = "disconnected";
      if (!s.ok() && !stopping_) peer->last_error = s.message();
      if (was_in_sync && !stopping_ && (s.ok() || s.message() != logged_error)) {
        FAHA_LOG_WARN("replication: backup %s left the in-sync set: %s", peer->address.c_str(),
                      peer->last_error.c_str());
      }
      if (stopping_) return;
    }
    cv_.SignalAll();
    send_cv_.SignalAll();
    if (!s.ok() && s.message() != logged_error) {
      FAHA_LOG_WARN("replication: backup %s: %s (retrying)", peer->address.c_str(),
                    s.ToString().c_str());
      logged_error = s.message();
    }
    MutexLock l(&mu_);
    cv_.WaitFor(&mu_, std::chrono::milliseconds(backoff_ms),
                [&]() REQUIRES(mu_) { return stopping_; });
    backoff_ms = std::min(backoff_ms * 2, 1000);
  }
}

Status Replicator::OpenSession(Peer* peer, rdma::Channel* ch, uint64_t ship_end,
                               uint64_t* backup_next) {
  const int timeout = SendTimeoutMs();
  std::string out;
  rdma::EncodeFrame(&out, FrameType::kHello, options_.epoch, ship_end, options_.advertise);
  FAHA_RETURN_IF_ERROR(ch->Send(out, timeout));
  auto reply = ch->Receive(timeout);
  if (!reply.ok()) return reply.status();
  if (reply->type == FrameType::kError) {
    return Status::InvalidArgument("refused: " + std::string(reply->body));
  }
  if (reply->type != FrameType::kHello || reply->body.size() < sizeof(rdma::HelloReply) ||
      reply->epoch != options_.epoch || reply->lsn == 0) {
    return Status::Protocol("unexpected answer to HELLO");
  }
  rdma::HelloReply jp;
  std::memcpy(&jp, reply->body.data(), sizeof(jp));
  *backup_next = reply->lsn;
  uint64_t truncate_to = 0;
  Status join = CheckJoinPoint(*backup_next, jp.last_first_lsn, jp.last_checksum, jp.last_epoch,
                               &truncate_to);
  if (!join.ok()) {
    out.clear();
    if (truncate_to != 0) {
      FAHA_LOG_WARN("replication: backup %s: %s", peer->address.c_str(), join.message().c_str());
      rdma::EncodeFrame(&out, FrameType::kTruncate, options_.epoch, truncate_to, {});
    } else {
      rdma::EncodeFrame(&out, FrameType::kError, options_.epoch, 0, join.message());
    }
    ch->Send(out, 200).IgnoreError();  // the peer learns why, or reconnects and asks again
    return join;
  }
  {
    MutexLock l(&mu_);
    peer->connected = true;
    peer->sessions++;
    peer->send_next = *backup_next;
    peer->acked_end = *backup_next;
    peer->last_ack_us = MonoUs();
    peer->state = *backup_next < ship_end_ ? "catching up" : "connected";
    MaybeJoinLocked(peer);
  }
  // Its acknowledged end was set above without an acknowledgement: in cluster
  // mode a backup stays in sync while it reconnects, and what it holds may
  // now cover a batch the committer waits for (ReceiveAcks wakes it only when
  // an acknowledgement raises the lowest in-sync end).
  cv_.SignalAll();
  FAHA_LOG_INFO("replication: connected to backup %s at its LSN %llu (ours %llu)",
                peer->address.c_str(), static_cast<unsigned long long>(*backup_next - 1),
                static_cast<unsigned long long>(ship_end - 1));
  return Status::OK();
}

Status Replicator::SendCatchUp(Peer* peer, rdma::Channel* ch, uint64_t from, uint64_t limit,
                               bool full_copy, std::string* buf) {
  const int timeout = SendTimeoutMs();
  buf->clear();
  bool cleaned = false;
  auto next = log_->ForEachBatch(
      from, limit, options_.catchup_chunk_bytes,
      [&](const nvm::BatchHeader& h, std::string_view payload) {
        // Compacted batches go only to a backup that starts from nothing:
        // they dropped records that a longer log could still hold.
        if (nvm::IsCompacted(h) && full_copy == false) cleaned = true;
        if (cleaned) return;
        rdma::EncodeFrame(buf, FrameType::kBatch, options_.epoch, h.first_lsn,
                          std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), payload);
      });
  if (cleaned || (!next.ok() && next.status().code() == Status::Code::kNotFound)) {
    // Cleaning compacted what this backup still needs: it starts over.
    FAHA_LOG_WARN(
        "replication: backup %s needs LSN %llu, which log cleaning compacted "
        "here; it starts over with a full copy",
        peer->address.c_str(), static_cast<unsigned long long>(from));
    std::string out;
    rdma::EncodeFrame(&out, FrameType::kTruncate, options_.epoch, 1, {});
    ch->Send(out, 200).IgnoreError();  // unsent, the backup reconnects and is told again
    return Status::Unavailable("backup sent back to LSN 1 (cleaned log)");
  }
  if (!next.ok()) {
    return Status::IOError("cannot read our log for catch-up from LSN " + std::to_string(from) +
                           ": " + next.status().message());
  }
  Status sent = ch->Send(*buf, timeout);
  MutexLock l(&mu_);
  peer->send_next = *next;
  return sent;
}

Status Replicator::SendFrames(rdma::Channel* ch,
                              const std::vector<std::shared_ptr<const std::string>>& frames,
                              std::string* buf) {
  const int timeout = SendTimeoutMs();
  if (frames.size() == 1) return ch->Send(*frames[0], timeout);
  buf->clear();
  for (const auto& f : frames) buf->append(*f);
  return ch->Send(*buf, timeout);
}

Replicator::Work Replicator::WaitForWork(Peer* peer, int64_t* last_heartbeat_us, std::string* out) {
  MutexLock l(&mu_);
  while (true) {
    if (stopping_ || peer->kick || peer->session_dead) return Work::kEnded;
    const int64_t now = MonoUs();
    // Due also while batches flow: the echo is this primary's lease.
    const int64_t due = options_.heartbeat_ms > 0
                            ? *last_heartbeat_us + int64_t{options_.heartbeat_ms} * 1000
                            : INT64_MAX;
    // The rest of a frame Ship began goes out before anything, a heartbeat too.
    const bool beat = now >= due && peer->rest == nullptr;
    if (now >= due || peer->rest != nullptr || peer->send_next < ship_end_) {
      if (!peer->sending) {
        peer->sending = true;
        peer->wants_slot = false;
        if (!beat) return Work::kSend;
        // Stamped before it is sent: the echo never claims a later time.
        *last_heartbeat_us = now;
        char stamp[8];
        EncodeFixed<int64_t>(stamp, now);
        out->clear();
        rdma::EncodeFrame(out, FrameType::kHeartbeat, options_.epoch, committed_end_ - 1,
                          std::string_view(stamp, sizeof(stamp)));
        return Work::kHeartbeat;
      }
      // Ship is sending a frame on this channel: it signals when done, and
      // sends no more frames itself until this thread has had its turn.
      peer->wants_slot = true;
      send_cv_.WaitFor(&mu_, std::chrono::milliseconds(kReplPollMs));
    } else if (due == INT64_MAX) {
      send_cv_.Wait(&mu_);
    } else {
      send_cv_.WaitFor(&mu_, std::chrono::microseconds(std::max<int64_t>(due - now, 1)));
    }
  }
}

Status Replicator::SendNext(Peer* peer, rdma::Channel* ch, bool full_copy,
                            std::vector<std::shared_ptr<const std::string>>* frames,
                            std::string* buf) {
  const int timeout = SendTimeoutMs();
  std::shared_ptr<const std::string> rest;
  size_t rest_from = 0;
  uint64_t from, limit = 0;
  frames->clear();
  {
    MutexLock l(&mu_);
    rest = std::move(peer->rest);
    rest_from = peer->rest_from;
    from = peer->send_next;
    if (rest == nullptr && !ring_.empty() && from >= ring_.front().first_lsn) {
      // The ring is contiguous: send the frames from `from` on.
      for (const auto& s : ring_) {
        if (s.first_lsn < from) continue;
        frames->push_back(s.frame);
        peer->send_next = s.end_lsn;
        if (frames->size() >= 64) break;
      }
    } else if (rest == nullptr) {
      limit = ring_.empty() ? ship_end_ : ring_.front().first_lsn;
    }
  }
  // The end of a frame Ship began (nothing else goes out before it), catch-up
  // from our log (everything below `limit` is committed and persisted), or
  // the frames from the ring.
  Status s = rest != nullptr ? ch->Send(std::string_view(*rest).substr(rest_from), timeout)
             : limit != 0    ? SendCatchUp(peer, ch, from, limit, full_copy, buf)
                             : SendFrames(ch, *frames, buf);
  frames->clear();
  return s;
}

Status Replicator::RunSession(Peer* peer, rdma::Channel* ch) {
  uint64_t ship_end;
  {
    MutexLock l(&mu_);
    ship_end = ship_end_;
  }
  uint64_t backup_next = 0;
  FAHA_RETURN_IF_ERROR(OpenSession(peer, ch, ship_end, &backup_next));
  const bool full_copy = backup_next == 1;
  std::thread receiver([this, peer, ch] { ReceiveAcks(peer, ch); });
  if (ch->SendsWithoutWaiting()) {
    MutexLock l(&mu_);
    peer->live = ch;
  }
  Status result;
  std::vector<std::shared_ptr<const std::string>> frames;
  std::string buf;
  std::string out;
  int64_t last_heartbeat_us = 0;  // the first one goes out at once
  while (true) {
    const Work work = WaitForWork(peer, &last_heartbeat_us, &out);
    if (work == Work::kEnded) {
      MutexLock l(&mu_);
      if (!stopping_ && peer->kick) {
        result = Status::Timeout(peer->last_error);
      } else if (!stopping_ && peer->session_dead) {
        result = Status::Unavailable(peer->last_error);
      }
      break;
    }
    Status s = work == Work::kHeartbeat ? ch->Send(out, SendTimeoutMs())
                                        : SendNext(peer, ch, full_copy, &frames, &buf);
    {
      MutexLock l(&mu_);
      peer->sending = false;
      if (!s.ok()) peer->session_dead = true;  // Ship sends nothing more on it
    }
    if (!s.ok()) {
      result = s;
      break;
    }
  }
  {
    // Ship may be sending on this channel: it is not closed before that ends.
    MutexLock l(&mu_);
    peer->session_dead = true;
    peer->live = nullptr;
    while (peer->sending) {
      peer->wants_slot = true;
      send_cv_.WaitFor(&mu_, std::chrono::milliseconds(kReplPollMs));
    }
    peer->wants_slot = false;
    peer->rest.reset();
  }
  receiver.join();
  return result;
}

void Replicator::ReceiveAcks(Peer* peer, rdma::Channel* ch) {
  SetThreadName("faha-repl-in");
  while (true) {
    {
      MutexLock l(&mu_);
      if (stopping_ || peer->session_dead || peer->kick) return;
    }
    auto f = ch->Receive(kReplPollMs);
    if (!f.ok() && f.status().code() == Status::Code::kTimeout) continue;
    MutexLock l(&mu_);
    if (!f.ok()) {
      peer->last_error = f.status().message();
    } else if (f->type == FrameType::kAck && f->epoch == options_.epoch &&
               (f->body.empty() || f->body.size() == 8)) {
      const int64_t echo = f->body.empty() ? 0 : DecodeFixed<int64_t>(f->body.data());
      if (f->lsn + 1 > ship_end_) {
        peer->last_error = "acknowledged LSN " + std::to_string(f->lsn) + " that was never sent";
      } else if (echo > MonoUs()) {
        peer->last_error = "echoed a heartbeat from the future";
      } else {
        // Only the committer waits for acknowledgements, and only for the
        // slowest in-sync backup's: an ack that leaves that unchanged wakes
        // nobody (with two backups, half of them used to wake it for nothing).
        const uint64_t before = peer->in_sync ? InSyncAckedLocked() : 0;
        peer->acked_end = std::max(peer->acked_end, f->lsn + 1);
        peer->last_ack_us = MonoUs();
        if (echo > peer->echo_us) {
          peer->echo_us = echo;
          if (peer->in_sync) UpdateEchoLocked();
        }
        if (!peer->in_sync && peer->acked_end >= ship_end_) peer->state = "connected";
        MaybeJoinLocked(peer);  // signals when it joins
        if (peer->in_sync && InSyncAckedLocked() > before) cv_.SignalAll();
        continue;
      }
    } else if (f->type == FrameType::kError) {
      peer->last_error = "backup refused: " + std::string(f->body.substr(0, 512));
    } else {
      peer->last_error = "unexpected frame type " + std::to_string(static_cast<int>(f->type)) +
                         " or epoch " + std::to_string(f->epoch);
    }
    peer->session_dead = true;
    cv_.SignalAll();
    send_cv_.SignalAll();
    return;
  }
}

}  // namespace faha
