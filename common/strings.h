// Small string helpers used across the tree.
#ifndef FAHA_COMMON_STRINGS_H_
#define FAHA_COMMON_STRINGS_H_

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace faha {

// "what: <strerror(errno)>", for a system call that just failed.
inline std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

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
