#include "server/engine/client_table.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/mutex.h"
#include "server/engine/store.h"

namespace faha {

namespace {
// Encoded reply: u8 kind, i64 integer, then the string bytes.
constexpr size_t kFixed = 1 + 8;
}  // namespace

std::string ClientTable::EncodeReply(const WriteResult& r) {
  std::string out(kFixed, '\0');
  out[0] = static_cast<char>(r.kind);
  std::memcpy(out.data() + 1, &r.integer, 8);
  out.append(r.str);
  return out;
}

bool ClientTable::DecodeReply(std::string_view b, WriteResult* r) {
  if (b.size() < kFixed) return false;
  uint8_t kind = static_cast<uint8_t>(b[0]);
  if (kind > static_cast<uint8_t>(WriteResult::Kind::kRaw)) return false;
  r->kind = static_cast<WriteResult::Kind>(kind);
  std::memcpy(&r->integer, b.data() + 1, 8);
  r->str.assign(b.substr(kFixed));
  return true;
}

ClientTable::Seen ClientTable::Lookup(uint64_t client, uint64_t seq, WriteResult* reply) const {
  MutexLock l(&mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) return Seen::kNew;
  const auto& replies = it->second.replies;
  auto r = std::lower_bound(replies.begin(), replies.end(), seq,
                            [](const auto& e, uint64_t s) { return e.first < s; });
  if (r != replies.end() && r->first == seq) {
    return DecodeReply(r->second, reply) ? Seen::kDuplicate : Seen::kForgotten;
  }
  // Sequence numbers may have gaps (a refused write is retried after later
  // ones were applied): only below what is kept is "applied" unknowable.
  if (it->second.dropped_below > 0 && seq < it->second.dropped_below) return Seen::kForgotten;
  return Seen::kNew;
}

void ClientTable::Record(uint64_t client, uint64_t seq, const WriteResult& reply) {
  MutexLock l(&mu_);
  Entry& e = clients_[client];
  e.touched = ++clock_;
  auto& replies = e.replies;
  auto r = std::lower_bound(replies.begin(), replies.end(), seq,
                            [](const auto& x, uint64_t s) { return x.first < s; });
  if (r != replies.end() && r->first == seq) return;
  if (seq < e.dropped_below) return;
  replies.emplace(r, seq, EncodeReply(reply));
  if (replies.size() > kRepliesPerClient) {
    e.dropped_below = replies.front().first + 1;
    replies.pop_front();
  }
  if (clients_.size() > kMaxClients) EvictLocked();
}

void ClientTable::Forget(uint64_t client, uint64_t seq) {
  MutexLock l(&mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  auto& replies = it->second.replies;
  auto r = std::lower_bound(replies.begin(), replies.end(), seq,
                            [](const auto& e, uint64_t s) { return e.first < s; });
  if (r != replies.end() && r->first == seq) replies.erase(r);
}

bool ClientTable::Holds(uint64_t client, uint64_t seq) const {
  MutexLock l(&mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) return false;
  const auto& replies = it->second.replies;
  auto r = std::lower_bound(replies.begin(), replies.end(), seq,
                            [](const auto& e, uint64_t s) { return e.first < s; });
  return r != replies.end() && r->first == seq;
}

void ClientTable::EvictLocked() {
  // Forget the least recently written eighth at once, so this runs rarely.
  std::vector<uint64_t> ages;
  ages.reserve(clients_.size());
  for (const auto& [id, e] : clients_) ages.push_back(e.touched);
  size_t drop = clients_.size() / 8;
  std::nth_element(ages.begin(), ages.begin() + static_cast<ptrdiff_t>(drop), ages.end());
  const uint64_t cutoff = ages[drop];
  for (auto it = clients_.begin(); it != clients_.end();) {
    it = it->second.touched < cutoff ? clients_.erase(it) : std::next(it);
  }
}

void ClientTable::Clear() {
  MutexLock l(&mu_);
  clients_.clear();
}

size_t ClientTable::size() const {
  MutexLock l(&mu_);
  return clients_.size();
}

}  // namespace faha
