// The payload of DUMP and RESTORE for a string value, in Redis 7.0's format,
// so that a client may move a key between Redis and FaHA (MIGRATE-style tools
// DUMP on one server and RESTORE on another). Pure functions; safe from any
// thread.
//
// A payload is an RDB string object (type byte 0, then the string: an RDB
// length and raw bytes, an 8/16/32-bit integer, or an LZF-compressed block),
// then a 10-byte footer: the RDB version (2 bytes, little-endian) and a CRC-64
// (Jones polynomial, reflected; 8 bytes, little-endian) of everything before
// the CRC, version included.
#ifndef FAHA_SERVER_COMMANDS_DUMP_PAYLOAD_H_
#define FAHA_SERVER_COMMANDS_DUMP_PAYLOAD_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace faha {

// Redis 7.0's DUMP payload of a string value: an RDB string object, the RDB
// version (10; 2 bytes LE) and a CRC-64 (Jones, 8 bytes LE) of what precedes
// it. Byte for byte what redis-server 7.0 writes when it does not compress:
// a canonical decimal integer that fits 32 bits takes the smallest integer
// encoding, anything else is raw. Never LZF (see dump_payload.cc).
std::string DumpString(std::string_view value);

// Decodes a payload made by DumpString or by Redis (RDB version <= 10; a
// string object, raw, integer-encoded or LZF-compressed) into *value. On
// failure returns false, leaves *value as it was and sets *error to the
// reply Redis gives: "ERR DUMP payload version or checksum are wrong" (the
// footer: too short, a newer version, a wrong CRC) or "ERR Bad data format"
// (the object: another type, truncated, trailing bytes, a bad LZF block).
// A value longer than `max_value` is refused before it is decompressed:
// "ERR value is longer than max_value_bytes (N)".
bool RestoreString(std::string_view payload, uint64_t max_value, std::string* value,
                   std::string* error);

// FUNCTION DUMP's payload in Redis 7.0's format: each library's code as an
// RDB function record (opcode 245, then the code as an RDB string), then the
// same footer.
std::string DumpFunctions(const std::vector<std::string>& codes);
// FUNCTION RESTORE: the libraries' code, or false with Redis's error as above.
bool RestoreFunctions(std::string_view payload, uint64_t max_value, std::vector<std::string>* codes,
                      std::string* error);

// Redis's CRC-64 (Jones polynomial 0xad93d23594c935a9, reflected, initial
// value 0, no final xor): RedisCrc64("123456789") == 0xe9c6d914c4b8d9ca.
// Public for tests, which build payloads with a valid footer around a
// hostile object.
uint64_t RedisCrc64(std::string_view data);

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_DUMP_PAYLOAD_H_
