// IoThread: one epoll loop serving client connections (RESP and the native
// protocol): reading, parsing, running commands through Commands, queueing
// writes for the store, and sending replies in request order. Its lifecycle,
// loop, limits and connections are in io_thread.cc; input, the protocols and
// output in io_protocol.cc. Server (server.h) owns the threads.
#ifndef FAHA_SERVER_NET_IO_THREAD_H_
#define FAHA_SERVER_NET_IO_THREAD_H_

#include <pthread.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/byte_buffer.h"
#include "common/mutex.h"
#include "common/native_protocol.h"
#include "server/commands/commands.h"
#include "server/net/server.h"

namespace faha {

inline constexpr uint64_t kListenerId = 1;
inline constexpr uint64_t kWakeId = 2;
inline constexpr size_t kReadChunk = 64 << 10;
inline constexpr size_t kMaxOutputBacklog = 64 << 20;  // stop parsing while a client does not read
inline constexpr size_t kKeepBufferBytes = 1 << 20;    // a drained buffer bigger than this is freed
inline constexpr size_t kPreauthInputCap = 256 << 10;  // input buffered before AUTH
inline constexpr int kSweepMs = 100;                   // deadlines are checked this often
inline constexpr int kAcceptPauseMs = 100;             // no accepting for this long after EMFILE

// How to encode the reply of one pending write when its completion arrives.
struct PendingReply {
  // kReady: a reply given while earlier writes were pending (MULTI, QUEUED:
  // replies that read no data), sent as `text` right after theirs.
  enum class Kind : uint8_t { kResp, kNativePut, kNativeDelete, kNativeCommand, kReady };
  Kind kind;
  uint64_t request_id;
  std::string text = {};
};

// A piece of a connection's unsent output: bytes of its own, or a big value
// sent from the log where it lies (Session::HeldValue).
struct OutChunk {
  std::string bytes;
  std::string_view held;
  std::shared_ptr<const void> hold;
  std::string_view data() const { return hold != nullptr ? held : std::string_view(bytes); }
  // What it counts toward the client memory limit.
  size_t memory() const { return hold != nullptr ? held.size() : bytes.capacity(); }
};

struct Connection {
  uint64_t id = 0;
  int fd = -1;
  enum class Proto : uint8_t { kUnknown, kResp, kNative } proto = Proto::kUnknown;
  ByteBuffer in;
  size_t in_pos = 0;
  // Unsent output: `queued` first, then `out` (where replies are appended).
  // out_pos is the offset of the next byte to send in the first of them that
  // is not empty: queued.front() if any, else out.
  std::deque<OutChunk> queued;
  size_t queued_bytes = 0;   // sum of queued's sizes
  size_t queued_memory = 0;  // sum of queued's memory()
  std::string out;
  size_t out_pos = 0;
  size_t Backlog() const { return queued_bytes + out.size() - out_pos; }
  bool epollout = false;
  bool epollin = true;
  bool closing = false;     // close once output is flushed
  bool incomplete = false;  // the parser waits for the rest of a command
  int64_t created_us = 0;
  int64_t last_io_us = 0;        // last byte read or written (--timeout)
  int64_t command_since_us = 0;  // when the incomplete command began (--body_timeout_ms)
  int64_t soft_since_us = 0;     // output over the soft limit since (0: not over)
  size_t accounted = 0;          // bytes of buffers counted in Metrics::client_memory_bytes
  Session session;
  std::deque<PendingReply> pending;
};

class IoThread final : public CompletionSink {
 public:
  IoThread(Server* server, int index)
      : server_(server), index_(index), commands_(server, &outbox_) {}
  ~IoThread() override;
  Status Init();
  void AddListener(int fd);
  void RemoveListener();
  void Run();
  // Exits the loop after flushing what can be flushed.
  void Quit();
  void Join();
  // Hands a freshly accepted socket to this thread (any thread may call).
  void Adopt(int fd);
  void Deliver(std::vector<Completion>* completions) override;

 private:
  void Wake();
  void Loop();

  // Deadlines, once per kSweepMs: a client that never authenticated, a
  // command whose bytes stopped short, an idle client (--timeout), output
  // over the soft limit for too long; and the listener after EMFILE.
  void Sweep(int64_t now);

  // True once a client's unsent output is over the hard limit, or has been
  // over the soft limit for the soft seconds.
  bool OverOutputLimit(Connection* c, int64_t now);

  // Closes a client for one of the limits, counted by reason and logged at
  // most once a second.
  void CloseForLimit(Connection* c, const char* why);

  // Logs why a client is closed, at most one line a second; the closes not
  // logged are summed up by kind in the next line (FlushCloseLog).
  void LogClose(Connection* c, const std::string& what, const char* kind);

  // One line for the closes LogClose did not log, once a second has passed.
  void FlushCloseLog(int64_t now);

  // Counts a connection's buffers (by capacity) toward all clients' total.
  void Account(Connection* c);

  // Over --maxmemory_clients: this thread closes its own biggest clients
  // until all clients are under it again (the other thread does the same
  // with its own). Clients of 64 KiB or less are never evicted.
  void EnforceClientMemory();

  // Returns true when the loop should exit.
  bool HandleWake();
  void EncodeCompletion(Connection* c, const Completion& comp, int64_t now_us);
  void Accept();
  void AddConnection(int fd);
  void CloseConnection(Connection* c);
  void UpdateEvents(Connection* c, bool want_in, bool want_out);

  // The most unparsed input one connection may buffer, which is also the
  // largest command accepted: a command larger than one log batch could not be
  // committed atomically anyway.
  size_t InputCap(const Connection* c) const;
  void OnReadable(Connection* c);

  // Marks whether the parser waits for the rest of a command, and since when.
  void NoteIncomplete(Connection* c, bool incomplete);

  // Parses and runs buffered commands until input runs out or a command must
  // wait for pending writes.
  void ProcessInput(Connection* c);
  void ProtocolError(Connection* c, const std::string& msg);
  bool StepResp(Connection* c);

  // An immediate reply's latency, under the class of its command's row.
  void RecordLatency(const Session& s, int64_t t0);
  void AfterReply(Connection* c);
  bool StepNative(Connection* c);
  // CLIENT_ID: the connection's client id (a session setting, not a command).
  void NativeClientId(Connection* c, const native::Request& req);
  // PING, AUTH, GET, PUT and DELETE, run through Commands::Execute as the
  // Redis commands they are (PUT is SET [PX ttl], DELETE is DEL). This and
  // NativeCommand return false if the request must wait (it cannot be
  // answered while earlier writes are pending).
  bool NativeOp(Connection* c, const native::Request& req, int64_t t0);
  // Encodes the immediate reply of a NativeOp, which the dispatcher wrote as
  // RESP: a refusal its code, an error ERROR (NOAUTH for AUTH), nil NOT_FOUND,
  // a value its body.
  void EncodeNativeReply(Connection* c, const native::Request& req, std::string_view reply);
  bool NativeCommand(Connection* c, const native::Request& req, int64_t t0, bool may_reply);

  // Copies the values the last command held into *body, where they belong.
  static void InlineHeld(Session* s, std::string* body);

  // Moves the values the last command held (Session::held) out of c->out's
  // tail into c->queued, in reply order: the bytes before each, then it.
  void TakeHeld(Connection* c);
  void QueueChunk(Connection* c, OutChunk chunk);

  // One writev of the unsent output; consumes what was written. As write(2).
  ssize_t WriteOut(Connection* c);
  void Flush(Connection* c);

  Server* server_;
  int index_;
  Commands commands_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  int listen_fd_ = -1;
  size_t next_thread_ = 0;
  // This thread's biggest client over 64 KiB, for the other threads'
  // eviction order (EnforceClientMemory).
  std::atomic<size_t> biggest_{0};
  int64_t last_sweep_us_ = 0;
  int64_t accept_paused_until_us_ = 0;  // listener out of epoll after EMFILE until then
  int64_t accept_logged_us_ = 0;
  uint64_t accept_pauses_ = 0;
  int64_t limit_logged_us_ = 0;  // clients closed for limits: one log line a second
  std::map<std::string, uint64_t> unlogged_closes_;  // kind -> closes not logged yet
  std::thread thread_;
  // Set by the thread itself before its loop runs; compared by Deliver(),
  // which sees it written because its writes were submitted after.
  pthread_t loop_thread_{};
  bool self_delivered_ = false;  // loop thread only
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::string_view> args_;
  std::string reply_;                 // NativeOp's reply as the dispatcher wrote it
  std::string deferred_;              // a reply given while the connection's writes are pending
  std::string unescaped_;             // inline arguments with quotes or escapes, for args_
  std::vector<Store::Write> outbox_;  // writes parsed but not yet queued in the store
  std::unique_ptr<char[]> read_buf_{new char[kReadChunk]};

  Mutex mu_;
  std::vector<Completion> completions_ GUARDED_BY(mu_);
  std::vector<int> adopted_ GUARDED_BY(mu_);
  bool quit_ GUARDED_BY(mu_) = false;
  bool remove_listener_ GUARDED_BY(mu_) = false;
};

}  // namespace faha

#endif  // FAHA_SERVER_NET_IO_THREAD_H_
