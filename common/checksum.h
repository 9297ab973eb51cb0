// Checksums for log batches and replication frames: 64-bit xxHash (XXH3).
// Pure functions; safe from any thread.
#ifndef FAHA_COMMON_CHECKSUM_H_
#define FAHA_COMMON_CHECKSUM_H_

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#if defined(FAHA_HAVE_XXH_DISPATCH)
// libxxhash's x86 build also exports XXH3 behind a run-time dispatch on the
// CPU's vector unit (CMakeLists.txt checks that it links; declared here, with
// the macros that would rename the plain functions turned off).
#ifndef XXH_DISPATCH_DISABLE_REPLACE
#define XXH_DISPATCH_DISABLE_REPLACE
#endif
#include <xxh_x86dispatch.h>
#endif

namespace faha {

// XXH3-64 of `data` with `seed`. Through libxxhash's dispatch where it has
// one: the same value as the plain function (XXH3 is defined by its output,
// whatever the vector width), computed with AVX2 or AVX-512 where the CPU has
// them, where the plain export is built for SSE2 (Debian's): on this
// project's VMs (AVX-512) 0.9-1.0 against 3.9-4.5 us per 64 KiB and 38-39
// against 68-76 ns per KiB (faha_micro_bench's Checksum and PlainXXH3 rows).
// Every batch is hashed when it is framed, when a backup receives it and each
// time log cleaning reads it.
inline uint64_t Checksum(const void* data, size_t n, uint64_t seed = 0) {
#if defined(FAHA_HAVE_XXH_DISPATCH)
  return XXH3_64bits_withSeed_dispatch(data, n, seed);
#else
  return XXH3_64bits_withSeed(data, n, seed);
#endif
}

// Hash of a key, used by the index (bucket, shard and tag bits). Keys are
// short: XXH3 hashes up to 240 bytes without vectors, so no dispatch.
inline uint64_t HashKey(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

}  // namespace faha

#endif  // FAHA_COMMON_CHECKSUM_H_
