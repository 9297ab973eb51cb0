// Minimal leveled logging to stderr: "2026-11-21T08:00:00.123Z I log: text".
// Thread-safe: each line is formatted first and written with one write(2).
#ifndef FAHA_COMMON_LOGGING_H_
#define FAHA_COMMON_LOGGING_H_

#include <cstdarg>

namespace faha {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
void Logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace faha

#define FAHA_LOG_INFO(...) ::faha::Logf(::faha::LogLevel::kInfo, __VA_ARGS__)
#define FAHA_LOG_WARN(...) ::faha::Logf(::faha::LogLevel::kWarn, __VA_ARGS__)
#define FAHA_LOG_ERROR(...) ::faha::Logf(::faha::LogLevel::kError, __VA_ARGS__)
#define FAHA_LOG_DEBUG(...) ::faha::Logf(::faha::LogLevel::kDebug, __VA_ARGS__)

#endif  // FAHA_COMMON_LOGGING_H_
