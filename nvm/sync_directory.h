// SyncDirectory: fsync of a directory, which makes the files created, renamed
// and removed in it durable (segment files, the epoch file).
#ifndef FAHA_NVM_SYNC_DIRECTORY_H_
#define FAHA_NVM_SYNC_DIRECTORY_H_

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "common/strings.h"
#include "faha/status.h"

namespace faha::nvm {

inline Status SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("open directory " + dir));
  const Status synced = fsync(fd) == 0 ? Status::OK() : Status::IOError(Errno("fsync " + dir));
  close(fd);
  return synced;
}

}  // namespace faha::nvm

#endif  // FAHA_NVM_SYNC_DIRECTORY_H_
