#include "server/engine/key_overlay.h"

#include <iterator>

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
    } else if (r.type == nvm::RecordType::kFlushDb) {
      FlushNamespace(ns::Of(r.key));
    }
  }
}

void KeyOverlay::FlushNamespace(int n) {
  for (auto it = map_.begin(); it != map_.end();) {
    it = ns::Of(it->first) == n ? map_.erase(it) : std::next(it);
  }
  flushes_.set(static_cast<size_t>(n));
}

KeyOverlay::Says KeyOverlay::Find(std::string_view key, uint64_t* where) const {
  auto it = map_.find(std::string(key));
  if (it == map_.end()) return Hides(key) ? Says::kDeleted : Says::kNothing;
  if (it->second == kDeleted) return Says::kDeleted;
  *where = it->second;
  return Says::kAt;
}

}  // namespace faha
