// RESP (REdis Serialization Protocol, version 2): the request parser the server
// uses, the reply encoders, and a reply parser for clients and tests.
// Pure functions over caller-owned buffers; safe from any thread.
#ifndef FAHA_COMMON_RESP_H_
#define FAHA_COMMON_RESP_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace faha::resp {

struct ParseLimits {
  uint64_t max_bulk_bytes = 1 << 20;     // longest single argument
  uint64_t max_args = 1 << 20;           // most arguments in one command
  uint64_t max_inline_bytes = 64 << 10;  // longest inline command line
  // Before AUTH, as Redis: at most kPreauthArgs arguments of at most
  // kPreauthBulkBytes each, refused with Redis's "unauthenticated" errors.
  bool unauthenticated = false;
};
inline constexpr int64_t kPreauthArgs = 10;
inline constexpr int64_t kPreauthBulkBytes = 16384;

enum class ParseResult { kOk, kNeedMore, kError };

// Parses one command (a multibulk array of bulk strings, or an inline command
// line) from the front of `in`. On kOk, `args` views point into `in` and
// `*consumed` is the command's length. On kError, `*error` says why, in the
// words Redis uses ("Protocol error: ..."); the connection should be closed
// after replying. An empty inline line yields kOk with no args. An inline
// line is split as Redis splits one (quotes, and escapes inside "..."): an
// argument with a quote or an escape is written to *unescaped and viewed
// there (valid until the next call); without it, such a line is an error.
ParseResult ParseCommand(std::string_view in, const ParseLimits& limits,
                         std::vector<std::string_view>* args, size_t* consumed, std::string* error,
                         std::string* unescaped = nullptr);

// Reply encoders (append to `out`).
void AppendSimple(std::string* out, std::string_view s);  // +s
void AppendError(std::string* out, std::string_view s);   // -s (CR/LF replaced by spaces)
void AppendInt(std::string* out, int64_t v);              // :v
void AppendBulk(std::string* out, std::string_view s);    // $len s
void AppendBulkHeader(std::string* out, size_t len);      // $len, the bytes and CRLF to follow
void AppendNil(std::string* out);                         // $-1
void AppendArray(std::string* out, int64_t n);            // *n
void AppendNilArray(std::string* out);                    // *-1

// A parsed reply, for clients.
struct Reply {
  enum class Type { kSimple, kError, kInt, kBulk, kNil, kArray };
  Type type = Type::kNil;
  std::string str;  // kSimple, kError, kBulk
  int64_t integer = 0;
  std::vector<Reply> elements;  // kArray
  // redis-cli style rendering: "OK", "(integer) 3", "\"v\"", "(nil)", "1) ...".
  std::string Render(int indent = 0) const;
};

// One reply that is not an array, viewed where it lies (no copy): its type
// byte ('+', '-', ':' or '$') and its payload (the string, the error text
// without '-', the integer's digits, the bulk's bytes); a nil bulk has type
// '$' and nil set. False unless `in` is exactly one such reply. For the
// server, which hands the reply of a native GET, PUT, DELETE, AUTH or PING to
// the native protocol's encoder.
struct ScalarReply {
  char type = 0;
  std::string_view payload;
  bool nil = false;
};
bool ViewScalarReply(std::string_view in, ScalarReply* out);

// Parses one reply from the front of `in`. kNeedMore if incomplete.
ParseResult ParseReply(std::string_view in, Reply* reply, size_t* consumed, std::string* error,
                       int depth = 0);

}  // namespace faha::resp

#endif  // FAHA_COMMON_RESP_H_
