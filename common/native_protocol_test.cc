// Tests of the native protocol: request/response framing, header checks, limits, argument lists.
#include "common/native_protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/coding.h"

namespace faha::native {

// Readable gtest failure output for DecodeResult.
static void PrintTo(DecodeResult r, std::ostream* os) {
  *os << (r == DecodeResult::kOk ? "kOk" : r == DecodeResult::kNeedMore ? "kNeedMore" : "kError");
}

namespace {

constexpr Op kAllOps[] = {Op::kPing, Op::kAuth, Op::kGet, Op::kPut, Op::kDelete, Op::kCommand};
constexpr Code kAllCodes[] = {Code::kOk,     Code::kNotFound, Code::kError,
                              Code::kNoAuth, Code::kReadOnly, Code::kBusy};

std::string HeaderBytes(const RequestHeader& h) {
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h));
}

RequestHeader ValidHeader(Op op, uint32_t key_bytes, uint32_t value_bytes) {
  RequestHeader h{};
  h.magic = kRequestMagic;
  h.version = kVersion;
  h.op = static_cast<uint8_t>(op);
  h.key_bytes = key_bytes;
  h.value_bytes = value_bytes;
  h.request_id = 7;
  return h;
}

DecodeResult Decode(std::string_view in, const Limits& limits, Request* req, size_t* consumed,
                    std::string* error) {
  return DecodeRequest(in, limits, req, consumed, error);
}

// --- Requests ------------------------------------------------------------------

TEST(NativeRequestTest, HeaderLayoutIsLittleEndianAt32Bytes) {
  std::string out;
  EncodeRequest(&out, Op::kPut, 0x0102030405060708ull, "kk", "vvv", -2);
  ASSERT_EQ(out.size(), 32u + 2 + 3);
  EXPECT_EQ(static_cast<uint8_t>(out[0]), 0xFA);
  EXPECT_EQ(out[1], 1);
  EXPECT_EQ(out[2], 4);
  EXPECT_EQ(out[3], 0);
  EXPECT_EQ(DecodeFixed<uint32_t>(out.data() + 4), 2u);
  EXPECT_EQ(DecodeFixed<uint32_t>(out.data() + 8), 3u);
  EXPECT_EQ(DecodeFixed<uint32_t>(out.data() + 12), 0u);
  EXPECT_EQ(DecodeFixed<uint64_t>(out.data() + 16), 0x0102030405060708ull);
  EXPECT_EQ(DecodeFixed<int64_t>(out.data() + 24), -2);
  EXPECT_EQ(out.substr(32), "kkvvv");
}

TEST(NativeRequestTest, RoundTripEveryOp) {
  const std::string binary_value("\0\xfa\xfb\r\n", 5);
  uint64_t id = 1;
  for (Op op : kAllOps) {
    std::string key = op == Op::kPing ? "" : "key-" + std::to_string(static_cast<int>(op));
    std::string value = (op == Op::kPut || op == Op::kAuth || op == Op::kCommand)
                            ? binary_value + std::to_string(static_cast<int>(op))
                            : "";
    const int64_t arg = op == Op::kPut ? 1500 : -static_cast<int64_t>(op);
    std::string buf;
    EncodeRequest(&buf, op, id, key, value, arg);
    buf += "trailing";  // the next request's bytes must not be consumed
    Request req{};
    size_t consumed = 0;
    std::string error;
    ASSERT_EQ(DecodeRequest(buf, Limits(), &req, &consumed, &error), DecodeResult::kOk)
        << static_cast<int>(op) << ": " << error;
    EXPECT_EQ(req.op, op);
    EXPECT_EQ(req.request_id, id);
    EXPECT_EQ(req.arg, arg);
    EXPECT_EQ(req.key, key);
    EXPECT_EQ(req.value, value);
    EXPECT_EQ(consumed, 32 + key.size() + value.size());
    EXPECT_EQ(req.key.data(), buf.data() + 32);
    id = id * 1000003 + 0xFFFFFFFF00000000ull;
  }
}

TEST(NativeRequestTest, PipelinedRequests) {
  std::string buf;
  EncodeRequest(&buf, Op::kPut, 1, "a", "1");
  EncodeRequest(&buf, Op::kGet, 2, "a", "");
  EncodeRequest(&buf, Op::kPing, 3, "", "");
  std::string_view rest(buf);
  for (uint64_t id = 1; id <= 3; id++) {
    Request req{};
    size_t consumed = 0;
    std::string error;
    ASSERT_EQ(DecodeRequest(rest, Limits(), &req, &consumed, &error), DecodeResult::kOk) << error;
    EXPECT_EQ(req.request_id, id);
    rest.remove_prefix(consumed);
  }
  EXPECT_TRUE(rest.empty());
}

TEST(NativeRequestTest, EveryProperPrefixNeedsMore) {
  for (Op op : kAllOps) {
    std::string buf;
    EncodeRequest(&buf, op, 99, "some key", "some value bytes", 5);
    for (size_t n = 0; n < buf.size(); n++) {
      Request req{};
      size_t consumed = 0;
      std::string error;
      EXPECT_EQ(DecodeRequest(std::string_view(buf.data(), n), Limits(), &req, &consumed, &error),
                DecodeResult::kNeedMore)
          << "op " << static_cast<int>(op) << ", prefix of " << n << " bytes: " << error;
    }
  }
}

// Encodes a valid request, sets header byte `at` to `value`, and expects the
// decoder to refuse it with `want`.
void ExpectRefused(size_t at, uint8_t value, const std::string& want) {
  std::string buf;
  EncodeRequest(&buf, Op::kGet, 1, "k", "");
  buf[at] = static_cast<char>(value);
  Request req{};
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(Decode(buf, Limits(), &req, &consumed, &error), DecodeResult::kError)
      << "byte " << at << " = " << static_cast<int>(value);
  EXPECT_EQ(error, want) << "byte " << at << " = " << static_cast<int>(value);
}

TEST(NativeRequestTest, BadHeaderFieldsAreRefused) {
  ExpectRefused(0, '*', "bad request magic");
  for (uint8_t v : {0, 2, 255})
    ExpectRefused(1, v, "unsupported protocol version " + std::to_string(v));
  for (uint8_t op : {0, 9, 255}) ExpectRefused(2, op, "unknown opcode " + std::to_string(op));
  for (size_t byte : {3, 12, 13, 15}) ExpectRefused(byte, 1, "reserved header fields must be zero");
}

TEST(NativeRequestTest, BadMagicDetectedFromFirstByte) {
  for (size_t n = 1; n < 32; n++) {
    std::string buf(n, '\0');
    buf[0] = static_cast<char>(kResponseMagic);
    Request req{};
    size_t consumed = 0;
    std::string error;
    EXPECT_EQ(Decode(buf, Limits(), &req, &consumed, &error), DecodeResult::kError) << n;
    EXPECT_EQ(error, "bad request magic");
  }
}

TEST(NativeRequestTest, KeyAtLimitIsAcceptedAndOverLimitRejectedFromHeader) {
  Limits limits;
  limits.max_key_bytes = 100;
  limits.max_value_bytes = 1000;
  Request req{};
  size_t consumed = 0;
  std::string error;

  std::string at = HeaderBytes(ValidHeader(Op::kGet, 100, 0));
  EXPECT_EQ(Decode(at, limits, &req, &consumed, &error), DecodeResult::kNeedMore);
  at += std::string(100, 'k');
  ASSERT_EQ(Decode(at, limits, &req, &consumed, &error), DecodeResult::kOk) << error;
  EXPECT_EQ(req.key.size(), 100u);

  // Only the header has arrived: the decision must not wait for the body.
  std::string over = HeaderBytes(ValidHeader(Op::kGet, 101, 0));
  EXPECT_EQ(Decode(over, limits, &req, &consumed, &error), DecodeResult::kError);
  EXPECT_EQ(error, "key of 101 bytes exceeds max_key_bytes (100)");
}

TEST(NativeRequestTest, HugeKeyRejectedFromHeaderWithDefaultLimits) {
  Request req{};
  size_t consumed = 0;
  std::string error;
  std::string h = HeaderBytes(ValidHeader(Op::kPut, 0xFFFFFFFFu, 0xFFFFFFFFu));
  EXPECT_EQ(Decode(h, Limits(), &req, &consumed, &error), DecodeResult::kError);
  EXPECT_NE(error.find("16384"), std::string::npos) << error;
}

TEST(NativeRequestTest, ValueAtLimitIsAcceptedAndOverLimitRejectedFromHeader) {
  Limits limits;
  limits.max_key_bytes = 100;
  limits.max_value_bytes = 1000;
  Request req{};
  size_t consumed = 0;
  std::string error;

  std::string at = HeaderBytes(ValidHeader(Op::kPut, 1, 1000));
  EXPECT_EQ(Decode(at, limits, &req, &consumed, &error), DecodeResult::kNeedMore);
  at += "k" + std::string(1000, 'v');
  ASSERT_EQ(Decode(at, limits, &req, &consumed, &error), DecodeResult::kOk) << error;
  EXPECT_EQ(req.value.size(), 1000u);

  for (Op op : {Op::kPut, Op::kAuth, Op::kGet, Op::kPing, Op::kDelete}) {
    std::string over = HeaderBytes(ValidHeader(op, 1, 1001));
    EXPECT_EQ(Decode(over, limits, &req, &consumed, &error), DecodeResult::kError);
    EXPECT_EQ(error, "value of 1001 bytes exceeds max_value_bytes (1000)");
  }
}

TEST(NativeRequestTest, CommandAllowsValuePlusKeyPlusFraming) {
  Limits limits;
  limits.max_key_bytes = 100;
  limits.max_value_bytes = 1000;
  const uint32_t command_max = 1000 + 100 + 4096;
  Request req{};
  size_t consumed = 0;
  std::string error;

  std::string at = HeaderBytes(ValidHeader(Op::kCommand, 0, command_max));
  EXPECT_EQ(Decode(at, limits, &req, &consumed, &error), DecodeResult::kNeedMore) << error;
  at += std::string(command_max, 'c');
  ASSERT_EQ(Decode(at, limits, &req, &consumed, &error), DecodeResult::kOk) << error;
  EXPECT_EQ(req.value.size(), command_max);
  EXPECT_EQ(consumed, 32u + command_max);

  std::string over = HeaderBytes(ValidHeader(Op::kCommand, 0, command_max + 1));
  EXPECT_EQ(Decode(over, limits, &req, &consumed, &error), DecodeResult::kError);
  EXPECT_NE(error.find("value of " + std::to_string(command_max + 1) + " bytes"), std::string::npos)
      << error;
}

TEST(NativeRequestTest, CommandOverLimitMessageNamesTheLimitApplied) {
  // A kCommand body of 5,000 bytes is accepted here, so an error that says the
  // limit is 1000 would mislead whoever reads it.
  Limits limits;
  limits.max_key_bytes = 100;
  limits.max_value_bytes = 1000;
  Request req{};
  size_t consumed = 0;
  std::string error;
  std::string over = HeaderBytes(ValidHeader(Op::kCommand, 0, 5197));
  ASSERT_EQ(Decode(over, limits, &req, &consumed, &error), DecodeResult::kError);
  EXPECT_NE(error.find("5196"), std::string::npos) << error;
}

// --- Responses -----------------------------------------------------------------

TEST(NativeResponseTest, RoundTripEveryCode) {
  uint64_t id = 5;
  for (Code code : kAllCodes) {
    std::string body = code == Code::kOk ? std::string("\0body\xff", 6) : "message";
    std::string buf;
    EncodeResponse(&buf, code, id, body, -static_cast<int64_t>(code) - 1);
    ASSERT_EQ(buf.size(), 32 + body.size());
    EXPECT_EQ(static_cast<uint8_t>(buf[0]), kResponseMagic);
    buf += "next";
    Response resp{};
    size_t consumed = 0;
    std::string error;
    ASSERT_EQ(DecodeResponse(buf, 1 << 20, &resp, &consumed, &error), DecodeResult::kOk) << error;
    EXPECT_EQ(resp.code, code);
    EXPECT_EQ(resp.request_id, id);
    EXPECT_EQ(resp.arg, -static_cast<int64_t>(code) - 1);
    EXPECT_EQ(resp.body, body);
    EXPECT_EQ(consumed, 32 + body.size());
    id <<= 3;
  }
}

TEST(NativeResponseTest, EveryProperPrefixNeedsMore) {
  std::string buf;
  EncodeResponse(&buf, Code::kOk, 1, "value bytes", 0);
  for (size_t n = 0; n < buf.size(); n++) {
    Response resp{};
    size_t consumed = 0;
    std::string error;
    EXPECT_EQ(DecodeResponse(std::string_view(buf.data(), n), 1 << 20, &resp, &consumed, &error),
              DecodeResult::kNeedMore)
        << n;
  }
}

TEST(NativeResponseTest, BadCode) {
  std::string buf;
  EncodeResponse(&buf, Code::kOk, 1, "");
  buf[2] = 10;
  Response resp{};
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(DecodeResponse(buf, 1 << 20, &resp, &consumed, &error), DecodeResult::kError);
  EXPECT_EQ(error, "unknown response code 10");
}

TEST(NativeResponseTest, BadMagicOrVersion) {
  for (size_t byte : {0, 1}) {
    std::string buf;
    EncodeResponse(&buf, Code::kOk, 1, "");
    buf[byte] = static_cast<char>(kRequestMagic);
    Response resp{};
    size_t consumed = 0;
    std::string error;
    EXPECT_EQ(DecodeResponse(buf, 1 << 20, &resp, &consumed, &error), DecodeResult::kError);
    EXPECT_EQ(error, "bad response header");
  }
}

TEST(NativeResponseTest, BodyOverMaxRejectedFromHeader) {
  std::string buf;
  EncodeResponse(&buf, Code::kOk, 1, std::string(101, 'b'));
  Response resp{};
  size_t consumed = 0;
  std::string error;
  ASSERT_EQ(DecodeResponse(buf, 101, &resp, &consumed, &error), DecodeResult::kOk) << error;
  EXPECT_EQ(resp.body.size(), 101u);
  EXPECT_EQ(DecodeResponse(std::string_view(buf.data(), 32), 100, &resp, &consumed, &error),
            DecodeResult::kError);
  EXPECT_EQ(error, "response body of 101 bytes is over the limit");
}

// --- Argument lists -------------------------------------------------------------

std::vector<std::string> DecodedArgs(std::string_view in, bool* ok) {
  std::vector<std::string_view> views;
  *ok = DecodeArgs(in, &views);
  return std::vector<std::string>(views.begin(), views.end());
}

TEST(NativeArgsTest, RoundTrip) {
  const std::vector<std::string> args = {"SET", "key", "", std::string("\0\x01\xff\r\n", 5),
                                         std::string(70000, 'x')};
  std::string buf;
  EncodeArgs(&buf, args);
  EXPECT_EQ(buf.size(), 4u + 5 * 4 + 3 + 3 + 0 + 5 + 70000);
  bool ok = false;
  EXPECT_EQ(DecodedArgs(buf, &ok), args);
  EXPECT_TRUE(ok);
}

TEST(NativeArgsTest, EmptyList) {
  std::string buf;
  EncodeArgs(&buf, {});
  EXPECT_EQ(buf, std::string(4, '\0'));
  std::vector<std::string_view> views = {"stale"};
  EXPECT_TRUE(DecodeArgs(buf, &views));
  EXPECT_TRUE(views.empty());
}

TEST(NativeArgsTest, TooShortForCount) {
  for (size_t n = 0; n < 4; n++) {
    bool ok = true;
    DecodedArgs(std::string(n, '\0'), &ok);
    EXPECT_FALSE(ok) << n;
  }
}

TEST(NativeArgsTest, EveryTruncationIsRejected) {
  std::string buf;
  EncodeArgs(&buf, {"GET", "a-key", ""});
  for (size_t n = 0; n < buf.size(); n++) {
    bool ok = true;
    DecodedArgs(std::string_view(buf.data(), n), &ok);
    EXPECT_FALSE(ok) << "prefix of " << n << " bytes";
  }
}

TEST(NativeArgsTest, TruncatedLength) {
  std::string buf;
  PutFixed<uint32_t>(&buf, 1);
  buf += std::string("\x03\x00", 2);  // half of a u32 length
  bool ok = true;
  DecodedArgs(buf, &ok);
  EXPECT_FALSE(ok);
}

TEST(NativeArgsTest, LengthPastEnd) {
  std::string buf;
  PutFixed<uint32_t>(&buf, 1);
  PutFixed<uint32_t>(&buf, 0xFFFFFFFFu);
  buf += "abc";
  bool ok = true;
  DecodedArgs(buf, &ok);
  EXPECT_FALSE(ok);
}

TEST(NativeArgsTest, CountLargerThanPossible) {
  for (uint32_t count : {3u, 1000u, 0xFFFFFFFFu}) {
    std::string buf;
    PutFixed<uint32_t>(&buf, count);
    PutFixed<uint32_t>(&buf, 0);
    PutFixed<uint32_t>(&buf, 0);  // room for two empty arguments only
    bool ok = true;
    DecodedArgs(buf, &ok);
    EXPECT_FALSE(ok) << count;
  }
}

TEST(NativeArgsTest, TrailingGarbage) {
  std::string buf;
  EncodeArgs(&buf, {"PING"});
  buf += 'x';
  bool ok = true;
  DecodedArgs(buf, &ok);
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace faha::native
