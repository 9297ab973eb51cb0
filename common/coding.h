// Little-endian fixed-width encoding helpers for on-media and on-wire formats.
// Pure functions; safe from any thread. Callers bounds-check before decoding.
#ifndef FAHA_COMMON_CODING_H_
#define FAHA_COMMON_CODING_H_

#include <cstdint>
#include <cstring>
#include <string>

namespace faha {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "FaHA formats are little-endian; big-endian hosts need byte swaps here");

template <typename T>
inline void EncodeFixed(char* dst, T v) {
  std::memcpy(dst, &v, sizeof(T));
}
template <typename T>
inline T DecodeFixed(const char* src) {
  T v;
  std::memcpy(&v, src, sizeof(T));
  return v;
}
template <typename T>
inline void PutFixed(std::string* dst, T v) {
  dst->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

inline constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace faha

#endif  // FAHA_COMMON_CODING_H_
