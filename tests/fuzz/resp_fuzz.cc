// libFuzzer target: the RESP request parser and reply parser on arbitrary bytes.
// Invariants: no crash or sanitizer report, consumed bytes never exceed the
// input, argument views lie inside the input (or the storage given for quoted
// inline arguments), and parsing is deterministic.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/resp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  faha::resp::ParseLimits limits;
  limits.max_bulk_bytes = 4096;
  limits.max_args = 1024;
  limits.max_inline_bytes = 4096;
  std::string_view rest = in;
  for (int i = 0; i < 64 && !rest.empty(); i++) {
    std::vector<std::string_view> args;
    size_t consumed = 0;
    std::string error;
    // Every other command with storage for quoted inline arguments: views
    // then lie in the input or in that storage; without it, in the input.
    std::string unescaped;
    const bool storage = i % 2 == 0;
    auto r = faha::resp::ParseCommand(rest, limits, &args, &consumed, &error,
                                      storage ? &unescaped : nullptr);
    if (r != faha::resp::ParseResult::kOk) break;
    if (consumed == 0 || consumed > rest.size()) abort();
    for (auto a : args) {
      const bool in_input =
          a.data() >= rest.data() && a.data() + a.size() <= rest.data() + rest.size();
      const bool in_storage = storage && a.data() >= unescaped.data() &&
                              a.data() + a.size() <= unescaped.data() + unescaped.size();
      if (!in_input && !in_storage) abort();
    }
    rest.remove_prefix(consumed);
  }
  faha::resp::Reply reply;
  size_t consumed = 0;
  std::string error;
  if (faha::resp::ParseReply(in, &reply, &consumed, &error) == faha::resp::ParseResult::kOk) {
    if (consumed > size) abort();
    (void)reply.Render();
  }
  return 0;
}
