#include "tests/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/clock.h"
#include "common/net.h"
#include "common/process.h"
#include "common/stopped.h"
#include "faha/client.h"

namespace faha::test {
namespace {}  // namespace

std::string BinDir() {
  const char* d = getenv("FAHA_BIN_DIR");
  return d ? d : "./build";
}

std::unique_ptr<Client> ConnectClient(const std::string& address, int op_timeout_ms) {
  ClientOptions o;
  o.address = address;
  o.op_timeout_ms = op_timeout_ms;
  auto c = Client::Connect(o);
  EXPECT_TRUE(c.ok()) << address << ": " << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

std::string InfoField(Client* c, const std::string& field, const std::string& section) {
  auto r = c->Command({"INFO", section});
  if (!r.ok()) return "";
  std::string key = field + ":";
  size_t at = r->str.find("\n" + key);
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  return r->str.substr(at, r->str.find('\r', at) - at);
}

const std::string& TestHost() {
  static const std::string host = getenv("FAHA_TEST_HOST") ? getenv("FAHA_TEST_HOST") : "127.0.0.1";
  return host;
}

const std::string& TestReplTransport() {
  static const std::string t =
      getenv("FAHA_REPL_TRANSPORT") ? getenv("FAHA_REPL_TRANSPORT") : "tcp";
  return t;
}

double TestSlowdown() {
  static const double f =
      getenv("FAHA_TEST_SLOWDOWN") ? std::max(1.0, atof(getenv("FAHA_TEST_SLOWDOWN"))) : 1.0;
  return f;
}

int FreePort() {
  // A port is free until someone binds it: one handed out earlier but not yet
  // bound (a backup's replication port, say) must not be handed out again.
  static std::mutex mu;
  static std::set<int> given;
  std::lock_guard<std::mutex> l(mu);
  for (int tries = 0; tries < 100; tries++) {
    StatusOr<int> port = net::FreeLoopbackPort();
    if (!port.ok()) throw std::runtime_error(port.status().ToString());
    if (given.insert(*port).second) return *port;
  }
  throw std::runtime_error("no loopback port that was not handed out already");
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/faha-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  path_ = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

RunResult RunTool(const std::vector<std::string>& argv, const std::string& input, int timeout_ms) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe(in_pipe) || pipe(out_pipe) || pipe(err_pipe)) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]})
      close(fd);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    fprintf(stderr, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  RunResult r;
  size_t in_pos = 0;
  int in_fd = in_pipe[1];
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  if (input.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  int64_t deadline = MonoMs() + timeout_ms;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd p[3] = {{out_open ? out_pipe[0] : -1, POLLIN, 0},
                   {err_open ? err_pipe[0] : -1, POLLIN, 0},
                   {in_fd, POLLOUT, 0}};
    int wait = static_cast<int>(deadline - MonoMs());
    if (wait <= 0) break;
    poll(p, 3, wait);
    char buf[65536];
    if (p[0].revents) {
      ssize_t n = read(out_pipe[0], buf, sizeof(buf));
      if (n <= 0)
        out_open = false;
      else
        r.out.append(buf, n);
    }
    if (p[1].revents) {
      ssize_t n = read(err_pipe[0], buf, sizeof(buf));
      if (n <= 0)
        err_open = false;
      else
        r.err.append(buf, n);
    }
    if (in_fd >= 0 && p[2].revents) {
      ssize_t n = write(in_fd, input.data() + in_pos, input.size() - in_pos);
      if (n > 0) in_pos += n;
      if (n < 0 || in_pos == input.size()) {
        close(in_fd);
        in_fd = -1;
      }
    }
  }
  if (in_fd >= 0) close(in_fd);
  close(out_pipe[0]);
  close(err_pipe[0]);
  int status = 0;
  if (out_open || err_open) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    r.exit_code = -1;
    return r;
  }
  while (true) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (MonoMs() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.exit_code = -1;
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

ServerProcess::ServerProcess(std::string data_dir, std::vector<std::string> extra_flags)
    : data_dir_(std::move(data_dir)), flags_(std::move(extra_flags)), port_(FreePort()) {
  log_path_ = data_dir_ + ".server.log";
}

namespace {

// The TCP ports process `pid` listens on (its socket inodes looked up in
// /proc/net/tcp and tcp6).
std::set<int> ListeningPorts(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code ec;
  const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  for (auto it = std::filesystem::directory_iterator(fds, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::error_code gone;  // an fd closed meanwhile: skip it, keep listing
    std::string target = std::filesystem::read_symlink(it->path(), gone).string();
    if (!gone && target.rfind("socket:[", 0) == 0)
      inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<int> ports;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
      f >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (state != "0A" || !inodes.count(inode)) continue;  // 0A: LISTEN
      const size_t colon = local.rfind(':');
      ports.insert(static_cast<int>(std::stoul(local.substr(colon + 1), nullptr, 16)));
    }
  }
  return ports;
}

std::string DescribePorts(const std::set<int>& ports) {
  std::string out;
  for (int p : ports) out += " " + std::to_string(p);
  return out.empty() ? " none" : out;
}

// One line per thread of process `pid`: its name, state and, when it sleeps,
// the kernel function it waits in (a server that stopped answering shows
// where each thread is).
std::string DescribeThreads(pid_t pid) {
  std::string out;
  std::error_code ec;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (auto it = std::filesystem::directory_iterator(tasks, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    auto read = [&](const char* what) {
      std::ifstream in(it->path() / what);
      std::string text;
      std::getline(in, text);
      return text;
    };
    out += "    " + it->path().filename().string() + " " + read("comm") + " " +
           ThreadState(it->path()) + " " + read("wchan") + "\n";
  }
  return out;
}

}  // namespace

ServerProcess::~ServerProcess() {
  // A failed test says whether each of its servers was still alive, and if so
  // where it listened.
  const bool failed = ::testing::Test::HasFailure();
  if (pid_ > 0) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      if (failed) {
        fprintf(stderr, "--- server %d (%s) had %s %d before the test ended\n", pid_,
                log_path_.c_str(), WIFEXITED(status) ? "exited with status" : "died of signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      }
    } else {
      if (failed) {
        fprintf(stderr, "--- server %d (%s) was running, listening on TCP ports:%s\n", pid_,
                log_path_.c_str(), DescribePorts(ListeningPorts(pid_)).c_str());
        fprintf(stderr, "--- its threads (id, name, state, kernel wait):\n%s",
                DescribeThreads(pid_).c_str());
      }
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // A failed test shows what its servers said last.
  if (failed) {
    std::ifstream in(log_path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    const size_t from = lines.size() > 40 ? lines.size() - 40 : 0;
    fprintf(stderr, "--- last %zu lines of %s\n", lines.size() - from, log_path_.c_str());
    for (size_t i = from; i < lines.size(); i++) fprintf(stderr, "%s\n", lines[i].c_str());
  }
  unlink(log_path_.c_str());
}

void ServerProcess::Start() {
  std::vector<std::string> argv = {BinDir() + "/faha-server", "--data_dir=" + data_dir_,
                                   "--port=" + std::to_string(port_), "--bind=" + TestHost(),
                                   "--metrics_port=-1"};
  for (const auto& f : flags_) argv.push_back(f);
  SpawnOptions o;
  o.log_path = log_path_;
  o.die_with_parent = false;  // PR_SET_PDEATHSIG follows the forking thread, not the test
  o.open_files_limit = nofile_;
  auto pid = Spawn(argv, o);
  if (!pid.ok()) throw std::runtime_error("start faha-server: " + pid.status().ToString());
  pid_ = *pid;
}

bool ServerProcess::WaitReady(int timeout_ms) {
  int64_t deadline = MonoMs() + timeout_ms;
  while (MonoMs() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    ClientOptions o;
    o.address = address();
    o.connect_timeout_ms = 200;
    o.op_timeout_ms = 1000;
    // A password-protected server answers PING too, so a bare connect works.
    // Only this server's answer counts: another test's server may hold the
    // port (this one then fails to bind and exits).
    auto c = Client::Connect(o);
    if ((c.ok() || c.status().code() == Status::Code::kAuth) &&
        ListeningPorts(pid_).count(port_) > 0)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int ServerProcess::Kill(int sig) {
  if (pid_ <= 0) return -1;
  if (kill(pid_, sig) != 0) return -1;
  if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT) return WaitExit();
  if (sig == SIGSTOP && !WaitAllThreadsStopped(pid_, 5000)) return -1;
  return 0;
}

int ServerProcess::WaitExit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int64_t deadline = MonoMs() + timeout_ms;
  int status = 0;
  while (true) {
    pid_t w = waitpid(pid_, &status, WNOHANG);
    if (w == pid_) break;
    if (MonoMs() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ServerProcess::Log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string RawExchange(int port, const std::string& bytes, int timeout_ms,
                        bool* closed_by_server) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, TestHost().c_str(), &a.sin_addr);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(s);
    return "<connect failed>";
  }
  size_t sent = 0;
  std::string out;
  int64_t deadline = MonoMs() + timeout_ms;
  bool closed = false;
  while (MonoMs() < deadline) {
    pollfd p{s, static_cast<short>(POLLIN | (sent < bytes.size() ? POLLOUT : 0)), 0};
    poll(&p, 1, 50);
    if ((p.revents & POLLOUT) && sent < bytes.size()) {
      ssize_t n = send(s, bytes.data() + sent, std::min<size_t>(bytes.size() - sent, 1 << 20),
                       MSG_NOSIGNAL);
      if (n > 0) sent += n;
      if (n < 0 && errno != EAGAIN) {
        // The server may close while we still send (e.g. after refusing a frame).
        sent = bytes.size();
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      ssize_t n = recv(s, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed = true;
        break;
      }
      out.append(buf, n);
    }
  }
  close(s);
  if (closed_by_server) *closed_by_server = closed;
  return out;
}

RespConnection::RespConnection(int port, int timeout_ms) : timeout_ms_(timeout_ms) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd_);
    fd_ = -1;
  }
}

RespConnection::~RespConnection() {
  if (fd_ >= 0) close(fd_);
}

std::string RespConnection::Call(const std::vector<std::string>& args) {
  if (fd_ < 0) return "<not connected>";
  std::string req = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) req += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  for (size_t sent = 0; sent < req.size();) {
    ssize_t n = send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return "<send failed>";
    sent += static_cast<size_t>(n);
  }
  deadline_ms_ = MonoMs() + timeout_ms_;
  size_t end = 0;
  if (!ReadValue(&end)) return "<no whole reply: " + in_ + ">";
  std::string reply = in_.substr(0, end);
  in_.erase(0, end);
  return reply;
}

std::vector<std::string> RespConnection::Pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  std::vector<std::string> replies;
  std::string req;
  for (const auto& args : commands) {
    req += "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) req += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  }
  bool sent_all = fd_ >= 0;
  for (size_t sent = 0; sent_all && sent < req.size();) {
    ssize_t n = send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) sent_all = false;
    if (n > 0) sent += static_cast<size_t>(n);
  }
  deadline_ms_ = MonoMs() + timeout_ms_;
  while (replies.size() < commands.size()) {
    size_t end = 0;
    if (!sent_all || !ReadValue(&end)) {
      replies.push_back("<no reply>");
      continue;
    }
    replies.push_back(in_.substr(0, end));
    in_.erase(0, end);
  }
  return replies;
}

bool RespConnection::Fill() {
  while (MonoMs() < deadline_ms_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
  return false;
}

bool RespConnection::ReadLine(size_t pos, size_t* eol) {
  while ((*eol = in_.find("\r\n", pos)) == std::string::npos) {
    if (!Fill()) return false;
  }
  return true;
}

bool RespConnection::ReadValue(size_t* pos) {
  size_t eol;
  if (!ReadLine(*pos, &eol)) return false;
  const char type = in_[*pos];
  const long long n = std::atoll(in_.c_str() + *pos + 1);
  *pos = eol + 2;
  if (type == '$' && n >= 0) {
    while (in_.size() < *pos + static_cast<size_t>(n) + 2) {
      if (!Fill()) return false;
    }
    *pos += static_cast<size_t>(n) + 2;
  } else if (type == '*') {
    for (long long i = 0; i < n; i++) {
      if (!ReadValue(pos)) return false;
    }
  }
  return true;
}

RedisServer::RedisServer(const std::string& dir, std::vector<std::string> flags)
    : port_(FreePort()) {
  std::vector<std::string> args = {
      "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--dir", dir,
      "--save",       ""};
  args.insert(args.end(), flags.begin(), flags.end());
  SpawnOptions o;
  o.die_with_parent = false;
  auto pid = Spawn(args, o);
  if (!pid.ok()) throw std::runtime_error("start redis-server: " + pid.status().ToString());
  pid_ = *pid;
}

RedisServer::~RedisServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool RedisServer::WaitReady() {
  for (int64_t deadline = MonoMs() + 10000; MonoMs() < deadline;) {
    if (RunTool({"redis-cli", "-p", std::to_string(port_), "PING"}).out == "PONG\n") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::vector<std::pair<native::Code, std::string>> NativeExchange(int port, const std::string& bytes,
                                                                 int responses,
                                                                 std::vector<uint64_t>* stamps) {
  std::vector<std::pair<native::Code, std::string>> out;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, TestHost().c_str(), &a.sin_addr);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return out;
  }
  EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  std::string in;
  char buf[4096];
  while (static_cast<int>(out.size()) < responses) {
    native::Response r;
    size_t used = 0;
    std::string err;
    if (native::DecodeResponse(in, 1 << 20, &r, &used, &err) == native::DecodeResult::kOk) {
      out.emplace_back(r.code, std::string(r.body));
      if (stamps) stamps->push_back(r.stamp);
      in.erase(0, used);
      continue;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

}  // namespace faha::test
