// libFuzzer target: the native protocol decoders (requests, responses, command
// argument lists) and the replication frame decoder on arbitrary bytes. Invariants: no crash,
// decoded views lie inside the input, limits hold, and a decoded request re-encodes to the bytes it
// was decoded from.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/native_protocol.h"
#include "rdma/repl_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace faha::native;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Limits limits{64, 4096};
  Request req;
  size_t consumed = 0;
  std::string error;
  if (DecodeRequest(in, limits, &req, &consumed, &error) == DecodeResult::kOk) {
    if (consumed > size || req.key.size() > limits.max_key_bytes) abort();
    std::string again;
    EncodeRequest(&again, req.op, req.request_id, req.key, req.value, req.arg);
    if (again != in.substr(0, consumed)) abort();
    std::vector<std::string_view> args;
    if (DecodeArgs(req.value, &args)) {
      std::vector<std::string> copy(args.begin(), args.end());
      std::string re;
      EncodeArgs(&re, copy);
      if (re != req.value) abort();
    }
  }
  Response resp;
  if (DecodeResponse(in, 4096, &resp, &consumed, &error) == DecodeResult::kOk) {
    if (consumed > size || resp.body.size() > 4096) abort();
  }
  faha::rdma::ReplFrame frame;
  if (faha::rdma::DecodeFrame(in, 4096, &frame, &consumed, &error) ==
      faha::rdma::FrameDecode::kOk) {
    if (consumed > size || frame.body.size() > 4096) abort();
  }
  return 0;
}
