// MemoryDevice: an in-memory LogDevice for tests that models a power cut. Each
// segment has the mapped bytes that writers see and a separate durable image;
// Persist() copies a range into the durable image. PowerCut() replaces every
// mapped image by its durable one, so whatever was not persisted is gone.
// CrashAtPersist(n, keep) makes the n-th Persist() call (0-based, counted from
// the call) copy only a chosen part of its range and fail, and every later
// Persist() fail: the process "died" in the middle of that persist.
// Replacements (log cleaning) are staged apart and swapped in by
// CommitReplacement; a power cut loses the staged ones, as a crash before the
// rename would (recovery removes the files).
// Thread-safe: the log's writer and its cleaner use it at once.
#ifndef FAHA_NVM_MEMORY_DEVICE_H_
#define FAHA_NVM_MEMORY_DEVICE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "nvm/log_device.h"

namespace faha::nvm {

class MemoryDevice final : public LogDevice {
 public:
  // Which part of the crashing persist's range reaches the durable image:
  // given the range length, returns a mask per 64-byte line (true = kept).
  using KeepFn = std::function<std::vector<bool>(size_t lines)>;

  StatusOr<std::unique_ptr<Segment>> CreateSegment(uint32_t id, size_t bytes) override;
  StatusOr<std::unique_ptr<Segment>> OpenSegment(uint32_t id) override;
  StatusOr<std::vector<uint32_t>> ListSegments() override;
  Status RemoveSegment(uint32_t id) override;
  StatusOr<std::unique_ptr<Segment>> CreateReplacement(uint32_t id, size_t bytes) override;
  Status CommitReplacement(uint32_t id) override;
  Status DiscardReplacement(uint32_t id) override;
  // The next CommitReplacement cuts the power instead (before the swap).
  void CrashAtCommit() {
    MutexLock l(&mu_);
    crash_at_commit_ = true;
  }
  size_t staged() const { return staged_.size(); }
  std::string SegmentName(uint32_t id) const override {
    return "mem-segment-" + std::to_string(id);
  }
  std::string Granularity() const override { return "CACHE_LINE"; }

  void CrashAtPersist(uint64_t n, KeepFn keep);
  // Takes back a CrashAtPersist that has not happened yet.
  void NoCrash() {
    MutexLock l(&mu_);
    crash_at_ = UINT64_MAX;
  }
  void PowerCut();
  uint64_t persist_calls() {
    MutexLock l(&mu_);
    return persist_calls_;
  }
  bool crashed() {
    MutexLock l(&mu_);
    return crashed_;
  }
  // Direct access to the durable image (to flip bytes in tests).
  std::vector<char>* Durable(uint32_t id);

  struct Image {
    std::vector<char> mapped;
    std::vector<char> durable;
  };

 private:
  friend class MemorySegment;
  Status PersistRange(Image* img, size_t off, size_t len);

  Mutex mu_;
  std::map<uint32_t, std::shared_ptr<Image>> images_;
  std::map<uint32_t, std::shared_ptr<Image>> staged_;  // replacements not yet committed
  bool crash_at_commit_ = false;
  uint64_t persist_calls_ = 0;
  uint64_t crash_at_ = UINT64_MAX;
  KeepFn keep_;
  bool crashed_ = false;
};

}  // namespace faha::nvm

#endif  // FAHA_NVM_MEMORY_DEVICE_H_
