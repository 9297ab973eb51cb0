#include "server/replication/replication.h"

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

namespace faha {

using rdma::FrameType;

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
    p->joined_us = MonoUs();
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
      return Status::Unavailable("cannot remove " + addresses[0] +
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

uint64_t Replicator::InSyncAckedLocked() const {
  uint64_t lowest = UINT64_MAX;
  for (const auto& p : peers_) {
    if (p->in_sync) lowest = std::min(lowest, p->acked_end);
  }
  return lowest;
}

void Replicator::MaybeJoinLocked(Peer* peer) {
  // Every batch committed so far is on the backup, and every later one will
  // wait for its ack: from here on it counts.
  if (cluster_mode()) return;  // joins through PromoteCaughtUp and the configuration
  if (peer->in_sync || !peer->connected || peer->kick || peer->session_dead) return;
  if (peer->acked_end < committed_end_) return;
  peer->in_sync = true;
  peer->joined_us = MonoUs();
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
  std::string why = std::to_string(InSyncLocked()) + " of " + std::to_string(peers_.size()) +
                    " backups in sync, " + std::to_string(options_.min_sync_backups) +
                    " required (--min_sync_backups):";
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
    if (stopping_) return Status::Unavailable("the server is shutting down");
    bool room = ring_.size() < options_.window;
    bool enough = InSyncLocked() >= options_.min_sync_backups;
    if (room && enough) return Status::OK();
    int64_t left = deadline_us - MonoUs();
    if (left <= 0) {
      if (!enough) return Status::Unavailable(WhyNotReadyLocked());
      return Status::Unavailable(std::to_string(ring_.size()) +
                                 " batches wait for backup acknowledgements (--repl_window); "
                                 "writes are not being acknowledged");
    }
    cv_.WaitFor(&mu_, std::chrono::microseconds(left));
  }
}

static_assert(sizeof(nvm::BatchHeader) == rdma::kBatchFrameCheckedBytes,
              "a BATCH frame's checksum covers exactly the batch header");

static_assert(ReplicationHook::kShipHeadRoom ==
                  sizeof(rdma::ReplFrameHeader) + sizeof(nvm::BatchHeader),
              "the head room before a shipped batch's payload is its frame's headers");

std::shared_ptr<const std::string> Replicator::Ship(const nvm::BatchHeader& header,
                                                    std::string frame) {
  std::memcpy(frame.data() + sizeof(rdma::ReplFrameHeader), &header, sizeof(header));
  rdma::SealFrame(&frame, 0, FrameType::kBatch, options_.epoch, header.first_lsn);
  // Whoever lets go of the frame last (the ring, a sender, the committing
  // thread) keeps its buffer for a later batch.
  std::shared_ptr<const std::string> shared(
      new std::string(std::move(frame)), [spares = spares_](const std::string* f) {
        {
          MutexLock l(&spares->mu);
          if (spares->buffers.size() < kSpareBuffers) {
            spares->buffers.push_back(std::move(*const_cast<std::string*>(f)));
          }
        }
        delete f;
      });
  bool wake = false;
  {
    MutexLock l(&mu_);
    uint64_t end = header.first_lsn + header.record_count;
    ring_.push_back(Shipped{header.first_lsn, end, shared});
    ship_end_ = end;
    // A backup that has every earlier frame and nothing else in progress gets
    // this one from here, without its sender thread's wake-up; any other, from
    // its sender (catch-up, a frame in progress, verbs, a session starting).
    for (auto& p : peers_) {
      if (p->live != nullptr && !p->sending && !p->wants_slot && p->rest == nullptr && !p->kick &&
          !p->session_dead && !stopping_ && p->send_next == header.first_lsn) {
        p->sending = true;
        p->send_next = end;
        direct_.emplace_back(p.get(), p->live);
      } else if (p->connected) {
        wake = true;  // a backup between sessions waits on cv_, not for batches
      }
    }
  }
  if (wake) send_cv_.SignalAll();  // only the senders wait for new batches
  if (!direct_.empty()) SendDirect(shared);
  return shared;
}

void Replicator::SendDirect(const std::shared_ptr<const std::string>& frame) {
  for (auto [peer, ch] : direct_) {
    // What the socket takes now; never a wait here, where the group's
    // commit would wait behind a slow backup.
    auto sent = ch->TrySend(*frame);
    direct_sends_.fetch_add(1, std::memory_order_relaxed);
    MutexLock l(&mu_);
    peer->sending = false;
    if (!sent.ok()) {
      peer->last_error = sent.status().message();
      peer->session_dead = true;
      cv_.SignalAll();
    } else if (*sent < frame->size()) {
      peer->rest = frame;
      peer->rest_from = *sent;
      direct_rests_.fetch_add(1, std::memory_order_relaxed);
    }
    if (peer->rest != nullptr || peer->wants_slot || peer->session_dead) send_cv_.SignalAll();
  }
  direct_.clear();
}

std::string Replicator::SpareBuffer() {
  MutexLock l(&spares_->mu);
  if (spares_->buffers.empty()) return {};
  std::string b = std::move(spares_->buffers.back());
  spares_->buffers.pop_back();
  return b;
}

Status Replicator::WaitDurable(uint64_t end_lsn, int64_t deadline_us) {
  MutexLock l(&mu_);
  while (true) {
    if (CoveredLocked(end_lsn)) return Status::OK();
    if (stopping_) return Status::Unavailable("the server is shutting down");
    if (deadline_us == 0) {
      cv_.WaitFor(&mu_, std::chrono::milliseconds(kReplPollMs));
      continue;
    }
    int64_t left = deadline_us - MonoUs();
    if (left > 0) {
      cv_.WaitFor(&mu_, std::chrono::microseconds(left));
      continue;
    }
    // Deadline: drop the backups that did not answer in time. A backup that
    // joined less than a timeout ago is not late yet: it joined holding every
    // committed batch, and may still be receiving the ones shipped before it
    // joined (an answered batch is polled every 100 ms; dropping it there
    // made the first write after its return fail).
    std::vector<Peer*> laggards;
    const int64_t joined_before = MonoUs() - int64_t{options_.timeout_ms} * 1000;
    for (auto& p : peers_) {
      if (p->in_sync && p->acked_end < end_lsn && p->joined_us <= joined_before) {
        laggards.push_back(p.get());
      }
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
  line("repl_direct_sends", std::to_string(direct_sends_.load(std::memory_order_relaxed)));
  line("repl_direct_rests", std::to_string(direct_rests_.load(std::memory_order_relaxed)));
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
    auto [host, port] = net::SplitForDisplay(p->address);
    resp::AppendArray(out, 4);
    resp::AppendBulk(out, host);
    resp::AppendBulk(out, std::to_string(port));
    resp::AppendBulk(out, std::to_string(p->acked_end ? p->acked_end - 1 : 0));
    resp::AppendBulk(out, p->in_sync ? "in_sync" : p->state);
  }
}

}  // namespace faha
