// The backup side of replication: BackupService accepts a primary's session,
// appends and persists the batches it ships, acknowledges them and applies
// them to the store (server/replication/replication.h).
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
#include "server/engine/replica_log.h"
#include "server/replication/replication.h"

namespace faha {

using rdma::FrameType;

BackupService::BackupService(const BackupOptions& options,
                             std::unique_ptr<rdma::Transport> transport, ReplicaLog* store)
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
    auto ch = listener_->AcceptPending(kReplPollMs);
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
      StartThread(std::move(c), /*session=*/false);
      continue;
    }
    handshaking_.push_back(Handshaking{c, source});
    StartThread(std::move(c), /*session=*/true);
  }
}

void BackupService::StartThread(std::shared_ptr<rdma::Channel> c, bool session) {
  // Reap the threads that ended.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  sessions_.push_back(SessionThread{std::thread([this, c = std::move(c), done, session]() mutable {
                                      SetThreadName("faha-repl-in");
                                      if (session && Handshake(c.get())) Session(c);
                                      CloseChannel(std::move(c));
                                      done->store(true);
                                    }),
                                    done});
}

// Closing a verbs connection costs the kernel milliseconds to hundreds of
// them (up to 315 ms measured in the TCG guest). It happens on the session's
// own thread, before the thread counts as done, so the accepting thread, which
// joins done threads, never waits on it; a peer refused for want of room is
// closed on such a thread too. (The guest CI once saw a backup leave
// a primary's new connection silent and its next ones unanswered for 15 s
// after a refused peer left; a slow close there is suspected, not proven: a
// close of a second or more is logged.)
void BackupService::CloseChannel(std::shared_ptr<rdma::Channel> ch) {
  const std::string peer = ch->peer();
  const int64_t start = MonoMs();
  ch.reset();
  if (const int64_t took = MonoMs() - start; took >= 1000) {
    FAHA_LOG_WARN("replication: closing the connection of %s took %lld ms", peer.c_str(),
                  static_cast<long long>(took));
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

void BackupService::Refuse(rdma::Channel* ch, uint64_t epoch, const std::string& why) {
  FAHA_LOG_WARN("replication: refused %s: %s", ch->peer().c_str(), why.c_str());
  {
    // Recorded before the peer hears it, so INFO already shows it when the peer reacts.
    MutexLock l(&mu_);
    refused_++;
    last_error_ = why;
  }
  SendError(ch, epoch, why);
}

std::string BackupService::StaleEpoch(uint64_t epoch) {
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
}

void BackupService::Session(std::shared_ptr<rdma::Channel> ch) {
  auto hello = ch->Receive(2000);
  if (!hello.ok()) {
    Refuse(ch.get(), 0, "no HELLO: " + hello.status().message());
    return;
  }
  if (hello->type != FrameType::kHello || hello->epoch == 0) {
    Refuse(ch.get(), 0, "a session must start with HELLO carrying an epoch");
    return;
  }
  const uint64_t epoch = hello->epoch;
  const std::string primary(hello->body.substr(0, 256));
  if (std::string why = StaleEpoch(epoch); !why.empty()) {
    Refuse(ch.get(), epoch, why);
    return;
  }
  // This session replaces any older one, which notices within kReplPollMs.
  const uint64_t gen = generation_.fetch_add(1) + 1;
  MutexLock apply(&apply_mu_);
  if (generation_.load() != gen || stopping_.load()) return;
  if (std::string why = StaleEpoch(epoch); !why.empty()) {
    Refuse(ch.get(), epoch, why);
    return;
  }
  if (store_->failed()) {
    // Its log's end may hold batches that never became durable: reporting
    // that end would count it a copy of writes it does not hold (review).
    Refuse(ch.get(), epoch,
           "this backup's log failed to persist; it holds no copy and acknowledges nothing "
           "until it is restarted");
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
  rdma::HelloReply jp;
  uint64_t next_lsn;
  {
    MutexLock l(&log_mu_);
    const nvm::BatchHeader& last = store_->log().last_batch_wt();
    jp = rdma::HelloReply{last.first_lsn, last.checksum, last.epoch};
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

// One session's state between frames: batches appended but not yet
// persisted, acknowledged or applied. A burst of them (all the frames already
// received, up to 64) costs one persist.
class BackupService::SessionRun {
 public:
  SessionRun(BackupService* service, rdma::Channel* ch, uint64_t epoch)
      : s_(service), ch_(ch), epoch_(epoch) {
    durable_end_ = appended_end_ = s_->store_->log().next_lsn();
  }

  bool idle() const { return pending_.empty(); }

  // Persists what was appended, acknowledges it, then applies it to the
  // index. On a way out (an error, a fence, the end of the session) its own
  // result is dropped: the session ends with the cause, and what was not
  // acknowledged is sent again by the primary.
  Status AckAndApply(bool always = false, std::string_view echo = {}) {
    if (pending_.empty() && !always) return Status::OK();
    if (!pending_.empty()) {
      Status p;
      {
        MutexLock l(&s_->log_mu_);
        p = s_->store_->PersistReplicated();
      }
      if (!p.ok()) {
        pending_.clear();  // neither acknowledged nor applied
        return p;
      }
      durable_end_ = appended_end_;
      s_->durable_end_.store(durable_end_);
    }
    std::string ack;
    rdma::EncodeFrame(&ack, FrameType::kAck, epoch_, durable_end_ - 1, echo);
    Status s = ch_->Send(ack, 2000);
    for (const auto& r : pending_) s_->store_->PublishReplicated(r);
    pending_.clear();
    return s;
  }

  // Runs `then` under log_mu_ unless this node runs for primary of a later
  // epoch: then the session's epoch ended here, nothing more of it is taken,
  // what it took before is acknowledged, and the result is Unavailable.
  Status UnlessFenced(const std::function<void()>& then) {
    Status fence;
    {
      MutexLock l(&s_->log_mu_);
      if (epoch_ < s_->fence_epoch_) {
        fence = Status::Unavailable("epoch " + std::to_string(epoch_) +
                                    " ended here: this node runs for primary of epoch " +
                                    std::to_string(s_->fence_epoch_));
      } else if (then) {
        then();
      }
    }
    if (!fence.ok()) AckAndApply().IgnoreError();
    return fence;
  }

  Status Fail(const std::string& why) {
    AckAndApply().IgnoreError();
    SendError(ch_, epoch_, why);
    return Status::Protocol(why);
  }

  Status OnHeartbeat(const rdma::ReplFrame& f) {
    if (f.body.size() != 0 && f.body.size() != 8) return Fail("HEARTBEAT with a bad body");
    // What the primary has committed: log cleaning here may rely on it.
    s_->store_->SetCommitHint(f.lsn);
    // Echoing it renews the primary's lease: not once we run for primary.
    FAHA_RETURN_IF_ERROR(UnlessFenced(nullptr));
    return AckAndApply(true, f.body);
  }

  // Drops the log's suffix from f.lsn; the session then ends, to catch up.
  Status OnTruncate(const rdma::ReplFrame& f) {
    AckAndApply().IgnoreError();
    Status t;
    {
      MutexLock l(&s_->log_mu_);
      uint64_t before = s_->store_->log().next_lsn();
      t = s_->store_->TruncateLog(f.lsn);
      if (t.ok()) {
        s_->durable_end_.store(s_->store_->log().next_lsn());
        s_->truncations_.fetch_add(1);
        FAHA_LOG_WARN(
            "replication: primary of epoch %llu had us drop our log from LSN %llu "
            "(it ended at %llu): a suffix that was never committed",
            static_cast<unsigned long long>(epoch_), static_cast<unsigned long long>(f.lsn),
            static_cast<unsigned long long>(before - 1));
      }
    }
    if (!t.ok())
      return Fail("cannot truncate the log to LSN " + std::to_string(f.lsn) + ": " + t.message());
    return Status::Unavailable("truncated the log to LSN " + std::to_string(f.lsn) +
                               "; reconnecting to catch up");
  }

  Status OnBatch(const rdma::ReplFrame& f) {
    if (f.epoch != epoch_) {
      return Fail("frame from epoch " + std::to_string(f.epoch) +
                  " refused: this session is epoch " + std::to_string(epoch_));
    }
    if (f.body.size() < sizeof(nvm::BatchHeader)) return Fail("BATCH frame without a batch header");
    nvm::BatchHeader h;
    std::memcpy(&h, f.body.data(), sizeof(h));
    if (h.first_lsn != f.lsn) return Fail("BATCH frame LSN does not match its batch header");
    StatusOr<nvm::Log::AppendResult> r = Status::Unavailable("fenced");
    FAHA_RETURN_IF_ERROR(
        UnlessFenced([&] { r = s_->store_->AppendReplicated(h, f.body.substr(sizeof(h))); }));
    if (!r.ok()) {
      return Fail("batch at LSN " + std::to_string(h.first_lsn) +
                  " refused: " + r.status().message());
    }
    appended_end_ = nvm::BatchEndLsn(h);
    s_->batches_received_.fetch_add(1, std::memory_order_relaxed);
    pending_.push_back(*r);
    return pending_.size() >= 64 ? AckAndApply() : Status::OK();
  }

 private:
  BackupService* const s_;
  rdma::Channel* const ch_;
  const uint64_t epoch_;
  std::vector<nvm::Log::AppendResult> pending_;
  uint64_t durable_end_;
  uint64_t appended_end_;
};

void BackupService::NoteSessionLost(uint64_t generation) {
  if (generation_.load() != generation) return;
  session_lost_us_.store(MonoUs());
  std::function<void()> hook;
  {
    MutexLock l(&mu_);
    hook = on_session_lost_;
  }
  if (hook) hook();
}

Status BackupService::ServeSession(rdma::Channel* ch, uint64_t epoch, uint64_t gen) {
  SessionRun run(this, ch, epoch);
  while (true) {
    if (stopping_.load()) return run.AckAndApply();
    if (generation_.load() != gen) {
      run.AckAndApply().IgnoreError();
      return Status::Unavailable("replaced by a newer session");
    }
    auto f = ch->Receive(run.idle() ? kReplPollMs : 0);
    if (!f.ok()) {
      if (f.status().code() == Status::Code::kTimeout) {
        FAHA_RETURN_IF_ERROR(run.AckAndApply());
        continue;
      }
      if (f.status().code() == Status::Code::kProtocol) return run.Fail(f.status().message());
      NoteSessionLost(gen);
      run.AckAndApply().IgnoreError();
      return f.status();
    }
    last_heard_us_.store(MonoUs());
    if (f->type == FrameType::kHeartbeat && f->epoch == epoch) {
      FAHA_RETURN_IF_ERROR(run.OnHeartbeat(*f));
    } else if (f->type == FrameType::kTruncate && f->epoch == epoch) {
      return run.OnTruncate(*f);
    } else if (f->type == FrameType::kError) {
      run.AckAndApply().IgnoreError();
      return Status::Unavailable("primary ended the session: " +
                                 std::string(f->body.substr(0, 512)));
    } else if (f->type != FrameType::kBatch) {
      return run.Fail("unexpected frame type " + std::to_string(static_cast<int>(f->type)) +
                      " in a replication session");
    } else {
      FAHA_RETURN_IF_ERROR(run.OnBatch(*f));
    }
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
  auto [host, port] = net::SplitForDisplay(primary_);
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
  auto [host, port] = net::SplitForDisplay(primary_);
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
