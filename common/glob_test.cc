// GlobMatch: Redis's glob, byte for byte (tests/command_table_test.cc checks
// it against redis-server through SCAN MATCH).
#include "common/glob.h"

#include <gtest/gtest.h>

#include <string>

namespace faha {
namespace {

TEST(GlobTest, StarsQuestionMarksSetsRangesAndEscapes) {
  EXPECT_TRUE(GlobMatch("h*llo", "hello"));
  EXPECT_TRUE(GlobMatch("h*llo", "hllo"));
  EXPECT_FALSE(GlobMatch("h?llo", "hllo"));
  EXPECT_TRUE(GlobMatch("h[ae]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(GlobMatch("[c-a]", "b"));  // a reversed range is swapped
  EXPECT_TRUE(GlobMatch("a\\*c", "a*c"));
  EXPECT_FALSE(GlobMatch("a\\*c", "abc"));
  EXPECT_TRUE(GlobMatch("a[\\]]c", "a]c"));
  EXPECT_TRUE(GlobMatch("a\\", "a\\"));  // a trailing backslash is itself
  EXPECT_TRUE(GlobMatch("a[bc", "ab"));  // a set the pattern ends inside ends there
  EXPECT_FALSE(GlobMatch("[", "a"));
}

TEST(GlobTest, BinaryKeysAndTheEmptyKey) {
  EXPECT_TRUE(GlobMatch(std::string("n\0l", 3), std::string("n\0l", 3)));
  EXPECT_TRUE(GlobMatch("n?l", std::string("n\0l", 3)));
  EXPECT_FALSE(GlobMatch("n", std::string("n\0l", 3)));
  // Ranges compare signed chars: 0x80 to 0xff holds the high bytes, not 'a'.
  EXPECT_TRUE(GlobMatch("[\x80-\xff]", "\xe9"));
  EXPECT_FALSE(GlobMatch("[\x80-\xff]", "a"));
  EXPECT_TRUE(GlobMatch("", ""));
  EXPECT_FALSE(GlobMatch("**", ""));  // as Redis: only the empty pattern
  EXPECT_FALSE(GlobMatch("", "a"));
}

TEST(GlobTest, ManyStarsOnALongKeyFinish) {
  const std::string key(100000, 'a');
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*b", key));
  EXPECT_TRUE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*a", key));
}

}  // namespace
}  // namespace faha
