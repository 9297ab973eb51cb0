// DUMP payloads of strings: byte for byte what redis-server 7.0.15 wrote for
// the same values (the hex below came from its DUMP), Redis's LZF payloads
// restored, round trips, and every kind of damaged or hostile payload refused
// with Redis's error text.
#include "server/commands/dump_payload.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace faha {
namespace {

constexpr char kFooterError[] = "ERR DUMP payload version or checksum are wrong";
constexpr char kFormatError[] = "ERR Bad data format";

// 100 bytes Redis does not compress (LZF would not save space on them).
constexpr char kHundred[] =
    "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e96b86b273ff34fce19d6b804eff"
    "5a3f5747ad";

// Lower-case hex digits; spaces, which only separate fields, are skipped.
std::string FromHex(std::string_view hex) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string digits;
  for (char c : hex) {
    if (c != ' ') digits.push_back(c);
  }
  std::string out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<char>((nibble(digits[i]) << 4) | nibble(digits[i + 1])));
  }
  return out;
}

std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 0xf]);
  }
  return out;
}

// `object` with a footer whose CRC is right, as Redis would frame it: what
// is refused then is the object, not the footer.
std::string Framed(std::string_view object, uint16_t version = 10) {
  std::string p(object);
  p.push_back(static_cast<char>(version & 0xff));
  p.push_back(static_cast<char>(version >> 8));
  const uint64_t crc = RedisCrc64(p);
  for (int i = 0; i < 8; ++i) p.push_back(static_cast<char>(crc >> (8 * i)));
  return p;
}

// The error RestoreString gives, or "" when it succeeds; a failure must leave
// the value as it was.
std::string ErrorOf(std::string_view payload) {
  std::string value = "untouched";
  std::string error;
  if (RestoreString(payload, UINT64_MAX, &value, &error)) return "";
  EXPECT_EQ(value, "untouched");
  return error.empty() ? "(failed with no error text)" : error;
}

std::string Restored(std::string_view payload) {
  std::string value;
  std::string error;
  EXPECT_TRUE(RestoreString(payload, UINT64_MAX, &value, &error))
      << error << " for " << ToHex(payload);
  return value;
}

struct Vector {
  std::string value;
  const char* hex;  // redis-server 7.0.15: DUMP of a key SET to `value`
};

void ExpectMatchesRedis(const std::vector<Vector>& vectors) {
  for (const Vector& v : vectors) {
    EXPECT_EQ(ToHex(DumpString(v.value)), v.hex) << "value \"" << v.value << "\"";
    EXPECT_EQ(Restored(FromHex(v.hex)), v.value);
  }
}

TEST(DumpPayloadTest, Crc64IsRedissJonesCrc) {
  EXPECT_EQ(RedisCrc64("123456789"), 0xe9c6d914c4b8d9caULL);  // the CRC's check value
  EXPECT_EQ(RedisCrc64(""), 0u);
}

TEST(DumpPayloadTest, DumpMatchesRedisByteForByte) {
  ExpectMatchesRedis({
      {"", "00000a005d9b5c400f7fa2da"},
      {"hello", "000568656c6c6f0a006372df766534200a"},
      {"12345", "00c139300a009d94ea2793fc08b9"},  // int16
      {"-1", "00c0ff0a000c937e2485089dc5"},       // int8
      {"300", "00c12c010a00954261f265825c10"},
      {"70000", "00c2701101000a0001a408fe953095a5"},  // int32
      {"2147483647", "00c2ffffff7f0a002c74e59ee02eada1"},
      {"4294967296", "000a343239343936373239360a00a5a389c81a8c4656"},  // over 32 bits: raw
      {"007", "00033030370a007258e27b4c69bad9"},                       // not canonical: raw
      {kHundred,
       "004064"  // a 14-bit length
       "35666563656236366666633836663338643935323738366336643639366337396332646263323339646434"
       "65393162343637323964373361323766623537653936623836623237336666333466636531396436623830"
       "3465666635613366353734376164"
       "0a00ea663e899c2f8495"},
  });
}

// Where Redis's choice between an integer encoding and raw bytes turns.
TEST(DumpPayloadTest, IntegerEncodingsMatchRedisAtTheirEdges) {
  ExpectMatchesRedis({
      {"0", "00c0000a009840a778f8500308"},
      {"-0", "00022d300a00d5411fd9d6d050cc"},
      {"+1", "00022b310a00c286f0d7439aee6f"},
      {"127", "00c07f0a000db5eb315254c514"},
      {"128", "00c180000a00eb7ab3b510cf4b65"},
      {"-128", "00c0800a009966326d2f0c5bd9"},
      {"-129", "00c17fff0a001760822854808480"},
      {"32767", "00c1ff7f0a00495a37da17f4d52b"},
      {"32768", "00c2008000000a0045d82eedd5bda910"},
      {"-32768", "00c100800a00b540064753bb1ace"},
      {"-32769", "00c2ff7fffff0a00aee34c4d06c68536"},
      {"2147483648", "000a323134373438333634380a00e7b129a34c1d76ee"},
      {"-2147483648", "00c2000000800a00c74f873e33558187"},
      {"-2147483649", "000b2d323134373438333634390a00c261377908f2028c"},
      {"12345678901", "000b31323334353637383930310a00304e52d727176510"},
  });
}

// DumpString never compresses, but RESTORE takes what Redis compresses.
TEST(DumpPayloadTest, RestoresRedissLzfPayloads) {
  EXPECT_EQ(Restored(FromHex("00c30940c8016161e0bb000161610a001f99f72e01b20de3")),
            std::string(200, 'a'));
  const std::string hundred = kHundred;
  EXPECT_EQ(Restored(FromHex(
                "00c3406e412c1f35666563656236366666633836663338643935323738366336643639366337391f"
                "63326462633233396464346539316234363732396437336132376662353765391136623836623237"
                "336666333466636531396420110f30346566663561336635373437616435e0bc630161640a003fce"
                "ae42fef178ed")),
            hundred + hundred + hundred);  // back references 100 bytes away
  std::string fox;
  for (int i = 0; i < 4; ++i) fox += "The quick brown fox jumps over the lazy dog. ";
  EXPECT_EQ(Restored(FromHex("00c33740b41f54686520717569636b2062726f776e20666f78206a756d7073206f"
                             "7665722074201e0a6c617a7920646f672e2054200de0782c012e200a0041832088"
                             "c7506e49")),
            fox);
  // 16384 bytes: the original length takes the 32-bit form (0x80).
  std::string ys = "00c340c38000004000017979";
  for (int i = 0; i < 62; ++i) ys += "e0ff00";
  ys += "e003000179790a007fe380ab3e060b10";
  EXPECT_EQ(Restored(FromHex(ys)), std::string(16384, 'y'));
}

TEST(DumpPayloadTest, LengthsTakeRedissShortestFormAtEachBoundary) {
  // Each header as redis-server wrote it for random bytes of that size.
  const std::vector<std::pair<size_t, std::string>> headers = {
      {63, "003f"}, {64, "004040"}, {16383, "007fff"}, {16384, "008000004000"}};
  for (const auto& [size, header] : headers) {
    const std::string payload = DumpString(std::string(size, 'x'));
    EXPECT_EQ(ToHex(payload.substr(0, header.size() / 2)), header) << size;
    EXPECT_EQ(payload.size(), header.size() / 2 + size + 10) << size;
  }
}

// Redis reads a length in any of its forms, and any version up to its own.
TEST(DumpPayloadTest, RestoresLongerLengthFormsAndOlderVersions) {
  EXPECT_EQ(Restored(Framed(FromHex("0040 05 68656c6c6f"))), "hello");
  EXPECT_EQ(Restored(Framed(FromHex("0080 00000005 68656c6c6f"))), "hello");
  EXPECT_EQ(Restored(Framed(FromHex("0081 0000000000000005 68656c6c6f"))), "hello");
  EXPECT_EQ(Restored(Framed(FromHex("0005 68656c6c6f"), 9)), "hello");
  EXPECT_EQ(Restored(Framed(FromHex("0005 68656c6c6f"), 0)), "hello");
  // The densest LZF unit: one 3-byte reference copies 264 bytes.
  EXPECT_EQ(Restored(Framed(FromHex("00c3 05 4109 0061e0ff00"))), std::string(265, 'a'));
}

TEST(DumpPayloadTest, RandomValuesRoundTrip) {
  std::mt19937_64 rng(20240611);
  std::vector<size_t> sizes = {0,    1,     2,     3,     10,    11,    12,    20,
                               21,   62,    63,    64,    65,    100,   255,   256,
                               1000, 16382, 16383, 16384, 16385, 65535, 65536, 70000};
  for (int i = 0; i < 40; ++i) sizes.push_back(rng() % 70001);
  for (size_t size : sizes) {
    std::string value(size, '\0');
    for (char& c : value) c = static_cast<char>(rng());
    EXPECT_EQ(Restored(DumpString(value)), value) << size << " bytes";
  }
  // Decimal strings, canonical or not, come back as the same bytes.
  for (int i = 0; i < 2000; ++i) {
    const int64_t n = static_cast<int64_t>(rng()) >> (rng() % 64);
    std::string text = std::to_string(n);
    if (i % 3 == 1) text = "0" + text;
    if (i % 3 == 2 && n >= 0) text = "+" + text;
    EXPECT_EQ(Restored(DumpString(text)), text);
  }
}

TEST(DumpPayloadTest, AnyDamageToTheFooterIsAFooterError) {
  const std::string good = DumpString("hello");
  for (size_t i = 0; i < good.size(); ++i) {  // the object too: the CRC covers it
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_EQ(ErrorOf(bad), kFooterError) << "byte " << i << " bit " << bit;
    }
  }
  for (size_t size = 0; size < 10; ++size) {
    EXPECT_EQ(ErrorOf(std::string(size, '\0')), kFooterError) << size;
  }
}

TEST(DumpPayloadTest, ANewerRdbVersionIsAFooterError) {
  const std::string object = FromHex("0005 68656c6c6f");
  EXPECT_EQ(ErrorOf(Framed(object, 11)), kFooterError);
  EXPECT_EQ(ErrorOf(Framed(object, 0xffff)), kFooterError);
  EXPECT_EQ(ErrorOf(Framed(object, 10)), "");
}

TEST(DumpPayloadTest, RefusesATruncatedPayloadAtEveryLength) {
  std::vector<std::string> payloads = {DumpString(""),
                                       DumpString("hello"),
                                       DumpString("-1"),
                                       DumpString("300"),
                                       DumpString("70000"),
                                       DumpString(kHundred),
                                       DumpString(std::string(16384, 'z')),
                                       FromHex("00c30940c8016161e0bb000161610a001f99f72e01b20de3")};
  for (const std::string& payload : payloads) {
    for (size_t n = 0; n < payload.size(); ++n) {
      EXPECT_NE(ErrorOf(payload.substr(0, n)), "") << n << " of " << payload.size();
    }
    // Cut before the footer and framed again, the CRC holds: the object is
    // what is short.
    const std::string object = payload.substr(0, payload.size() - 10);
    for (size_t n = 0; n < object.size(); ++n) {
      EXPECT_EQ(ErrorOf(Framed(object.substr(0, n))), kFormatError)
          << n << " of " << object.size() << ": " << ToHex(object.substr(0, n));
    }
  }
}

TEST(DumpPayloadTest, RefusesLengthsThePayloadCannotHold) {
  EXPECT_EQ(ErrorOf(Framed(FromHex("0081ffffffffffffffff"))), kFormatError);
  EXPECT_EQ(ErrorOf(Framed(FromHex("0080ffffffff 68656c6c6f"))), kFormatError);
  EXPECT_EQ(ErrorOf(Framed(FromHex("00810000000100000000 68656c6c6f"))), kFormatError);
  EXPECT_EQ(ErrorOf(Framed(FromHex("0006 68656c6c6f"))), kFormatError);  // one byte short
  // LZF: a compressed length past the end; original lengths of 2^64 - 1 and
  // of one byte more than 5 compressed bytes could ever expand to (5 * 88).
  EXPECT_EQ(ErrorOf(Framed(FromHex("00c3 8100000000ffffffff 05 0061e0ff00"))), kFormatError);
  EXPECT_EQ(ErrorOf(Framed(FromHex("00c3 05 81ffffffffffffffff 0061e0ff00"))), kFormatError);
  EXPECT_EQ(ErrorOf(Framed(FromHex("00c3 05 41b9 0061e0ff00"))), kFormatError);
  // Over 512 MiB, from enough compressed bytes to reach it: refused before
  // any allocation of that size.
  const uint64_t compressed = 6200000;
  const uint64_t original = (uint64_t{512} << 20) + 1;
  ASSERT_GE(compressed * 88, original);
  std::string object = FromHex("00c380");
  for (int i = 3; i >= 0; --i) object.push_back(static_cast<char>(compressed >> (8 * i)));
  object.push_back(static_cast<char>(0x80));
  for (int i = 3; i >= 0; --i) object.push_back(static_cast<char>(original >> (8 * i)));
  object.append(compressed, '\0');
  EXPECT_EQ(ErrorOf(Framed(object)), kFormatError);
}

// Redis 7.0 ignores bytes after the object; we refuse them (dump_payload.cc).
TEST(DumpPayloadTest, RefusesTrailingBytes) {
  for (std::string_view value : {"hello", "-1", "70000", ""}) {
    const std::string payload = DumpString(value);
    const std::string object = payload.substr(0, payload.size() - 10);
    EXPECT_EQ(ErrorOf(Framed(object + "X")), kFormatError) << value;
    EXPECT_EQ(ErrorOf(Framed(object + std::string(1, '\0'))), kFormatError) << value;
  }
  EXPECT_EQ(ErrorOf(Framed(FromHex("00c30940c8016161e0bb0001616100"))), kFormatError);
}

TEST(DumpPayloadTest, RefusesEveryTypeButString) {
  for (int type = 1; type < 256; ++type) {
    std::string object = FromHex("0005 68656c6c6f");
    object[0] = static_cast<char>(type);
    EXPECT_EQ(ErrorOf(Framed(object)), kFormatError) << "type " << type;
  }
  EXPECT_EQ(ErrorOf(Framed("")), kFormatError);
}

TEST(DumpPayloadTest, RefusesUnknownEncodings) {
  for (int first = 0x82; first <= 0xbf; ++first) {  // no such length form
    std::string object = FromHex("00 00 68656c6c6f");
    object[1] = static_cast<char>(first);
    EXPECT_EQ(ErrorOf(Framed(object)), kFormatError) << first;
  }
  for (int first = 0xc4; first <= 0xff; ++first) {  // no such special encoding
    std::string object = FromHex("00 00 0102030405060708");
    object[1] = static_cast<char>(first);
    EXPECT_EQ(ErrorOf(Framed(object)), kFormatError) << first;
  }
}

// Each of these redis-server 7.0 refuses too ("ERR Bad data format").
TEST(DumpPayloadTest, RefusesBadLzfBlocks) {
  const std::vector<std::string> bad = {
      "00c3 02 03 2000",      // a reference before the output's start
      "00c3 03 03 016161",    // expands to less than stated
      "00c3 03 01 016161",    // expands to more than stated
      "00c3 03 06 056161",    // a literal run past the block's end
      "00c3 03 0a 0061e0",    // a long reference without its length byte
      "00c3 03 0a 006120",    // a reference without its distance byte
      "00c3 04 02 01616100",  // bytes left after the stated length
      "00c3 05 02 016161",    // a block longer than the payload
      "00c3 c3 02 016161",    // a special encoding as the block's length
  };
  for (const std::string& hex : bad) {
    EXPECT_EQ(ErrorOf(Framed(FromHex(hex))), kFormatError) << hex;
  }
  // Redis takes these two (an original length of 0 as "", a special
  // encoding 0xc2 as the original length 2); it never writes either, and we
  // refuse both.
  EXPECT_EQ(ErrorOf(Framed(FromHex("00c3 03 00 016161"))), kFormatError);
  EXPECT_EQ(ErrorOf(Framed(FromHex("00c3 03 c2 016161"))), kFormatError);
  EXPECT_EQ(Restored(Framed(FromHex("00c3 04 04 00612000"))), "aaaa");
}

// A value over the caller's limit is refused, a compressed one before it is
// expanded (RESTORE passes --max_value_bytes).
TEST(DumpPayloadTest, AValueOverTheLimitIsRefusedBeforeItIsExpanded) {
  std::string value = "unchanged", error;
  EXPECT_FALSE(RestoreString(DumpString("hello"), 4, &value, &error));
  EXPECT_EQ(error, "ERR value is longer than max_value_bytes (4)");
  EXPECT_EQ(value, "unchanged");
  EXPECT_FALSE(RestoreString(Framed(FromHex("00c3 04 04 00612000")), 3, &value, &error));
  EXPECT_EQ(error, "ERR value is longer than max_value_bytes (3)");
  EXPECT_TRUE(RestoreString(Framed(FromHex("00c3 04 04 00612000")), 4, &value, &error));
  EXPECT_EQ(value, "aaaa");
}

}  // namespace
}  // namespace faha
