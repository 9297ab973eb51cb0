// KeyOverlay: the newest record of each key among batches that are not in the
// index yet (the group being built, or batches written but not yet published),
// and which namespaces one of them flushed first. The committing thread
// keeps two: one over the group's own batch (locations are payload offsets)
// and one over the batches in flight (log locations). Not thread-safe: its
// owner's role guards it.
#ifndef FAHA_SERVER_ENGINE_KEY_OVERLAY_H_
#define FAHA_SERVER_ENGINE_KEY_OVERLAY_H_

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "server/engine/namespaces.h"

namespace faha {

class KeyOverlay {
 public:
  enum class Says : uint8_t { kNothing, kDeleted, kAt };

  // The namespaces (server/engine/namespaces.h) the batches flushed first.
  using Flushes = std::bitset<ns::kCount>;

  // Forgets every key; `flushes`: what the batches it stands for flushed first.
  void Reset(Flushes flushes = {}) {
    map_.clear();
    flushes_ = flushes;
  }
  void Put(std::string_view key, uint64_t where) { map_[std::string(key)] = where; }
  void Delete(std::string_view key) { map_[std::string(key)] = kDeleted; }
  void FlushAll() { Reset(Flushes().set()); }
  // FLUSHDB: every key of namespace `n` gone.
  void FlushNamespace(int n);
  // Applies every record of one batch's payload: a record at offset o is at
  // base + o.
  void Merge(std::string_view payload, uint64_t base);
  // What the overlay says of `key`: kAt (*where set), kDeleted (deleted, or
  // gone in a flush and not written since), or kNothing (look further).
  Says Find(std::string_view key, uint64_t* where) const;
  bool flushed() const { return flushes_.any(); }
  Flushes flushes() const { return flushes_; }
  // Whether the committed state of `key` is hidden (its namespace was flushed).
  bool Hides(std::string_view key) const { return flushes_.test(ns::Of(key)); }
  size_t size() const { return map_.size(); }

 private:
  static constexpr uint64_t kDeleted = UINT64_MAX;
  std::unordered_map<std::string, uint64_t> map_;
  Flushes flushes_;
};

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_KEY_OVERLAY_H_
