// Checksum: the value every log batch and replication frame on disk or on the
// wire carries. Whatever computes it (libxxhash's run-time dispatch on x86-64)
// must give XXH3-64's value: logs written by earlier builds stay readable.
#include "common/checksum.h"

#include <gtest/gtest.h>

#include <string>

namespace faha {
namespace {

std::string Bytes(size_t n) {
  std::string b(n, '\0');
  for (size_t i = 0; i < n; i++) b[i] = static_cast<char>(i * 31 + 7);
  return b;
}

TEST(ChecksumTest, KnownXXH3Values) {
  EXPECT_EQ(Checksum("", 0), 0x2d06800538d394c2ull);  // XXH3-64 of nothing
  const std::string b = Bytes(4096);
  EXPECT_EQ(Checksum(b.data(), b.size()), 0xa3c19f8174cde0bbull);
  EXPECT_EQ(Checksum(b.data(), 1000, 0x9e3779b97f4a7c15ull), 0x75b5719d9f31a6a2ull);
}

TEST(ChecksumTest, SameAsThePlainLibraryFunctionAtEveryLengthAndAlignment) {
  // Lengths across XXH3's short, mid and long (vector) paths and its stripe
  // and block boundaries, from unaligned starts, with several seeds.
  const std::string b = Bytes(70000);
  size_t mismatches = 0;
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{0xdeadbeefcafef00d}}) {
    for (size_t off : {size_t{0}, size_t{1}, size_t{13}, size_t{64}}) {
      for (size_t n = 0; n < 2100; n += (n < 300 ? 1 : 37)) {
        if (Checksum(b.data() + off, n, seed) != XXH3_64bits_withSeed(b.data() + off, n, seed))
          mismatches++;
      }
      for (size_t n : {size_t{4095}, size_t{4096}, size_t{65536}, size_t{69000}}) {
        if (Checksum(b.data() + off, n, seed) != XXH3_64bits_withSeed(b.data() + off, n, seed))
          mismatches++;
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace faha
