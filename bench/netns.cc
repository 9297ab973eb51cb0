#include "bench/netns.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <sstream>

namespace faha::drill {

Status RunIp(const std::vector<std::string>& args, std::string* out) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return Status::IOError("pipe failed");
  std::vector<std::string> argv_s = {"ip"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(pipefd[0]);
    close(pipefd[1]);
    return Status::IOError("fork failed");
  }
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    execvp("ip", argv.data());
    _exit(127);
  }
  close(pipefd[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (out) *out = text;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd = "ip";
    for (const auto& a : args) cmd += " " + a;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return Status::IOError("'" + cmd + "' failed: " + text);
  }
  return Status::OK();
}

bool NetnsNetwork::Available(std::string* why) {
  if (geteuid() != 0) {
    *why = "not root";
    return false;
  }
  std::string out;
  Status s = RunIp({"netns", "list"}, &out);
  if (!s.ok()) {
    *why = s.message();
    return false;
  }
  return true;
}

namespace {

// "fdr<pid><kind><rest>" at the start of `line`: the name (up to a space,
// '@' or ':') and the pid. No <regex>: GCC 12 warns inside it under -O1.
bool ParseOurName(const std::string& line, char kind, std::string* name, std::string* pid) {
  if (line.rfind("fdr", 0) != 0) return false;
  size_t i = 3;
  while (i < line.size() && isdigit(static_cast<unsigned char>(line[i]))) i++;
  if (i == 3 || i >= line.size() || line[i] != kind) return false;
  *pid = line.substr(3, i - 3);
  size_t end = line.find_first_of(" @:", i);
  *name = line.substr(0, end);
  return true;
}

}  // namespace

void NetnsNetwork::CleanStale() {
  auto gone = [](const std::string& pid) { return kill(std::stoi(pid), 0) != 0 && errno == ESRCH; };
  std::string out, name, pid, line;
  if (RunIp({"netns", "list"}, &out).ok()) {
    std::istringstream in(out);
    while (std::getline(in, line)) {
      // Best effort, like all of this sweep: what stays is swept next time.
      if (ParseOurName(line, 'n', &name, &pid) && gone(pid)) {
        RunIp({"netns", "del", name}).IgnoreError();
      }
    }
  }
  if (RunIp({"-o", "link", "show", "type", "bridge"}, &out).ok()) {
    std::istringstream in(out);
    while (std::getline(in, line)) {
      // "12: fdr123br: <...>"
      size_t colon = line.find(": ");
      if (colon == std::string::npos) continue;
      if (ParseOurName(line.substr(colon + 2), 'b', &name, &pid) && gone(pid)) {
        RunIp({"link", "del", name}).IgnoreError();
      }
    }
  }
}

Status NetnsNetwork::Create(int nodes) {
  prefix_ = "fdr" + std::to_string(getpid());
  bridge_ = prefix_ + "br";
  // A /24 under 10.213/16 that no route of this machine covers yet.
  std::string subnet;
  for (int k = 0; k < 250 && subnet.empty(); k++) {
    const std::string candidate = "10.213." + std::to_string((getpid() + k) % 250 + 1);
    std::string out;
    if (!RunIp({"-4", "route", "show", "to", "match", candidate + ".0/24"}, &out).ok()) continue;
    std::istringstream in(out);
    std::string line;
    bool used = false;
    while (std::getline(in, line)) {
      if (!line.empty() && line.rfind("default", 0) != 0) used = true;
    }
    if (!used) subnet = candidate;
  }
  if (subnet.empty()) return Status::Busy("no free 10.213.x.0/24 subnet for the drill's bridge");
  bridge_address_ = subnet + ".1";
  created_ = true;
  Status s = RunIp({"link", "add", bridge_, "type", "bridge"});
  if (s.ok()) s = RunIp({"addr", "add", bridge_address_ + "/24", "dev", bridge_});
  if (s.ok()) s = RunIp({"link", "set", bridge_, "up"});
  for (int i = 0; i < nodes && s.ok(); i++) {
    const std::string ns = prefix_ + "n" + std::to_string(i + 1);
    const std::string veth = prefix_ + "v" + std::to_string(i + 1);
    const std::string peer = prefix_ + "p" + std::to_string(i + 1);
    const std::string addr = subnet + "." + std::to_string(10 + i + 1);
    ns_.push_back(ns);
    veth_.push_back(veth);
    addresses_.push_back(addr);
    s = RunIp({"netns", "add", ns});
    if (s.ok()) s = RunIp({"link", "add", veth, "type", "veth", "peer", "name", peer});
    if (s.ok()) s = RunIp({"link", "set", peer, "netns", ns});
    if (s.ok()) s = RunIp({"link", "set", veth, "master", bridge_});
    if (s.ok()) s = RunIp({"link", "set", veth, "up"});
    if (s.ok()) s = RunIp({"-n", ns, "addr", "add", addr + "/24", "dev", peer});
    if (s.ok()) s = RunIp({"-n", ns, "link", "set", peer, "up"});
    if (s.ok()) s = RunIp({"-n", ns, "link", "set", "lo", "up"});
  }
  if (!s.ok()) Destroy();
  return s;
}

void NetnsNetwork::Destroy() {
  if (!created_) return;
  created_ = false;
  // Best effort: the next run sweeps what is left (the names carry our pid).
  for (const auto& ns : ns_) RunIp({"netns", "del", ns}).IgnoreError();  // and its veth pair
  RunIp({"link", "del", bridge_}).IgnoreError();
  ns_.clear();
  veth_.clear();
  addresses_.clear();
}

NetnsNetwork::~NetnsNetwork() { Destroy(); }

Status NetnsNetwork::Cut(int i) { return RunIp({"link", "set", veth_[i], "down"}); }
Status NetnsNetwork::Heal(int i) { return RunIp({"link", "set", veth_[i], "up"}); }

}  // namespace faha::drill
