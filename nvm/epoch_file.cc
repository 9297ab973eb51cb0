#include "nvm/epoch_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/checksum.h"
#include "common/coding.h"
#include "common/strings.h"
#include "nvm/sync_directory.h"

namespace faha::nvm {
namespace {

constexpr uint32_t kEpochMagic = 0x45484146;  // "FAHE"
constexpr size_t kFileBytes = 32;

std::string DirOf(const std::string& path) { return path.substr(0, path.rfind('/')); }

}  // namespace

StatusOr<EpochFile> EpochFile::Open(const std::string& dir) {
  EpochFile f(dir + "/EPOCH");
  int fd = open(f.path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return f;
    return Status::IOError(Errno("open " + f.path_));
  }
  char buf[kFileBytes + 1];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n != static_cast<ssize_t>(kFileBytes) || DecodeFixed<uint32_t>(buf) != kEpochMagic ||
      DecodeFixed<uint16_t>(buf + 4) != 1 || DecodeFixed<uint64_t>(buf + 24) != Checksum(buf, 24)) {
    return Status::Corruption(f.path_ +
                              " is damaged; the node's epoch is unknown (restore it, or "
                              "remove the file only if this node's log is discarded)");
  }
  f.epoch_ = DecodeFixed<uint64_t>(buf + 8);
  return f;
}

Status EpochFile::Advance(uint64_t epoch) {
  if (epoch < epoch_) {
    return Status::InvalidArgument("epoch " + std::to_string(epoch) + " is older than the " +
                                   std::to_string(epoch_) + " this node has seen");
  }
  if (epoch == epoch_) return Status::OK();
  char buf[kFileBytes] = {};
  EncodeFixed<uint32_t>(buf, kEpochMagic);
  EncodeFixed<uint16_t>(buf + 4, 1);
  EncodeFixed<uint64_t>(buf + 8, epoch);
  EncodeFixed<uint64_t>(buf + 24, Checksum(buf, 24));
  std::string tmp = path_ + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(Errno("create " + tmp));
  bool ok = write(fd, buf, sizeof(buf)) == static_cast<ssize_t>(sizeof(buf)) && fsync(fd) == 0;
  Status s = ok ? Status::OK() : Status::IOError(Errno("write " + tmp));
  close(fd);
  if (!s.ok()) return s;
  if (rename(tmp.c_str(), path_.c_str()) != 0) return Status::IOError(Errno("rename " + tmp));
  FAHA_RETURN_IF_ERROR(SyncDirectory(DirOf(path_)));
  epoch_ = epoch;
  return Status::OK();
}

}  // namespace faha::nvm
