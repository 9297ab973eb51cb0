#include "nvm/memory_device.h"

#include <algorithm>
#include <cstring>

#include "common/mutex.h"

namespace faha::nvm {

class MemorySegment final : public Segment {
 public:
  MemorySegment(MemoryDevice* dev, std::shared_ptr<MemoryDevice::Image> img)
      : dev_(dev), img_(std::move(img)) {
    data_ = img_->mapped.data();
    size_ = img_->mapped.size();
  }
  void Write(size_t off, const void* src, size_t len) override {
    std::memcpy(data_ + off, src, len);
  }
  Status Persist(size_t off, size_t len) override {
    return dev_->PersistRange(img_.get(), off, len);
  }

 private:
  MemoryDevice* dev_;
  std::shared_ptr<MemoryDevice::Image> img_;
};

StatusOr<std::unique_ptr<Segment>> MemoryDevice::CreateSegment(uint32_t id, size_t bytes) {
  MutexLock lock(&mu_);
  if (crashed_) return Status::IOError("simulated power cut");
  auto img = std::make_shared<Image>();
  img->mapped.assign(bytes, 0);
  img->durable.assign(bytes, 0);
  images_[id] = img;
  return std::unique_ptr<Segment>(new MemorySegment(this, img));
}

StatusOr<std::unique_ptr<Segment>> MemoryDevice::OpenSegment(uint32_t id) {
  MutexLock lock(&mu_);
  auto it = images_.find(id);
  if (it == images_.end()) return Status::IOError("no segment " + std::to_string(id));
  return std::unique_ptr<Segment>(new MemorySegment(this, it->second));
}

StatusOr<std::vector<uint32_t>> MemoryDevice::ListSegments() {
  MutexLock lock(&mu_);
  std::vector<uint32_t> ids;
  for (auto& [id, img] : images_) ids.push_back(id);
  return ids;
}

Status MemoryDevice::RemoveSegment(uint32_t id) {
  MutexLock lock(&mu_);
  if (crashed_) return Status::IOError("simulated power cut");
  images_.erase(id);
  return Status::OK();
}

StatusOr<std::unique_ptr<Segment>> MemoryDevice::CreateReplacement(uint32_t id, size_t bytes) {
  MutexLock lock(&mu_);
  if (crashed_) return Status::IOError("simulated power cut");
  auto img = std::make_shared<Image>();
  img->mapped.assign(bytes, 0);
  img->durable.assign(bytes, 0);
  staged_[id] = img;
  return std::unique_ptr<Segment>(new MemorySegment(this, img));
}

Status MemoryDevice::CommitReplacement(uint32_t id) {
  MutexLock lock(&mu_);
  if (crash_at_commit_) {
    crash_at_commit_ = false;
    crashed_ = true;
  }
  if (crashed_) return Status::IOError("simulated power cut");
  auto it = staged_.find(id);
  if (it == staged_.end())
    return Status::IOError("no staged replacement of segment " + std::to_string(id));
  images_[id] = it->second;
  staged_.erase(it);
  return Status::OK();
}

Status MemoryDevice::DiscardReplacement(uint32_t id) {
  MutexLock lock(&mu_);
  if (id == 0) {
    staged_.clear();
  } else {
    staged_.erase(id);
  }
  return Status::OK();
}

void MemoryDevice::CrashAtPersist(uint64_t n, KeepFn keep) {
  MutexLock lock(&mu_);
  crash_at_ = persist_calls_ + n;
  keep_ = std::move(keep);
}

void MemoryDevice::PowerCut() {
  MutexLock lock(&mu_);
  for (auto& [id, img] : images_) img->mapped = img->durable;
  staged_.clear();
  crashed_ = false;
  crash_at_ = UINT64_MAX;
}

std::vector<char>* MemoryDevice::Durable(uint32_t id) {
  MutexLock lock(&mu_);
  auto it = images_.find(id);
  return it == images_.end() ? nullptr : &it->second->durable;
}

Status MemoryDevice::PersistRange(Image* img, size_t off, size_t len) {
  MutexLock lock(&mu_);
  uint64_t call = persist_calls_++;
  if (crashed_) return Status::IOError("simulated power cut");
  if (call == crash_at_) {
    crashed_ = true;
    size_t lines = (len + 63) / 64;
    std::vector<bool> mask = keep_ ? keep_(lines) : std::vector<bool>(lines, false);
    for (size_t i = 0; i < lines && i < mask.size(); i++) {
      if (!mask[i]) continue;
      size_t a = off + i * 64, b = std::min(off + len, a + 64);
      std::memcpy(img->durable.data() + a, img->mapped.data() + a, b - a);
    }
    return Status::IOError("simulated power cut during persist");
  }
  std::memcpy(img->durable.data() + off, img->mapped.data() + off, len);
  return Status::OK();
}

}  // namespace faha::nvm
