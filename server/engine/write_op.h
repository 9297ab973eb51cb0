// A write as the engine queues it (WriteOp), its reply (WriteResult), and the
// interface through which a command evaluates its own write (WriteContext,
// WriteEval): the seam between server/commands/ and the engine. Plain values,
// handed from the submitting thread to the committing one.
#ifndef FAHA_SERVER_ENGINE_WRITE_OP_H_
#define FAHA_SERVER_ENGINE_WRITE_OP_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace faha {

// The arguments of a write, packed in one buffer: a SET costs one allocation
// instead of three (vector, key, value), which showed in profiles.
class ArgList {
 public:
  ArgList() = default;
  ArgList(std::initializer_list<std::string_view> args) {
    for (auto a : args) push_back(a);
  }
  void push_back(std::string_view a) {
    data_.append(a);
    uint32_t end = static_cast<uint32_t>(data_.size());
    if (n_ < kInline) {
      inline_ends_[n_] = end;
    } else {
      more_ends_.push_back(end);
    }
    n_++;
  }
  void emplace_back(std::string_view a) { push_back(a); }
  size_t size() const { return n_; }
  size_t bytes() const { return data_.size(); }
  std::string_view operator[](size_t i) const {
    uint32_t begin = i == 0 ? 0 : End(i - 1);
    return std::string_view(data_).substr(begin, End(i) - begin);
  }
  class Iterator {
   public:
    Iterator(const ArgList* l, size_t i) : l_(l), i_(i) {}
    std::string_view operator*() const { return (*l_)[i_]; }
    Iterator& operator++() {
      i_++;
      return *this;
    }
    bool operator!=(const Iterator& o) const { return i_ != o.i_; }

   private:
    const ArgList* l_;
    size_t i_;
  };
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, size()); }

 private:
  static constexpr size_t kInline = 2;
  uint32_t End(size_t i) const { return i < kInline ? inline_ends_[i] : more_ends_[i - kInline]; }
  std::string data_;
  size_t n_ = 0;
  uint32_t inline_ends_[kInline] = {};
  std::vector<uint32_t> more_ends_;
};

struct WriteResult {
  // kRaw: `str` is a whole RESP reply already encoded (EXEC's array).
  enum class Kind : uint8_t { kOk, kNil, kInt, kBulk, kError, kRaw };
  // What kind of error, for a protocol that has a code for it (native).
  enum class ErrorCode : uint8_t { kOther, kNoReplicas, kIoError };
  Kind kind = Kind::kOk;
  int64_t integer = 0;
  std::string str;  // kBulk value or kError message (without the leading '-')
  // Writes of named clients: the LSN of the write's kClientReply record once
  // committed (its commit stamp, with the store's epoch); 0 otherwise.
  uint64_t lsn = 0;
  ErrorCode code = ErrorCode::kOther;
  // The write's own records are dropped and its reply stays (a killed
  // script): nothing it staged is applied.
  bool undo = false;
  static WriteResult Ok() { return {}; }
  static WriteResult Nil() { return {Kind::kNil, 0, {}, 0}; }
  static WriteResult Int(int64_t v) { return {Kind::kInt, v, {}, 0}; }
  static WriteResult Bulk(std::string s) { return {Kind::kBulk, 0, std::move(s), 0}; }
  static WriteResult Error(std::string s) { return {Kind::kError, 0, std::move(s), 0}; }
  static WriteResult Raw(std::string resp) { return {Kind::kRaw, 0, std::move(resp), 0}; }
  // Too few backups in sync to acknowledge the write (retry later); its
  // RESP text is written here once.
  static WriteResult NoReplicas(std::string_view why) {
    return {Kind::kError, 0, "NOREPLICAS " + std::string(why), 0, ErrorCode::kNoReplicas};
  }
  // The log failed or has no room: the write was not applied.
  static WriteResult IoError(std::string_view why) {
    return {Kind::kError, 0, "IOERR " + std::string(why), 0, ErrorCode::kIoError};
  }
};

// A key as a write sees it: committed, in a batch still being made durable,
// or written by an earlier write of the same group. An expired key is absent.
struct KeyState {
  bool exists = false;
  int64_t expire_at_ms = 0;  // 0: no expiry
  std::string value;         // filled only when asked for
  // Which record the key's state comes from: its log location, or
  // kInGroup | offset for a record staged by the group being evaluated. A
  // watched key whose location moved was written (or relocated by the
  // cleaner) since it was watched.
  uint64_t location = 0;
  static constexpr uint64_t kInGroup = uint64_t{1} << 63;
};

struct WriteOp;

// What a WriteEval may do: read keys and stage records. Staged records become
// durable, replicated and visible with the rest of the batch, or not at all.
// Only the committing thread holds one, for the length of one evaluation.
class WriteContext {
 public:
  virtual KeyState Get(std::string_view key, bool want_value) = 0;
  virtual void Put(std::string_view key, std::string_view value, int64_t expire_at_ms) = 0;
  virtual void Delete(std::string_view key) = 0;
  // The wall clock of the group being evaluated, in ms: one value for all its writes.
  virtual int64_t NowMs() const = 0;
  // Evaluates a whole write here, as if it were the next in the group: a
  // transaction's or a script's writes, staged with the rest of it.
  virtual WriteResult Evaluate(const WriteOp& op) = 0;

 protected:
  ~WriteContext() = default;
};

// A command's own write semantics (server/commands/cmd_write.cc): reads the
// keys it needs through `w`, stages its records there and returns the reply.
// It runs on the committing thread, once, in submission order.
using WriteEval = WriteResult (*)(const WriteOp& op, WriteContext& w);

// What a command's eval needs beyond its arguments (a transaction's queued
// commands); the command's own file defines it.
struct EvalPayload {
  virtual ~EvalPayload() = default;
};

struct WriteOp {
  // What the engine does with the write: one of its primitives (the native
  // protocol's PUT and DELETE, MSET, FLUSHALL, FLUSHDB of physical database
  // `number`) or a command's own `eval`.
  enum class Kind : uint8_t { kPut, kDelete, kMSet, kFlushAll, kFlushDb, kEval };
  Kind kind = Kind::kPut;
  ArgList args;              // kPut: key, value; kDelete: keys; kMSet: key, value, key, value,
                             // ...; kEval: the command's
  int64_t expire_at_ms = 0;  // kPut: absolute expiry, 0 = none; kEval: the command's
  int64_t number = 0;        // kEval: the command's (INCRBY's delta, ...)
  uint32_t flags = 0;        // kEval: the command's options
  WriteEval eval = nullptr;  // kEval
  std::shared_ptr<const EvalPayload> payload;  // kEval: the command's, if any
  // May run long (a script): committed by the sequencer thread, never inline
  // by a connection's thread, whose other clients would wait for it.
  bool slow = false;
  int64_t start_us = 0;  // for latency metrics
  // Retry de-duplication: a client that names itself numbers its writes; a
  // write whose (client_id, client_seq) was applied before gets its first
  // reply again (ClientTable). 0: anonymous, never de-duplicated.
  uint64_t client_id = 0;
  uint64_t client_seq = 0;
};

// The reply of one queued write, for the connection that sent it.
struct Completion {
  uint64_t conn_id;
  WriteResult result;
  int64_t start_us;
};

// Receives the replies of committed writes. Deliver() is called on the
// sequencer thread once per batch with every completion for this sink, in
// submission order; it must not block for long. It runs on the sequencer or
// committer thread, or on the sink's own thread when that thread committed
// its writes itself (Store::SubmitAll).
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void Deliver(std::vector<Completion>* completions) = 0;
};

// Each write's reply, grouped by sink in submission order (one Deliver per sink).
using Replies = std::vector<std::pair<CompletionSink*, std::vector<Completion>>>;

inline void DeliverAll(Replies* replies) {
  for (auto& [sink, completions] : *replies) sink->Deliver(&completions);
}

}  // namespace faha

#endif  // FAHA_SERVER_ENGINE_WRITE_OP_H_
