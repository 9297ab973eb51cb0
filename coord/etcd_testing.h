// EtcdProcess: a throw-away single-member etcd for tests. Start() runs
// /usr/bin/etcd (or $FAHA_ETCD_BIN) on two free 127.0.0.1 ports with its own
// data directory under /tmp, fast raft timers (heartbeat 20 ms, election
// 200 ms) and its output in <dir>/etcd.log, and returns once etcd serves a
// linearizable read. The destructor SIGKILLs that one pid and removes the
// directory; etcd also dies with the thread that started it (PR_SET_PDEATHSIG),
// so a crashed test leaves no etcd behind. Thread-compatible: one thread owns it.
#ifndef FAHA_COORD_ETCD_TESTING_H_
#define FAHA_COORD_ETCD_TESTING_H_

#include <sys/types.h>

#include <string>

#include "faha/status.h"

namespace faha::coord {

// Two distinct loopback ports that were free a moment ago (both bound to
// port 0 at once, read back, released).
Status PickFreePorts(int* a, int* b);

class EtcdProcess {
 public:
  EtcdProcess() = default;
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Starts etcd and waits up to start_timeout_ms (15 s) until it answers. The first Start()
  // creates the data directory and picks the ports; a Start() after a Kill()
  // that stopped etcd restarts it on the same ports and data.
  Status Start();
  // Sends `sig` to etcd. For SIGKILL, SIGTERM and SIGINT also waits for etcd to
  // exit; SIGSTOP returns once every thread has stopped; other signals
  // (SIGCONT) are only delivered.
  Status Kill(int sig);

  // Before the first Start(): etcd also serves clients on `host` (an address
  // of this machine, such as a bridge to network namespaces), same port.
  void AlsoListenOn(const std::string& host) { extra_host_ = host; }
  // How long Start() waits for etcd to answer (emulated machines need more).
  void set_start_timeout_ms(int ms) { start_timeout_ms_ = ms; }

  // "http://127.0.0.1:<client port>"; empty before the first Start().
  std::string endpoint() const;
  // The same port on AlsoListenOn's host.
  std::string endpoint_on_extra_host() const;
  int client_port() const { return client_port_; }
  pid_t pid() const { return pid_; }  // -1 when not running
  const std::string& dir() const { return dir_; }
  std::string log_path() const { return dir_ + "/etcd.log"; }

 private:
  // One attempt to launch etcd and see it answer within deadline_ms.
  Status Launch(int deadline_ms);
  // The last lines of etcd.log, for error messages.
  std::string LogTail() const;

  std::string dir_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::string extra_host_;
  pid_t pid_ = -1;
  int start_timeout_ms_ = 15000;
};

}  // namespace faha::coord

#endif  // FAHA_COORD_ETCD_TESTING_H_
