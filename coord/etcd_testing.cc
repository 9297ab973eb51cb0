// EtcdProcess: fork/exec of a single-member etcd for tests (see etcd_testing.h).
#include "coord/etcd_testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "common/net.h"
#include "common/process.h"
#include "common/stopped.h"
#include "common/strings.h"
#include "coord/etcd_client.h"

namespace faha::coord {
namespace {

constexpr int kLaunchAttempts = 3;  // a picked port can be taken before etcd binds it

// waitpid that retries on EINTR.
pid_t WaitPid(pid_t pid, int* status, int flags) {
  pid_t r;
  do {
    r = waitpid(pid, status, flags);
  } while (r < 0 && errno == EINTR);
  return r;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

Status PickFreePorts(int* a, int* b) {
  StatusOr<int> first = net::FreeLoopbackPort();
  if (!first.ok()) return first.status();
  for (int attempt = 0; attempt < 10; attempt++) {
    StatusOr<int> second = net::FreeLoopbackPort();
    if (!second.ok()) return second.status();
    if (*second == *first) continue;  // released, then handed out again
    *a = *first;
    *b = *second;
    return Status::OK();
  }
  return Status::Unavailable("no second free loopback port");
}

EtcdProcess::~EtcdProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    WaitPid(pid_, &status, 0);
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string EtcdProcess::endpoint() const {
  if (client_port_ == 0) return std::string();
  return "http://127.0.0.1:" + std::to_string(client_port_);
}

std::string EtcdProcess::endpoint_on_extra_host() const {
  if (client_port_ == 0 || extra_host_.empty()) return std::string();
  return "http://" + extra_host_ + ":" + std::to_string(client_port_);
}

Status EtcdProcess::Start() {
  if (pid_ > 0)
    return Status::InvalidArgument("etcd is already running as pid " + std::to_string(pid_));
  const bool fresh = dir_.empty();
  if (fresh) {
    char tmpl[] = "/tmp/faha-etcd-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Status::IOError(Errno("mkdtemp /tmp/faha-etcd-XXXXXX"));
    dir_ = tmpl;
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(start_timeout_ms_);
  Status s;
  for (int attempt = 0; attempt < kLaunchAttempts; ++attempt) {
    if (fresh) {
      FAHA_RETURN_IF_ERROR(PickFreePorts(&client_port_, &peer_port_));
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    s = Launch(static_cast<int>(left.count()));
    // Unavailable: etcd exited before answering, most likely because another
    // process took a picked port; a fresh etcd tries again on new ports.
    if (s.ok() || !fresh || s.code() != Status::Code::kUnavailable) return s;
    std::error_code ec;
    std::filesystem::remove_all(dir_ + "/data", ec);
  }
  return s;
}

Status EtcdProcess::Launch(int deadline_ms) {
  const char* env_bin = std::getenv("FAHA_ETCD_BIN");
  const std::string bin = env_bin != nullptr && env_bin[0] != '\0' ? env_bin : "/usr/bin/etcd";
  if (access(bin.c_str(), X_OK) != 0) return Status::NotFound(Errno(bin.c_str()));
  const std::string client_url = endpoint();
  const std::string listen_urls =
      extra_host_.empty() ? client_url : client_url + "," + endpoint_on_extra_host();
  const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> args = {bin,
                                   "--name",
                                   "t",
                                   "--data-dir",
                                   dir_ + "/data",
                                   "--listen-client-urls",
                                   listen_urls,
                                   "--advertise-client-urls",
                                   listen_urls,
                                   "--listen-peer-urls",
                                   peer_url,
                                   "--initial-advertise-peer-urls",
                                   peer_url,
                                   "--initial-cluster",
                                   "t=" + peer_url,
                                   "--heartbeat-interval",
                                   "20",
                                   "--election-timeout",
                                   "200",
                                   "--log-level",
                                   "error"};
  const std::string log = log_path();
  SpawnOptions o;
  o.log_path = log;
  StatusOr<pid_t> pid = Spawn(args, o);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;

  StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Create(client_url, 1000);
  if (!client.ok()) return client.status();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(deadline_ms);
  Status last;
  while (true) {
    int status = 0;
    if (WaitPid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::Unavailable("etcd on " + client_url + " exited (" + DescribeExit(status) +
                                 ") before answering; " + log + ":\n" + LogTail());
    }
    // A linearizable read: answers only once etcd has a leader.
    last = (*client)->Get("faha/etcd-process/probe").status();
    if (last.ok()) return Status::OK();
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
  }
  Kill(SIGKILL).IgnoreError();  // the timeout is what to report
  return Status::Timeout("etcd on " + client_url + " did not answer within " +
                         std::to_string(deadline_ms) + " ms (last: " + last.ToString() + "); " +
                         log + ":\n" + LogTail());
}

Status EtcdProcess::Kill(int sig) {
  if (pid_ <= 0) return Status::InvalidArgument("etcd is not running");
  if (kill(pid_, sig) != 0) return Status::IOError(Errno("kill"));
  if (sig == SIGSTOP && !WaitAllThreadsStopped(pid_, 5000)) {
    return Status::IOError("etcd's threads did not all stop within 5 s of SIGSTOP");
  }
  if (sig != SIGKILL && sig != SIGTERM && sig != SIGINT) return Status::OK();
  if (sig != SIGKILL) kill(pid_, SIGCONT);  // a stopped etcd could not act on it
  int status = 0;
  if (WaitPid(pid_, &status, 0) != pid_) return Status::IOError(Errno("waitpid"));
  pid_ = -1;
  return Status::OK();
}

std::string EtcdProcess::LogTail() const {
  constexpr std::streamoff kTail = 2000;
  std::ifstream in(log_path(), std::ios::binary);
  if (!in) return "(no log)";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(size > kTail ? size - kTail : 0);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace faha::coord
