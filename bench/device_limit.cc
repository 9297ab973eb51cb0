// faha_device_limit: the durable-write limit of a file system, measured the way
// a log writer uses it. One thread writes BYTES at increasing offsets into a
// preallocated, zero-written file (the state a FaHA segment is in) and makes
// each write durable before the next, printing ops/s and latency percentiles.
// bench/write_path.sh prints it beside faha and Redis as "the device limit".
//
// Modes (--mode), each a way a log could make a write durable:
//   pwrite_fdatasync  pwrite, then fdatasync (what faha's file device does)
//   rwf_dsync         pwritev2(..., RWF_DSYNC): write and sync in one call
//   odirect_dsync     O_DIRECT | O_DSYNC, 4 KiB-aligned blocks: the blocks that
//                     hold the record are rewritten whole (no page cache)
//   all               each of the above, one after another
// --writers N (default 1): N threads write and sync at once, each its own
// offsets of the same file, so N syncs are in flight: what a log writer gains
// by issuing the next batch before the previous sync returns.
// --zero_chunk BYTES (default 1 MiB): the size of the writes that put the zeros
// in. On ext4 with large folios (Linux 6.16 and later) the page cache keeps the
// file in folios of up to that size, and a small sync into a larger folio
// costs more; faha writes a segment's zeros 4 KiB at a time while its syncs
// are tiny, else 2 MiB at a time (ZeroFill). bench/write_path.sh passes 4096;
// docs/bench/write-path.md (twelfth round) has what each size costs. 0: no
// zeros, the file only reserved (posix_fallocate: unwritten extents on
// ext4/xfs), as faha leaves a segment while its syncs are large.
//
// --gap_us N (default 0): the writer sleeps N microseconds after each durable
// write, outside the timed part, as a request-response server's log writer
// waits for the next request. On this project's VMs a sync after such a pause
// took 5-25 us longer at the median than one issued back to back
// (docs/bench/write-path.md, twentieth round); bench/write_path.sh prints both.
//
// Several logs on one disk: run one process per log at once (bench/write_path.sh's
// "device, 3 logs" row does, for a primary and two backups on one machine).
//
// Usage: faha_device_limit --dir DIR [--bytes 1000] [--count 2000] [--mode M] [--writers N]
//        [--zero_chunk BYTES] [--gap_us N]   (--bytes at most 1 MiB)
// Output: one line per mode:
//   mode=pwrite_fdatasync bytes=1000 count=2000 writers=1 gap_us=0 ops_per_s=... p50_us=...
//   p99_us=...
// The file (64 MiB, or what --count * 4 KiB needs) is removed at the end.
// Single-threaded; not part of the server.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "faha_device_limit: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

size_t g_zero_chunk = 1 << 20;  // --zero_chunk
long g_gap_us = 0;              // --gap_us

// A file of `bytes` zero bytes, written for real (not only reserved), in
// writes of g_zero_chunk, and synced, as FaHA's segments are before the first
// append.
int MakeFile(const std::string& path, size_t bytes, int extra_flags) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("create " + path);
  if (g_zero_chunk == 0) {
    if (const int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); rc != 0) {
      errno = rc;
      Die("reserve " + path);
    }
  }
  std::vector<char> zeros(g_zero_chunk, 0);
  for (size_t off = 0; g_zero_chunk > 0 && off < bytes; off += zeros.size()) {
    if (pwrite(fd, zeros.data(), std::min(zeros.size(), bytes - off), static_cast<off_t>(off)) <
        0) {
      Die("write zeros");
    }
  }
  if (fsync(fd) != 0) Die("fsync");
  close(fd);
  fd = open(path.c_str(), O_RDWR | O_CLOEXEC | extra_flags);
  if (fd < 0) Die("reopen " + path);
  return fd;
}

struct Result {
  double ops_per_s;
  double p50_us;
  double p99_us;
};

Result Run(const std::string& dir, const std::string& mode, size_t bytes, size_t count,
           size_t writers) {
  const std::string path = dir + "/faha-device-limit-" + std::to_string(getpid()) + ".dat";
  const bool direct = mode == "odirect_dsync";
  const size_t blocks = (bytes + 4095) / 4096 * 4096;  // O_DIRECT writes whole blocks
  const size_t stride = direct ? blocks : bytes;
  const size_t file_bytes = std::max<size_t>(64 << 20, (count + 1) * blocks);
  int fd = MakeFile(path, file_bytes, direct ? (O_DIRECT | O_DSYNC) : 0);
  std::vector<std::vector<double>> lat(writers);
  auto writer = [&](size_t w) {
    void* raw = nullptr;
    if (posix_memalign(&raw, 4096, blocks) != 0) Die("memalign");
    char* buf = static_cast<char*>(raw);
    std::memset(buf, 'x', blocks);
    lat[w].reserve(count / writers + 1);
    for (size_t i = w; i < count; i += writers) {
      const auto t0 = Clock::now();
      const off_t off = static_cast<off_t>(i * stride);
      if (mode == "pwrite_fdatasync") {
        if (pwrite(fd, buf, bytes, off) != static_cast<ssize_t>(bytes)) Die("pwrite");
        if (fdatasync(fd) != 0) Die("fdatasync");
      } else if (mode == "rwf_dsync") {
        iovec iov{buf, bytes};
        if (pwritev2(fd, &iov, 1, off, RWF_DSYNC) != static_cast<ssize_t>(bytes)) Die("pwritev2");
      } else {
        // The record's 4 KiB blocks, rewritten whole with the record in them.
        if (pwrite(fd, buf, blocks, off) != static_cast<ssize_t>(blocks)) Die("pwrite O_DIRECT");
      }
      lat[w].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (g_gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(g_gap_us));
    }
    std::free(raw);
  };
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (size_t w = 0; w < writers; w++) threads.emplace_back(writer, w);
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  close(fd);
  unlink(path.c_str());
  std::vector<double> lat_us;
  for (const auto& l : lat) lat_us.insert(lat_us.end(), l.begin(), l.end());
  std::sort(lat_us.begin(), lat_us.end());
  return Result{static_cast<double>(count) / secs, lat_us[lat_us.size() / 2],
                lat_us[std::min(lat_us.size() - 1, lat_us.size() * 99 / 100)]};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, mode = "pwrite_fdatasync";
  size_t bytes = 1000, count = 2000, writers = 1;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "faha_device_limit: %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--dir") {
      dir = v;
    } else if (a == "--mode") {
      mode = v;
    } else if (a == "--bytes") {
      bytes = std::strtoul(v.c_str(), nullptr, 10);
    } else if (a == "--count") {
      count = std::strtoul(v.c_str(), nullptr, 10);
    } else if (a == "--writers") {
      writers = std::strtoul(v.c_str(), nullptr, 10);
    } else if (a == "--zero_chunk") {
      g_zero_chunk = std::strtoul(v.c_str(), nullptr, 10);
    } else if (a == "--gap_us") {
      g_gap_us = std::strtol(v.c_str(), nullptr, 10);
    } else {
      std::fprintf(stderr, "faha_device_limit: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (dir.empty() || bytes == 0 || bytes > (1 << 20) || count == 0 || writers == 0 ||
      writers > 64 || g_zero_chunk > (64 << 20) || g_zero_chunk % 4096 != 0 || g_gap_us < 0 ||
      g_gap_us > 1000000) {
    std::fprintf(stderr,
                 "usage: faha_device_limit --dir DIR [--bytes 1..1048576] [--count N] "
                 "[--mode pwrite_fdatasync|rwf_dsync|odirect_dsync|all] [--writers 1..64] "
                 "[--zero_chunk 0 (reserve only) or 4096..64 MiB, a multiple of 4096] "
                 "[--gap_us 0..1000000]\n");
    return 2;
  }
  // The pause as asked, not lengthened by the default 50 us timer slack.
  if (g_gap_us > 0 && prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0) != 0) Die("PR_SET_TIMERSLACK");
  std::vector<std::string> modes;
  if (mode == "all") {
    modes = {"pwrite_fdatasync", "rwf_dsync", "odirect_dsync"};
  } else if (mode == "pwrite_fdatasync" || mode == "rwf_dsync" || mode == "odirect_dsync") {
    modes = {mode};
  } else {
    std::fprintf(stderr, "faha_device_limit: unknown mode %s\n", mode.c_str());
    return 2;
  }
  for (const auto& m : modes) {
    const Result r = Run(dir, m, bytes, count, writers);
    std::printf(
        "mode=%s bytes=%zu count=%zu writers=%zu gap_us=%ld ops_per_s=%.0f p50_us=%.1f "
        "p99_us=%.1f\n",
        m.c_str(), bytes, count, writers, g_gap_us, r.ops_per_s, r.p50_us, r.p99_us);
  }
  return 0;
}
