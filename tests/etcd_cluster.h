// Three faha-server nodes coordinated by a real etcd (started on free
// loopback ports), for the failover tests: the nodes are made, not started.
#ifndef FAHA_TESTS_ETCD_CLUSTER_H_
#define FAHA_TESTS_ETCD_CLUSTER_H_

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "coord/etcd_testing.h"
#include "faha/client.h"
#include "tests/harness.h"

namespace faha::test {

class EtcdCluster {
 public:
  explicit EtcdCluster(std::vector<std::string> extra_flags = {"--segment_mb=16"}) {
    Status s = etcd_.Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    // Its own secret (the directory is unique): a repl port FreePort gave
    // this cluster may be taken by another test's node meanwhile.
    std::ofstream(dir_.path() + "/secret") << "etcd-cluster-test-secret-" << dir_.path() << "\n";
    for (int i = 1; i <= 3; i++) {
      std::vector<std::string> flags = {"--etcd=" + etcd_.endpoint(),
                                        "--cluster=t",
                                        "--node_id=n" + std::to_string(i),
                                        "--repl_port=" + std::to_string(FreePort()),
                                        "--cluster_secret_file=" + dir_.path() + "/secret",
                                        "--rdma=off"};
      flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
      nodes_.push_back(
          std::make_unique<ServerProcess>(dir_.path() + "/n" + std::to_string(i), flags));
    }
  }
  ServerProcess& node(int i) { return *nodes_[static_cast<size_t>(i)]; }
  void StartAll() {
    for (auto& n : nodes_) n->Start();
  }
  // Node i's data directory (i from 0).
  std::string data_dir(int i) const { return dir_.path() + "/n" + std::to_string(i + 1); }
  std::string all_addresses() {
    std::string a;
    for (auto& n : nodes_) a += (a.empty() ? "" : ",") + n->address();
    return a;
  }
  // Index of the node serving as primary with `in_sync` backups, or -1.
  int WaitPrimary(size_t in_sync, int timeout_ms = 20000) {
    return Wait(timeout_ms, [&](size_t i) {
      ClientOptions o;
      o.address = nodes_[i]->address();
      o.connect_timeout_ms = 300;
      o.op_timeout_ms = 1000;
      auto c = Client::Connect(o);
      return c.ok() && InfoField(c->get(), "serving", "replication") == "yes" &&
             InfoField(c->get(), "in_sync_backups", "replication") == std::to_string(in_sync);
    });
  }
  // Index of a node other than `skip` serving as primary (asked over RESP), or -1.
  int WaitServingPrimary(int skip = -1, int timeout_ms = 20000) {
    return Wait(timeout_ms, [&](size_t i) {
      if (static_cast<int>(i) == skip) return false;
      RespConnection c(nodes_[i]->port(), 1000);
      const std::string info = c.Call({"INFO", "replication"});
      return info.find("serving:yes") != std::string::npos &&
             info.find("cluster_role:primary") != std::string::npos;
    });
  }
  coord::EtcdProcess& etcd() { return etcd_; }

 private:
  template <typename Is>
  int Wait(int timeout_ms, Is is) {
    for (int64_t deadline = MonoMs() + timeout_ms; MonoMs() < deadline;) {
      for (size_t i = 0; i < nodes_.size(); i++) {
        if (nodes_[i]->running() && is(i)) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

  coord::EtcdProcess etcd_;
  TempDir dir_;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
};

}  // namespace faha::test

#endif  // FAHA_TESTS_ETCD_CLUSTER_H_
