// ByteBuffer: a growable byte buffer whose free room a system call can fill
// directly. A std::string cannot lend its room without first zero-filling it
// (resize), so bytes read from a socket used to land in a scratch buffer and
// be copied in: every request byte copied once more (docs/bench/write-path.md).
// One owner at a time, like a std::string. Its names follow std::string's
// where they mean the same (append, clear, size), so that templates (a verbs
// stream's read) fill either.
#ifndef FAHA_COMMON_BYTE_BUFFER_H_
#define FAHA_COMMON_BYTE_BUFFER_H_

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace faha {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& o) noexcept { *this = std::move(o); }
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    data_ = std::move(o.data_);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    return *this;
  }

  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  char operator[](size_t i) const { return data_[i]; }
  std::string_view view() const { return {data_.get(), size_}; }

  // Forgets the bytes, keeps the memory.
  void clear() { size_ = 0; }
  // Forgets the bytes and gives the memory back.
  void Release() {
    data_.reset();
    size_ = capacity_ = 0;
  }
  void append(const char* p, size_t n) {
    if (n == 0) return;  // memcpy of nothing to a null buffer is still undefined
    Reserve(n);
    std::memcpy(data_.get() + size_, p, n);
    size_ += n;
  }
  void append(std::string_view s) { append(s.data(), s.size()); }
  // Drops the first n bytes (n <= size()), moving the rest to the front.
  void EraseFront(size_t n) {
    assert(n <= size_);
    if (n == 0) return;
    std::memmove(data_.get(), data_.get() + n, size_ - n);
    size_ -= n;
  }

  // The free room after the bytes, for a read to fill: room() bytes at end().
  char* end() { return data_.get() + size_; }
  size_t room() const { return capacity_ - size_; }
  // Grows the room to at least n bytes (to twice the capacity, or what n
  // needs if that is more: appends cost amortized constant time).
  void Reserve(size_t n) {
    if (room() >= n) return;
    const size_t want = std::max(capacity_ * 2, size_ + n);
    std::unique_ptr<char[]> bigger(new char[want]);  // not zero-filled
    if (size_ > 0) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = want;
  }
  // n bytes (n <= room()) were written at end(): they are the buffer's now.
  void Commit(size_t n) {
    assert(n <= room());
    size_ += n;
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace faha

#endif  // FAHA_COMMON_BYTE_BUFFER_H_
