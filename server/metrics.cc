#include "server/metrics.h"

#include <prometheus/metric_family.h>

#include <limits>

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

MetricFamily Single(const std::string& name, const std::string& help, MetricType type,
                    double value) {
  MetricFamily f{name, help, type, {}};
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

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

std::vector<MetricFamily> MetricsCollectable::Collect() const {
  std::vector<MetricFamily> out;
  MetricFamily ops{"faha_ops_total", "Commands executed, by class", MetricType::Counter, {}};
  MetricFamily lat{"faha_op_latency_seconds",
                   "Time from a command's arrival to its reply being queued (writes include "
                   "the durable commit)",
                   MetricType::Histogram,
                   {}};
  auto lat_edges = PowerOfTwoEdges(3, 24);  // 7 us .. 16.7 s
  for (int c = 0; c < kOpClasses; c++) {
    ClientMetric m;
    m.label.push_back({"class", OpClassName(static_cast<OpClass>(c))});
    m.counter.value = static_cast<double>(m_->ops[c].load());
    ops.metric.push_back(m);
    ClientMetric h = HistogramMetric(m_->op_latency_us[c], lat_edges, 1e-6);
    h.label.push_back({"class", OpClassName(static_cast<OpClass>(c))});
    lat.metric.push_back(h);
  }
  out.push_back(std::move(ops));
  out.push_back(std::move(lat));
  out.push_back(Single("faha_errors_total", "Error replies sent", MetricType::Counter,
                       static_cast<double>(m_->errors.load())));
  out.push_back(Single("faha_connections_total", "Client connections accepted", MetricType::Counter,
                       static_cast<double>(m_->connections_total.load())));
  out.push_back(Single("faha_connections", "Client connections open", MetricType::Gauge,
                       static_cast<double>(m_->connections_current.load())));
  out.push_back(Single("faha_connections_rejected_total", "Connections refused (max_clients)",
                       MetricType::Counter, static_cast<double>(m_->connections_rejected.load())));
  {
    MetricFamily f{"faha_clients_closed_total",
                   "Client connections closed by the server's limits, by reason",
                   MetricType::Counter,
                   {}};
    const std::pair<const char*, uint64_t> reasons[] = {
        {"output_limit", m_->clients_closed_output_limit.load()},
        {"maxmemory_clients", m_->clients_evicted_memory.load()},
        {"idle_timeout", m_->clients_closed_idle.load()},
        {"preauth_timeout", m_->clients_closed_preauth.load()},
        {"body_timeout", m_->clients_closed_body.load()}};
    for (const auto& [reason, n] : reasons) {
      ClientMetric m;
      m.label.push_back({"reason", reason});
      m.counter.value = static_cast<double>(n);
      f.metric.push_back(m);
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single("faha_client_memory_bytes", "Input and output buffers of all clients",
                       MetricType::Gauge, static_cast<double>(m_->client_memory_bytes.load())));
  out.push_back(Single("faha_accept_fd_exhausted_total",
                       "accept() failures for want of file descriptors", MetricType::Counter,
                       static_cast<double>(m_->accept_fd_exhausted.load())));
  out.push_back(Single("faha_log_full_refusals_total",
                       "Write groups refused: the log could not create its next segment",
                       MetricType::Counter, static_cast<double>(m_->log_full_refusals.load())));
  out.push_back(Single("faha_auth_failures_total", "Failed AUTH attempts", MetricType::Counter,
                       static_cast<double>(m_->auth_failures.load())));
  out.push_back(Single("faha_duplicate_writes_total",
                       "Retried writes answered with their first reply instead of applied again",
                       MetricType::Counter, static_cast<double>(m_->duplicate_writes.load())));
  out.push_back(Single("faha_protocol_errors_total", "Connections closed for malformed input",
                       MetricType::Counter, static_cast<double>(m_->protocol_errors.load())));
  out.push_back(Single("faha_keyspace_hits_total", "Reads that found their key",
                       MetricType::Counter, static_cast<double>(m_->keyspace_hits.load())));
  out.push_back(Single("faha_keyspace_misses_total", "Reads that did not find their key",
                       MetricType::Counter, static_cast<double>(m_->keyspace_misses.load())));
  out.push_back(Single("faha_log_batches_total", "Batches committed to the log",
                       MetricType::Counter, static_cast<double>(m_->batches.load())));
  out.push_back(Single("faha_log_records_total", "Records committed to the log",
                       MetricType::Counter, static_cast<double>(m_->batch_records.load())));
  out.push_back(Single("faha_inline_groups_total",
                       "Write groups committed by the submitting I/O thread itself",
                       MetricType::Counter, static_cast<double>(m_->inline_groups.load())));
  if (m_->log_bytes) {
    out.push_back(Single("faha_log_bytes", "Bytes of batches in the log", MetricType::Gauge,
                         static_cast<double>(m_->log_bytes())));
  }
  if (m_->log_segments) {
    out.push_back(Single("faha_log_segments", "Log segment files", MetricType::Gauge,
                         static_cast<double>(m_->log_segments())));
  }
  if (m_->index_keys) {
    out.push_back(Single("faha_index_keys", "Keys in the DRAM index", MetricType::Gauge,
                         static_cast<double>(m_->index_keys())));
  }
  if (m_->index_memory_bytes) {
    out.push_back(Single("faha_index_memory_bytes", "DRAM bytes held by the index",
                         MetricType::Gauge, static_cast<double>(m_->index_memory_bytes())));
  }
  MetricFamily bb{
      "faha_batch_bytes", "Payload bytes per committed batch", MetricType::Histogram, {}};
  bb.metric.push_back(HistogramMetric(m_->batch_bytes, PowerOfTwoEdges(6, 24), 1));
  out.push_back(std::move(bb));
  MetricFamily bo{
      "faha_batch_ops", "Client write commands per committed batch", MetricType::Histogram, {}};
  bo.metric.push_back(HistogramMetric(m_->batch_ops, PowerOfTwoEdges(1, 14), 1));
  out.push_back(std::move(bo));
  MetricFamily pl{
      "faha_persist_seconds", "Time to write and persist one batch", MetricType::Histogram, {}};
  pl.metric.push_back(HistogramMetric(m_->persist_us, lat_edges, 1e-6));
  out.push_back(std::move(pl));
  return out;
}

}  // namespace faha
