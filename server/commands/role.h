// ReplicationRole: what the commands (INFO, ROLE, and the refusal of a data
// command a node may not serve) need to know of this node's part in
// replication. Defined here, where it is used; server/replication/ and
// server/cluster/ implement it, so commands never include them.
#ifndef FAHA_SERVER_COMMANDS_ROLE_H_
#define FAHA_SERVER_COMMANDS_ROLE_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace faha {

// Why this node does not serve a data command now, as a code and its text.
// The code is what clients act on (follow MOVED, retry TRYAGAIN, send
// READONLY): it travels as this enum, and each protocol encodes it once
// (RESP: RespText; the native protocol: its own response code).
struct Refusal {
  enum class Kind : uint8_t {
    kNone,       // served
    kMoved,      // a backup that knows its primary: `text` is its HOST:PORT
    kTryAgain,   // no node may serve it now (a failover, a lapsed lease)
    kReadOnly,   // a write sent to a backup
    kStaleRead,  // a read sent to a backup without READONLY / --stale_reads
  };
  Kind kind = Kind::kNone;
  std::string text;  // the message after the code word

  static Refusal Moved(std::string primary) { return {Kind::kMoved, std::move(primary)}; }
  static Refusal TryAgain(std::string why) { return {Kind::kTryAgain, std::move(why)}; }
  bool refused() const { return kind != Kind::kNone; }
  // The code word Redis clients match on: "MOVED", "TRYAGAIN", ...
  std::string_view code() const;
  // The RESP error reply without its '-': "MOVED 0 HOST:PORT" (slot 0: one
  // replica group serves every slot), "TRYAGAIN why", ...
  std::string RespText() const;
};

// What INFO and ROLE show about a node's part in replication.
class ReplicationRole {
 public:
  virtual ~ReplicationRole() = default;
  virtual bool is_backup() const = 0;
  // Lines of INFO's "# Replication" section ("key:value\r\n" each).
  virtual void AppendInfo(std::string* text) const = 0;
  // The RESP reply to ROLE.
  virtual void AppendRole(std::string* out) const = 0;
  // The primary's client address as far as this node knows ("" if none).
  virtual std::string primary_address() const = 0;
  // Whether this node may serve a data command now (a write, or a key read
  // that `stale_ok` allows on a backup): kNone, kMoved (the primary is
  // there) or kTryAgain (no node may serve it now, as during a failover).
  virtual faha::Refusal Refusal(bool /*write*/, bool /*stale_ok*/) const { return {}; }
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_ROLE_H_
