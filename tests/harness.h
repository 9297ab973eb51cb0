// Helpers for integration tests that run real faha-server processes on
// 127.0.0.1: free ports, private data directories, starting a server and
// polling until it answers, stopping exactly the processes a test started (by
// pid), and running command-line tools with a timeout. Single-threaded use.
#ifndef FAHA_TESTS_HARNESS_H_
#define FAHA_TESTS_HARNESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/native_protocol.h"
#include "faha/client.h"

namespace faha::test {

// Directory of the built binaries (FAHA_BIN_DIR, set by CTest).
std::string BinDir();
// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// The address test servers bind: FAHA_TEST_HOST (the soft-RoCE guest sets the
// address of its RDMA device) or 127.0.0.1.
const std::string& TestHost();
// The replication transport of test clusters: FAHA_REPL_TRANSPORT or "tcp".
const std::string& TestReplTransport();
// How much slower than this machine the tests run: FAHA_TEST_SLOWDOWN (the
// soft-RoCE guest, emulated by TCG, sets it) or 1. Latency bounds that are
// about the product on real hardware are multiplied by it.
double TestSlowdown();

// A fresh directory under /tmp, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;  // -1 if killed by the timeout
  std::string out;     // stdout
  std::string err;     // stderr
};
// Runs argv with `input` on stdin; kills it after timeout_ms.
RunResult RunTool(const std::vector<std::string>& argv, const std::string& input = "",
                  int timeout_ms = 30000);

// A client of `address` (a failed connect is a test failure, and null).
std::unique_ptr<Client> ConnectClient(const std::string& address, int op_timeout_ms = 10000);

// One field of INFO (of `section`, or of everything), "" if absent.
std::string InfoField(Client* c, const std::string& field,
                      const std::string& section = "everything");

class ServerProcess {
 public:
  // Starts faha-server on a free port with its own data dir `data_dir` and the
  // extra flags; does not wait (see WaitReady).
  ServerProcess(std::string data_dir, std::vector<std::string> extra_flags = {});
  ~ServerProcess();  // SIGKILLs the process if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  void Start();
  // Polls PING until the server answers (true) or it exits / times out (false).
  bool WaitReady(int timeout_ms = 20000);
  // Sends `sig` and, for terminating signals, waits for the exit status; for
  // SIGSTOP, waits until every thread has stopped (a stop reaches the threads
  // of a process one after another: until then some still run). -1 on failure.
  int Kill(int sig);
  // Waits for exit; returns the exit code (128+signal if signalled), -1 on timeout.
  int WaitExit(int timeout_ms = 20000);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Starts the server with this open-files limit (soft and hard), as
  // `prlimit --nofile` would. 0: inherit ours.
  void set_open_files_limit(uint64_t n) { nofile_ = n; }
  int port() const { return port_; }
  std::string address() const { return TestHost() + ":" + std::to_string(port_); }
  // The server's stderr so far.
  std::string Log() const;

 private:
  std::string data_dir_;
  std::vector<std::string> flags_;
  int port_;
  pid_t pid_ = -1;
  uint64_t nofile_ = 0;
  std::string log_path_;
};

// Sends raw bytes to 127.0.0.1:port and reads until the server closes the
// connection or timeout_ms passes. Returns what was read.
std::string RawExchange(int port, const std::string& bytes, int timeout_ms = 5000,
                        bool* closed_by_server = nullptr);

// A RESP connection to 127.0.0.1:port (faha-server or redis-server) that
// sends one command at a time and returns the raw bytes of its reply, so
// replies can be compared byte for byte. "<...>" on a failure.
class RespConnection {
 public:
  explicit RespConnection(int port, int timeout_ms = 10000);
  ~RespConnection();
  RespConnection(const RespConnection&) = delete;
  RespConnection& operator=(const RespConnection&) = delete;
  std::string Call(const std::vector<std::string>& args);
  // Sends every command at once, then reads one reply per command (an
  // "<...>" placeholder for each that did not come: a timeout or a close).
  std::vector<std::string> Pipeline(const std::vector<std::vector<std::string>>& commands);

 private:
  // Reads one whole RESP value from the buffer at *pos (more from the socket
  // as needed) and advances *pos past it. False on a timeout or a close.
  bool ReadValue(size_t* pos);
  bool ReadLine(size_t pos, size_t* eol);
  bool Fill();

  int fd_ = -1;
  int timeout_ms_;
  int64_t deadline_ms_ = 0;
  std::string in_;
};

// A redis-server on a free loopback port with its own directory, without
// persistence unless `flags` ask for it; killed by pid.
class RedisServer {
 public:
  RedisServer(const std::string& dir, std::vector<std::string> flags = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  // Polls PING until it answers.
  bool WaitReady();
  int port() const { return port_; }

 private:
  int port_;
  pid_t pid_ = -1;
};

// Sends `bytes` (native requests) on a fresh connection to TestHost():port
// and reads `responses` native responses: each one's code and body, and its
// commit stamp into `stamps` if given.
std::vector<std::pair<native::Code, std::string>> NativeExchange(int port, const std::string& bytes,
                                                                 int responses,
                                                                 std::vector<uint64_t>* stamps);

}  // namespace faha::test

#endif  // FAHA_TESTS_HARNESS_H_
