// ClientTable: for each client that names itself (client id), the newest
// write sequence number applied and the replies of its latest writes, rebuilt
// from the log's kClientReply records on recovery and on backups. A write
// retried after a lost reply or a failover is then answered with its first
// reply instead of being applied twice.
//
// Bounds: the replies of the last kRepliesPerClient writes of each client, and
// kMaxClients clients (the least recently written are forgotten first). A
// retry older than what is kept is refused, never applied again.
// Thread-safety: all methods take an internal mutex.
#ifndef FAHA_SERVER_ENGINE_CLIENT_TABLE_H_
#define FAHA_SERVER_ENGINE_CLIENT_TABLE_H_

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace faha {

struct WriteResult;

class ClientTable {
 public:
  static constexpr size_t kRepliesPerClient = 4096;
  static constexpr size_t kMaxClients = 1 << 16;

  enum class Seen {
    kNew,        // not applied yet
    kDuplicate,  // applied; *reply is its reply
    kForgotten,  // older than the replies kept: maybe applied, its reply is gone
  };
  Seen Lookup(uint64_t client, uint64_t seq, WriteResult* reply) const;
  // Records that write `seq` of `client` was applied with `reply` (again: ignored).
  void Record(uint64_t client, uint64_t seq, const WriteResult& reply);
  // Whether the reply of write `seq` of `client` is kept (log cleaning keeps
  // the records of exactly those).
  bool Holds(uint64_t client, uint64_t seq) const;
  // Drops the reply of write `seq` of `client`, recorded for a batch that was
  // then not written (the log could not make room for it).
  void Forget(uint64_t client, uint64_t seq);
  void Clear();
  size_t size() const;

  // The reply as a kClientReply record's value, and back (false if malformed).
  static std::string EncodeReply(const WriteResult& reply);
  static bool DecodeReply(std::string_view bytes, WriteResult* reply);

 private:
  struct Entry {
    uint64_t dropped_below = 0;  // replies of sequences below this were dropped
    uint64_t touched = 0;
    std::deque<std::pair<uint64_t, std::string>> replies;  // (seq, encoded reply), oldest first
  };
  void EvictLocked() REQUIRES(mu_);

  mutable Mutex mu_;
  std::unordered_map<uint64_t, Entry> clients_ GUARDED_BY(mu_);
  uint64_t clock_ GUARDED_BY(mu_) = 0;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_CLIENT_TABLE_H_
