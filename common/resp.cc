#include "common/resp.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

namespace faha::resp {
namespace {

// Parses a decimal integer in [p, end) up to CRLF. Returns bytes up to and
// including CRLF, 0 if incomplete, -1 if malformed.
int64_t ParseLineInt(const char* p, const char* end, int64_t* v) {
  const char* cr = static_cast<const char*>(memchr(p, '\r', end - p));
  if (!cr) {
    if (end - p > 32) return -1;  // no number is this long
    return 0;
  }
  if (cr + 1 >= end) return 0;
  if (cr[1] != '\n') return -1;
  auto [ptr, ec] = std::from_chars(p, cr, *v);
  if (ec != std::errc() || ptr != cr || cr == p) return -1;
  return cr + 2 - p;
}

int HexDigit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

// Splits an inline command line as Redis does (sdssplitargs): blanks
// separate arguments; "..." takes \n \r \t \b \a \\ \" and \xHH escapes,
// '...' takes \'; a closing quote must end the argument. An argument that
// is not the line's bytes as they are goes to *unescaped (reserved to the
// line's length first, so views into it stay valid). False if unbalanced.
bool SplitInline(std::string_view line, std::vector<std::string_view>* args, std::string* unescaped,
                 size_t max_args, std::string* error) {
  size_t i = 0;
  unescaped->clear();
  unescaped->reserve(line.size());
  auto blank = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; };
  while (true) {
    while (i < line.size() && blank(line[i])) i++;
    if (i >= line.size()) return true;
    const size_t start = i;
    bool plain = true;  // no quote or escape: a view of the line itself
    for (size_t j = i; j < line.size() && !blank(line[j]); j++)
      plain &= line[j] != '"' && line[j] != '\'';
    if (plain) {
      while (i < line.size() && !blank(line[i])) i++;
      args->emplace_back(line.data() + start, i - start);
    } else {
      const size_t from = unescaped->size();
      char quote = 0;  // the quote we are inside, if any
      while (true) {
        if (i >= line.size()) {
          if (quote != 0) {
            *error = "Protocol error: unbalanced quotes in request";
            return false;
          }
          break;
        }
        const char ch = line[i];
        if (quote == '"' && ch == '\\' && i + 3 < line.size() && line[i + 1] == 'x' &&
            HexDigit(line[i + 2]) >= 0 && HexDigit(line[i + 3]) >= 0) {
          unescaped->push_back(
              static_cast<char>(HexDigit(line[i + 2]) * 16 + HexDigit(line[i + 3])));
          i += 4;
        } else if (quote == '"' && ch == '\\' && i + 1 < line.size()) {
          const char e = line[i + 1];
          unescaped->push_back(e == 'n'   ? '\n'
                               : e == 'r' ? '\r'
                               : e == 't' ? '\t'
                               : e == 'b' ? '\b'
                               : e == 'a' ? '\a'
                                          : e);
          i += 2;
        } else if (quote == '\'' && ch == '\\' && i + 1 < line.size() && line[i + 1] == '\'') {
          unescaped->push_back('\'');
          i += 2;
        } else if (quote != 0 && ch == quote) {
          // The closing quote must be followed by a blank or the end.
          if (i + 1 < line.size() && !blank(line[i + 1])) {
            *error = "Protocol error: unbalanced quotes in request";
            return false;
          }
          i++;
          break;
        } else if (quote == 0 && blank(ch)) {
          break;
        } else if (quote == 0 && (ch == '"' || ch == '\'')) {
          quote = ch;
          i++;
        } else {
          unescaped->push_back(ch);
          i++;
        }
      }
      args->emplace_back(unescaped->data() + from, unescaped->size() - from);
    }
    if (args->size() > max_args) {
      *error = "Protocol error: too many arguments";
      return false;
    }
  }
}

ParseResult ParseInline(std::string_view in, const ParseLimits& limits,
                        std::vector<std::string_view>* args, size_t* consumed, std::string* error,
                        std::string* unescaped) {
  const char* nl = static_cast<const char*>(memchr(in.data(), '\n', in.size()));
  if (!nl) {
    if (in.size() > limits.max_inline_bytes) {
      *error = "Protocol error: too big inline request";
      return ParseResult::kError;
    }
    return ParseResult::kNeedMore;
  }
  size_t len = nl - in.data();
  if (len > limits.max_inline_bytes) {
    *error = "Protocol error: too big inline request";
    return ParseResult::kError;
  }
  std::string_view line(in.data(), len);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string local;
  if (!SplitInline(line, args, unescaped != nullptr ? unescaped : &local, limits.max_args, error)) {
    return ParseResult::kError;
  }
  if (unescaped == nullptr) {
    for (std::string_view a : *args) {
      if (a.data() >= line.data() && a.data() + a.size() <= line.data() + line.size()) continue;
      // Quoted, so in `local`, which is gone on return: refused, not dangling.
      args->clear();
      *error = "Protocol error: quoted inline arguments need storage";
      return ParseResult::kError;
    }
  }
  *consumed = len + 1;
  return ParseResult::kOk;
}

}  // namespace

ParseResult ParseCommand(std::string_view in, const ParseLimits& limits,
                         std::vector<std::string_view>* args, size_t* consumed, std::string* error,
                         std::string* unescaped) {
  args->clear();
  if (in.empty()) return ParseResult::kNeedMore;
  if (in[0] != '*') return ParseInline(in, limits, args, consumed, error, unescaped);
  const char* p = in.data() + 1;
  const char* end = in.data() + in.size();
  int64_t n = 0;
  int64_t used = ParseLineInt(p, end, &n);
  if (used == 0) return ParseResult::kNeedMore;
  if (used < 0 || n > static_cast<int64_t>(limits.max_args)) {
    *error = "Protocol error: invalid multibulk length";
    return ParseResult::kError;
  }
  if (limits.unauthenticated && n > kPreauthArgs) {
    *error = "Protocol error: unauthenticated multibulk length";
    return ParseResult::kError;
  }
  p += used;
  if (n <= 0) {  // "*0" and "*-1" are empty commands
    *consumed = p - in.data();
    return ParseResult::kOk;
  }
  // Reserve for what a client could plausibly send, not for a hostile count.
  args->reserve(static_cast<size_t>(std::min<int64_t>(n, 64)));
  for (int64_t i = 0; i < n; i++) {
    if (p >= end) return ParseResult::kNeedMore;
    if (*p != '$') {
      *error = std::string("Protocol error: expected '$', got '") +
               (std::isprint(static_cast<unsigned char>(*p)) ? std::string(1, *p) : "?") + "'";
      return ParseResult::kError;
    }
    p++;
    int64_t len = 0;
    used = ParseLineInt(p, end, &len);
    if (used == 0) return ParseResult::kNeedMore;
    if (used < 0 || len < 0) {
      *error = "Protocol error: invalid bulk length";
      return ParseResult::kError;
    }
    if (limits.unauthenticated && len > kPreauthBulkBytes) {
      *error = "Protocol error: unauthenticated bulk length";
      return ParseResult::kError;
    }
    if (static_cast<uint64_t>(len) > limits.max_bulk_bytes) {
      *error = "Protocol error: bulk length " + std::to_string(len) + " exceeds the limit of " +
               std::to_string(limits.max_bulk_bytes) + " bytes";
      return ParseResult::kError;
    }
    p += used;
    if (end - p < len + 2) return ParseResult::kNeedMore;
    if (p[len] != '\r' || p[len + 1] != '\n') {
      *error = "Protocol error: bulk string not terminated by CRLF";
      return ParseResult::kError;
    }
    args->emplace_back(p, static_cast<size_t>(len));
    p += len + 2;
  }
  *consumed = p - in.data();
  return ParseResult::kOk;
}

void AppendSimple(std::string* out, std::string_view s) {
  out->push_back('+');
  out->append(s);
  out->append("\r\n");
}

void AppendError(std::string* out, std::string_view s) {
  out->push_back('-');
  size_t start = out->size();
  out->append(s);
  for (size_t i = start; i < out->size(); i++) {
    if ((*out)[i] == '\r' || (*out)[i] == '\n') (*out)[i] = ' ';
  }
  out->append("\r\n");
}

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->push_back(':');
  out->append(buf, ptr);
  out->append("\r\n");
}

void AppendBulkHeader(std::string* out, size_t len) {
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), len);
  out->push_back('$');
  out->append(buf, ptr);
  out->append("\r\n");
}

void AppendBulk(std::string* out, std::string_view s) {
  AppendBulkHeader(out, s.size());
  out->append(s);
  out->append("\r\n");
}

void AppendNil(std::string* out) { out->append("$-1\r\n"); }

void AppendArray(std::string* out, int64_t n) {
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), n);
  out->push_back('*');
  out->append(buf, ptr);
  out->append("\r\n");
}

void AppendNilArray(std::string* out) { out->append("*-1\r\n"); }

bool ViewScalarReply(std::string_view in, ScalarReply* out) {
  *out = ScalarReply{};
  if (in.size() < 3 || in.substr(in.size() - 2) != "\r\n") return false;
  out->type = in[0];
  const size_t line_end = in.find("\r\n");
  switch (in[0]) {
    case '+':
    case '-':
    case ':':
      if (line_end != in.size() - 2) return false;
      out->payload = in.substr(1, line_end - 1);
      return true;
    case '$': {
      std::string_view len_text = in.substr(1, line_end - 1);
      if (len_text == "-1") {
        out->nil = true;
        return line_end == in.size() - 2;
      }
      size_t len = 0;
      auto [p, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
      if (ec != std::errc() || p != len_text.data() + len_text.size()) return false;
      if (in.size() != line_end + 2 + len + 2) return false;
      out->payload = in.substr(line_end + 2, len);
      return true;
    }
    default:
      return false;
  }
}

ParseResult ParseReply(std::string_view in, Reply* reply, size_t* consumed, std::string* error,
                       int depth) {
  if (depth > 16) {
    *error = "reply nested too deep";
    return ParseResult::kError;
  }
  if (in.empty()) return ParseResult::kNeedMore;
  const char* p = in.data() + 1;
  const char* end = in.data() + in.size();
  char t = in[0];
  if (t == '+' || t == '-') {
    const char* cr = static_cast<const char*>(memchr(p, '\r', end - p));
    if (!cr || cr + 1 >= end) return ParseResult::kNeedMore;
    reply->type = t == '+' ? Reply::Type::kSimple : Reply::Type::kError;
    reply->str.assign(p, cr);
    *consumed = cr + 2 - in.data();
    return ParseResult::kOk;
  }
  if (t != ':' && t != '$' && t != '*') {
    *error = std::string("unknown reply type byte 0x") + "0123456789abcdef"[(t >> 4) & 15] +
             "0123456789abcdef"[t & 15];
    return ParseResult::kError;
  }
  int64_t n = 0;
  int64_t used = ParseLineInt(p, end, &n);
  if (used == 0) return ParseResult::kNeedMore;
  if (used < 0) {
    *error = "malformed reply length";
    return ParseResult::kError;
  }
  p += used;
  switch (t) {
    case ':':
      reply->type = Reply::Type::kInt;
      reply->integer = n;
      *consumed = p - in.data();
      return ParseResult::kOk;
    case '$':
      if (n < 0) {
        reply->type = Reply::Type::kNil;
        *consumed = p - in.data();
        return ParseResult::kOk;
      }
      if (end - p < 2 || n > (end - p) - 2) return ParseResult::kNeedMore;
      reply->type = Reply::Type::kBulk;
      reply->str.assign(p, static_cast<size_t>(n));
      *consumed = p + n + 2 - in.data();
      return ParseResult::kOk;
    case '*': {
      if (n < 0) {
        reply->type = Reply::Type::kNil;
        *consumed = p - in.data();
        return ParseResult::kOk;
      }
      reply->type = Reply::Type::kArray;
      reply->elements.clear();
      for (int64_t i = 0; i < n; i++) {
        Reply e;
        size_t c = 0;
        ParseResult r = ParseReply(std::string_view(p, end - p), &e, &c, error, depth + 1);
        if (r != ParseResult::kOk) return r;
        reply->elements.push_back(std::move(e));
        p += c;
      }
      *consumed = p - in.data();
      return ParseResult::kOk;
    }
    default:
      *error = std::string("unknown reply type byte 0x") + "0123456789abcdef"[(t >> 4) & 15] +
               "0123456789abcdef"[t & 15];
      return ParseResult::kError;
  }
}

std::string Reply::Render(int indent) const {
  switch (type) {
    case Type::kSimple:
      return str;
    case Type::kError:
      return "(error) " + str;
    case Type::kInt:
      return "(integer) " + std::to_string(integer);
    case Type::kNil:
      return "(nil)";
    case Type::kBulk: {
      std::string s = "\"";
      for (unsigned char c : str) {
        if (c == '"' || c == '\\') {
          s += '\\';
          s += static_cast<char>(c);
        } else if (c == '\n') {
          s += "\\n";
        } else if (c == '\r') {
          s += "\\r";
        } else if (c < 32 || c >= 127) {
          char b[8];
          snprintf(b, sizeof(b), "\\x%02x", c);
          s += b;
        } else {
          s += static_cast<char>(c);
        }
      }
      return s + "\"";
    }
    case Type::kArray: {
      if (elements.empty()) return "(empty array)";
      std::string s;
      for (size_t i = 0; i < elements.size(); i++) {
        if (i) {
          s += '\n';
          s.append(static_cast<size_t>(indent), ' ');
        }
        std::string num = std::to_string(i + 1) + ") ";
        s += num + elements[i].Render(indent + static_cast<int>(num.size()));
      }
      return s;
    }
  }
  return "";
}

}  // namespace faha::resp
