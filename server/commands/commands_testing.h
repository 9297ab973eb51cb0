// Fakes for running commands without a store or a process (unit tests and
// fuzzers only): a host with default options and a keyspace in a map that
// applies the engine's write primitives as Store::Evaluate_st does.
#ifndef FAHA_SERVER_COMMANDS_COMMANDS_TESTING_H_
#define FAHA_SERVER_COMMANDS_COMMANDS_TESTING_H_

#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "server/commands/host.h"
#include "server/engine/namespaces.h"
#include "server/engine/write_op.h"
#include "server/metrics/metrics.h"

namespace faha {

class FakeHost : public CommandHost {
 public:
  const ServerOptions& options() const override { return options_; }
  ServerOptions& mutable_options() { return options_; }
  ClientLimits& client_limits() override { return options_.limits; }
  Store* store() const override { return nullptr; }  // commands reach the map instead
  Metrics* metrics() const override { return &metrics_; }
  int64_t start_ms() const override { return 0; }
  int bound_port() const override { return 0; }

 private:
  ServerOptions options_;
  mutable Metrics metrics_;
};

// The keyspace as a map; an expired key reads as absent, as in the engine.
class MapWriteContext final : public WriteContext {
 public:
  KeyState Get(std::string_view key, bool want_value) override {
    auto it = keys_.find(std::string(key));
    if (it == keys_.end()) return {};
    if (it->second.expire_at_ms != 0 && it->second.expire_at_ms <= now_ms_) return {};
    KeyState k = it->second;
    if (!want_value) k.value.clear();
    return k;
  }
  void Put(std::string_view key, std::string_view value, int64_t expire_at_ms) override {
    if (keys_.size() < max_keys_)
      keys_[std::string(key)] = {true, expire_at_ms, std::string(value)};
  }
  void Delete(std::string_view key) override { keys_.erase(std::string(key)); }
  int64_t NowMs() const override { return now_ms_; }
  WriteResult Evaluate(const WriteOp& op) override { return Apply(op); }

  // The engine's primitives, as Store::Evaluate_st applies them.
  WriteResult Apply(const WriteOp& op) {
    switch (op.kind) {
      case WriteOp::Kind::kPut:
        Put(op.args[0], op.args[1], op.expire_at_ms);
        return WriteResult::Ok();
      case WriteOp::Kind::kMSet:
        for (size_t i = 0; i + 1 < op.args.size(); i += 2) Put(op.args[i], op.args[i + 1], 0);
        return WriteResult::Ok();
      case WriteOp::Kind::kDelete: {
        int64_t n = 0;
        for (auto key : op.args) {
          if (Get(key, false).exists) {
            Delete(key);
            n++;
          }
        }
        return WriteResult::Int(n);
      }
      case WriteOp::Kind::kFlushAll:
        keys_.clear();
        return WriteResult::Ok();
      case WriteOp::Kind::kFlushDb:
        for (auto it = keys_.begin(); it != keys_.end();) {
          it = ns::Of(it->first) == op.number ? keys_.erase(it) : std::next(it);
        }
        return WriteResult::Ok();
      case WriteOp::Kind::kEval:
        return op.eval(op, *this);
    }
    return WriteResult::Error("ERR unknown write");
  }

  std::map<std::string, KeyState> keys_;
  int64_t now_ms_ = WallMs();
  size_t max_keys_ = SIZE_MAX;
};

}  // namespace faha

#endif  // FAHA_SERVER_COMMANDS_COMMANDS_TESTING_H_
