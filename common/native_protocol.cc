#include "common/native_protocol.h"

#include <cstring>

#include "common/coding.h"

namespace faha::native {

DecodeResult DecodeRequest(std::string_view in, const Limits& limits, Request* req,
                           size_t* consumed, std::string* error) {
  if (in.size() < sizeof(RequestHeader)) {
    if (!in.empty() && static_cast<uint8_t>(in[0]) != kRequestMagic) {
      *error = "bad request magic";
      return DecodeResult::kError;
    }
    return DecodeResult::kNeedMore;
  }
  RequestHeader h;
  std::memcpy(&h, in.data(), sizeof(h));
  if (h.magic != kRequestMagic) {
    *error = "bad request magic";
    return DecodeResult::kError;
  }
  if (h.version != kVersion) {
    *error = "unsupported protocol version " + std::to_string(h.version);
    return DecodeResult::kError;
  }
  if (h.op < static_cast<uint8_t>(Op::kPing) || h.op > static_cast<uint8_t>(Op::kTransaction)) {
    *error = "unknown opcode " + std::to_string(h.op);
    return DecodeResult::kError;
  }
  if (h.flags != 0 || h.reserved != 0) {
    *error = "reserved header fields must be zero";
    return DecodeResult::kError;
  }
  if (h.key_bytes > limits.max_key_bytes) {
    *error = "key of " + std::to_string(h.key_bytes) + " bytes exceeds max_key_bytes (" +
             std::to_string(limits.max_key_bytes) + ")";
    return DecodeResult::kError;
  }
  uint64_t max_value = limits.max_value_bytes;
  if (static_cast<Op>(h.op) == Op::kCommand) {
    // an argument list may hold a key and a value plus framing and small arguments
    max_value = static_cast<uint64_t>(limits.max_value_bytes) + limits.max_key_bytes + 4096;
  }
  if (static_cast<Op>(h.op) == Op::kTransaction) max_value = limits.max_transaction_bytes;
  if (h.value_bytes > max_value) {
    const Op op = static_cast<Op>(h.op);
    *error = "value of " + std::to_string(h.value_bytes) + " bytes exceeds " +
             (op == Op::kCommand       ? "the argument list limit ("
              : op == Op::kTransaction ? "the transaction limit (--max_batch_kb: "
                                       : "max_value_bytes (") +
             std::to_string(max_value) + ")";
    return DecodeResult::kError;
  }
  uint64_t total = sizeof(h) + static_cast<uint64_t>(h.key_bytes) + h.value_bytes;
  if (in.size() < total) return DecodeResult::kNeedMore;
  req->op = static_cast<Op>(h.op);
  req->request_id = h.request_id;
  req->arg = h.arg;
  req->key = in.substr(sizeof(h), h.key_bytes);
  req->value = in.substr(sizeof(h) + h.key_bytes, h.value_bytes);
  *consumed = total;
  return DecodeResult::kOk;
}

void EncodeRequest(std::string* out, Op op, uint64_t request_id, std::string_view key,
                   std::string_view value, int64_t arg) {
  RequestHeader h{};
  h.magic = kRequestMagic;
  h.version = kVersion;
  h.op = static_cast<uint8_t>(op);
  h.key_bytes = static_cast<uint32_t>(key.size());
  h.value_bytes = static_cast<uint32_t>(value.size());
  h.request_id = request_id;
  h.arg = arg;
  out->append(reinterpret_cast<const char*>(&h), sizeof(h));
  out->append(key);
  out->append(value);
}

DecodeResult DecodeResponse(std::string_view in, uint32_t max_body, Response* resp,
                            size_t* consumed, std::string* error) {
  if (in.size() < sizeof(ResponseHeader)) return DecodeResult::kNeedMore;
  ResponseHeader h;
  std::memcpy(&h, in.data(), sizeof(h));
  if (h.magic != kResponseMagic || h.version != kVersion) {
    *error = "bad response header";
    return DecodeResult::kError;
  }
  if (h.code > static_cast<uint8_t>(Code::kIoError)) {
    *error = "unknown response code " + std::to_string(h.code);
    return DecodeResult::kError;
  }
  if (h.body_bytes > max_body) {
    *error = "response body of " + std::to_string(h.body_bytes) + " bytes is over the limit";
    return DecodeResult::kError;
  }
  uint64_t total = sizeof(h) + static_cast<uint64_t>(h.body_bytes);
  if (in.size() < total) return DecodeResult::kNeedMore;
  resp->code = static_cast<Code>(h.code);
  resp->request_id = h.request_id;
  resp->arg = h.arg;
  resp->body = in.substr(sizeof(h), h.body_bytes);
  resp->stamp = h.stamp;
  *consumed = total;
  return DecodeResult::kOk;
}

void EncodeResponse(std::string* out, Code code, uint64_t request_id, std::string_view body,
                    int64_t arg, uint64_t stamp) {
  ResponseHeader h{};
  h.magic = kResponseMagic;
  h.version = kVersion;
  h.code = static_cast<uint8_t>(code);
  h.body_bytes = static_cast<uint32_t>(body.size());
  h.request_id = request_id;
  h.arg = arg;
  h.stamp = stamp;
  out->append(reinterpret_cast<const char*>(&h), sizeof(h));
  out->append(body);
}

void EncodeArgs(std::string* out, const std::vector<std::string>& args) {
  PutFixed<uint32_t>(out, static_cast<uint32_t>(args.size()));
  for (const auto& a : args) {
    PutFixed<uint32_t>(out, static_cast<uint32_t>(a.size()));
    out->append(a);
  }
}

bool DecodeArgs(std::string_view in, std::vector<std::string_view>* args) {
  args->clear();
  if (in.size() < 4) return false;
  uint32_t n = DecodeFixed<uint32_t>(in.data());
  size_t pos = 4;
  if (n > in.size() / 4) return false;  // each argument needs at least its length
  for (uint32_t i = 0; i < n; i++) {
    if (in.size() - pos < 4) return false;
    uint32_t len = DecodeFixed<uint32_t>(in.data() + pos);
    pos += 4;
    if (in.size() - pos < len) return false;
    args->push_back(in.substr(pos, len));
    pos += len;
  }
  return pos == in.size();
}

void EncodeTransaction(std::string* out, const std::vector<std::vector<std::string>>& commands) {
  PutFixed<uint32_t>(out, static_cast<uint32_t>(commands.size()));
  for (const auto& args : commands) {
    std::string one;
    EncodeArgs(&one, args);
    PutFixed<uint32_t>(out, static_cast<uint32_t>(one.size()));
    out->append(one);
  }
}

bool DecodeTransaction(std::string_view in, std::vector<std::vector<std::string_view>>* commands) {
  commands->clear();
  if (in.size() < 4) return false;
  const uint32_t n = DecodeFixed<uint32_t>(in.data());
  size_t pos = 4;
  if (n > in.size() / 8) return false;  // each command needs its length and argument count
  for (uint32_t i = 0; i < n; i++) {
    if (in.size() - pos < 4) return false;
    const uint32_t len = DecodeFixed<uint32_t>(in.data() + pos);
    pos += 4;
    if (in.size() - pos < len) return false;
    commands->emplace_back();
    if (!DecodeArgs(in.substr(pos, len), &commands->back()) || commands->back().empty()) {
      return false;
    }
    pos += len;
  }
  return pos == in.size();
}

}  // namespace faha::native
