// faha-bench back-ends, chosen by the `target` property:
//   native://HOST:PORT   faha's native protocol over TCP (libfaha)
//   rdma://HOST:PORT     the same over RDMA verbs
//   resp://HOST:PORT     any Redis-protocol server (faha or redis-server), one
//                        synchronous connection per thread
// A list of nodes (native://A:P,B:P) makes libfaha follow the primary
// through failovers (MOVED/TRYAGAIN, exactly-once retries).
// Properties: password (AUTH), timeout.ms (10000), and for resp:// what a
// write waits for after SET, in the same round trip: redis.waitaof.local /
// redis.waitaof.replicas (WAITAOF L R timeout.ms, Redis >= 7.2: fsynced
// locally / on R replicas) or redis.wait.replicas (WAIT R timeout.ms, any
// Redis: R replicas received it). A write that does not reach them is an
// error. docs/faha-bench.md says what each configuration guarantees.
#ifndef FAHA_BENCH_YCSB_DB_H_
#define FAHA_BENCH_YCSB_DB_H_

#include "bench/ycsb/workload.h"

namespace faha::ycsb {

// The factory for props' target; InvalidArgument for a bad one.
StatusOr<DBFactory> MakeDBFactory(const Properties& props);

}  // namespace faha::ycsb

#endif  // FAHA_BENCH_YCSB_DB_H_
