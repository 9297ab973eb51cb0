#include "server/metrics/metrics.h"

#include <prometheus/metric_family.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>

namespace faha {

const char* OpClassName(OpClass c) {
  switch (c) {
    case OpClass::kRead:
      return "read";
    case OpClass::kWrite:
      return "write";
    case OpClass::kOther:
      return "other";
  }
  return "other";
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

ClientMetric HistogramMetric(const Histogram& h, const std::vector<uint64_t>& bounds,
                             double scale) {
  ClientMetric m;
  m.histogram.sample_count = h.Count();
  m.histogram.sample_sum = static_cast<double>(h.Sum()) * scale;
  for (uint64_t b : bounds) {
    ClientMetric::Bucket bucket;
    bucket.cumulative_count = h.CountAtMost(b);
    bucket.upper_bound = static_cast<double>(b) * scale;
    m.histogram.bucket.push_back(bucket);
  }
  ClientMetric::Bucket inf;
  inf.cumulative_count = h.Count();
  inf.upper_bound = std::numeric_limits<double>::infinity();
  m.histogram.bucket.push_back(inf);
  return m;
}

// Bucket edges that are exact edges of the log-linear histogram (2^k - 1).
std::vector<uint64_t> PowerOfTwoEdges(int from, int to) {
  std::vector<uint64_t> v;
  for (int k = from; k <= to; k++) v.push_back((1ull << k) - 1);
  return v;
}

}  // namespace

namespace {

// A counter of Metrics, and a gauge computed by a function the server set.
#define FAHA_COUNT(member) \
  [](const Metrics& m) { return std::max<int64_t>(0, static_cast<int64_t>(m.member.load())); }
#define FAHA_GAUGE(member) \
  [](const Metrics& m) { return m.member ? static_cast<int64_t>(m.member()) : int64_t{-1}; }

const std::vector<MetricDesc> kMetrics = {
    // clients
    {"clients", "connected_clients", "faha_connections", "Client connections open", false, "", "",
     FAHA_COUNT(connections_current)},
    // memory
    {"memory", "index_keys", "faha_index_keys", "Keys in the DRAM index", false, "", "",
     FAHA_GAUGE(index_keys)},
    {"memory", "index_memory_bytes", "faha_index_memory_bytes", "DRAM bytes held by the index",
     false, "", "", FAHA_GAUGE(index_memory_bytes)},
    {"memory", "hot_cache_bytes", "faha_hot_cache_bytes", "DRAM bytes of the hot layer", false, "",
     "", FAHA_GAUGE(hot_cache_bytes)},
    {"memory", "hot_cache_keys", "faha_hot_cache_keys", "Keys held in the hot layer", false, "", "",
     FAHA_GAUGE(hot_cache_keys)},
    // persistence
    {"persistence", "log_bytes", "faha_log_bytes", "Bytes of batches in the log", false, "", "",
     FAHA_GAUGE(log_bytes)},
    {"persistence", "log_segments", "faha_log_segments", "Log segment files", false, "", "",
     FAHA_GAUGE(log_segments)},
    {"persistence", "log_file_bytes", "faha_log_file_bytes", "Bytes the log's segment files occupy",
     false, "", "", FAHA_GAUGE(log_file_bytes)},
    {"persistence", "log_segments_cleaned", "faha_log_segments_cleaned",
     "Segments replaced by log cleaning", false, "", "", FAHA_GAUGE(log_segments_cleaned)},
    {"persistence", "log_segment_files_reused", "faha_log_segment_files_reused",
     "Spare segments made from files log cleaning replaced", false, "", "",
     FAHA_GAUGE(log_segment_files_reused)},
    {"persistence", "log_spare_segments", "faha_log_spare_segments",
     "Spare log segments allocated (and mapped, or mapped as written), ready for the next switches",
     false, "", "", FAHA_GAUGE(log_spare_segments)},
    {"persistence", "committed_lsn", "faha_committed_lsn", "The last LSN visible to readers", false,
     "", "", FAHA_GAUGE(committed_lsn)},
    {"persistence", "clean_passes", "faha_clean_passes_total", "Log cleaning passes", true, "", "",
     FAHA_COUNT(clean_passes)},
    {"persistence", "clean_records_moved", "faha_clean_records_moved_total",
     "Live records log cleaning copied into replacements", true, "", "",
     FAHA_COUNT(clean_records_moved)},
    {"persistence", "clean_bytes_reclaimed", "faha_clean_bytes_reclaimed_total",
     "Bytes of segment files log cleaning gave back", true, "", "",
     FAHA_COUNT(clean_bytes_reclaimed)},
    {"persistence", "clean_expired_reclaimed", "faha_clean_expired_reclaimed_total",
     "Expired values log cleaning dropped", true, "", "", FAHA_COUNT(clean_expired_reclaimed)},
    {"persistence", "clean_failures", "faha_clean_failures_total",
     "Log cleaning passes that failed", true, "", "", FAHA_COUNT(clean_failures)},
    {"persistence", "clean_misjudged", "faha_clean_misjudged_total",
     "Cleaning victims that held less dead data than counted", true, "", "",
     FAHA_COUNT(clean_misjudged)},
    {"persistence", "log_batches", "faha_log_batches_total", "Batches committed to the log", true,
     "", "", FAHA_COUNT(batches)},
    {"persistence", "log_records", "faha_log_records_total", "Records committed to the log", true,
     "", "", FAHA_COUNT(batch_records)},
    {"persistence", "inline_groups", "faha_inline_groups_total",
     "Write groups committed by the submitting I/O thread itself", true, "", "",
     FAHA_COUNT(inline_groups)},
    {"stats", "log_full_refusals", "faha_log_full_refusals_total",
     "Write groups refused: the log could not create its next segment", true, "", "",
     FAHA_COUNT(log_full_refusals)},
    // stats
    {"stats", "total_connections_received", "faha_connections_total", "Client connections accepted",
     true, "", "", FAHA_COUNT(connections_total)},
    {"stats", "ops_read", "faha_ops_total", "Commands executed, by class", true, "class", "read",
     FAHA_COUNT(ops[static_cast<int>(OpClass::kRead)])},
    {"stats", "ops_write", "faha_ops_total", "Commands executed, by class", true, "class", "write",
     FAHA_COUNT(ops[static_cast<int>(OpClass::kWrite)])},
    {"stats", "ops_other", "faha_ops_total", "Commands executed, by class", true, "class", "other",
     FAHA_COUNT(ops[static_cast<int>(OpClass::kOther)])},
    {"stats", "keyspace_hits", "faha_keyspace_hits_total", "Reads that found their key", true, "",
     "", FAHA_COUNT(keyspace_hits)},
    {"stats", "keyspace_misses", "faha_keyspace_misses_total", "Reads that did not find their key",
     true, "", "", FAHA_COUNT(keyspace_misses)},
    {"stats", "key_hot_hits", "faha_key_hot_hits_total",
     "Key lookups answered from the hot layer in DRAM", true, "", "", FAHA_COUNT(key_hot_hits)},
    {"stats", "key_log_reads", "faha_key_log_reads_total",
     "Key lookups that read the key's record in the log", true, "", "", FAHA_COUNT(key_log_reads)},
    {"stats", "hot_promotions", "faha_hot_promotions_total", "Keys promoted into the hot layer",
     true, "", "", FAHA_COUNT(hot_promotions)},
    {"stats", "hot_demotions", "faha_hot_demotions_total", "Keys demoted from the hot layer", true,
     "", "", FAHA_COUNT(hot_demotions)},
    {"stats", "hot_updates", "faha_hot_updates_total",
     "Writes of held keys that left the base index alone", true, "", "", FAHA_COUNT(hot_updates)},
    {"stats", "rejected_connections", "faha_connections_rejected_total",
     "Connections refused (max_clients)", true, "", "", FAHA_COUNT(connections_rejected)},
    {"stats", "client_memory", "faha_client_memory_bytes",
     "Input and output buffers of all clients", false, "", "", FAHA_COUNT(client_memory_bytes)},
    {"stats", "clients_closed_output_limit", "faha_clients_closed_total",
     "Client connections closed by the server's limits, by reason", true, "reason", "output_limit",
     FAHA_COUNT(clients_closed_output_limit)},
    {"stats", "evicted_clients", "faha_clients_closed_total",
     "Client connections closed by the server's limits, by reason", true, "reason",
     "maxmemory_clients", FAHA_COUNT(clients_evicted_memory)},
    {"stats", "clients_closed_idle", "faha_clients_closed_total",
     "Client connections closed by the server's limits, by reason", true, "reason", "idle_timeout",
     FAHA_COUNT(clients_closed_idle)},
    {"stats", "clients_closed_preauth", "faha_clients_closed_total",
     "Client connections closed by the server's limits, by reason", true, "reason",
     "preauth_timeout", FAHA_COUNT(clients_closed_preauth)},
    {"stats", "clients_closed_body_timeout", "faha_clients_closed_total",
     "Client connections closed by the server's limits, by reason", true, "reason", "body_timeout",
     FAHA_COUNT(clients_closed_body)},
    {"stats", "accept_fd_exhausted", "faha_accept_fd_exhausted_total",
     "accept() failures for want of file descriptors", true, "", "",
     FAHA_COUNT(accept_fd_exhausted)},
    {"stats", "rdma_connections_total", "faha_rdma_connections_total", "rdma:// clients accepted",
     true, "", "", FAHA_COUNT(rdma_connections_total)},
    {"stats", "rdma_regions_exposed_total", "faha_rdma_regions_exposed_total",
     "Memory regions rdma:// clients could write (receive rings, credit words)", true, "", "",
     FAHA_COUNT(rdma_regions_exposed_total)},
    {"stats", "rdma_log_regions_exposed_total", "faha_rdma_log_regions_exposed_total",
     "Log memory exposed to rdma:// clients (always 0)", true, "", "",
     FAHA_COUNT(rdma_log_regions_exposed_total)},
    {"stats", "total_error_replies", "faha_errors_total", "Error replies sent", true, "", "",
     FAHA_COUNT(errors)},
    {"stats", "protocol_errors", "faha_protocol_errors_total",
     "Connections closed for malformed input", true, "", "", FAHA_COUNT(protocol_errors)},
    {"stats", "auth_failures", "faha_auth_failures_total", "Failed AUTH attempts", true, "", "",
     FAHA_COUNT(auth_failures)},
    {"stats", "duplicate_writes", "faha_duplicate_writes_total",
     "Retried writes answered with their first reply instead of applied again", true, "", "",
     FAHA_COUNT(duplicate_writes)},
};
#undef FAHA_COUNT
#undef FAHA_GAUGE

constexpr std::string_view kLatencyHelp =
    "Time from a command's arrival to its reply being queued (writes include the durable "
    "commit)";
const std::vector<HistogramDesc> kHistograms = {
    {"stats", "latency_read_usec", "faha_op_latency_seconds", kLatencyHelp, "class", "read",
     [](const Metrics& m) -> const Histogram& {
       return m.op_latency_us[static_cast<int>(OpClass::kRead)];
     },
     3, 24, 1e-6},
    {"stats", "latency_write_usec", "faha_op_latency_seconds", kLatencyHelp, "class", "write",
     [](const Metrics& m) -> const Histogram& {
       return m.op_latency_us[static_cast<int>(OpClass::kWrite)];
     },
     3, 24, 1e-6},
    {"stats", "latency_other_usec", "faha_op_latency_seconds", kLatencyHelp, "class", "other",
     [](const Metrics& m) -> const Histogram& {
       return m.op_latency_us[static_cast<int>(OpClass::kOther)];
     },
     3, 24, 1e-6},
    {"persistence", "batch_bytes", "faha_batch_bytes", "Payload bytes per committed batch", "", "",
     [](const Metrics& m) -> const Histogram& { return m.batch_bytes; }, 6, 24, 1},
    {"persistence", "batch_ops", "faha_batch_ops", "Client write commands per committed batch", "",
     "", [](const Metrics& m) -> const Histogram& { return m.batch_ops; }, 1, 14, 1},
    {"persistence", "persist_usec", "faha_persist_seconds",
     "Time to write and persist one batch (a replicated primary: to sync it)", "", "",
     [](const Metrics& m) -> const Histogram& { return m.persist_us; }, 3, 24, 1e-6},
};

// The family named `name` in *out (appended if new).
MetricFamily* Family(std::vector<MetricFamily>* out, std::string_view name, std::string_view help,
                     MetricType type) {
  for (MetricFamily& f : *out) {
    if (f.name == name) return &f;
  }
  out->push_back(MetricFamily{std::string(name), std::string(help), type, {}});
  return &out->back();
}

}  // namespace

const std::vector<MetricDesc>& MetricDescriptors() { return kMetrics; }
const std::vector<HistogramDesc>& HistogramDescriptors() { return kHistograms; }

void AppendInfoMetrics(const Metrics& m, std::string_view section, std::string* out) {
  for (const MetricDesc& d : kMetrics) {
    if (d.section != section) continue;
    const int64_t v = d.value(m);
    if (v < 0 && !d.counter) continue;  // a gauge the server did not provide
    out->append(d.info_name).append(":").append(std::to_string(v)).append("\r\n");
  }
  for (const HistogramDesc& d : kHistograms) {
    if (d.section != section) continue;
    const Histogram& h = d.histogram(m);
    char mean[32];
    snprintf(mean, sizeof(mean), "%.2f", h.Mean());
    out->append(d.info_name).append("_avg:").append(mean).append("\r\n");
    out->append(d.info_name).append("_p50:").append(std::to_string(h.Percentile(0.5)));
    out->append("\r\n");
    out->append(d.info_name).append("_p99:").append(std::to_string(h.Percentile(0.99)));
    out->append("\r\n");
  }
}

std::vector<MetricFamily> MetricsCollectable::Collect() const {
  std::vector<MetricFamily> out;
  for (const MetricDesc& d : kMetrics) {
    const int64_t v = d.value(*m_);
    if (v < 0 && !d.counter) continue;
    MetricFamily* f =
        Family(&out, d.prom_name, d.help, d.counter ? MetricType::Counter : MetricType::Gauge);
    ClientMetric cm;
    if (!d.label_name.empty()) {
      cm.label.push_back({std::string(d.label_name), std::string(d.label_value)});
    }
    if (d.counter) {
      cm.counter.value = static_cast<double>(v);
    } else {
      cm.gauge.value = static_cast<double>(v);
    }
    f->metric.push_back(std::move(cm));
  }
  for (const HistogramDesc& d : kHistograms) {
    MetricFamily* f = Family(&out, d.prom_name, d.help, MetricType::Histogram);
    ClientMetric cm =
        HistogramMetric(d.histogram(*m_), PowerOfTwoEdges(d.edge_from, d.edge_to), d.scale);
    if (!d.label_name.empty()) {
      cm.label.push_back({std::string(d.label_name), std::string(d.label_value)});
    }
    f->metric.push_back(std::move(cm));
  }
  return out;
}

}  // namespace faha
