// faha_acked_writer: the two halves of a crash check.
//   write --address A --record FILE [--depth N] [--seconds S] [--prefix P]
//     writes keys P0, P1, ... (pipelined, N in flight) until stopped or S
//     seconds pass, and appends "KEY VALUE" to FILE for every acknowledged
//     write, right after its acknowledgement (and fdatasyncs FILE).
//   check --address A --record FILE
//     reads every key FILE names back and fails unless each holds its value.
// A power cut (qemu killed) or kill -9 can land anywhere between the two.
// A password, if the server wants one, comes from FAHA_PASSWORD.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "faha/client.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: faha_acked_writer write --address A --record FILE [--depth N] "
               "[--seconds S] [--prefix P]\n"
               "       faha_acked_writer check --address A --record FILE\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string mode = argv[1], address, record, prefix = "acked:";
  int depth = 16;
  double seconds = 1e9;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "--address")
      address = v;
    else if (f == "--record")
      record = v;
    else if (f == "--depth")
      depth = std::max(1, std::atoi(v.c_str()));
    else if (f == "--seconds")
      seconds = std::atof(v.c_str());
    else if (f == "--prefix")
      prefix = v;
    else
      return Usage();
  }
  if (address.empty() || record.empty()) return Usage();
  faha::ClientOptions opt;
  opt.address = address;
  if (const char* pw = std::getenv("FAHA_PASSWORD")) opt.password = pw;  // as faha-cli
  opt.op_timeout_ms = 20000;  // emulated machines are slow
  opt.connect_timeout_ms = 20000;
  auto c = faha::Client::Connect(opt);
  if (!c.ok()) {
    std::fprintf(stderr, "faha_acked_writer: %s\n", c.status().ToString().c_str());
    return 1;
  }
  if (mode == "write") {
    int fd = open(record.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
      std::perror(record.c_str());
      return 1;
    }
    std::mt19937_64 rng(std::random_device{}());
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    uint64_t next = 0, acked = 0;
    while (std::chrono::steady_clock::now() < end) {
      std::vector<std::string> lines(depth);
      std::vector<bool> ok(depth, false);
      for (int i = 0; i < depth; i++) {
        std::string key = prefix + std::to_string(next++);
        std::string value = "v" + std::to_string(rng()) + std::string(200, 'x');
        lines[i] = key + " " + value + "\n";
        (*c)->PutAsync(key, value, [&ok, i](const faha::Status& s) { ok[i] = s.ok(); });
      }
      faha::Status s = (*c)->Flush();
      std::string out;
      for (int i = 0; i < depth; i++) {
        if (ok[i]) out += lines[i], acked++;
      }
      if (!out.empty() && (write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size()) ||
                           fdatasync(fd) != 0)) {
        std::perror("recording acknowledged writes");
        return 1;
      }
      if (!s.ok()) {
        std::fprintf(stderr, "faha_acked_writer: %s after %llu acknowledged writes\n",
                     s.ToString().c_str(), static_cast<unsigned long long>(acked));
        return 1;
      }
    }
    std::printf("faha_acked_writer: %llu acknowledged writes recorded\n",
                static_cast<unsigned long long>(acked));
    return 0;
  }
  if (mode == "check") {
    std::ifstream in(record);
    if (!in) {
      std::perror(record.c_str());
      return 1;
    }
    std::string line;
    uint64_t checked = 0, missing = 0, wrong = 0;
    while (std::getline(in, line)) {
      size_t sp = line.find(' ');
      if (sp == std::string::npos) continue;  // a line torn by the power cut: never acked in full
      std::string key = line.substr(0, sp), want = line.substr(sp + 1), got;
      faha::Status s = (*c)->Get(key, &got);
      checked++;
      if (s.IsNotFound()) {
        if (missing++ < 5) std::fprintf(stderr, "missing: %s\n", key.c_str());
      } else if (!s.ok()) {
        std::fprintf(stderr, "faha_acked_writer: GET %s: %s\n", key.c_str(), s.ToString().c_str());
        return 1;
      } else if (got != want) {
        if (wrong++ < 5) std::fprintf(stderr, "wrong value: %s\n", key.c_str());
      }
    }
    std::printf("faha_acked_writer: checked %llu acknowledged writes: %llu missing, %llu wrong\n",
                static_cast<unsigned long long>(checked), static_cast<unsigned long long>(missing),
                static_cast<unsigned long long>(wrong));
    return missing || wrong || checked == 0 ? 1 : 0;
  }
  return Usage();
}
