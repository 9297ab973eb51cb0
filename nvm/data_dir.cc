// The data directory's lock (LockDataDir, log_device.h): one server per
// directory, as leveldb's LOCK file.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/strings.h"
#include "nvm/log_device.h"

namespace faha::nvm {

StatusOr<int> LockDataDir(const std::string& dir) {
  const std::string path = dir + "/LOCK";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(Errno("open " + path));
  struct flock want {};
  want.l_type = F_WRLCK;
  want.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &want) == 0) return fd;
  const int err = errno;
  if (err != EACCES && err != EAGAIN) {
    close(fd);
    return Status::IOError("lock " + path + ": " + std::strerror(err));
  }
  struct flock holder {};
  holder.l_type = F_WRLCK;
  holder.l_whence = SEEK_SET;
  std::string who = "another process";
  if (fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK) {
    who += " (pid " + std::to_string(holder.l_pid) + ")";
  }
  close(fd);
  return Status::Busy(dir + " is in use by " + who +
                      ": two servers on one data directory would write the same log");
}

}  // namespace faha::nvm
