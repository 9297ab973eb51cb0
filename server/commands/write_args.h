// Argument checks that write commands share (server/commands/cmd_write.cc,
// cmd_string.cc): key and value sizes, a write's size against one log batch,
// and expiry options as an absolute time.
#ifndef FAHA_SERVER_COMMANDS_WRITE_ARGS_H_
#define FAHA_SERVER_COMMANDS_WRITE_ARGS_H_

#include <climits>
#include <cstdint>
#include <string>
#include <string_view>

#include "nvm/log_format.h"
#include "server/commands/command_context.h"
#include "server/engine/namespaces.h"

namespace faha::cmd {

inline constexpr const char* kNotInteger = "ERR value is not an integer or out of range";

// The first of `keys` longer than --max_key_bytes gives an error reply.
inline bool KeyTooLong(const CommandContext& c, std::string_view key, ExecStatus* st) {
  // (A database's prefix is not the client's: server/engine/namespaces.h.)
  if (key.size() - ns::DbPrefixSize(ns::Of(key)) <= c.options().max_key_bytes) return false;
  *st = c.Error("ERR key is longer than max_key_bytes (" +
                std::to_string(c.options().max_key_bytes) + ")");
  return true;
}

inline bool ValueTooLong(const CommandContext& c, std::string_view value, ExecStatus* st) {
  if (value.size() <= c.options().max_value_bytes) return false;
  *st = c.Error("ERR value is longer than max_value_bytes (" +
                std::to_string(c.options().max_value_bytes) + ")");
  return true;
}

// A write whose records cannot fit one log batch is refused before it is queued.
inline bool TooBigForBatch(const CommandContext& c, uint64_t record_bytes, ExecStatus* st) {
  if (record_bytes <= c.options().max_batch_bytes) return false;
  *st = c.Error("ERR this write is larger than one log batch (--max_batch_kb=" +
                std::to_string(c.options().max_batch_bytes >> 10) + "); split it");
  return true;
}

// MSET and MSETNX: key, value pairs from args[1] on, each within the limits
// and all within one log batch; true (and the error in *st) if refused.
inline bool PairsRefused(const CommandContext& c, ExecStatus* st) {
  if (c.argc % 2 != 1) {
    *st = c.WrongArgs();
    return true;
  }
  uint64_t record_bytes = 0;
  for (int i = 1; i < c.argc; i += 2) {
    if (KeyTooLong(c, c.args[i], st) || ValueTooLong(c, c.args[i + 1], st)) return true;
    record_bytes += nvm::RecordSize(c.args[i].size(), c.args[i + 1].size());
  }
  return TooBigForBatch(c, record_bytes, st);
}

// SET's EX/PX/EXAT/PXAT argument `v` as an absolute time in ms; false if invalid.
inline bool SetExpireAt(std::string_view option, int64_t v, int64_t now, int64_t* at) {
  if (v <= 0) return false;
  if (option == "ex" || option == "exat") {
    if (v > INT64_MAX / 1000) return false;
    v *= 1000;
  }
  if (option == "ex" || option == "px") {
    if (v > INT64_MAX - now) return false;
    v += now;
  }
  *at = v;
  return true;
}

}  // namespace faha::cmd

#endif  // FAHA_SERVER_COMMANDS_WRITE_ARGS_H_
