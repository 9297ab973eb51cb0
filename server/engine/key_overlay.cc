#include "server/engine/key_overlay.h"

#include "nvm/record_iterator.h"

namespace faha {

void KeyOverlay::Merge(std::string_view payload, uint64_t base) {
  nvm::RecordIterator it(payload);
  for (nvm::RecordView r; it.Next(&r);) {
    if (r.type == nvm::RecordType::kPut) {
      Put(r.key, base + it.offset());
    } else if (r.type == nvm::RecordType::kDelete) {
      Delete(r.key);
    } else if (r.type == nvm::RecordType::kFlushAll) {
      FlushAll();
    }
  }
}

KeyOverlay::Says KeyOverlay::Find(std::string_view key, uint64_t* where) const {
  auto it = map_.find(std::string(key));
  if (it == map_.end()) return flushed_ ? Says::kDeleted : Says::kNothing;
  if (it->second == kDeleted) return Says::kDeleted;
  *where = it->second;
  return Says::kAt;
}

}  // namespace faha
