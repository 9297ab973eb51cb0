// ReplicationRole: what the commands (INFO, ROLE, and the refusal of a data
// command a node may not serve) need to know of this node's part in
// replication. Defined here, where it is used; server/replication/ and
// server/cluster/ implement it, so commands never include them.
#ifndef FAHA_SERVER_COMMANDS_ROLE_H_
#define FAHA_SERVER_COMMANDS_ROLE_H_

#include <string>

namespace faha {

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
  // that `stale_ok` allows on a backup). Empty: yes. Otherwise the error
  // reply without its '-': "MOVED 0 HOST:PORT" (the primary is there) or
  // "TRYAGAIN ..." (no node may serve it now, as during a failover).
  virtual std::string Refusal(bool /*write*/, bool /*stale_ok*/) const { return {}; }
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_ROLE_H_
