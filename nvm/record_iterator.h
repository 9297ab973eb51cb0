// RecordIterator: walks the records of a batch payload in order (as leveldb's
// WriteBatch::Iterate does), so that no loop decodes records by hand.
//
//   nvm::RecordIterator it(payload, bytes);
//   for (RecordView rec; it.Next(&rec);) Use(rec, base + it.offset());
//   if (it.malformed()) ...  // stopped at bytes that are no record
#ifndef FAHA_NVM_RECORD_ITERATOR_H_
#define FAHA_NVM_RECORD_ITERATOR_H_

#include <cstddef>
#include <string_view>

#include "nvm/log.h"

namespace faha::nvm {

class RecordIterator {
 public:
  RecordIterator(const char* payload, size_t bytes) : p_(payload), bytes_(bytes) {}
  explicit RecordIterator(std::string_view payload)
      : RecordIterator(payload.data(), payload.size()) {}

  // Decodes the next record into *rec. False at the end of the payload, or at
  // bytes that cannot be a record (then malformed() is true).
  bool Next(RecordView* rec) {
    if (next_ >= bytes_) return false;
    size_t n;
    if (!DecodeRecord(p_ + next_, bytes_ - next_, rec, &n)) {
      malformed_ = true;
      return false;
    }
    offset_ = next_;
    next_ += n;
    return true;
  }
  // The offset in the payload of the record Next returned last.
  size_t offset() const { return offset_; }
  // Bytes walked so far: the payload's size once Next returned false cleanly.
  size_t consumed() const { return next_; }
  bool malformed() const { return malformed_; }

 private:
  const char* p_;
  size_t bytes_;
  size_t offset_ = 0;
  size_t next_ = 0;
  bool malformed_ = false;
};

}  // namespace faha::nvm

#endif  // FAHA_NVM_RECORD_ITERATOR_H_
