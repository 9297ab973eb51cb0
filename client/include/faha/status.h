// Status and StatusOr<T>: the result of every FaHA call that can fail, in the
// client library and inside the server alike. A Status is either OK or carries a
// code and a message meant for a person. Values are immutable and cheap to copy
// when OK; any thread may use its own copies. Both are [[nodiscard]]: a result
// dropped on purpose says so with IgnoreError().
#ifndef FAHA_STATUS_H_
#define FAHA_STATUS_H_

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace faha {

class [[nodiscard]] Status {
 public:
  enum class Code : int {
    kOk = 0,
    kNotFound = 1,
    kInvalidArgument = 2,
    kIOError = 3,
    kCorruption = 4,
    kTimeout = 5,
    kProtocol = 6,      // the peer sent bytes that are not a valid frame
    kAuth = 7,          // authentication missing or wrong
    kServerError = 8,   // the server answered with an error
    kReadOnly = 9,      // the node does not accept writes
    kUnavailable = 10,  // cannot reach the server / connection lost
    kBusy = 11,         // a limit was hit (clients, pipeline, memory)
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg = "not found") { return {Code::kNotFound, msg}; }
  static Status InvalidArgument(std::string_view msg) { return {Code::kInvalidArgument, msg}; }
  static Status IOError(std::string_view msg) { return {Code::kIOError, msg}; }
  static Status Corruption(std::string_view msg) { return {Code::kCorruption, msg}; }
  static Status Timeout(std::string_view msg) { return {Code::kTimeout, msg}; }
  static Status Protocol(std::string_view msg) { return {Code::kProtocol, msg}; }
  static Status Auth(std::string_view msg) { return {Code::kAuth, msg}; }
  static Status ServerError(std::string_view msg) { return {Code::kServerError, msg}; }
  static Status ReadOnly(std::string_view msg) { return {Code::kReadOnly, msg}; }
  static Status Unavailable(std::string_view msg) { return {Code::kUnavailable, msg}; }
  static Status Busy(std::string_view msg) { return {Code::kBusy, msg}; }

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  Code code() const { return code_; }
  // The same error with `prefix` put before its message.
  Status WithPrefix(std::string_view prefix) const {
    return ok() ? *this : Status(code_, std::string(prefix) + msg_);
  }
  const std::string& message() const { return msg_; }
  // Drops this result on purpose: the caller has nothing to do on failure
  // (logged or retried elsewhere, or best effort by design).
  void IgnoreError() const {}

  // "IOError: disk full" style text, or "OK".
  std::string ToString() const {
    if (ok()) return "OK";
    return std::string(CodeName(code_)) + ": " + msg_;
  }

  static const char* CodeName(Code c) {
    switch (c) {
      case Code::kOk:
        return "OK";
      case Code::kNotFound:
        return "NotFound";
      case Code::kInvalidArgument:
        return "InvalidArgument";
      case Code::kIOError:
        return "IOError";
      case Code::kCorruption:
        return "Corruption";
      case Code::kTimeout:
        return "Timeout";
      case Code::kProtocol:
        return "ProtocolError";
      case Code::kAuth:
        return "AuthError";
      case Code::kServerError:
        return "ServerError";
      case Code::kReadOnly:
        return "ReadOnly";
      case Code::kUnavailable:
        return "Unavailable";
      case Code::kBusy:
        return "Busy";
    }
    return "Unknown";
  }

 private:
  Status(Code code, std::string_view msg) : code_(code), msg_(msg) {}
  Code code_ = Code::kOk;
  std::string msg_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status s) : status_(std::move(s)) { assert(!status_.ok()); }  // NOLINT
  StatusOr(T v) : value_(std::move(v)) {}                                // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  void IgnoreError() const {}
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace faha

#define FAHA_RETURN_IF_ERROR(expr) \
  do {                             \
    ::faha::Status _st = (expr);   \
    if (!_st.ok()) return _st;     \
  } while (0)

#endif  // FAHA_STATUS_H_
