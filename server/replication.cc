#include "server/replication.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>

#include "common/clock.h"
#include "common/coding.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/net.h"
#include "common/resp.h"
#include "server/store.h"

namespace faha {

using rdma::FrameType;

namespace {

constexpr int kPollMs = 100;

void SetThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

// Body of the backup's HELLO: its last batch, so the primary can check that
// the backup's log is a prefix of its own.
struct JoinPoint {
  uint64_t last_first_lsn;
  uint64_t last_checksum;
  uint64_t last_epoch;
};
static_assert(sizeof(JoinPoint) == 24);

// "host:port" -> ("host", port); (address, 0) if it is not HOST:PORT (no primary yet).
std::pair<std::string, int> SplitAddress(const std::string& a) {
  std::string host;
  int port = 0;
  if (!net::ParseHostPort(a, &host, &port).ok()) return {a, 0};
  return {host, port};
}

}  // namespace

// ---------------------------------------------------------------- primary

Replicator::Replicator(const ReplicatorOptions& options, std::unique_ptr<rdma::Transport> transport,
                       const nvm::Log* log)
    : options_(options), transport_(std::move(transport)), log_(log) {
  for (const auto& a : options_.backups) {
    auto p = std::make_unique<Peer>();
    p->address = a;
    peers_.push_back(std::move(p));
  }
}

Replicator::~Replicator() { Stop(); }

void Replicator::Start(uint64_t next_lsn) {
  {
    MutexLock l(&mu_);
    ship_end_ = next_lsn;
    committed_end_ = next_lsn;
  }
  MutexLock l(&mu_);
  started_ = true;
  for (auto& p : peers_) StartPeerLocked(p.get());
}

void Replicator::StartPeerLocked(Peer* peer) {
  peer->thread = std::thread([this, peer] { PeerLoop(peer); });
}

void Replicator::AddPeer(const std::string& address) {
  MutexLock l(&mu_);
  if (stopping_) return;
  for (const auto& p : peers_) {
    if (p->address == address) return;
  }
  auto p = std::make_unique<Peer>();
  p->address = address;
  FAHA_LOG_INFO("replication: shipping to a new backup %s", address.c_str());
  if (started_) StartPeerLocked(p.get());
  peers_.push_back(std::move(p));
}

std::vector<std::string> Replicator::PromoteCaughtUp() {
  std::vector<std::string> out;
  MutexLock l(&mu_);
  for (auto& p : peers_) {
    if (p->in_sync || !p->connected || p->kick || p->session_dead) continue;
    if (p->acked_end < committed_end_ || p->acked_end < ship_end_) continue;
    p->in_sync = true;
    p->state = "in sync";
    p->last_error.clear();
    out.push_back(p->address);
    FAHA_LOG_INFO("replication: backup %s caught up at LSN %llu: joins the in-sync set",
                  p->address.c_str(), static_cast<unsigned long long>(p->acked_end - 1));
  }
  if (!out.empty()) {
    UpdateEchoLocked();
    cv_.SignalAll();
    send_cv_.SignalAll();
  }
  return out;
}

void Replicator::UpdateEchoLocked() {
  int64_t oldest = 0;
  bool any = false;
  for (const auto& p : peers_) {
    if (!p->in_sync) continue;
    oldest = any ? std::min(oldest, p->echo_us) : p->echo_us;
    any = true;
  }
  in_sync_echo_us_.store(oldest, std::memory_order_release);
}

std::vector<std::string> Replicator::InSyncAddresses() const {
  std::vector<std::string> out;
  MutexLock l(&mu_);
  for (const auto& p : peers_) {
    if (p->in_sync && !p->leaving) out.push_back(p->address);
  }
  return out;
}

Status Replicator::DropSilent(int silent_ms) {
  MutexLock l(&mu_);
  const int64_t now = MonoUs();
  std::vector<Peer*> silent;
  for (auto& p : peers_) {
    if (p->in_sync && now - p->last_ack_us > int64_t{silent_ms} * 1000) silent.push_back(p.get());
  }
  if (silent.empty()) return Status::OK();
  return DropLocked(silent,
                    "sent nothing for " + std::to_string(silent_ms) + " ms (--repl_timeout_ms)");
}

Status Replicator::DropLocked(const std::vector<Peer*>& laggards, const std::string& why) {
  if (cluster_mode()) {
    std::vector<std::string> addresses;
    for (Peer* p : laggards) {
      addresses.push_back(p->address);
      p->leaving = true;  // not re-added to the configuration meanwhile
    }
    mu_.Unlock();
    Status s = options_.drop_backups(addresses);
    mu_.Lock();
    for (Peer* p : laggards) p->leaving = false;
    if (!s.ok()) {
      return Status::Unavailable("NOREPLICAS cannot remove " + addresses[0] +
                                 " from the in-sync set: " + s.message());
    }
  }
  for (Peer* p : laggards) {
    if (!p->in_sync) continue;
    p->in_sync = false;
    p->kick = true;
    p->state = "dropped";
    p->last_error = why;
    FAHA_LOG_WARN("replication: backup %s %s; dropped from the in-sync set, it must catch up",
                  p->address.c_str(), why.c_str());
  }
  UpdateEchoLocked();
  cv_.SignalAll();
  send_cv_.SignalAll();
  return Status::OK();
}

void Replicator::Stop() {
  {
    MutexLock l(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  send_cv_.SignalAll();
  for (auto& p : peers_) {
    if (p->thread.joinable()) p->thread.join();
  }
}

size_t Replicator::InSyncLocked() const {
  size_t n = 0;
  for (const auto& p : peers_) n += p->in_sync ? 1 : 0;
  return n;
}

size_t Replicator::in_sync_count() const {
  MutexLock l(&mu_);
  return InSyncLocked();
}

bool Replicator::CoveredLocked(uint64_t end_lsn) const {
  size_t n = 0;
  for (const auto& p : peers_) {
    if (!p->in_sync) continue;
    if (p->acked_end < end_lsn) return false;
    n++;
  }
  return n >= options_.min_sync_backups;
}

void Replicator::MaybeJoinLocked(Peer* peer) {
  // Every batch committed so far is on the backup, and every later one will
  // wait for its ack: from here on it counts.
  if (cluster_mode()) return;  // joins through PromoteCaughtUp and the configuration
  if (peer->in_sync || !peer->connected || peer->kick || peer->session_dead) return;
  if (peer->acked_end < committed_end_) return;
  peer->in_sync = true;
  peer->state = "in sync";
  peer->last_error.clear();
  FAHA_LOG_INFO("replication: backup %s joined the in-sync set at LSN %llu (%zu of %zu in sync)",
                peer->address.c_str(), static_cast<unsigned long long>(peer->acked_end - 1),
                InSyncLocked(), peers_.size());
  UpdateEchoLocked();
  cv_.SignalAll();
  send_cv_.SignalAll();
}

std::string Replicator::WhyNotReadyLocked() const {
  std::string why = "NOREPLICAS " + std::to_string(InSyncLocked()) + " of " +
                    std::to_string(peers_.size()) + " backups in sync, " +
                    std::to_string(options_.min_sync_backups) + " required (--min_sync_backups):";
  for (const auto& p : peers_) {
    if (p->in_sync) continue;
    why += " " + p->address + " " + p->state;
    if (!p->last_error.empty()) why += " (" + p->last_error + ")";
    why += ";";
  }
  if (why.back() == ';') why.pop_back();
  return why;
}

Status Replicator::WaitWritable(int64_t deadline_us) {
  MutexLock l(&mu_);
  while (true) {
    if (stopping_) return Status::Unavailable("NOREPLICAS the server is shutting down");
    bool room = ring_.size() < options_.window;
    bool enough = InSyncLocked() >= options_.min_sync_backups;
    if (room && enough) return Status::OK();
    int64_t left = deadline_us - MonoUs();
    if (left <= 0) {
      if (!enough) return Status::Unavailable(WhyNotReadyLocked());
      return Status::Unavailable("NOREPLICAS " + std::to_string(ring_.size()) +
                                 " batches wait for backup acknowledgements (--repl_window); "
                                 "writes are not being acknowledged");
    }
    cv_.WaitFor(&mu_, std::chrono::microseconds(left));
  }
}

void Replicator::Ship(const nvm::BatchHeader& header, std::string_view payload) {
  auto frame = std::make_shared<std::string>();
  frame->reserve(sizeof(rdma::ReplFrameHeader) + sizeof(header) + payload.size());
  rdma::EncodeFrame(frame.get(), FrameType::kBatch, options_.epoch, header.first_lsn,
                    std::string_view(reinterpret_cast<const char*>(&header), sizeof(header)),
                    payload);
  {
    MutexLock l(&mu_);
    uint64_t end = header.first_lsn + header.record_count;
    ring_.push_back(Shipped{header.first_lsn, end, std::move(frame)});
    ship_end_ = end;
  }
  send_cv_.SignalAll();  // only the senders wait for new batches
}

Status Replicator::WaitDurable(uint64_t end_lsn, int64_t deadline_us) {
  MutexLock l(&mu_);
  while (true) {
    if (CoveredLocked(end_lsn)) return Status::OK();
    if (stopping_) return Status::Unavailable("NOREPLICAS the server is shutting down");
    if (deadline_us == 0) {
      cv_.WaitFor(&mu_, std::chrono::milliseconds(kPollMs));
      continue;
    }
    int64_t left = deadline_us - MonoUs();
    if (left > 0) {
      cv_.WaitFor(&mu_, std::chrono::microseconds(left));
      continue;
    }
    // Deadline: drop the backups that did not answer in time.
    std::vector<Peer*> laggards;
    for (auto& p : peers_) {
      if (p->in_sync && p->acked_end < end_lsn) laggards.push_back(p.get());
    }
    if (!laggards.empty()) {
      FAHA_RETURN_IF_ERROR(DropLocked(
          laggards, "did not acknowledge LSN " + std::to_string(end_lsn - 1) + " within " +
                        std::to_string(options_.timeout_ms) + " ms (--repl_timeout_ms)"));
    }
    if (CoveredLocked(end_lsn)) return Status::OK();
    return Status::Unavailable(WhyNotReadyLocked());
  }
}

uint64_t Replicator::CleanHorizon() const {
  MutexLock l(&mu_);
  uint64_t horizon = UINT64_MAX;
  for (const auto& p : peers_) {
    if (p->connected) horizon = std::min(horizon, p->send_next);
  }
  return horizon;
}

void Replicator::Committed(uint64_t end_lsn) {
  {
    MutexLock l(&mu_);
    committed_end_ = std::max(committed_end_, end_lsn);
    while (!ring_.empty() && ring_.front().end_lsn <= end_lsn) ring_.pop_front();
  }
  cv_.SignalAll();
}

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
      s = RunSession(peer, ch->get());
      backoff_ms = 50;
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
      if (was_in_sync && !stopping_) {
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

Status Replicator::RunSession(Peer* peer, rdma::Channel* ch) {
  const int timeout = std::max(options_.timeout_ms, 1000);
  uint64_t ship_end;
  {
    MutexLock l(&mu_);
    ship_end = ship_end_;
  }
  std::string out;
  rdma::EncodeFrame(&out, FrameType::kHello, options_.epoch, ship_end, options_.advertise);
  FAHA_RETURN_IF_ERROR(ch->Send(out, timeout));
  auto reply = ch->Receive(timeout);
  if (!reply.ok()) return reply.status();
  if (reply->type == FrameType::kError) {
    return Status::InvalidArgument("refused: " + std::string(reply->body));
  }
  if (reply->type != FrameType::kHello || reply->body.size() < sizeof(JoinPoint) ||
      reply->epoch != options_.epoch || reply->lsn == 0) {
    return Status::Protocol("unexpected answer to HELLO");
  }
  JoinPoint jp;
  std::memcpy(&jp, reply->body.data(), sizeof(jp));
  const uint64_t backup_next = reply->lsn;
  uint64_t truncate_to = 0;
  Status join =
      CheckJoinPoint(backup_next, jp.last_first_lsn, jp.last_checksum, jp.last_epoch, &truncate_to);
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
    peer->send_next = backup_next;
    peer->acked_end = backup_next;
    peer->last_ack_us = MonoUs();
    peer->state = backup_next < ship_end_ ? "catching up" : "connected";
    MaybeJoinLocked(peer);
  }
  FAHA_LOG_INFO("replication: connected to backup %s at its LSN %llu (ours %llu)",
                peer->address.c_str(), static_cast<unsigned long long>(backup_next - 1),
                static_cast<unsigned long long>(ship_end - 1));

  const bool full_copy = backup_next == 1;
  std::thread receiver([this, peer, ch] { ReceiveAcks(peer, ch); });
  Status result;
  std::vector<std::shared_ptr<const std::string>> frames;
  std::string buf;
  int64_t last_heartbeat_us = 0;  // the first one goes out at once
  while (true) {
    uint64_t from, limit = 0;
    frames.clear();
    bool heartbeat = false;
    {
      MutexLock l(&mu_);
      auto ready = [&]() REQUIRES(mu_) {
        return stopping_ || peer->kick || peer->session_dead || peer->send_next < ship_end_;
      };
      if (options_.heartbeat_ms > 0) {
        // Due also while batches flow: the echo is this primary's lease.
        int64_t due = last_heartbeat_us + int64_t{options_.heartbeat_ms} * 1000;
        while (!ready() && MonoUs() < due) {
          send_cv_.WaitFor(&mu_, std::chrono::microseconds(std::max<int64_t>(due - MonoUs(), 1)));
        }
        heartbeat = MonoUs() >= due && !stopping_ && !peer->kick && !peer->session_dead;
      } else {
        send_cv_.Wait(&mu_, ready);
      }
      if (heartbeat) {
        // Stamped before it is sent: the echo never claims a later time.
        last_heartbeat_us = MonoUs();
        char stamp[8];
        EncodeFixed<int64_t>(stamp, last_heartbeat_us);
        out.clear();
        rdma::EncodeFrame(&out, FrameType::kHeartbeat, options_.epoch, committed_end_ - 1,
                          std::string_view(stamp, sizeof(stamp)));
      }
    }
    if (heartbeat) {
      Status hs = ch->Send(out, timeout);
      if (!hs.ok()) {
        result = hs;
        break;
      }
      continue;
    }
    {
      MutexLock l(&mu_);
      if (stopping_) break;
      if (peer->kick) {
        result = Status::Timeout(peer->last_error);
        break;
      }
      if (peer->session_dead) {
        result = Status::Unavailable(peer->last_error);
        break;
      }
      from = peer->send_next;
      if (!ring_.empty() && from >= ring_.front().first_lsn) {
        // The ring is contiguous: send the frames from `from` on.
        for (const auto& s : ring_) {
          if (s.first_lsn < from) continue;
          frames.push_back(s.frame);
          peer->send_next = s.end_lsn;
          if (frames.size() >= 64) break;
        }
      } else {
        limit = ring_.empty() ? ship_end_ : ring_.front().first_lsn;
      }
    }
    Status s;
    if (limit != 0) {
      // Catch-up from our log; everything below `limit` is committed and persisted.
      buf.clear();
      bool cleaned = false;
      auto next = log_->ForEachBatch(
          from, limit, options_.catchup_chunk_bytes,
          [&](const nvm::BatchHeader& h, std::string_view payload) {
            // Compacted batches go only to a backup that starts from nothing:
            // they dropped records that a longer log could still hold.
            if (nvm::IsCompacted(h) && full_copy == false) cleaned = true;
            if (cleaned) return;
            rdma::EncodeFrame(&buf, FrameType::kBatch, options_.epoch, h.first_lsn,
                              std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)),
                              payload);
          });
      if (cleaned || (!next.ok() && next.status().code() == Status::Code::kNotFound)) {
        // Cleaning compacted what this backup still needs: it starts over.
        FAHA_LOG_WARN(
            "replication: backup %s needs LSN %llu, which log cleaning compacted "
            "here; it starts over with a full copy",
            peer->address.c_str(), static_cast<unsigned long long>(from));
        out.clear();
        rdma::EncodeFrame(&out, FrameType::kTruncate, options_.epoch, 1, {});
        ch->Send(out, 200).IgnoreError();  // unsent, the backup reconnects and is told again
        result = Status::Unavailable("backup sent back to LSN 1 (cleaned log)");
        break;
      }
      if (!next.ok()) {
        result = Status::IOError("cannot read our log for catch-up from LSN " +
                                 std::to_string(from) + ": " + next.status().message());
        break;
      }
      s = ch->Send(buf, timeout);
      MutexLock l(&mu_);
      peer->send_next = *next;
    } else if (frames.size() == 1) {
      s = ch->Send(*frames[0], timeout);
    } else {
      buf.clear();
      for (const auto& f : frames) buf.append(*f);
      s = ch->Send(buf, timeout);
    }
    if (!s.ok()) {
      result = s;
      break;
    }
  }
  {
    MutexLock l(&mu_);
    peer->session_dead = true;
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
    auto f = ch->Receive(kPollMs);
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
        peer->acked_end = std::max(peer->acked_end, f->lsn + 1);
        peer->last_ack_us = MonoUs();
        if (echo > peer->echo_us) {
          peer->echo_us = echo;
          if (peer->in_sync) UpdateEchoLocked();
        }
        if (!peer->in_sync && peer->acked_end >= ship_end_) peer->state = "connected";
        MaybeJoinLocked(peer);
        cv_.SignalAll();
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

void Replicator::AppendInfo(std::string* t) const {
  MutexLock l(&mu_);
  auto line = [&](const std::string& k, const std::string& v) { *t += k + ":" + v + "\r\n"; };
  line("role", "primary");
  line("epoch", std::to_string(options_.epoch));
  line("shipped_lsn", std::to_string(ship_end_ - 1));
  line("committed_lsn", std::to_string(committed_end_ - 1));
  line("batches_in_flight", std::to_string(ring_.size()));
  line("repl_window", std::to_string(options_.window));
  line("min_sync_backups", std::to_string(options_.min_sync_backups));
  line("backups", std::to_string(peers_.size()));
  line("in_sync_backups", std::to_string(InSyncLocked()));
  line("connected_slaves", std::to_string(InSyncLocked()));
  for (size_t i = 0; i < peers_.size(); i++) {
    const Peer& p = *peers_[i];
    std::string v = "addr=" + p.address + ",state=" + (p.in_sync ? "in_sync" : p.state) +
                    ",acked_lsn=" + std::to_string(p.acked_end ? p.acked_end - 1 : 0) + ",lag=" +
                    std::to_string(ship_end_ > p.acked_end ? ship_end_ - p.acked_end : 0) +
                    ",sessions=" + std::to_string(p.sessions);
    if (!p.in_sync && !p.last_error.empty()) {
      std::string e = p.last_error;
      std::replace(e.begin(), e.end(), '\r', ' ');
      std::replace(e.begin(), e.end(), '\n', ' ');
      v += ",error=" + e;
    }
    line("backup" + std::to_string(i), v);
  }
}

void Replicator::AppendRole(std::string* out) const {
  MutexLock l(&mu_);
  resp::AppendArray(out, 3);
  resp::AppendBulk(out, "primary");
  resp::AppendInt(out, static_cast<int64_t>(committed_end_ - 1));
  resp::AppendArray(out, static_cast<int64_t>(peers_.size()));
  for (const auto& p : peers_) {
    auto [host, port] = SplitAddress(p->address);
    resp::AppendArray(out, 4);
    resp::AppendBulk(out, host);
    resp::AppendBulk(out, std::to_string(port));
    resp::AppendBulk(out, std::to_string(p->acked_end ? p->acked_end - 1 : 0));
    resp::AppendBulk(out, p->in_sync ? "in_sync" : p->state);
  }
}

// ---------------------------------------------------------------- backup

BackupService::BackupService(const BackupOptions& options,
                             std::unique_ptr<rdma::Transport> transport, Store* store)
    : options_(options), transport_(std::move(transport)), store_(store) {
  store_->SetBackup();
}

BackupService::~BackupService() { Stop(); }

Status BackupService::Start() {
  auto epoch = nvm::EpochFile::Open(options_.data_dir);
  if (!epoch.ok()) return epoch.status();
  {
    MutexLock l(&mu_);
    epoch_file_ = std::make_unique<nvm::EpochFile>(std::move(*epoch));
  }
  durable_end_.store(store_->log().next_lsn());
  auto listener = transport_->Listen(options_.bind, options_.port);
  if (!listener.ok()) return listener.status();
  listener_ = std::move(*listener);
  port_ = listener_->port();
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return Status::OK();
}

void BackupService::Stop() {
  stopping_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<SessionThread> sessions;
  {
    MutexLock l(&mu_);
    sessions.swap(sessions_);
  }
  for (auto& t : sessions) t.thread.join();
}

void BackupService::AcceptLoop() {
  SetThreadName("faha-repl-acc");
  std::string logged;
  while (!stopping_.load()) {
    auto ch = listener_->AcceptPending(kPollMs);
    if (!ch.ok()) {
      if (ch.status().IsNotFound()) continue;  // nobody came
      // Refused by the transport itself (a verbs request without the proof).
      MutexLock l(&mu_);
      CountRefusal(ch.status());
      continue;
    }
    MutexLock l(&mu_);
    std::shared_ptr<rdma::Channel> c(std::move(*ch));
    const std::string& peer = c->peer();
    const std::string source = peer.substr(0, peer.rfind(':'));
    // Room for this handshake: over a bound, the oldest one (of this source
    // first) that has not proved the secret in its first bytes is aborted
    // (its thread sees its Receive fail and ends); if every one has, the
    // newcomer is refused. A primary's proof arrives with its connection, so
    // strangers opening connections faster than its handshake's round trip,
    // from its own address, cannot push it out.
    size_t from_source = 0;
    for (const auto& h : handshaking_) from_source += h.source == source;
    auto evict = [&](bool same_source) REQUIRES(mu_) {
      for (auto it = handshaking_.begin(); it != handshaking_.end(); ++it) {
        if (same_source && it->source != source) continue;
        if (it->channel->Vouched()) continue;
        it->channel->Abort();
        handshaking_.erase(it);
        handshakes_aborted_++;
        return true;
      }
      return false;
    };
    if ((from_source >= kMaxHandshakesPerSource && !evict(true)) ||
        (handshaking_.size() >= kMaxHandshakes && !evict(false))) {
      c->Abort();
      CountRefusal(Status::Unavailable(peer + ": too many handshakes in progress"));
      continue;
    }
    handshaking_.push_back(Handshaking{c, source});
    // Reap sessions that ended.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    sessions_.push_back(SessionThread{std::thread([this, c, done] {
                                        SetThreadName("faha-repl-in");
                                        if (Handshake(c.get())) Session(c);
                                        done->store(true);
                                      }),
                                      done});
  }
}

bool BackupService::Handshake(rdma::Channel* ch) {
  Status s = ch->Handshake();
  MutexLock l(&mu_);
  bool aborted = true;  // no longer listed: a newer peer took its place
  for (auto it = handshaking_.begin(); it != handshaking_.end(); ++it) {
    if (it->channel.get() != ch) continue;
    handshaking_.erase(it);
    aborted = false;
    break;
  }
  if (s.ok() && !aborted) return true;
  if (aborted) s = Status::Unavailable("handshake aborted to make room for a newer peer");
  CountRefusal(s);
  return false;
}

void BackupService::CountRefusal(const Status& s) {
  const int64_t now = MonoUs();
  if (now - refusal_logged_us_ >= 1000000) {
    FAHA_LOG_WARN("replication: refused a peer: %s (and %llu more since the last such line)",
                  s.ToString().c_str(), static_cast<unsigned long long>(refusals_unlogged_));
    refusal_logged_us_ = now;
    refusals_unlogged_ = 0;
  } else {
    refusals_unlogged_++;
  }
  refused_++;
  last_error_ = s.message();
}

void BackupService::SendError(rdma::Channel* ch, uint64_t epoch, const std::string& why) {
  std::string out;
  rdma::EncodeFrame(&out, FrameType::kError, epoch, 0, why);
  ch->Send(out, 200).IgnoreError();  // a courtesy: the session ends with its own error
}

void BackupService::Session(std::shared_ptr<rdma::Channel> ch) {
  auto refuse = [&](uint64_t epoch, const std::string& why) {
    FAHA_LOG_WARN("replication: refused %s: %s", ch->peer().c_str(), why.c_str());
    {
      // Recorded before the peer hears it, so INFO already shows it when the peer reacts.
      MutexLock l(&mu_);
      refused_++;
      last_error_ = why;
    }
    SendError(ch.get(), epoch, why);
  };
  auto hello = ch->Receive(2000);
  if (!hello.ok()) {
    refuse(0, "no HELLO: " + hello.status().message());
    return;
  }
  if (hello->type != FrameType::kHello || hello->epoch == 0) {
    refuse(0, "a session must start with HELLO carrying an epoch");
    return;
  }
  const uint64_t epoch = hello->epoch;
  const std::string primary(hello->body.substr(0, 256));
  auto stale = [&]() -> std::string {
    {
      MutexLock l(&log_mu_);
      if (epoch < fence_epoch_) {
        return "stale epoch " + std::to_string(epoch) + ": this node runs for primary of epoch " +
               std::to_string(fence_epoch_);
      }
    }
    MutexLock l(&mu_);
    if (epoch >= epoch_file_->epoch()) return "";
    return "stale epoch " + std::to_string(epoch) + ": this backup has seen epoch " +
           std::to_string(epoch_file_->epoch());
  };
  if (std::string why = stale(); !why.empty()) {
    refuse(epoch, why);
    return;
  }
  // This session replaces any older one, which notices within kPollMs.
  const uint64_t gen = generation_.fetch_add(1) + 1;
  MutexLock apply(&apply_mu_);
  if (generation_.load() != gen || stopping_.load()) return;
  if (std::string why = stale(); !why.empty()) {
    refuse(epoch, why);
    return;
  }
  {
    MutexLock l(&mu_);
    Status s = epoch_file_->Advance(epoch);
    if (!s.ok()) {
      last_error_ = "cannot persist epoch: " + s.message();
      SendError(ch.get(), epoch, last_error_);
      return;
    }
    primary_ = primary;
    state_ = "connected";
  }
  JoinPoint jp;
  uint64_t next_lsn;
  {
    MutexLock l(&log_mu_);
    const nvm::BatchHeader& last = store_->log().last_batch_wt();
    jp = JoinPoint{last.first_lsn, last.checksum, last.epoch};
    next_lsn = store_->log().next_lsn();
  }
  session_epoch_.store(epoch);
  last_heard_us_.store(MonoUs());
  std::string out;
  rdma::EncodeFrame(&out, FrameType::kHello, epoch, next_lsn,
                    std::string_view(reinterpret_cast<const char*>(&jp), sizeof(jp)));
  Status s = ch->Send(out, 2000);
  if (s.ok()) {
    FAHA_LOG_INFO(
        "replication: primary %s (client address %s) connected in epoch %llu; our LSN %llu",
        ch->peer().c_str(), primary.c_str(), static_cast<unsigned long long>(epoch),
        static_cast<unsigned long long>(store_->log().next_lsn() - 1));
    s = ServeSession(ch.get(), epoch, gen);
  }
  MutexLock l(&mu_);
  state_ = "disconnected";
  if (!s.ok()) {
    last_error_ = s.message();
    FAHA_LOG_WARN("replication: session with %s ended: %s", ch->peer().c_str(),
                  s.ToString().c_str());
  }
}

Status BackupService::ServeSession(rdma::Channel* ch, uint64_t epoch, uint64_t gen) {
  // Batches appended but not yet persisted, acknowledged or applied: a burst
  // of them (all the frames already received, up to 64) costs one persist.
  std::vector<nvm::Log::AppendResult> pending;
  uint64_t durable_end = store_->log().next_lsn();
  uint64_t appended_end = durable_end;
  // Persist what was appended, acknowledge it, then apply it to the index.
  // REQUIRES: log_mu_ not held.
  // On a way out (an error, a fence, the end of the session) its own result is
  // dropped: the session ends with the cause, and what was not acknowledged is
  // sent again by the primary.
  auto ack_and_apply = [&](bool always = false, std::string_view echo = {}) -> Status {
    if (pending.empty() && !always) return Status::OK();
    if (!pending.empty()) {
      Status p;
      {
        MutexLock l(&log_mu_);
        p = store_->PersistReplicated();
      }
      if (!p.ok()) {
        pending.clear();  // neither acknowledged nor applied
        return p;
      }
      durable_end = appended_end;
      durable_end_.store(durable_end);
    }
    std::string ack;
    rdma::EncodeFrame(&ack, FrameType::kAck, epoch, durable_end - 1, echo);
    Status s = ch->Send(ack, 2000);
    for (const auto& r : pending) store_->PublishReplicated(r);
    pending.clear();
    return s;
  };
  // Runs `then` under log_mu_ unless this node runs for primary of a later
  // epoch: then the session's epoch ended here, nothing more of it is taken,
  // what it took before is acknowledged, and the result is Unavailable.
  auto unless_fenced = [&](const std::function<void()>& then) -> Status {
    Status fence;
    {
      MutexLock l(&log_mu_);
      if (epoch < fence_epoch_) {
        fence = Status::Unavailable("epoch " + std::to_string(epoch) +
                                    " ended here: this node runs for primary of epoch " +
                                    std::to_string(fence_epoch_));
      } else if (then) {
        then();
      }
    }
    if (!fence.ok()) ack_and_apply().IgnoreError();
    return fence;
  };
  auto fail = [&](const std::string& why) {
    ack_and_apply().IgnoreError();
    SendError(ch, epoch, why);
    return Status::Protocol(why);
  };
  while (true) {
    if (stopping_.load()) return ack_and_apply();
    if (generation_.load() != gen) {
      ack_and_apply().IgnoreError();
      return Status::Unavailable("replaced by a newer session");
    }
    auto f = ch->Receive(pending.empty() ? kPollMs : 0);
    if (!f.ok()) {
      if (f.status().code() == Status::Code::kTimeout) {
        FAHA_RETURN_IF_ERROR(ack_and_apply());
        continue;
      }
      if (f.status().code() == Status::Code::kProtocol) return fail(f.status().message());
      if (generation_.load() == gen) {
        session_lost_us_.store(MonoUs());
        std::function<void()> hook;
        {
          MutexLock l(&mu_);
          hook = on_session_lost_;
        }
        if (hook) hook();
      }
      ack_and_apply().IgnoreError();
      return f.status();
    }
    last_heard_us_.store(MonoUs());
    if (f->type == FrameType::kHeartbeat && f->epoch == epoch) {
      if (f->body.size() != 0 && f->body.size() != 8) return fail("HEARTBEAT with a bad body");
      // What the primary has committed: log cleaning here may rely on it.
      store_->SetCommitHint(f->lsn);
      // Echoing it renews the primary's lease: not once we run for primary.
      FAHA_RETURN_IF_ERROR(unless_fenced(nullptr));
      FAHA_RETURN_IF_ERROR(ack_and_apply(true, f->body));
      continue;
    }
    if (f->type == FrameType::kTruncate && f->epoch == epoch) {
      ack_and_apply().IgnoreError();
      Status t;
      {
        MutexLock l(&log_mu_);
        uint64_t before = store_->log().next_lsn();
        t = store_->TruncateLog(f->lsn);
        if (t.ok()) {
          durable_end_.store(store_->log().next_lsn());
          truncations_.fetch_add(1);
          FAHA_LOG_WARN(
              "replication: primary of epoch %llu had us drop our log from LSN %llu "
              "(it ended at %llu): a suffix that was never committed",
              static_cast<unsigned long long>(epoch), static_cast<unsigned long long>(f->lsn),
              static_cast<unsigned long long>(before - 1));
        }
      }
      if (!t.ok())
        return fail("cannot truncate the log to LSN " + std::to_string(f->lsn) + ": " +
                    t.message());
      return Status::Unavailable("truncated the log to LSN " + std::to_string(f->lsn) +
                                 "; reconnecting to catch up");
    }
    if (f->type == FrameType::kError) {
      ack_and_apply().IgnoreError();
      return Status::Unavailable("primary ended the session: " +
                                 std::string(f->body.substr(0, 512)));
    }
    if (f->type != FrameType::kBatch) {
      return fail("unexpected frame type " + std::to_string(static_cast<int>(f->type)) +
                  " in a replication session");
    }
    if (f->epoch != epoch) {
      return fail("frame from epoch " + std::to_string(f->epoch) +
                  " refused: this session is epoch " + std::to_string(epoch));
    }
    if (f->body.size() < sizeof(nvm::BatchHeader))
      return fail("BATCH frame without a batch header");
    nvm::BatchHeader h;
    std::memcpy(&h, f->body.data(), sizeof(h));
    if (h.first_lsn != f->lsn) return fail("BATCH frame LSN does not match its batch header");
    StatusOr<nvm::Log::AppendResult> r = Status::Unavailable("fenced");
    FAHA_RETURN_IF_ERROR(
        unless_fenced([&] { r = store_->AppendReplicated(h, f->body.substr(sizeof(h))); }));
    if (!r.ok()) {
      return fail("batch at LSN " + std::to_string(h.first_lsn) +
                  " refused: " + r.status().message());
    }
    appended_end = nvm::BatchEndLsn(h);
    batches_received_.fetch_add(1, std::memory_order_relaxed);
    pending.push_back(*r);
    if (pending.size() >= 64) FAHA_RETURN_IF_ERROR(ack_and_apply());
  }
}

void BackupService::Fence(uint64_t epoch) {
  MutexLock l(&log_mu_);
  fence_epoch_ = std::max(fence_epoch_, epoch);
}

Status BackupService::RecordEpoch(uint64_t epoch) {
  MutexLock l(&mu_);
  if (!epoch_file_) return Status::Unavailable("the replication service is not started");
  return epoch_file_->Advance(epoch);
}

std::pair<uint64_t, uint64_t> BackupService::LogEnd() const {
  MutexLock l(&log_mu_);
  // The end reported must be durable: persist a burst still waiting for its
  // acknowledgement (on failure the log refuses appends and the node reports
  // its error; the candidate it is part of fails with it).
  Status s = store_->PersistReplicated();
  if (!s.ok()) FAHA_LOG_WARN("replication: %s", s.ToString().c_str());
  return {store_->log().next_lsn(), store_->log().last_batch_wt().epoch};
}

uint64_t BackupService::epoch() const {
  MutexLock l(&mu_);
  return epoch_file_ ? epoch_file_->epoch() : 0;
}

void BackupService::AppendInfo(std::string* t) const {
  MutexLock l(&mu_);
  auto line = [&](const std::string& k, const std::string& v) { *t += k + ":" + v + "\r\n"; };
  auto [host, port] = SplitAddress(primary_);
  uint64_t durable = durable_end_.load() - 1;
  uint64_t applied = store_->committed_lsn();
  line("role", "backup");
  line("epoch", std::to_string(epoch_file_ ? epoch_file_->epoch() : 0));
  line("master_host", host);
  line("master_port", std::to_string(port));
  line("master_link_status", state_ == "connected" ? "up" : "down");
  line("backup_state", state_);
  line("repl_port", std::to_string(port_));
  line("durable_lsn", std::to_string(durable));
  line("applied_lsn", std::to_string(applied));
  line("apply_lag", std::to_string(durable > applied ? durable - applied : 0));
  line("batches_received", std::to_string(batches_received_.load()));
  line("peers_refused", std::to_string(refused_));
  line("handshakes_pending", std::to_string(handshaking_.size()));
  line("handshakes_aborted", std::to_string(handshakes_aborted_));
  line("log_truncations", std::to_string(truncations_.load()));
  if (!last_error_.empty()) {
    std::string e = last_error_;
    std::replace(e.begin(), e.end(), '\r', ' ');
    std::replace(e.begin(), e.end(), '\n', ' ');
    line("last_error", e);
  }
}

void BackupService::AppendRole(std::string* out) const {
  MutexLock l(&mu_);
  auto [host, port] = SplitAddress(primary_);
  resp::AppendArray(out, 5);
  resp::AppendBulk(out, "backup");
  resp::AppendBulk(out, host);
  resp::AppendInt(out, port);
  resp::AppendBulk(out, state_);
  resp::AppendInt(out, static_cast<int64_t>(store_->committed_lsn()));
}

std::string BackupService::primary_address() const {
  MutexLock l(&mu_);
  return primary_;
}

}  // namespace faha
