#include "rdma/repl_frame.h"

#include <cstring>

#include "common/checksum.h"

namespace faha::rdma {
namespace {

uint64_t FrameChecksum(const ReplFrameHeader& h, std::string_view body) {
  if (h.type == static_cast<uint16_t>(FrameType::kBatch)) {
    body = body.substr(0, kBatchFrameCheckedBytes);  // the payload has its batch's checksum
  }
  return Checksum(body.data(), body.size(), Checksum(&h, offsetof(ReplFrameHeader, checksum)));
}

}  // namespace

void EncodeFrame(std::string* out, FrameType type, uint64_t epoch, uint64_t lsn,
                 std::string_view body) {
  EncodeFrame(out, type, epoch, lsn, body, {});
}

void EncodeFrame(std::string* out, FrameType type, uint64_t epoch, uint64_t lsn,
                 std::string_view body_head, std::string_view body_tail) {
  const size_t at = out->size();
  out->resize(at + sizeof(ReplFrameHeader));
  out->append(body_head);
  out->append(body_tail);
  SealFrame(out, at, type, epoch, lsn);
}

void SealFrame(std::string* out, size_t at, FrameType type, uint64_t epoch, uint64_t lsn) {
  ReplFrameHeader h{};
  h.magic = kReplMagic;
  h.version = kReplVersion;
  h.type = static_cast<uint16_t>(type);
  h.body_bytes = static_cast<uint32_t>(out->size() - at - sizeof(h));
  h.epoch = epoch;
  h.lsn = lsn;
  h.checksum = FrameChecksum(h, std::string_view(*out).substr(at + sizeof(h)));
  std::memcpy(out->data() + at, &h, sizeof(h));
}

FrameDecode DecodeFrame(std::string_view in, uint32_t max_body_bytes, ReplFrame* frame,
                        size_t* consumed, std::string* error) {
  if (in.size() < sizeof(ReplFrameHeader)) {
    if (in.size() >= 4) {
      uint32_t magic;
      std::memcpy(&magic, in.data(), 4);
      if (magic != kReplMagic) {
        *error = "not a replication frame (bad magic)";
        return FrameDecode::kError;
      }
    }
    return FrameDecode::kNeedMore;
  }
  ReplFrameHeader h;
  std::memcpy(&h, in.data(), sizeof(h));
  if (h.magic != kReplMagic) {
    *error = "not a replication frame (bad magic)";
    return FrameDecode::kError;
  }
  if (h.version != kReplVersion) {
    *error = "unsupported replication frame version " + std::to_string(h.version);
    return FrameDecode::kError;
  }
  if (h.type < static_cast<uint16_t>(FrameType::kBatch) ||
      h.type > static_cast<uint16_t>(FrameType::kTruncate) || h.reserved != 0) {
    *error = "unknown replication frame type " + std::to_string(h.type);
    return FrameDecode::kError;
  }
  if (h.body_bytes > max_body_bytes) {
    *error = "replication frame body of " + std::to_string(h.body_bytes) +
             " bytes exceeds the limit of " + std::to_string(max_body_bytes);
    return FrameDecode::kError;
  }
  if (in.size() - sizeof(h) < h.body_bytes) return FrameDecode::kNeedMore;
  std::string_view body = in.substr(sizeof(h), h.body_bytes);
  if (FrameChecksum(h, body) != h.checksum) {
    *error = "replication frame checksum mismatch";
    return FrameDecode::kError;
  }
  frame->type = static_cast<FrameType>(h.type);
  frame->epoch = h.epoch;
  frame->lsn = h.lsn;
  frame->body = body;
  *consumed = sizeof(h) + h.body_bytes;
  return FrameDecode::kOk;
}

}  // namespace faha::rdma
