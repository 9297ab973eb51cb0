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
  // entries in. Whether there were candidates (the thread backs off if not).
  bool Pass(int halvings);

 private:
  nvm::Log* const log_;
  Keyspace* const keys_;
  Metrics* const metrics_;
  static constexpr std::chrono::milliseconds kBusyWait{10};
  static constexpr std::chrono::milliseconds kIdleWait{640};
  const int age_ms_;
  int64_t aged_ms_ = 0;  // the thread's: when the counts last halved
  PeriodicThread thread_;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_HOT_MAINTAINER_H_
