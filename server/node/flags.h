// faha-server's command-line flags (defined in flags.cc, documented in
// docs/flags.md and by --help), their validation and the secrets they name.
#ifndef FAHA_SERVER_NODE_FLAGS_H_
#define FAHA_SERVER_NODE_FLAGS_H_

#include <gflags/gflags.h>

#include <string>
#include <vector>

DECLARE_string(data_dir);
DECLARE_string(bind);
DECLARE_int32(port);
DECLARE_int32(metrics_port);
DECLARE_string(metrics_bind);
DECLARE_string(metrics_password_file);
DECLARE_string(requirepass);
DECLARE_uint32(max_key_bytes);
DECLARE_uint32(max_value_bytes);
DECLARE_string(requirepass_file);
DECLARE_uint32(max_clients);
DECLARE_uint64(maxmemory_clients_mb);
DECLARE_uint64(client_output_hard_mb);
DECLARE_uint64(client_output_soft_mb);
DECLARE_uint32(client_output_soft_seconds);
DECLARE_uint32(timeout);
DECLARE_uint32(preauth_timeout_ms);
DECLARE_uint32(body_timeout_ms);
DECLARE_uint32(max_pipeline);
DECLARE_uint32(script_memory_mb);
DECLARE_uint32(databases);
DECLARE_uint32(busy_reply_threshold_ms);
DECLARE_int32(io_threads);
DECLARE_uint64(segment_mb);
DECLARE_uint64(max_batch_kb);
DECLARE_uint32(syncs_in_flight);
DECLARE_string(segment_zero_fill);
DECLARE_uint64(hot_cache_bytes);
DECLARE_double(clean_threshold);
DECLARE_double(backup_clean_threshold);
DECLARE_int32(clean_interval_ms);
DECLARE_bool(recovery_drop_corrupt);
DECLARE_string(log_level);
DECLARE_uint64(log_preallocate_mb);
DECLARE_string(role);
DECLARE_string(backups);
DECLARE_int32(repl_port);
DECLARE_string(repl_bind);
DECLARE_string(repl_transport);
DECLARE_string(rdma);
DECLARE_string(cluster_secret_file);
DECLARE_string(cluster_secret);
DECLARE_uint32(repl_window);
DECLARE_int32(repl_timeout_ms);
DECLARE_int32(min_sync_backups);
DECLARE_uint64(epoch);
DECLARE_string(advertise);
DECLARE_string(etcd);
DECLARE_string(cluster);
DECLARE_string(node_id);
DECLARE_int32(lease_ttl_s);
DECLARE_int32(read_lease_ms);
DECLARE_int32(failover_timeout_ms);
DECLARE_int32(heartbeat_ms);
DECLARE_int32(election_wait_ms);
DECLARE_int32(etcd_join_timeout_ms);
DECLARE_bool(stale_reads);

namespace faha {

// Logs `msg` as an error; returns false (for "return Fail(...)").
bool Fail(const std::string& msg);
// Checks every flag's range and the combinations; logs what is wrong.
bool ValidateFlags();
// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> SplitList(const std::string& s);
// A secret from a file: its first line, without trailing blanks (an empty one
// is refused; a file others can read gets a warning).
bool ReadSecretFile(const std::string& path, const char* flag, std::string* secret);
// The cluster secret from --cluster_secret_file or --cluster_secret (16 bytes at least).
bool LoadSecret(std::string* secret);

}  // namespace faha

#endif  // FAHA_SERVER_NODE_FLAGS_H_
