// Node: faha-server's composition root. It builds a node from its flags in
// steps (docs/flags.md): configuration and the replication transport, the
// primary's epoch, the store (recovery, preallocation), the client port's
// options, replication (primary, backup, or a cluster node through etcd), the
// client and RDMA ports and /metrics; then serves until SIGTERM or SHUTDOWN,
// and tears down in reverse (re-executing itself when a deposed primary must
// come back as a backup). Members are declared in creation order, so a step
// that fails leaves the destructor to stop what the earlier ones started.
#ifndef FAHA_SERVER_NODE_NODE_H_
#define FAHA_SERVER_NODE_NODE_H_

#include <prometheus/exposer.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nvm/log.h"
#include "rdma/transport.h"
#include "server/cluster/cluster.h"
#include "server/engine/store.h"
#include "server/metrics/metrics.h"
#include "server/net/rdma_gateway.h"
#include "server/net/server.h"
#include "server/replication/replication.h"

namespace faha {

class Node {
 public:
  // argv: the command line (null-terminated), for a deposed primary's restart.
  explicit Node(std::vector<char*> argv);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Builds the node and serves until shutdown: the process's exit code
  // (0; 1 for a failure at run time; 2 for bad flags).
  int Run();

 private:
  // Each step returns 0 to go on, or the exit code.
  int Configure();           // role, flag checks, secret, replication transport
  int LockDataDir();         // one server per --data_dir
  int RecordEpoch();         // a primary's epoch, persisted before it ships
  int OpenStore();           // recovery
  int Preallocate();         // --log_preallocate_mb
  int BuildServerOptions();  // the client port's options and limits
  int StartReplication();    // primary, backup, cluster node
  void StartPrimary();
  int StartBackup();
  void MakeClusterNode();
  int JoinCluster();
  int OpenPorts();     // the client port's server and the RDMA gateway
  int ServeMetrics();  // /metrics, before the client port opens
  int Start();         // the client port: a PING answered means every port is ready
  void Shutdown();

  std::vector<char*> argv_;
  bool clustered_ = false;            // --etcd: the role comes from elections
  bool backup_ = false;               // a backup now (or a cluster node, which starts as one)
  std::vector<std::string> backups_;  // --backups: a primary's
  bool replicated_ = false;
  std::string secret_;
  rdma::TransportOptions topt_;
  std::unique_ptr<rdma::Transport> transport_;
  uint64_t epoch_ = 0;
  int data_dir_lock_ = -1;  // LockDataDir's descriptor, held while the node runs
  Metrics metrics_;
  StoreOptions sopt_;
  nvm::RecoveryReport report_;
  std::unique_ptr<Store> store_;
  Store* st_ = nullptr;
  ServerOptions opt_;
  std::string metrics_password_;
  int metrics_port_ = -1;
  ReplicatorOptions ropt_;
  std::string repl_address_;  // a backup's replication address, for the cluster
  std::unique_ptr<Replicator> replicator_;
  std::unique_ptr<BackupService> backup_service_;
  std::unique_ptr<ClusterNode> cluster_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<RdmaGateway> gateway_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<MetricsCollectable> collectable_;
};

}  // namespace faha

#endif  // FAHA_SERVER_NODE_NODE_H_
