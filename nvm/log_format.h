// The on-media format of the FaHA log (version 1). Every field is fixed-width
// little-endian; sizes are checked at compile time. docs/format.md describes the
// same layout in prose. This header only declares layouts and constants.
//
//   segment file = SegmentHeader (64 B) | batch | batch | ... | zeros
//   batch        = BatchHeader (48 B) | record | record | ... , padded to 64 B
//   record       = RecordHeader (40 B) | key | value , padded to 8 B
//
// A batch is valid when its magic, version, length bounds, checksum (XXH3-64
// over header bytes [0,40) chained into the payload) and LSN continuity hold.
//
// Version 2 adds what log cleaning writes (version-1 logs read unchanged): a
// cleaned segment replaces a segment file of the same id and holds compacted
// batches. A compacted batch (version 2, flag kBatchCompacted) covers the LSN
// range [first_lsn, first_lsn + lsn_span) of the batches it replaces but keeps
// only their live records, each with its own LSN (first_lsn + lsn_delta), so
// the log still covers every LSN from its start, in order, without a gap.
#ifndef FAHA_NVM_LOG_FORMAT_H_
#define FAHA_NVM_LOG_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace faha::nvm {

inline constexpr uint32_t kSegmentMagic = 0x53484146;  // "FAHS"
inline constexpr uint32_t kBatchMagic = 0x42484146;    // "FAHB"
inline constexpr uint16_t kFormatVersion = 1;          // what ordinary batches and segments carry
inline constexpr uint16_t kCleanedVersion = 2;         // cleaned segments, compacted batches
inline constexpr uint16_t kBatchCompacted = 1;         // BatchHeader::flags
inline constexpr uint32_t kSegmentCleaned = 1;         // SegmentHeader::flags
inline constexpr uint64_t kBatchAlign = 64;            // one cache line
inline constexpr uint64_t kRecordAlign = 8;
// The in-flight window. A writer that takes bursts of batches (a backup)
// never has more than kTornWindowBatches batches written but not yet durable,
// nor more than kTornWindowBytes of a segment counted from the start of the
// first of them; a segment switch makes everything before it durable; other
// writers persist every batch before writing the next (LogOptions::
// in_flight_batches). On a file system the bytes of one persist become
// durable in whatever order the kernel writes pages back, so after a power cut
// a batch may be torn while a later one of the same window is whole. Recovery
// of a log with a window therefore treats an invalid batch followed by fewer
// than in_flight_batches valid batches, all ending within kTornWindowBytes of
// its start, as a torn tail (none of them was acknowledged), and anything more
// as damage.
inline constexpr uint32_t kTornWindowBatches = 16;
inline constexpr uint64_t kTornWindowBytes = 1ull << 20;

struct SegmentHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t header_bytes;  // sizeof(SegmentHeader)
  uint32_t segment_id;
  uint32_t reserved0;
  uint64_t segment_bytes;
  int64_t created_ms;
  // Version 2 (cleaned segments; zero in version 1):
  uint32_t flags;  // kSegmentCleaned
  uint32_t reserved1;
  // No record of a key is kept here that a write with an LSN at or below this
  // was known, when the segment was cleaned, to have made obsolete (committed).
  uint64_t cleaned_lsn;
  uint64_t reserved2;
  uint64_t checksum;  // XXH3-64 of bytes [0, 56)
};
static_assert(sizeof(SegmentHeader) == 64);
static_assert(offsetof(SegmentHeader, checksum) == 56);

struct BatchHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t flags;          // 0, or kBatchCompacted (version 2)
  uint32_t payload_bytes;  // bytes of records after this header (unpadded)
  uint32_t record_count;   // may be 0 in a compacted batch
  uint64_t first_lsn;      // LSN of the first record; records are numbered consecutively
  uint64_t epoch;          // replication epoch that wrote it (0 on a single node)
  uint64_t lsn_span;       // compacted batch: LSNs it covers; else 0 (it covers record_count)
  uint64_t checksum;       // XXH3-64 of header bytes [0, 40) seeding XXH3-64 of the payload
};
static_assert(sizeof(BatchHeader) == 48);
static_assert(offsetof(BatchHeader, checksum) == 40);

enum class RecordType : uint8_t {
  kPut = 1,       // key := value, with an absolute expiry (0 = none)
  kDelete = 2,    // key removed
  kFlushAll = 3,  // every key removed (key and value empty)
  // The reply to one write of a client that gave its identity: client_id and
  // client_seq in the header, the encoded reply as value, key empty. Written
  // after the write's own records so a retry is answered, not applied again.
  kClientReply = 4,
  // Every key of one namespace removed (FLUSHDB): the key is the namespace's
  // prefix (server/engine/namespaces.h; empty for database 0), value empty.
  kFlushDb = 5,
};

struct RecordHeader {
  uint8_t type;  // RecordType
  uint8_t flags;
  uint16_t reserved0;
  uint32_t key_bytes;
  uint32_t value_bytes;
  uint32_t lsn_delta;    // in a compacted batch: this record's LSN - first_lsn; else 0
  int64_t expire_at_ms;  // Unix time in ms; 0 = never expires
  uint64_t client_id;    // writer identity for retry de-duplication (0 = none)
  uint64_t client_seq;
};
static_assert(sizeof(RecordHeader) == 40);

inline constexpr uint64_t RecordSize(uint64_t key_bytes, uint64_t value_bytes) {
  return (sizeof(RecordHeader) + key_bytes + value_bytes + kRecordAlign - 1) / kRecordAlign *
         kRecordAlign;
}
inline constexpr uint64_t BatchSize(uint64_t payload_bytes) {
  return (sizeof(BatchHeader) + payload_bytes + kBatchAlign - 1) / kBatchAlign * kBatchAlign;
}

// The LSN after the last one a batch covers.
inline constexpr uint64_t BatchEndLsn(const BatchHeader& h) {
  return h.first_lsn + ((h.flags & kBatchCompacted) ? h.lsn_span : h.record_count);
}
inline constexpr bool IsCompacted(const BatchHeader& h) { return (h.flags & kBatchCompacted) != 0; }

// A log location names a record: segment id in the high 32 bits, byte offset of
// the record header inside the segment in the low 32 bits. 0 is never valid.
inline constexpr uint64_t MakeLocation(uint32_t segment, uint32_t offset) {
  return (static_cast<uint64_t>(segment) << 32) | offset;
}
inline constexpr uint32_t LocationSegment(uint64_t loc) { return static_cast<uint32_t>(loc >> 32); }
inline constexpr uint32_t LocationOffset(uint64_t loc) { return static_cast<uint32_t>(loc); }

}  // namespace faha::nvm

#endif  // FAHA_NVM_LOG_FORMAT_H_
