// faha-txn-bench: SETs per second through transactions against the same SETs
// pipelined, from many RESP clients (one thread each). Every client sends
// --depth groups at a time and waits for all their replies:
//   --mode=multi      a group is MULTI, --sets SETs, EXEC
//   --mode=pipelined  a group is --sets SETs
// Keys are random among --keys, values --value_bytes long. Prints one line:
// "mode=M sets=N seconds=S sets_per_sec=R errors=E". Any server that speaks
// RESP (FaHA, redis-server). Used by bench/txn_bench.sh.
#include <arpa/inet.h>
#include <gflags/gflags.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

DEFINE_int32(port, 7379, "Server port on 127.0.0.1.");
DEFINE_string(mode, "multi", "multi or pipelined.");
DEFINE_int32(clients, 50, "Connections, one thread each.");
DEFINE_int32(depth, 4, "Groups each client has in flight.");
DEFINE_int32(sets, 10, "SETs per group.");
DEFINE_int32(value_bytes, 100, "Bytes per value.");
DEFINE_int32(keys, 100000, "Distinct keys.");
DEFINE_double(seconds, 5, "How long to run.");

namespace {

void AppendCommand(std::string* out, const std::vector<std::string>& args) {
  *out += "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) *out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
}

int Connect() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(FLAGS_port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Skips one RESP reply at in[*pos..] (no copies: the client must cost the
// shared CPU little); counts error replies, nested ones too. False if the
// reply is not whole yet.
bool SkipReply(const std::string& in, size_t* pos, uint64_t* errors) {
  const size_t eol = in.find("\r\n", *pos);
  if (eol == std::string::npos) return false;
  const char type = in[*pos];
  const long long n = type == '+' || type == '-' ? 0 : atoll(in.c_str() + *pos + 1);
  size_t at = eol + 2;
  if (type == '-') (*errors)++;
  if (type == '$' && n >= 0) {
    if (in.size() < at + static_cast<size_t>(n) + 2) return false;
    at += static_cast<size_t>(n) + 2;
  }
  if (type == '*') {
    for (long long i = 0; i < n; i++) {
      if (!SkipReply(in, &at, errors)) return false;
    }
  }
  *pos = at;
  return true;
}

// Runs one client until `stop`; adds its SETs and error replies.
void Client(int id, const std::atomic<bool>* stop, std::atomic<uint64_t>* sets,
            std::atomic<uint64_t>* errors) {
  const int fd = Connect();
  if (fd < 0) {
    errors->fetch_add(1);
    return;
  }
  std::mt19937_64 rng(static_cast<uint64_t>(id) * 7919 + 1);
  const std::string value(static_cast<size_t>(FLAGS_value_bytes), 'v');
  const bool multi = FLAGS_mode == "multi";
  const int replies_per_group = FLAGS_sets + (multi ? 2 : 0);
  std::string out, in;
  char buf[65536];
  while (!stop->load(std::memory_order_relaxed)) {
    out.clear();
    for (int g = 0; g < FLAGS_depth; g++) {
      if (multi) AppendCommand(&out, {"MULTI"});
      for (int s = 0; s < FLAGS_sets; s++) {
        AppendCommand(&out, {"SET", "key:" + std::to_string(rng() % FLAGS_keys), value});
      }
      if (multi) AppendCommand(&out, {"EXEC"});
    }
    for (size_t sent = 0; sent < out.size();) {
      const ssize_t n = write(fd, out.data() + sent, out.size() - sent);
      if (n <= 0) {
        errors->fetch_add(1);
        close(fd);
        return;
      }
      sent += static_cast<size_t>(n);
    }
    int want = replies_per_group * FLAGS_depth;
    size_t pos = 0;
    uint64_t errs = 0;
    while (want > 0) {
      size_t at = pos;
      if (SkipReply(in, &at, &errs)) {
        pos = at;
        want--;
        continue;
      }
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) {
        errors->fetch_add(1);
        close(fd);
        return;
      }
      in.append(buf, static_cast<size_t>(n));
    }
    if (errs > 0) errors->fetch_add(errs);
    in.erase(0, pos);
    sets->fetch_add(static_cast<uint64_t>(FLAGS_sets) * FLAGS_depth, std::memory_order_relaxed);
  }
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_mode != "multi" && FLAGS_mode != "pipelined") {
    fprintf(stderr, "--mode must be multi or pipelined\n");
    return 2;
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sets{0}, errors{0};
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < FLAGS_clients; i++) threads.emplace_back(Client, i, &stop, &sets, &errors);
  std::this_thread::sleep_for(std::chrono::duration<double>(FLAGS_seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("mode=%s sets=%llu seconds=%.2f sets_per_sec=%.0f errors=%llu\n", FLAGS_mode.c_str(),
         static_cast<unsigned long long>(sets.load()), secs,
         static_cast<double>(sets.load()) / secs, static_cast<unsigned long long>(errors.load()));
  return errors.load() == 0 ? 0 : 1;
}
