// Metrics: the server's counters and histograms, one source for both INFO and
// the Prometheus /metrics endpoint (a prometheus-cpp Collectable that reads
// these atomics at scrape time). All members are updated lock-free from any
// thread.
#ifndef FAHA_SERVER_METRICS_METRICS_H_
#define FAHA_SERVER_METRICS_METRICS_H_

#include <prometheus/collectable.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/histogram.h"

namespace faha {

enum class OpClass : int { kRead = 0, kWrite = 1, kOther = 2 };
inline constexpr int kOpClasses = 3;

struct Metrics {
  std::atomic<uint64_t> ops[kOpClasses]{};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_current{0};
  std::atomic<uint64_t> connections_rejected{0};
  // Client connections closed by the server's limits, by reason (INFO
  // "clients", Prometheus faha_clients_closed_total{reason}).
  std::atomic<uint64_t> clients_closed_output_limit{0};  // output over the hard/soft limit
  std::atomic<uint64_t> clients_evicted_memory{0};       // biggest first, over maxmemory_clients
  std::atomic<uint64_t> clients_closed_idle{0};          // --timeout
  std::atomic<uint64_t> clients_closed_preauth{0};       // no AUTH within --preauth_timeout_ms
  std::atomic<uint64_t> clients_closed_body{0};  // a command unfinished for --body_timeout_ms
  std::atomic<int64_t> client_memory_bytes{0};   // input + output buffers of all clients
  std::atomic<uint64_t> accept_fd_exhausted{0};  // accept failed: out of file descriptors
  // Write groups refused because the log could not create its next segment
  // (a full disk, or another cause named in the reply); later groups try again.
  std::atomic<uint64_t> log_full_refusals{0};
  // rdma:// clients, and the memory their connections could write remotely:
  // receive rings and credit words; log memory never (checked per connection).
  std::atomic<uint64_t> rdma_connections_total{0};
  std::atomic<uint64_t> rdma_regions_exposed_total{0};
  std::atomic<uint64_t> rdma_log_regions_exposed_total{0};
  std::atomic<uint64_t> auth_failures{0};
  // Retried writes answered from the client table instead of applied again.
  std::atomic<uint64_t> duplicate_writes{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> keyspace_hits{0};
  std::atomic<uint64_t> keyspace_misses{0};
  // Key lookups of readers (GET, EXISTS, TTL, ...): answered from the hot
  // layer in DRAM, or by reading the key's record in the log.
  std::atomic<uint64_t> key_hot_hits{0};
  std::atomic<uint64_t> key_log_reads{0};
  std::atomic<uint64_t> hot_promotions{0};
  std::atomic<uint64_t> hot_demotions{0};
  std::atomic<uint64_t> hot_updates{0};  // writes of held keys that left the base index alone
  // Log cleaning: passes that replaced a segment, records moved into the
  // replacements, bytes of segment files given back, expired puts reclaimed,
  // victims that held less dead data than counted (tombstones and client
  // replies are counted dead at once; some must stay).
  std::atomic<uint64_t> clean_passes{0};
  std::atomic<uint64_t> clean_records_moved{0};
  std::atomic<uint64_t> clean_bytes_reclaimed{0};
  std::atomic<uint64_t> clean_expired_reclaimed{0};
  std::atomic<uint64_t> clean_failures{0};
  std::atomic<uint64_t> clean_misjudged{0};
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> batch_records{0};
  // Groups of writes committed by the thread that submitted them (no hand-off
  // to the sequencer and back); the rest went through the sequencer.
  std::atomic<uint64_t> inline_groups{0};
  Histogram op_latency_us[kOpClasses];  // request parsed -> reply queued
  Histogram batch_bytes;                // payload bytes per committed batch
  Histogram batch_ops;                  // client write commands per batch
  Histogram persist_us;  // per batch: log write + persist (a replicated primary: the sync alone)

  // Gauges computed at read time (log bytes, index size, ...), set by the server.
  std::function<uint64_t()> log_bytes;
  std::function<uint64_t()> index_keys;
  std::function<uint64_t()> index_memory_bytes;
  std::function<uint64_t()> log_segments;
  std::function<uint64_t()> log_file_bytes;
  std::function<uint64_t()> log_segments_cleaned;
  std::function<uint64_t()> log_segment_files_reused;
  std::function<uint64_t()> log_spare_segments;
  std::function<uint64_t()> hot_cache_bytes;
  std::function<uint64_t()> hot_cache_keys;
  std::function<uint64_t()> committed_lsn;
};

// One counter or gauge as both INFO and Prometheus /metrics show it: every
// metric is described once here (MetricDescriptors), and both iterate the
// list. Metrics sharing a Prometheus name differ by their label.
struct MetricDesc {
  std::string_view section;    // INFO section: clients, memory, persistence, stats
  std::string_view info_name;  // INFO field
  std::string_view prom_name;  // Prometheus name
  std::string_view help;
  bool counter;                 // else a gauge
  std::string_view label_name;  // "" or e.g. "reason"
  std::string_view label_value;
  // Its value now; -1 when the server did not provide it (a gauge not set).
  int64_t (*value)(const Metrics& m);
};
const std::vector<MetricDesc>& MetricDescriptors();

// A histogram: Prometheus buckets; INFO shows its mean, median and 99th
// percentile as <info_name>_avg, _p50 and _p99.
struct HistogramDesc {
  std::string_view section;
  std::string_view info_name;  // e.g. "persist_usec": persist_usec_p50, _p99
  std::string_view prom_name;
  std::string_view help;
  std::string_view label_name;
  std::string_view label_value;
  const Histogram& (*histogram)(const Metrics& m);
  int edge_from, edge_to;  // bucket edges 2^k - 1 for k in [edge_from, edge_to]
  double scale;            // Prometheus unit per histogram unit (1e-6: us -> s)
};
const std::vector<HistogramDesc>& HistogramDescriptors();

// Appends "name:value\r\n" for each metric and histogram of INFO `section`.
void AppendInfoMetrics(const Metrics& m, std::string_view section, std::string* out);

// Exposes `metrics` (which must outlive it) in Prometheus text format.
class MetricsCollectable : public prometheus::Collectable {
 public:
  explicit MetricsCollectable(const Metrics* metrics) : m_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Metrics* m_;
};

const char* OpClassName(OpClass c);

}  // namespace faha

#endif  // FAHA_SERVER_METRICS_METRICS_H_
