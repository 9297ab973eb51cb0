// Checksum: the value every log batch and replication frame on disk or on the
// wire carries. Whatever computes it (libxxhash's run-time dispatch where the
// library has one) must give XXH3-64's value: logs written by earlier builds
// stay readable.
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
  // Every length up to 4200 (XXH3's short, mid and long paths, its 64-byte
  // stripes and its 1 KiB blocks) and a few batch sizes beyond, from
  // unaligned starts, with several seeds.
  const std::string b = Bytes(70000);
  size_t mismatches = 0;
  auto check = [&](size_t off, size_t n, uint64_t seed) {
    if (Checksum(b.data() + off, n, seed) != XXH3_64bits_withSeed(b.data() + off, n, seed))
      mismatches++;
  };
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{0xdeadbeefcafef00d}}) {
    for (size_t off : {size_t{0}, size_t{1}, size_t{13}, size_t{64}}) {
      for (size_t n = 0; n <= 4200; n++) check(off, n, seed);
      for (size_t n : {size_t{16384}, size_t{65536}, size_t{69000}}) check(off, n, seed);
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace faha
