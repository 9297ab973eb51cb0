// faha_page_touch: what the first read of a page through a file mapping costs
// on this machine, the way a FaHA file segment is used. A 64 MiB file in DIR is
// preallocated and mapped shared, read-only; the pages are populated
// (MADV_POPULATE_READ, as the spare-segment thread does), then 1000-byte
// records are written with pwrite, then read through the mapping, one byte
// per 1 KiB. Two rounds, on two files:
//   populated  the mapping is populated only (faha before c12800c)
//   touched    the mapping is populated and a byte of every page read first
//              (what the spare-segment thread does now), before the writes
// Each prints ns per 4 KiB page for the populate, the touch, and the first
// and second read after the writes. Under a hypervisor that shadows the
// guest's page tables the first read of a populated page exits to it.
//
// Usage: faha_page_touch --dir DIR
// Output: mode=populated populate_ns=... touch_ns=... first_read_ns=... second_read_ns=...
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kBytes = size_t{64} << 20;
constexpr size_t kPage = 4096;

double NowNs() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Reads a byte every `step` bytes; returns ns per 4 KiB page.
double ReadEvery(const char* m, size_t step) {
  const double t0 = NowNs();
  uint8_t sink = 0;
  for (size_t o = 0; o < kBytes; o += step)
    sink ^= *reinterpret_cast<const volatile uint8_t*>(m + o);
  (void)sink;
  return (NowNs() - t0) / (kBytes / kPage);
}

int Round(const std::string& dir, bool touch) {
  const std::string path = dir + "/faha_page_touch.tmp";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err = fd < 0 ? errno : posix_fallocate(fd, 0, kBytes);  // it returns its error
  if (err != 0) {
    std::fprintf(stderr, "faha_page_touch: cannot make %s: %s\n", path.c_str(), std::strerror(err));
    if (fd >= 0) close(fd);
    unlink(path.c_str());
    return 1;
  }
  char* m = static_cast<char*>(mmap(nullptr, kBytes, PROT_READ, MAP_SHARED, fd, 0));
  if (m == MAP_FAILED) {
    std::fprintf(stderr, "faha_page_touch: mmap: %s\n", std::strerror(errno));
    close(fd);
    unlink(path.c_str());
    return 1;
  }
  const double t0 = NowNs();
  std::string failed;  // what went wrong, if anything
  if (madvise(m, kBytes, MADV_POPULATE_READ) != 0) {
    failed = std::string("madvise(MADV_POPULATE_READ): ") + std::strerror(errno);
  }
  const double populate = (NowNs() - t0) / (kBytes / kPage);
  const double touched = touch && failed.empty() ? ReadEvery(m, kPage) : 0;
  std::vector<char> rec(1000, 'x');
  for (size_t o = 0; o + rec.size() <= kBytes && failed.empty(); o += rec.size()) {
    const ssize_t n = pwrite(fd, rec.data(), rec.size(), static_cast<off_t>(o));
    if (n < 0) failed = std::string("pwrite: ") + std::strerror(errno);
    if (n >= 0 && static_cast<size_t>(n) != rec.size()) failed = "pwrite: short write";
  }
  if (failed.empty()) {
    const double first = ReadEvery(m, 1024);
    const double second = ReadEvery(m, 1024);
    std::printf("mode=%s populate_ns=%.0f touch_ns=%.0f first_read_ns=%.0f second_read_ns=%.0f\n",
                touch ? "touched" : "populated", populate, touched, first, second);
  } else {
    std::fprintf(stderr, "faha_page_touch: %s: %s\n", path.c_str(), failed.c_str());
  }
  munmap(m, kBytes);
  close(fd);
  unlink(path.c_str());
  return failed.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--dir") {
    std::fprintf(stderr, "usage: faha_page_touch --dir DIR\n");
    return 2;
  }
  return Round(argv[2], false) != 0 || Round(argv[2], true) != 0 ? 1 : 0;
}
