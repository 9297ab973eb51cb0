// The native binary protocol on the client port (version 1). A connection whose
// first byte is kRequestMagic speaks it; any other first byte means RESP.
// Requests and responses are a fixed 32-byte little-endian header followed by a
// body; clients may pipeline any number of requests and responses come back in
// request order, each echoing its request_id. docs/protocol.md has the table.
// Pure encode/decode functions; safe from any thread.
#ifndef FAHA_COMMON_NATIVE_PROTOCOL_H_
#define FAHA_COMMON_NATIVE_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace faha::native {

inline constexpr uint8_t kRequestMagic = 0xFA;
inline constexpr uint8_t kResponseMagic = 0xFB;
inline constexpr uint8_t kVersion = 1;

enum class Op : uint8_t {
  kPing = 1,     // no body
  kAuth = 2,     // value = password
  kGet = 3,      // key
  kPut = 4,      // key, value; arg = time-to-live in ms (0 = none)
  kDelete = 5,   // key; response arg = 1 if it existed
  kCommand = 6,  // value = argument list (EncodeArgs); response body = RESP reply
  // arg = this connection's client id (nonzero). From then on each write's
  // request_id is its sequence number: ids must grow, a retry reuses the id,
  // and a write already applied is answered with its first reply, not applied
  // again (also on a new primary after a failover). Write responses then carry
  // a commit stamp in `stamp`.
  kClientId = 7,
  // value = the commands of one transaction (EncodeTransaction); response
  // body = EXEC's RESP reply. Run as MULTI ... EXEC, as one write: with a
  // client id, a retry of the same request id is answered, not run again.
  kTransaction = 8,
};

enum class Code : uint8_t {
  kOk = 0,
  kNotFound = 1,
  kError = 2,       // body = message
  kNoAuth = 3,      // body = message
  kReadOnly = 4,    // body = message
  kBusy = 5,        // body = message
  kMoved = 6,       // body = "HOST:PORT" of the primary: send it there
  kTryAgain = 7,    // body = message: no node serves this now (failover); retry later
  kNoReplicas = 8,  // body = message: too few backups in sync to acknowledge a write; retry later
  kIoError = 9,     // body = message: the server's log failed; the write was not applied
};

// Commit stamp of a write on a connection with a client id: epoch in the high
// 16 bits, LSN of the write's reply record in the low 48 (0 = none, also for
// a retry answered from the client table).
inline constexpr uint64_t CommitStamp(uint64_t epoch, uint64_t lsn) {
  return lsn == 0 ? 0 : (epoch << 48) | (lsn & ((uint64_t{1} << 48) - 1));
}
inline constexpr uint64_t StampEpoch(uint64_t stamp) { return stamp >> 48; }
inline constexpr uint64_t StampLsn(uint64_t stamp) { return stamp & ((uint64_t{1} << 48) - 1); }

struct RequestHeader {
  uint8_t magic;  // kRequestMagic
  uint8_t version;
  uint8_t op;
  uint8_t flags;  // 0
  uint32_t key_bytes;
  uint32_t value_bytes;
  uint32_t reserved;  // 0
  uint64_t request_id;
  int64_t arg;
};
static_assert(sizeof(RequestHeader) == 32);

struct ResponseHeader {
  uint8_t magic;  // kResponseMagic
  uint8_t version;
  uint8_t code;
  uint8_t flags;  // 0
  uint32_t body_bytes;
  uint64_t stamp;  // CommitStamp of a write on a connection with a client id, else 0
  uint64_t request_id;
  int64_t arg;
};
static_assert(sizeof(ResponseHeader) == 32);

struct Request {
  Op op;
  uint64_t request_id;
  int64_t arg;
  std::string_view key;
  std::string_view value;
};

enum class DecodeResult { kOk, kNeedMore, kError };

struct Limits {
  uint32_t max_key_bytes = 16 << 10;
  uint32_t max_value_bytes = 1 << 20;
  uint32_t max_transaction_bytes = 8 << 20;  // a kTransaction's value (the server's batch limit)
};

// Decodes one request from the front of `in` (views point into `in`).
DecodeResult DecodeRequest(std::string_view in, const Limits& limits, Request* req,
                           size_t* consumed, std::string* error);
void EncodeRequest(std::string* out, Op op, uint64_t request_id, std::string_view key,
                   std::string_view value, int64_t arg = 0);

struct Response {
  Code code;
  uint64_t request_id;
  int64_t arg;
  std::string_view body;
  uint64_t stamp = 0;
};
DecodeResult DecodeResponse(std::string_view in, uint32_t max_body, Response* resp,
                            size_t* consumed, std::string* error);
void EncodeResponse(std::string* out, Code code, uint64_t request_id, std::string_view body,
                    int64_t arg = 0, uint64_t stamp = 0);

// kCommand argument lists: u32 count, then per argument u32 length + bytes.
void EncodeArgs(std::string* out, const std::vector<std::string>& args);
bool DecodeArgs(std::string_view in, std::vector<std::string_view>* args);
// kTransaction bodies: u32 count, then per command u32 length + its EncodeArgs.
void EncodeTransaction(std::string* out, const std::vector<std::vector<std::string>>& commands);
bool DecodeTransaction(std::string_view in, std::vector<std::vector<std::string_view>>* commands);

}  // namespace faha::native

#endif  // FAHA_COMMON_NATIVE_PROTOCOL_H_
