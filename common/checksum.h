// Checksums for log batches and replication frames: 64-bit xxHash (XXH3).
// Pure functions; safe from any thread.
#ifndef FAHA_COMMON_CHECKSUM_H_
#define FAHA_COMMON_CHECKSUM_H_

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace faha {

inline uint64_t Checksum(const void* data, size_t n, uint64_t seed = 0) {
  return XXH3_64bits_withSeed(data, n, seed);
}

// Hash of a key, used by the index (bucket, shard and tag bits).
inline uint64_t HashKey(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

}  // namespace faha

#endif  // FAHA_COMMON_CHECKSUM_H_
