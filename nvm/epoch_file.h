// EpochFile: the replication epoch a node has seen, persisted in DIR/EPOCH so
// that after a restart the node still refuses frames from older epochs.
// Format (32 bytes, little-endian): magic "FAHE", u16 version 1, u16 reserved,
// u64 epoch, u64 reserved, u64 XXH3-64 of bytes 0..23. Replaced atomically
// (write a temporary file, fsync, rename, fsync the directory).
// Not thread-safe: one owner (the node's replication thread).
#ifndef FAHA_NVM_EPOCH_FILE_H_
#define FAHA_NVM_EPOCH_FILE_H_

#include <cstdint>
#include <string>

#include "faha/status.h"

namespace faha::nvm {

class EpochFile {
 public:
  // Reads DIR/EPOCH, or starts at epoch 0 if it does not exist. A file that
  // exists but is damaged is an error (never silently epoch 0).
  static StatusOr<EpochFile> Open(const std::string& dir);

  uint64_t epoch() const { return epoch_; }
  // Persists `epoch`. Refuses (changing nothing) an epoch lower than the
  // current one; the same epoch is a no-op.
  Status Advance(uint64_t epoch);

 private:
  explicit EpochFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
  uint64_t epoch_ = 0;
};

}  // namespace faha::nvm

#endif  // FAHA_NVM_EPOCH_FILE_H_
