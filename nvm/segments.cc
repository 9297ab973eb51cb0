#include "nvm/segments.h"

#include <map>
#include <string_view>

#include "common/clock.h"

namespace faha::nvm {

namespace {

Mutex g_ranges_mu;
std::map<uintptr_t, size_t>& Ranges() {
  static auto* r = new std::map<uintptr_t, size_t>;
  return *r;
}

}  // namespace

std::string PmemError(const std::string& what, int rc) {
  std::string msg = pmem2_errormsg();
  if (msg.empty() && rc != 0) msg = strerror(rc < 0 ? -rc : rc);
  return what + ": " + (msg.empty() ? "unknown error" : msg);
}

Mutex g_map_mu;

void AddRange(const char* data, size_t size) {
  MutexLock l(&g_ranges_mu);
  Ranges()[reinterpret_cast<uintptr_t>(data)] = size;
}
void RemoveRange(const char* data) {
  MutexLock l(&g_ranges_mu);
  Ranges().erase(reinterpret_cast<uintptr_t>(data));
}

void Populate(char* data, size_t size, size_t off, size_t len, int advice) {
  const uintptr_t kPage = PageBytes();
  const uintptr_t start = (reinterpret_cast<uintptr_t>(data) + off + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + std::min(size, off + len);
  if (end <= start) return;
  if (madvise(reinterpret_cast<void*>(start), end - start, advice) != 0) {
    FAHA_LOG_DEBUG("madvise(MADV_POPULATE_%s): %s", advice == MADV_POPULATE_READ ? "READ" : "WRITE",
                   strerror(errno));
    return;  // a page that could not be read in would be a SIGBUS below
  }
  if (advice != MADV_POPULATE_READ) return;
  // Then read a byte of every page. Under a hypervisor that shadows the
  // guest's page tables, the first access to a mapped page exits to it even
  // when the page is populated: 1.5-1.7 us a page on this project's VMs
  // (docs/architecture.md), which the thread that first reads each record
  // (the committer, an I/O thread, a backup's applier) would otherwise pay,
  // 0.4 us per 1 KB write. Here it is paid by the thread that makes spares,
  // or, for a file mapped as it is written, by the writer (MapAsWritten).
  uint8_t sink = 0;
  for (uintptr_t p = start; p < end; p += kPage) {
    sink ^= *reinterpret_cast<const volatile uint8_t*>(p);
  }
  (void)sink;
}

// Busy when errno says the file system is out of space (blocks, inodes or
// quota): the log then reports itself full and tries again later.
Status SpaceOrIOError(int err, const std::string& what) {
  const std::string msg = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::Busy(msg);
  return Status::IOError(msg);
}

Status WriteZeros(int fd, size_t bytes, size_t chunk, const ZeroPacer& pace) {
  constexpr size_t piece = kZeroPaceBytes;
  // 1 MiB writes left every written segment mapped in 4 KiB pages.
  static const std::vector<char> kZeros(kLargeFolioBytes, 0);
  chunk = std::clamp<size_t>(chunk, kSmallFolioBytes, kZeros.size());
  bool pacing = static_cast<bool>(pace);
  size_t flushed = 0;
  for (size_t off = 0; off < bytes;) {
    const size_t n = std::min({chunk, bytes - off, pacing ? flushed + piece - off : chunk});
    const ssize_t w = pwrite(fd, kZeros.data(), n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return SpaceOrIOError(w < 0 ? errno : EIO, "write zeros");
    off += static_cast<size_t>(w);
    if (!pacing || (off - flushed < piece && off < bytes)) continue;
    const int64_t start_us = MonoUs();
    if (sync_file_range(fd, static_cast<off_t>(flushed), static_cast<off_t>(off - flushed),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
      return SpaceOrIOError(errno, "write back zeros");
    }
    flushed = off;
    if (off < bytes) pacing = pace(std::min(4 * (MonoUs() - start_us), kZeroPauseMaxUs));
  }
  return Status::OK();
}

bool IsTmpfs(const std::string& dir) {
  struct statfs fs;
  return statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

void RemoveLeftoverSpares(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    const bool making = name.rfind("segment-", 0) == 0 && name.size() > 8 &&
                        name.substr(name.size() - 8) == ".log.tmp";
    if (name.rfind("segment-spare", 0) == 0 || making) unlink((dir + "/" + e->d_name).c_str());
  }
  closedir(d);
}

// Whether `fd` maps with MAP_SYNC (its file system is DAX). Any failure
// other than "not supported" says yes, for libpmem2 to report it.
bool MapsWithMapSync(int fd) {
  const size_t kPage = PageBytes();
  void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
  if (p != MAP_FAILED) {
    munmap(p, kPage);
    return true;
  }
  return errno != EOPNOTSUPP && errno != EINVAL;
}

const char* GranularityName(pmem2_granularity g) {
  switch (g) {
    case PMEM2_GRANULARITY_BYTE:
      return "BYTE";
    case PMEM2_GRANULARITY_CACHE_LINE:
      return "CACHE_LINE";
    case PMEM2_GRANULARITY_PAGE:
      return "PAGE";
  }
  return "UNKNOWN";
}

bool OverlapsLogMapping(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  MutexLock l(&g_ranges_mu);
  for (const auto& [start, len] : Ranges()) {
    if (a < start + len && start < a + n) return true;
  }
  return false;
}

}  // namespace faha::nvm
