// ByteStream: an ordered, reliable byte stream between two peers (a TCP
// socket or a verbs stream).
#ifndef FAHA_RDMA_BYTE_STREAM_BASE_H_
#define FAHA_RDMA_BYTE_STREAM_BASE_H_

#include <string>
#include <string_view>

#include "common/byte_buffer.h"
#include "faha/status.h"

namespace faha::rdma {

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Writes all of `bytes`; Timeout once the peer took none of them for
  // timeout_ms (a slow reader that keeps up some progress is waited for).
  virtual Status Write(std::string_view bytes, int timeout_ms) = 0;
  // Whether TryWrite may be called: a verbs stream's writes wait for ring
  // credits, so it cannot.
  virtual bool WritesWithoutWaiting() const { return false; }
  // Writes what the stream takes now, without waiting, and answers how many
  // bytes that was (Unavailable once the peer is gone).
  virtual StatusOr<size_t> TryWrite(std::string_view bytes) {
    (void)bytes;
    return size_t{0};
  }
  // Appends what has arrived to *in, waiting up to timeout_ms for at least
  // one byte: Timeout if none came, Unavailable once the peer is gone. A
  // ByteBuffer, because a socket's receive fills its room without a copy.
  virtual Status Read(ByteBuffer* in, int timeout_ms) = 0;
  // Copies the first `want` bytes not yet read to *out without reading them,
  // once all have arrived, waiting up to timeout_ms (0: not at all): OK;
  // Timeout (*out then holds the fewer bytes there are); Unavailable.
  // Streams that cannot look ahead (verbs) answer InvalidArgument at once.
  virtual Status Peek(std::string* out, size_t want, int timeout_ms) {
    (void)out;
    (void)want;
    (void)timeout_ms;
    return Status::InvalidArgument("this stream cannot look ahead");
  }
  virtual const std::string& peer() const = 0;
  // Unblocks a Read or Write in progress on another thread, which then fails.
  virtual void Shutdown() = 0;
};

}  // namespace faha::rdma

#endif  // FAHA_RDMA_BYTE_STREAM_BASE_H_
