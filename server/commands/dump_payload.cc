// DUMP / RESTORE payloads of string values in Redis 7.0's format (RDB
// version 10). Written from the format's description; the test checks it
// byte for byte against payloads made by redis-server 7.0.
//
// An RDB length is big-endian after its first byte's top two bits:
//   00xxxxxx            6 bits
//   01xxxxxx xxxxxxxx   14 bits
//   10000000 + 4 bytes  32 bits
//   10000001 + 8 bytes  64 bits
//   11xxxxxx            not a length: a special encoding of the string that
//                       follows, xxxxxx = 0 int8, 1 int16, 2 int32 (each
//                       little-endian, signed), 3 LZF (compressed length,
//                       original length, compressed bytes).
#include "server/commands/dump_payload.h"

#include <cstring>
#include <limits>
#include <utility>

namespace faha {
namespace {

constexpr uint8_t kStringType = 0;    // RDB_TYPE_STRING
constexpr uint16_t kRdbVersion = 10;  // Redis 7.0's; RESTORE accepts it and older
constexpr size_t kFooterBytes = 10;   // version (2) + CRC-64 (8)
constexpr size_t kCrcBytes = 8;

constexpr uint8_t kLen14 = 0x40;
constexpr uint8_t kLen32 = 0x80;
constexpr uint8_t kLen64 = 0x81;
constexpr uint8_t kEncoded = 0xC0;  // top two bits set: a special encoding
constexpr uint64_t kEncInt8 = 0;
constexpr uint64_t kEncInt16 = 1;
constexpr uint64_t kEncInt32 = 2;
constexpr uint64_t kEncLzf = 3;

// An LZF block's stated original length is trusted only as far as the block
// could expand: its densest unit is a 3-byte back reference that copies
// 7 + 255 + 2 = 264 bytes, so no block grows more than 88 times. Redis's own
// proto-max-bulk-len default caps a string at 512 MiB; we cap there too, so a
// hostile payload cannot make RESTORE allocate much more than it sent.
constexpr uint64_t kLzfMaxExpansion = 88;
constexpr uint64_t kMaxLzfOriginal = uint64_t{512} << 20;

constexpr char kFooterError[] = "ERR DUMP payload version or checksum are wrong";
constexpr char kFormatError[] = "ERR Bad data format";

// The reflected form of the Jones polynomial 0xad93d23594c935a9.
constexpr uint64_t kCrc64Poly = 0x95ac9329ac4bc9b5ULL;

struct Crc64Table {
  uint64_t entry[256] = {};
  constexpr Crc64Table() {
    for (uint64_t i = 0; i < 256; ++i) {
      uint64_t crc = i;
      for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ kCrc64Poly : crc >> 1;
      entry[i] = crc;
    }
  }
};
// Built at compile time: a byte at a time is ample for payloads of single
// values, and nothing runs before main to fill it.
constexpr Crc64Table kCrc64Table{};

void PutBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutLittleEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t GetLittleEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// The shortest form, as Redis writes it.
void PutLength(std::string* out, uint64_t len) {
  if (len < (uint64_t{1} << 6)) {
    out->push_back(static_cast<char>(len));
  } else if (len < (uint64_t{1} << 14)) {
    out->push_back(static_cast<char>(kLen14 | (len >> 8)));
    out->push_back(static_cast<char>(len & 0xff));
  } else if (len <= std::numeric_limits<uint32_t>::max()) {
    out->push_back(static_cast<char>(kLen32));
    PutBigEndian(out, len, 4);
  } else {
    out->push_back(static_cast<char>(kLen64));
    PutBigEndian(out, len, 8);
  }
}

// Whether `s` is exactly how Redis prints some 32-bit integer: digits with an
// optional '-', no '+', no leading zeros, not "-0". Redis stores a string as
// an integer only when printing the integer gives back the same bytes, so
// RESTORE returns the string unchanged; it tries only strings of at most 11
// bytes ("-2147483648"), and only 32-bit values have an RDB encoding.
bool CanonicalInt32(std::string_view s, int32_t* out) {
  if (s.empty() || s.size() > 11) return false;
  const bool negative = s[0] == '-';
  const std::string_view digits = negative ? s.substr(1) : s;
  if (digits.empty()) return false;
  if (digits[0] == '0' && (digits.size() > 1 || negative)) return false;
  int64_t magnitude = 0;  // at most 11 digits: cannot overflow
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    magnitude = magnitude * 10 + (c - '0');
  }
  const int64_t v = negative ? -magnitude : magnitude;
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return false;
  }
  *out = static_cast<int32_t>(v);
  return true;
}

// Redis 7.0 would LZF-compress a string over 20 bytes when that saves at
// least a few bytes (rdbcompression yes, the default). We never compress:
// the payload is still one Redis reads, only larger, and DUMP stays cheap and
// simple. So DumpString matches redis-server byte for byte only for values
// Redis would not compress (short or incompressible ones).
void PutStringObject(std::string* out, std::string_view value) {
  int32_t v = 0;
  if (!CanonicalInt32(value, &v)) {
    PutLength(out, value.size());
    out->append(value);
    return;
  }
  const auto bits = static_cast<uint64_t>(static_cast<int64_t>(v));
  if (v >= std::numeric_limits<int8_t>::min() && v <= std::numeric_limits<int8_t>::max()) {
    out->push_back(static_cast<char>(kEncoded | kEncInt8));
    PutLittleEndian(out, bits, 1);
  } else if (v >= std::numeric_limits<int16_t>::min() && v <= std::numeric_limits<int16_t>::max()) {
    out->push_back(static_cast<char>(kEncoded | kEncInt16));
    PutLittleEndian(out, bits, 2);
  } else {
    out->push_back(static_cast<char>(kEncoded | kEncInt32));
    PutLittleEndian(out, bits, 4);
  }
}

// Reads an RDB object from the bytes before the footer. Every read is
// checked against what is left, so a stated length is believed only when
// the bytes it claims are there.
class Reader {
 public:
  Reader(std::string_view in, uint64_t max_value) : in_(in), max_value_(max_value) {}

  // The longest value the caller takes; a longer one is refused unread.
  uint64_t max_value() const { return max_value_; }
  bool over_max = false;

  uint64_t remaining() const { return in_.size() - pos_; }

  bool Byte(uint8_t* b) {
    if (remaining() < 1) return false;
    *b = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }

  bool Bytes(uint64_t n, std::string_view* out) {
    if (n > remaining()) return false;
    *out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  // An RDB length; or, when the first byte's top two bits are set,
  // *encoded = true and *len = the special encoding's number (0..63).
  bool Length(uint64_t* len, bool* encoded) {
    uint8_t first;
    if (!Byte(&first)) return false;
    *encoded = false;
    std::string_view rest;
    switch (first >> 6) {
      case 0:
        *len = first & 0x3f;
        return true;
      case 1:
        if (!Bytes(1, &rest)) return false;
        *len = (uint64_t{first & 0x3fu} << 8) | static_cast<uint8_t>(rest[0]);
        return true;
      case 2: {
        const int bytes = first == kLen32 ? 4 : first == kLen64 ? 8 : 0;
        if (bytes == 0 || !Bytes(bytes, &rest)) return false;  // 0x82..0xBF: no such form
        *len = 0;
        for (char c : rest) *len = (*len << 8) | static_cast<uint8_t>(c);
        return true;
      }
      default:
        *encoded = true;
        *len = first & 0x3f;
        return true;
    }
  }

  // A plain length: a special encoding where a length belongs is malformed.
  bool PlainLength(uint64_t* len) {
    bool encoded;
    return Length(len, &encoded) && !encoded;
  }

 private:
  std::string_view in_;
  uint64_t max_value_;
  uint64_t pos_ = 0;
};

// liblzf's format, as Redis writes it: a control byte below 32 starts a
// literal run of (control + 1) bytes; any other is a back reference of
// (control >> 5) + 2 bytes (a length field of 7 continues in the next byte)
// starting ((control & 31) << 8 | next byte) + 1 bytes before the output's
// end. Fills exactly out_len bytes of `out` from all of `in`, or fails.
bool LzfDecompress(std::string_view in, char* out, uint64_t out_len) {
  uint64_t ip = 0;
  uint64_t op = 0;
  while (ip < in.size()) {
    const unsigned control = static_cast<uint8_t>(in[ip++]);
    if (control < 32) {
      const uint64_t run = control + 1;
      if (run > in.size() - ip || run > out_len - op) return false;
      std::memcpy(out + op, in.data() + ip, run);
      ip += run;
      op += run;
      continue;
    }
    uint64_t len = control >> 5;
    if (len == 7) {
      if (ip >= in.size()) return false;
      len += static_cast<uint8_t>(in[ip++]);
    }
    if (ip >= in.size()) return false;
    const uint64_t distance = ((uint64_t{control & 31u} << 8) | static_cast<uint8_t>(in[ip++])) + 1;
    len += 2;
    if (distance > op || len > out_len - op) return false;
    // A byte at a time: a reference may overlap the bytes it writes (a run of
    // one repeated byte is distance 1), which memcpy and memmove get wrong.
    for (uint64_t i = 0; i < len; ++i, ++op) out[op] = out[op - distance];
  }
  return op == out_len;
}

bool ReadLzfString(Reader* r, std::string* out) {
  uint64_t compressed_len;
  uint64_t original_len;
  std::string_view compressed;
  if (!r->PlainLength(&compressed_len) || !r->PlainLength(&original_len) ||
      !r->Bytes(compressed_len, &compressed)) {
    return false;
  }
  // Checked before allocating. Redis never compresses an empty string, so a
  // block that claims to expand to nothing is not one of its payloads.
  if (original_len == 0 || original_len > kMaxLzfOriginal ||
      original_len > compressed_len * kLzfMaxExpansion) {
    return false;
  }
  if (original_len > r->max_value()) {
    r->over_max = true;
    return false;
  }
  std::string value(original_len, '\0');
  if (!LzfDecompress(compressed, value.data(), original_len)) return false;
  *out = std::move(value);
  return true;
}

bool ReadStringObject(Reader* r, std::string* out) {
  uint64_t len;
  bool encoded;
  if (!r->Length(&len, &encoded)) return false;
  std::string_view bytes;
  if (!encoded) {
    if (!r->Bytes(len, &bytes)) return false;  // no allocation before the bytes are seen
    out->assign(bytes);
    return true;
  }
  int64_t v = 0;
  switch (len) {
    case kEncInt8:
      if (!r->Bytes(1, &bytes)) return false;
      v = static_cast<int8_t>(GetLittleEndian(bytes.data(), 1));
      break;
    case kEncInt16:
      if (!r->Bytes(2, &bytes)) return false;
      v = static_cast<int16_t>(GetLittleEndian(bytes.data(), 2));
      break;
    case kEncInt32:
      if (!r->Bytes(4, &bytes)) return false;
      v = static_cast<int32_t>(GetLittleEndian(bytes.data(), 4));
      break;
    case kEncLzf:
      return ReadLzfString(r, out);
    default:
      return false;
  }
  *out = std::to_string(v);
  return true;
}

// Redis's check, in its order: at least a footer, a version it knows, then
// the CRC of everything before the CRC.
bool FooterValid(std::string_view payload) {
  if (payload.size() < kFooterBytes) return false;
  const char* footer = payload.data() + payload.size() - kFooterBytes;
  if (GetLittleEndian(footer, 2) > kRdbVersion) return false;
  const uint64_t stored = GetLittleEndian(footer + 2, kCrcBytes);
  return stored == RedisCrc64(payload.substr(0, payload.size() - kCrcBytes));
}

std::string TooLong(uint64_t max_value) {
  return "ERR value is longer than max_value_bytes (" + std::to_string(max_value) + ")";
}

}  // namespace

uint64_t RedisCrc64(std::string_view data) {
  uint64_t crc = 0;
  for (char c : data) crc = kCrc64Table.entry[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  return crc;
}

std::string DumpString(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 16 + kFooterBytes);  // type + a length of up to 9 bytes
  out.push_back(static_cast<char>(kStringType));
  PutStringObject(&out, value);
  PutLittleEndian(&out, kRdbVersion, 2);
  PutLittleEndian(&out, RedisCrc64(out), kCrcBytes);
  return out;
}

bool RestoreString(std::string_view payload, uint64_t max_value, std::string* value,
                   std::string* error) {
  if (!FooterValid(payload)) {
    *error = kFooterError;
    return false;
  }
  // Stricter than Redis 7.0, which reads the object from a buffer that still
  // holds the footer and ignores what follows the object: here the object
  // must fill exactly the bytes before the footer, so a truncated object or
  // trailing bytes are refused rather than read as part of the value.
  Reader r(payload.substr(0, payload.size() - kFooterBytes), max_value);
  uint8_t type;
  std::string decoded;
  if (!r.Byte(&type) || type != kStringType || !ReadStringObject(&r, &decoded) ||
      r.remaining() != 0) {
    *error = r.over_max ? TooLong(max_value) : kFormatError;
    return false;
  }
  if (decoded.size() > max_value) {
    *error = TooLong(max_value);
    return false;
  }
  *value = std::move(decoded);
  return true;
}

namespace {
constexpr uint8_t kFunctionOpcode = 245;  // RDB_OPCODE_FUNCTION2
}  // namespace

std::string DumpFunctions(const std::vector<std::string>& codes) {
  std::string out;
  for (const std::string& code : codes) {
    out.push_back(static_cast<char>(kFunctionOpcode));
    PutLength(&out, code.size());  // raw, never an integer encoding: it is code
    out.append(code);
  }
  PutLittleEndian(&out, kRdbVersion, 2);
  PutLittleEndian(&out, RedisCrc64(out), kCrcBytes);
  return out;
}

bool RestoreFunctions(std::string_view payload, uint64_t max_value, std::vector<std::string>* codes,
                      std::string* error) {
  if (!FooterValid(payload)) {
    *error = kFooterError;
    return false;
  }
  Reader r(payload.substr(0, payload.size() - kFooterBytes), max_value);
  std::vector<std::string> decoded;
  while (r.remaining() != 0) {
    uint8_t opcode;
    std::string code;
    if (!r.Byte(&opcode) || opcode != kFunctionOpcode || !ReadStringObject(&r, &code)) {
      *error = "ERR given type is not a function";
      return false;
    }
    decoded.push_back(std::move(code));
  }
  *codes = std::move(decoded);
  return true;
}

}  // namespace faha
