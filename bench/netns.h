// NetnsNetwork: network namespaces for a drill, so a node's link can be cut.
// Create() makes a bridge in this (root) namespace with address
// 10.213.S.1/24 and, per node, a namespace with a veth pair: one end in the
// namespace (10.213.S.<10+i>/24, plus its own loopback), the other attached
// to the bridge. Nodes reach each other and the bridge address over it; the
// drill itself (in the root namespace) reaches every node. Cut(i) sets node
// i's bridge-side end down, which drops everything to and from it; Heal(i)
// sets it up again. Names carry the creating pid (fdr<pid>n<i>, fdr<pid>br),
// so CleanStale() can remove what a crashed drill left behind. Needs root and
// iproute2's `ip`. Not thread-safe: one thread owns it.
#ifndef FAHA_BENCH_NETNS_H_
#define FAHA_BENCH_NETNS_H_

#include <string>
#include <vector>

#include "faha/status.h"

namespace faha::drill {

class NetnsNetwork {
 public:
  NetnsNetwork() = default;
  ~NetnsNetwork();
  NetnsNetwork(const NetnsNetwork&) = delete;
  NetnsNetwork& operator=(const NetnsNetwork&) = delete;

  // Whether namespaces can be made here: root and an `ip` that works.
  static bool Available(std::string* why);
  // Removes namespaces and bridges left by drills whose pid is gone.
  static void CleanStale();

  Status Create(int nodes);
  // Removes what Create made (also done by the destructor).
  void Destroy();

  const std::string& ns(int i) const { return ns_[i]; }
  const std::string& address(int i) const { return addresses_[i]; }
  const std::string& bridge_address() const { return bridge_address_; }
  Status Cut(int i);
  Status Heal(int i);

 private:
  std::string prefix_;  // fdr<pid>
  std::string bridge_, bridge_address_;
  std::vector<std::string> ns_, veth_, addresses_;
  bool created_ = false;
};

// Runs `ip` with `args` (no shell); its stderr in the error on failure.
Status RunIp(const std::vector<std::string>& args, std::string* out = nullptr);

}  // namespace faha::drill

#endif  // FAHA_BENCH_NETNS_H_
