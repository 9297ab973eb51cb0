// HotMaintainer: the hot layer's upkeep (thread faha-hot). Every 10 ms while
// reads sample keys as hot (backing off to 640 ms while none are) it promotes
// the keys sampled as hot (their values copied into DRAM), demotes the
// coldest to stay within the budget, and every hot_age_ms halves the access
// counts. See docs/architecture.md, "Hot layer".
#ifndef FAHA_SERVER_ENGINE_HOT_MAINTAINER_H_
#define FAHA_SERVER_ENGINE_HOT_MAINTAINER_H_

#include <chrono>
#include <cstdint>

#include "common/threads.h"
#include "nvm/log.h"
#include "server/engine/keyspace.h"
#include "server/metrics/metrics.h"

namespace faha {

class HotMaintainer {
 public:
  HotMaintainer(nvm::Log* log, Keyspace* keys, Metrics* metrics, int age_ms)
      : log_(log), keys_(keys), metrics_(metrics), age_ms_(age_ms) {}
  ~HotMaintainer() { Stop(); }
  HotMaintainer(const HotMaintainer&) = delete;
  HotMaintainer& operator=(const HotMaintainer&) = delete;

  // Starts the thread if the hot layer is on; Stop joins it.
  void Start();
  void Stop() { thread_.Stop(); }
  // One pass: promotes candidates, demotes to stay within the budget, and
  // halves the counts `halvings` times. Public for tests. Takes the
  // keyspace's writer lock, and holds the readers off only to link new
  // entries in. Whether it had work (candidates, or the layer over its
  // budget): the thread backs off while it has none.
  bool Pass(int halvings);

  static constexpr std::chrono::milliseconds kBusyWait{10};
  static constexpr std::chrono::milliseconds kIdleWait{640};
  // The wait before the next pass: kBusyWait after one with work, else twice
  // the last, up to kIdleWait and (when age_ms > 0) age_ms, so that one pass
  // never halves the counts more than once after a promotion.
  static std::chrono::milliseconds NextWait(std::chrono::milliseconds last, bool worked,
                                            int age_ms);
  // How many times the counts halve at `now_ms`: once per age_ms passed since
  // *aged_ms, which moves on by as many whole periods (1 and no move if
  // age_ms <= 0: every pass ages).
  static int Halvings(int64_t now_ms, int64_t* aged_ms, int age_ms);

 private:
  nvm::Log* const log_;
  Keyspace* const keys_;
  Metrics* const metrics_;
  const int age_ms_;
  int64_t aged_ms_ = 0;  // the thread's: when the counts last halved
  PeriodicThread thread_;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_HOT_MAINTAINER_H_
