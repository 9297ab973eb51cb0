#include "server/node/flags.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "common/logging.h"

DEFINE_string(data_dir, "./faha-data",
              "Directory of the log segments (created if missing). "
              "Put it on a DAX mount (mount -o dax) for cache-line persistence.");
DEFINE_string(bind, "127.0.0.1", "IPv4 address to listen on (client and metrics ports).");
DEFINE_int32(port, 7379, "Client port: RESP and the native protocol. 0 picks a free port.");
DEFINE_int32(metrics_port, 0, "Prometheus /metrics port: 0 means --port + 2000, -1 disables.");
DEFINE_string(metrics_bind, "127.0.0.1",
              "Address /metrics listens on: loopback by default, whatever --bind is (the "
              "metrics tell an observer the keyspace size, rates and peers).");
DEFINE_string(metrics_password_file, "",
              "File holding a password for /metrics (HTTP basic auth, any user name; keep "
              "it mode 0600). Empty: /metrics answers anyone who reaches --metrics_bind.");
DEFINE_string(requirepass, "",
              "Password clients must give with AUTH (empty: no auth). Visible to others in ps: "
              "prefer --requirepass_file.");
DEFINE_uint32(max_key_bytes, 16 << 10, "Longest key accepted, in bytes.");
DEFINE_uint32(max_value_bytes, 1 << 20, "Longest value accepted, in bytes.");
DEFINE_string(requirepass_file, "",
              "File holding the password clients must give with AUTH (its first line; keep it "
              "mode 0600). Overrides --requirepass and keeps the password out of ps.");
DEFINE_uint32(max_clients, 10000,
              "Most client connections at once; more are refused. The open-files limit is "
              "raised to fit at start, or a warning says why it cannot be.");
DEFINE_uint64(maxmemory_clients_mb, 1024,
              "Input and output buffers of all clients together, in MiB (Redis's "
              "maxmemory-clients); over it the biggest clients are closed first. 0: no limit.");
DEFINE_uint64(client_output_hard_mb, 256,
              "A client whose unsent replies exceed this many MiB is closed at once (Redis's "
              "client-output-buffer-limit hard limit, normal clients). 0: no limit.");
DEFINE_uint64(client_output_soft_mb, 64,
              "... and one whose unsent replies stay above this many MiB for "
              "--client_output_soft_seconds (the soft limit). 0: no soft limit.");
DEFINE_uint32(client_output_soft_seconds, 60, "See --client_output_soft_mb.");
DEFINE_uint32(timeout, 0,
              "Close a client idle (nothing read or written) for this many seconds (Redis's "
              "timeout). 0: never.");
DEFINE_uint32(preauth_timeout_ms, 10000,
              "With a password: close a client that has not authenticated this long after "
              "connecting. 0: never.");
DEFINE_uint32(body_timeout_ms, 30000,
              "Close a client whose command has begun but not ended this long (a half-sent "
              "command, or one trickled a byte at a time). 0: never.");
DEFINE_uint32(max_pipeline, 4096, "Most writes one connection may have in flight.");
DEFINE_uint32(script_memory_mb, 64, "Memory of the Lua interpreter that runs scripts, in MiB.");
DEFINE_uint32(busy_reply_threshold_ms, 5000,
              "While a script has run this long, other commands get BUSY (SCRIPT KILL stops it).");
DEFINE_uint32(databases, 16,
              "Numbered databases SELECT may choose (Redis's 'databases'), 1..256. All share "
              "one log; fewer than a log holds keys of leaves those unreachable until raised.");
DEFINE_int32(io_threads, 2, "Threads serving client connections.");
DEFINE_uint64(segment_mb, 64, "Size of each log segment file, in MiB (1..4095).");
DEFINE_uint64(max_batch_kb, 8192, "Largest group-commit batch, in KiB.");
DEFINE_uint32(syncs_in_flight, 1,
              "Single node: batches that may be syncing at once (1 or 2). With 2 the next "
              "batch is written while the previous one syncs; on this project's test disk "
              "that was slower (docs/architecture.md), on devices that flush in parallel it "
              "may not be. Recovery then takes a valid batch after a torn one for part of "
              "the tear.");
DEFINE_string(segment_zero_fill, "auto",
              "Whether a new log segment file on ext4/xfs has zeros written through it "
              "before use: always (each sync that first touches a block then commits no "
              "extent conversion to the journal, which costs 45-150 us a sync), never (the device "
              "writes every log byte once, not twice), or auto "
              "(zeros while the last syncs averaged under 64 KiB). No effect on tmpfs or DAX.");
DEFINE_uint64(hot_cache_bytes, 64ull << 20,
              "DRAM for the hot layer: the most read keys, found by sampled access counts, are "
              "held with their values in DRAM so reads of them skip the log, and their updates "
              "skip the base index. 0 turns it off.");
DEFINE_double(clean_threshold, 0.5,
              "Log cleaning: a sealed log segment whose live fraction (bytes of records still "
              "current over bytes written) falls below this is compacted in the background into "
              "a smaller file holding only its live records, on every node. Higher keeps the "
              "log smaller at the cost of more copying; 0 turns cleaning off (the log then "
              "grows with every write).");
DEFINE_double(backup_clean_threshold, 0.1,
              "Log cleaning on a backup: the threshold there (the lower of this and "
              "--clean_threshold applies; --clean_threshold's while the disk is short of space "
              "or the backup's sealed segments hold more than 4x their live data). A backup's "
              "log serves no reads until a failover: a lower threshold saves the CPU of copying "
              "live records again and again (live / (1 - live) bytes per byte freed) and lets "
              "the log grow, to about 4x its live data by the cleaner's estimate (a primary's, "
              "at --clean_threshold=0.5, to about 2x).");
DEFINE_int32(clean_interval_ms, 100, "How often log cleaning looks for a segment to compact.");
DEFINE_bool(recovery_drop_corrupt, false,
            "If recovery finds a damaged batch with valid batches "
            "after it (lost media), drop the log from the damaged batch on instead of refusing to "
            "start. What was dropped is logged. Never needed for a torn tail.");
DEFINE_string(log_level, "info", "debug, info, warn or error.");
DEFINE_uint64(log_preallocate_mb, 0,
              "Log space to allocate and fault in at start, in MiB "
              "(rounded up to whole segments), so the write path does not wait for the kernel "
              "to allocate memory until it is used up. 0: two spare segments, prepared in the "
              "background.");

DEFINE_string(role, "primary",
              "primary (with --backups: ships every write to them; without: a single node) "
              "or backup (receives a primary's log on --repl_port; refuses client writes).");
DEFINE_string(backups, "",
              "Primary: comma-separated HOST:PORT replication addresses of its backups (1-3).");
DEFINE_int32(repl_port, -1, "Backup: replication port to listen on; -1 means --port + 100.");
DEFINE_string(repl_bind, "", "Backup: IPv4 address of the replication port (empty: --bind).");
DEFINE_string(repl_transport, "tcp",
              "Replication transport: tcp, or rdma (verbs; the addresses in --backups and "
              "--repl_bind must then be addresses of RDMA devices).");
DEFINE_string(rdma, "auto",
              "Serve rdma:// clients on --bind:--port over RDMA verbs: auto (when an RDMA "
              "device has --bind; a log line says which), on (refuse to start without one), off.");
DEFINE_string(cluster_secret_file, "",
              "File holding the cluster secret that primary and backups prove to each other "
              "(HMAC-SHA256 challenge). Required with replication; keep it mode 0600.");
DEFINE_string(cluster_secret, "",
              "The cluster secret itself (visible in ps: prefer --cluster_secret_file).");
DEFINE_uint32(repl_window, 16, "Primary: batches shipped to backups but not yet committed.");
DEFINE_int32(repl_timeout_ms, 1000,
             "Primary: a write whose backups have not all acknowledged it within this time "
             "fails with NOREPLICAS, and the silent backups leave the in-sync set until they "
             "catch up.");
DEFINE_int32(min_sync_backups, -1,
             "Primary: writes fail with NOREPLICAS while fewer backups than this are in sync. "
             "-1 means all of --backups (no write is acknowledged without every backup).");
DEFINE_uint64(epoch, 0,
              "Replication epoch of this primary (0: the one persisted in --data_dir, or 1). "
              "Backups that have seen a higher epoch refuse it; starting below the persisted "
              "epoch is refused.");
DEFINE_string(advertise, "",
              "Primary: client address HOST:PORT told to backups (for ROLE and -READONLY); "
              "empty: --bind and the client port.");
DEFINE_string(etcd, "",
              "etcd endpoints (http://HOST:PORT, comma-separated): join the cluster --cluster as "
              "node --node_id with automatic failover instead of a fixed --role. The first node "
              "to register is primary; the others are backups.");
DEFINE_string(cluster, "faha",
              "With --etcd: the cluster's name (its etcd keys are under /faha/NAME/).");
DEFINE_string(node_id, "", "With --etcd: this node's name, unique in the cluster (required).");
DEFINE_int32(lease_ttl_s, 2,
             "With --etcd: TTL of this node's etcd lease in seconds (etcd may raise it to its "
             "minimum). A primary that cannot renew it is replaced.");
DEFINE_int32(read_lease_ms, 300,
             "With --etcd: a primary serves reads and writes only within this long of its last "
             "etcd lease renewal or, while etcd is unreachable, of the last heartbeat every "
             "in-sync backup echoed; a new primary waits this long after fencing itself and "
             "revoking the old one's lease. Must be shorter than --lease_ttl_s.");
DEFINE_int32(failover_timeout_ms, 400,
             "With --etcd: an in-sync backup that hears nothing from its primary for this long "
             "(heartbeats every --heartbeat_ms) runs for primary; at once if its session broke "
             "and the primary's client port refuses connections.");
DEFINE_int32(heartbeat_ms, 50,
             "With --etcd: replication sessions send a heartbeat this often; also the "
             "period at which each node reads the cluster configuration.");
DEFINE_int32(election_wait_ms, 200,
             "With --etcd: how long a candidate waits for the other eligible backups to publish "
             "their log ends before the longest log is chosen.");
DEFINE_int32(etcd_join_timeout_ms, 60000,
             "With --etcd: at start, how long to keep trying to reach etcd (a lease and this "
             "node's registration) before giving up with an error; a node restarted while etcd "
             "itself restarts waits it out.");
DEFINE_bool(stale_reads, false,
            "Backup: answer reads from every client (they may lag the primary). Without it a "
            "client must send READONLY on its connection first.");

namespace faha {

bool Fail(const std::string& msg) {
  FAHA_LOG_ERROR("%s", msg.c_str());
  return false;
}

bool ValidateFlags() {
  if (FLAGS_port < 0 || FLAGS_port > 65535) return Fail("--port must be in 0..65535");
  if (FLAGS_metrics_port < -1 || FLAGS_metrics_port > 65535)
    return Fail("--metrics_port must be -1..65535");
  if (FLAGS_segment_mb < 1 || FLAGS_segment_mb > 4095)
    return Fail("--segment_mb must be in 1..4095");
  if (FLAGS_io_threads < 1 || FLAGS_io_threads > 64) return Fail("--io_threads must be in 1..64");
  if (FLAGS_max_key_bytes < 1) return Fail("--max_key_bytes must be at least 1");
  if (FLAGS_max_clients < 1) return Fail("--max_clients must be at least 1");
  if (FLAGS_max_pipeline < 1) return Fail("--max_pipeline must be at least 1");
  if (FLAGS_databases < 1 || FLAGS_databases > 256) return Fail("--databases must be 1..256");
  if (FLAGS_script_memory_mb < 1 || FLAGS_script_memory_mb > 65536) {
    return Fail("--script_memory_mb must be 1..65536");
  }
  uint64_t record = 64 + static_cast<uint64_t>(FLAGS_max_key_bytes) + FLAGS_max_value_bytes;
  uint64_t batch = FLAGS_max_batch_kb << 10;
  if (batch < record) {
    return Fail("--max_batch_kb (" + std::to_string(FLAGS_max_batch_kb) +
                ") must hold one record of --max_key_bytes + --max_value_bytes");
  }
  if (batch + 4096 > (FLAGS_segment_mb << 20)) {
    return Fail("--max_batch_kb must be smaller than --segment_mb");
  }
  if (FLAGS_syncs_in_flight < 1 || FLAGS_syncs_in_flight > 2) {
    return Fail("--syncs_in_flight must be 1 or 2");
  }
  if (FLAGS_segment_zero_fill != "auto" && FLAGS_segment_zero_fill != "always" &&
      FLAGS_segment_zero_fill != "never") {
    return Fail("--segment_zero_fill must be auto, always or never");
  }
  if (FLAGS_role != "primary" && FLAGS_role != "backup") {
    return Fail("--role must be primary or backup");
  }
  if (FLAGS_role == "backup" && !FLAGS_backups.empty()) {
    return Fail("--backups is for a primary; a backup takes --repl_port");
  }
  if (FLAGS_repl_port < -1 || FLAGS_repl_port > 65535) return Fail("--repl_port must be -1..65535");
  if (FLAGS_repl_window < 1 || FLAGS_repl_window > 1024)
    return Fail("--repl_window must be 1..1024");
  for (uint64_t mb :
       {FLAGS_maxmemory_clients_mb, FLAGS_client_output_hard_mb, FLAGS_client_output_soft_mb}) {
    if (mb > (uint64_t{1} << 30)) {
      return Fail(
          "--maxmemory_clients_mb and --client_output_*_mb must be at most 1073741824 (1 PiB)");
    }
  }
  if (FLAGS_repl_timeout_ms < 10) return Fail("--repl_timeout_ms must be at least 10");
  if (FLAGS_clean_threshold < 0 || FLAGS_clean_threshold >= 1 || FLAGS_backup_clean_threshold < 0 ||
      FLAGS_backup_clean_threshold >= 1 || FLAGS_clean_interval_ms < 1) {
    return Fail(
        "--clean_threshold and --backup_clean_threshold must be in [0, 1) and "
        "--clean_interval_ms at least 1");
  }
  if (!FLAGS_etcd.empty()) {
    if (FLAGS_node_id.empty()) return Fail("--etcd needs --node_id (unique in the cluster)");
    if (FLAGS_node_id.find('/') != std::string::npos || FLAGS_cluster.empty() ||
        FLAGS_cluster.find('/') != std::string::npos) {
      return Fail("--node_id and --cluster must be non-empty and without '/'");
    }
    if (!gflags::GetCommandLineFlagInfoOrDie("role").is_default || !FLAGS_backups.empty()) {
      return Fail("--etcd chooses roles itself: drop --role and --backups");
    }
    if (FLAGS_lease_ttl_s < 1 || FLAGS_lease_ttl_s > 60) return Fail("--lease_ttl_s must be 1..60");
    if (FLAGS_read_lease_ms < 10 || FLAGS_read_lease_ms >= FLAGS_lease_ttl_s * 1000) {
      return Fail("--read_lease_ms must be at least 10 and below --lease_ttl_s");
    }
    if (FLAGS_heartbeat_ms < 5 || FLAGS_failover_timeout_ms < 2 * FLAGS_heartbeat_ms) {
      return Fail("--heartbeat_ms must be at least 5 and --failover_timeout_ms at least twice it");
    }
    if (FLAGS_election_wait_ms < 0) return Fail("--election_wait_ms must be >= 0");
    if (FLAGS_etcd_join_timeout_ms < 0) return Fail("--etcd_join_timeout_ms must be >= 0");
  }
  return true;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// A secret from a file: its first line, without trailing blanks. An empty
// one is refused (an empty password would turn authentication off). A file
// that others can read gets a warning (the secret is no secret).
bool ReadSecretFile(const std::string& path, const char* flag, std::string* secret) {
  std::ifstream f(path);
  if (!f) return Fail(std::string("cannot read ") + flag + " " + path);
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
    FAHA_LOG_WARN(
        "%s %s is readable or writable by group or others (mode %03o): "
        "chmod 600 it",
        flag, path.c_str(), static_cast<unsigned>(st.st_mode & 0777));
  }
  std::getline(f, *secret);
  while (!secret->empty() && (secret->back() == '\r' || secret->back() == ' ')) secret->pop_back();
  if (secret->empty())
    return Fail(std::string(flag) + " " + path + " holds no secret (empty first line)");
  return true;
}

// The cluster secret from --cluster_secret_file or --cluster_secret.
bool LoadSecret(std::string* secret) {
  if (!FLAGS_cluster_secret_file.empty()) {
    if (!ReadSecretFile(FLAGS_cluster_secret_file, "--cluster_secret_file", secret)) return false;
  } else {
    *secret = FLAGS_cluster_secret;
  }
  if (secret->size() < 16) {
    return Fail(
        "replication needs a cluster secret of at least 16 bytes "
        "(--cluster_secret_file)");
  }
  return true;
}

}  // namespace faha
