// Small string helpers used across the tree.
#ifndef FAHA_COMMON_STRINGS_H_
#define FAHA_COMMON_STRINGS_H_

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace faha {

// "what: <strerror(errno)>", for a system call that just failed.
inline std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// A whole signed 64-bit decimal integer as Redis reads one (string2ll): "0",
// or an optional '-' and digits that do not start with 0; no '+', blanks,
// leading zeros or "-0". False if malformed or out of range.
inline bool ParseInt64(std::string_view s, int64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  if (s != "0") {
    const size_t first = s[0] == '-' ? 1 : 0;
    if (first >= s.size() || s[first] < '1' || s[first] > '9') return false;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

// ASCII lower case.
inline std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// ASCII case-insensitive equality.
inline bool EqNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace faha

#endif  // FAHA_COMMON_STRINGS_H_
