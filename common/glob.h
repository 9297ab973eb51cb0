// Redis's glob patterns (SCAN and KEYS MATCH), binary safe: '*' any run of
// bytes, '?' one byte, '[abc]', '[^abc]' and '[a-c]' (a reversed range is
// swapped; a set the pattern ends inside ends there), and '\x' for x itself,
// also inside a set. Bytes compare as signed chars in ranges, as Redis's
// do. An empty key matches only the empty pattern, as in Redis. Matching
// backtracks only to the last '*': at most the key's length times the
// pattern's steps, never exponential.
#ifndef FAHA_COMMON_GLOB_H_
#define FAHA_COMMON_GLOB_H_

#include <cstddef>
#include <string_view>
#include <utility>

namespace faha {

namespace glob_internal {

// Whether the one-byte element of `p` at *i ('?', a set, an escape or a
// byte) matches `c`; *i moves past it.
inline bool MatchOne(std::string_view p, size_t* i, char c) {
  const size_t n = p.size();
  if (p[*i] == '?') {
    (*i)++;
    return true;
  }
  if (p[*i] == '\\' && *i + 1 < n) {
    *i += 2;
    return p[*i - 1] == c;
  }
  if (p[*i] != '[') return p[(*i)++] == c;
  size_t j = *i + 1;
  const bool negate = j < n && p[j] == '^';
  if (negate) j++;
  bool match = false;
  while (j < n && p[j] != ']') {
    if (p[j] == '\\' && j + 1 < n) {
      if (p[j + 1] == c) match = true;
      j += 2;
    } else if (j + 2 < n && p[j + 1] == '-') {
      int lo = static_cast<signed char>(p[j]), hi = static_cast<signed char>(p[j + 2]);
      if (lo > hi) std::swap(lo, hi);
      const int v = static_cast<signed char>(c);
      if (v >= lo && v <= hi) match = true;
      j += 3;
    } else {
      if (p[j] == c) match = true;
      j++;
    }
  }
  *i = j < n ? j + 1 : n;  // past the ']', or the end
  return negate ? !match : match;
}

}  // namespace glob_internal

inline bool GlobMatch(std::string_view pattern, std::string_view s) {
  // As Redis: an empty key matches only the empty pattern (not even "**").
  if (s.empty()) return pattern.empty();
  size_t pi = 0, si = 0;
  size_t star = std::string_view::npos, star_s = 0;  // the last '*' and where it resumes
  while (si < s.size()) {
    if (pi < pattern.size() && pattern[pi] == '*') {
      while (pi < pattern.size() && pattern[pi] == '*') pi++;
      if (pi == pattern.size()) return true;
      star = pi;
      star_s = si;
      continue;
    }
    size_t next = pi;
    if (pi < pattern.size() && glob_internal::MatchOne(pattern, &next, s[si])) {
      pi = next;
      si++;
      continue;
    }
    if (star == std::string_view::npos) return false;
    pi = star;  // let the last '*' take one more byte
    si = ++star_s;
  }
  while (pi < pattern.size() && pattern[pi] == '*') pi++;
  return pi == pattern.size();
}

}  // namespace faha

#endif  // FAHA_COMMON_GLOB_H_
