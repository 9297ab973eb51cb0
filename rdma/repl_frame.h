// Replication frames: what a primary and its backups exchange over any
// transport (TCP now, RDMA verbs later). Version 2, little-endian:
//
//   ReplFrameHeader (40 B) | body
//   BATCH      primary -> backup. lsn = the batch's first LSN; body = the batch
//              exactly as the primary's log holds it (nvm::BatchHeader with
//              epoch, first LSN, length, checksum | payload).
//   ACK        backup -> primary. lsn = the last LSN durable on the backup;
//              body = the 8-byte stamp of the HEARTBEAT it answers, or empty.
//   HELLO      primary -> backup, opening a session: lsn = the next LSN it will
//              ship, body = its client address (HOST:PORT). The backup answers
//              HELLO: lsn = the next LSN it needs, body = HelloReply.
//   ERROR      either way: body = a message for a person (why a session or a
//              frame was refused).
//   HEARTBEAT  primary -> backup, when idle and periodically: lsn = the
//              committed LSN, body = an 8-byte stamp (the primary's MonoUs) that
//              the ACK echoes (the primary's read lease).
//   TRUNCATE   primary -> backup: drop your log from LSN `lsn` on, then
//              reconnect (a backup that holds batches the primary never
//              committed).
// Before any frame, the channel has proven the cluster secret
// (StreamChannel, rdma/byte_stream.h).
//
// The header has its own checksum, so a damaged or forged frame is refused
// before anything in it is trusted. It covers the header and the body, except
// in a BATCH frame, where it covers the header and the batch header only (the
// first kBatchFrameCheckedBytes of the body): the batch header's own checksum
// covers its payload, and a backup verifies that before it stores a byte or
// reads a record (nvm::Log::CheckBatch; Store::AppendReplicated). Version 1 hashed every batch
// twice on each node (docs/architecture.md). Pure functions.
#ifndef FAHA_RDMA_REPL_FRAME_H_
#define FAHA_RDMA_REPL_FRAME_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace faha::rdma {

inline constexpr uint32_t kReplMagic = 0x52484146;  // "FAHR"
inline constexpr uint16_t kReplVersion = 2;
// Body bytes of a BATCH frame that its frame checksum covers: the batch
// header (sizeof(nvm::BatchHeader), asserted where batches are shipped).
inline constexpr size_t kBatchFrameCheckedBytes = 48;

enum class FrameType : uint16_t {
  kBatch = 1,
  kAck = 2,
  kHello = 3,
  kError = 4,
  kHeartbeat = 5,  // primary -> backup when idle; the backup answers with an ACK
  kTruncate = 6,   // primary -> backup: drop your log from LSN `lsn` on, then reconnect
};

struct ReplFrameHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t body_bytes;
  uint32_t reserved;  // 0
  uint64_t epoch;
  uint64_t lsn;
  uint64_t checksum;  // XXH3-64 of header bytes [0, 32) seeding XXH3-64 of the body (BATCH:
                      // of its first kBatchFrameCheckedBytes)
};
static_assert(sizeof(ReplFrameHeader) == 40);

// The body of a backup's answer to HELLO: its log's last batch, so that the
// primary can check that the backup's log is a prefix of its own.
struct HelloReply {
  uint64_t last_first_lsn;
  uint64_t last_checksum;
  uint64_t last_epoch;
};
static_assert(sizeof(HelloReply) == 24);

struct ReplFrame {
  FrameType type;
  uint64_t epoch;
  uint64_t lsn;
  std::string_view body;
};

enum class FrameDecode { kOk, kNeedMore, kError };

void EncodeFrame(std::string* out, FrameType type, uint64_t epoch, uint64_t lsn,
                 std::string_view body);
// The same frame with its body given in two parts (a batch header and its
// payload), without joining them first.
void EncodeFrame(std::string* out, FrameType type, uint64_t epoch, uint64_t lsn,
                 std::string_view body_head, std::string_view body_tail);
// Fills in the header of the frame that starts at out[at] (sizeof(ReplFrameHeader)
// bytes of room, then its body, which runs to the end of *out): a body built in
// place becomes a frame without being copied.
void SealFrame(std::string* out, size_t at, FrameType type, uint64_t epoch, uint64_t lsn);
// Decodes one frame from the front of `in`; `body` views into `in`. A body
// longer than max_body_bytes is refused from the header alone.
FrameDecode DecodeFrame(std::string_view in, uint32_t max_body_bytes, ReplFrame* frame,
                        size_t* consumed, std::string* error);

}  // namespace faha::rdma

#endif  // FAHA_RDMA_REPL_FRAME_H_
