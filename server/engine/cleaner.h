// Cleaner: log cleaning (thread faha-clean). A sealed segment whose live
// fraction is below the threshold is rewritten without its dead records, in
// four steps: PickVictim (the emptiest segment that is committed for good),
// JudgeAll (each record against the committed keyspace), KeepRecords (the
// replacement's records, expired ones as deletions) and, once the
// replacement is on the media, Relocate (every location that named a moved
// record names its new place). See docs/architecture.md, "Log cleaning".
#ifndef FAHA_SERVER_ENGINE_CLEANER_H_
#define FAHA_SERVER_ENGINE_CLEANER_H_

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "common/threads.h"
#include "faha/status.h"
#include "nvm/log.h"
#include "server/engine/keyspace.h"
#include "server/metrics/metrics.h"

namespace faha {

// What cleaning may treat as committed for good: the node's role knows
// (a primary's commits and its backups' catch-up, a backup's primary's
// heartbeats).
class CleanSafety {
 public:
  virtual ~CleanSafety() = default;
  // The highest LSN committed for good (0: none yet, or cleaning must not run).
  virtual uint64_t SafeLsn() const = 0;
  // No LSN at or after this may be cleaned (UINT64_MAX: no limit).
  virtual uint64_t Horizon() = 0;
  // A backup cleans less eagerly (backup_threshold), unless short of space
  // or its log outgrew its live data (Cleaner::kBackupMaxGrowth).
  virtual bool IsBackup() const = 0;
  // Appends the key hashes (HashKey) of the batches applied but not yet
  // committed for good (a backup's) that end after *covered_end, and moves
  // *covered_end to the end of the last batch applied, so that a caller asks
  // again only for what came since; false if such a batch flushed everything.
  virtual bool UncommittedKeys(uint64_t* covered_end, std::vector<uint64_t>* hashes) = 0;
};

struct CleanerOptions {
  // A sealed segment whose live fraction is below this is compacted in the
  // background (0: never). Checked every interval_ms.
  double threshold = 0.5;
  // The threshold on a backup (the lower of the two applies, and threshold
  // while the log is short of space or holds more than kBackupMaxGrowth
  // times its live data): a backup's log serves no reads until a failover,
  // so it trades space for the CPU a write costs it (cleaning copies
  // live / (1 - live) bytes for each byte it frees).
  double backup_threshold = 0.1;
  int interval_ms = 100;
};

class Cleaner {
 public:
  Cleaner(nvm::Log* log, Keyspace* keys, Metrics* metrics, CleanSafety* safety,
          const CleanerOptions& options)
      : log_(log), keys_(keys), metrics_(metrics), safety_(safety), options_(options) {}
  ~Cleaner() { Stop(); }
  Cleaner(const Cleaner&) = delete;
  Cleaner& operator=(const Cleaner&) = delete;

  // Starts the thread, which passes every interval_ms (if threshold > 0).
  void Start();
  void Stop() { thread_.Stop(); }
  // One pass: compacts the emptiest sealed segment below the threshold, if
  // any may be cleaned. Returns whether a segment was replaced. Public for
  // tests.
  StatusOr<bool> CleanOnce();
  // Held by a pass for its whole length (it keeps views into segments): a
  // truncation takes it before the keyspace's writer lock.
  Mutex& pass_mu() RETURN_CAPABILITY(pass_mu_) { return pass_mu_; }

 private:
  // Up to 16 passes while there is work (the thread, every interval_ms).
  void Tick();
  // One try of CleanOnce (under pass_mu_): kMisjudged when the victim turned
  // out to hold too little dead data (its estimate is corrected).
  enum class Outcome : uint8_t { kNone, kCleaned, kMisjudged };
  StatusOr<Outcome> CleanVictim();
  // A record of the victim: its views stay valid for the whole pass (only a
  // pass or a truncation, which waits for pass_mu_, unmaps a segment).
  struct CleanRec {
    nvm::RecordView rec;
    uint64_t location;
    uint64_t lsn;
    uint64_t hash;
    size_t bytes;
    // Its key's namespace (server/engine/namespaces.h), taken while `rec`
    // views the victim: Relocate runs after the victim was replaced.
    int ns;
  };
  enum class Verdict : uint8_t { kDrop, kKeep, kMove, kExpire };
  // A backup's sealed segments hold more than this times their live data (by
  // the dead-byte estimate, in which batch headers stay live): it then cleans
  // at the primary's threshold until they do not. Below a backup threshold of
  // 1 / kBackupMaxGrowth the log's size stays bounded by this instead of by
  // live / threshold (4x, as at the 0.25 of before), and a backup whose
  // segments die evenly cleans at its threshold, copying fewer live records
  // (docs/bench/write-path.md, "At ec23bbd").
  static constexpr double kBackupMaxGrowth = 4;
  bool Outgrown(const std::vector<nvm::Log::SegmentInfo>& segs) const;
  // The sealed segment with the least live data, below the threshold, worth
  // a pass (at least min_gain dead bytes) and wholly committed for good; in
  // *older_cleaned the least cleaned LSN of the segments before it.
  const nvm::Log::SegmentInfo* PickVictim(const std::vector<nvm::Log::SegmentInfo>& segs,
                                          uint64_t safe, uint64_t horizon, uint64_t min_gain,
                                          uint64_t* older_cleaned);
  // What the pass does with one record. REQUIRES: keys_->writer_mu().
  Verdict Judge(const CleanRec& r, bool doubt, int64_t now, uint64_t older_cleaned,
                uint64_t* cleaned_lsn);
  // Judges every record of the victim; false if a batch in doubt flushed
  // everything (no pass then).
  bool JudgeAll(const std::vector<CleanRec>& recs, uint64_t older_cleaned,
                std::vector<Verdict>* verdict, uint64_t* cleaned_lsn);
  // The replacement's records: kept ones as they are, expired ones as
  // deletions (encoded into `encoded`, counted in *expired). Returns their bytes.
  uint64_t KeepRecords(const std::vector<CleanRec>& recs, const std::vector<Verdict>& verdict,
                       std::vector<nvm::Log::KeptRecord>* kept, std::vector<size_t>* kept_from,
                       std::deque<std::string>* encoded, uint64_t* expired);
  // After the swap: every location that named a kept record (index, hot
  // layer) names its new place (moved_to[k] for recs[kept_from[k]]), and
  // expired keys go. REQUIRES: writer_mu() and AllReaders.
  void Relocate(const std::vector<CleanRec>& recs, const std::vector<Verdict>& verdict,
                const std::vector<size_t>& kept_from, const std::vector<uint64_t>& moved_to,
                uint32_t victim_id);

  nvm::Log* const log_;
  Keyspace* const keys_;
  Metrics* const metrics_;
  CleanSafety* const safety_;
  const CleanerOptions options_;
  Mutex pass_mu_;           // one pass at a time
  std::string last_error_;  // the thread's, logged once until it changes
  PeriodicThread thread_;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_CLEANER_H_
