// Tests of RESP: the request parser (split input, limits, errors), encoders, reply parser, Render.
#include "common/resp.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace faha::resp {

// Readable gtest failure output for ParseResult.
static void PrintTo(ParseResult r, std::ostream* os) {
  *os << (r == ParseResult::kOk ? "kOk" : r == ParseResult::kNeedMore ? "kNeedMore" : "kError");
}

namespace {

using Args = std::vector<std::string>;

struct Parsed {
  ParseResult result;
  Args args;
  size_t consumed = 0;
  std::string error;
};

Parsed Parse(std::string_view in, const ParseLimits& limits = ParseLimits()) {
  Parsed p;
  std::vector<std::string_view> views;
  std::string unescaped;
  p.consumed = 12345;  // a value the parser must overwrite on kOk
  p.result = ParseCommand(in, limits, &views, &p.consumed, &p.error, &unescaped);
  for (std::string_view v : views) p.args.emplace_back(v);
  return p;
}

std::string Multibulk(const Args& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

// --- Multibulk requests ----------------------------------------------------

TEST(RespParseCommandTest, CompleteMultibulkCommand) {
  const std::string in = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
  Parsed p = Parse(in);
  ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
  EXPECT_EQ(p.args, (Args{"SET", "key", "value"}));
  EXPECT_EQ(p.consumed, in.size());
}

TEST(RespParseCommandTest, ArgumentViewsPointIntoInput) {
  const std::string in = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  std::vector<std::string_view> views;
  size_t consumed = 0;
  std::string error;
  ASSERT_EQ(ParseCommand(in, ParseLimits(), &views, &consumed, &error), ParseResult::kOk);
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].data(), in.data() + 8);
  EXPECT_EQ(views[1].data(), in.data() + 17);
}

TEST(RespParseCommandTest, BinarySafeBulkWithEmbeddedCrlfAndNul) {
  const std::string value("a\r\nb\0c$*\r", 9);
  const std::string in = Multibulk({"SET", "", value});
  Parsed p = Parse(in);
  ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
  EXPECT_EQ(p.args, (Args{"SET", "", value}));
  EXPECT_EQ(p.consumed, in.size());
}

TEST(RespParseCommandTest, ZeroAndNegativeCountAreEmptyCommands) {
  Parsed zero = Parse("*0\r\nrest");
  ASSERT_EQ(zero.result, ParseResult::kOk);
  EXPECT_TRUE(zero.args.empty());
  EXPECT_EQ(zero.consumed, 4u);

  Parsed neg = Parse("*-1\r\n");
  ASSERT_EQ(neg.result, ParseResult::kOk);
  EXPECT_TRUE(neg.args.empty());
  EXPECT_EQ(neg.consumed, 5u);
}

TEST(RespParseCommandTest, EmptyInputNeedsMore) {
  EXPECT_EQ(Parse("").result, ParseResult::kNeedMore);
}

TEST(RespParseCommandTest, SplitAtEveryByteBoundary) {
  const Args want = {"SET", "some-key", std::string("v\r\n\0x", 5), "", "EX", "100"};
  const std::string in = Multibulk(want);
  for (size_t n = 0; n < in.size(); n++) {
    Parsed p = Parse(std::string_view(in.data(), n));
    EXPECT_EQ(p.result, ParseResult::kNeedMore) << "prefix of " << n << " bytes: " << p.error;
  }
  Parsed whole = Parse(in);
  ASSERT_EQ(whole.result, ParseResult::kOk) << whole.error;
  EXPECT_EQ(whole.args, want);
  EXPECT_EQ(whole.consumed, in.size());
}

TEST(RespParseCommandTest, SplitInlineAtEveryByteBoundary) {
  const std::string in = "SET  k\t\"a b\"\r\n";
  for (size_t n = 0; n < in.size(); n++) {
    EXPECT_EQ(Parse(std::string_view(in.data(), n)).result, ParseResult::kNeedMore)
        << "prefix of " << n << " bytes";
  }
  Parsed whole = Parse(in);
  ASSERT_EQ(whole.result, ParseResult::kOk) << whole.error;
  EXPECT_EQ(whole.args, (Args{"SET", "k", "a b"}));
  EXPECT_EQ(whole.consumed, in.size());
}

TEST(RespParseCommandTest, PipelinedCommandsInOneBuffer) {
  const std::vector<Args> cmds = {{"SET", "a", "1"}, {"GET", "a"}, {"PING"}, {"DEL", "a", "b"}};
  std::string in;
  for (const auto& c : cmds) in += Multibulk(c);
  in += "PING inline\r\n";
  in += "*2\r\n$3\r\nGET";  // an incomplete trailing command

  size_t pos = 0;
  for (const auto& c : cmds) {
    Parsed p = Parse(std::string_view(in).substr(pos));
    ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
    EXPECT_EQ(p.args, c);
    EXPECT_EQ(p.consumed, Multibulk(c).size());
    pos += p.consumed;
  }
  Parsed inl = Parse(std::string_view(in).substr(pos));
  ASSERT_EQ(inl.result, ParseResult::kOk) << inl.error;
  EXPECT_EQ(inl.args, (Args{"PING", "inline"}));
  EXPECT_EQ(inl.consumed, 13u);
  pos += inl.consumed;
  EXPECT_EQ(Parse(std::string_view(in).substr(pos)).result, ParseResult::kNeedMore);
}

TEST(RespParseCommandTest, ExactlyMaxArgsIsAccepted) {
  ParseLimits limits;
  limits.max_args = 3;
  Parsed ok = Parse(Multibulk({"a", "b", "c"}), limits);
  ASSERT_EQ(ok.result, ParseResult::kOk) << ok.error;
  EXPECT_EQ(ok.args.size(), 3u);

  Parsed over = Parse("*4\r\n", limits);
  EXPECT_EQ(over.result, ParseResult::kError);
  EXPECT_EQ(over.error, "Protocol error: invalid multibulk length");
}

TEST(RespParseCommandTest, ExactlyMaxBulkIsAccepted) {
  ParseLimits limits;
  limits.max_bulk_bytes = 10;
  const std::string ten(10, 'x');
  Parsed ok = Parse(Multibulk({"SET", "k", ten}), limits);
  ASSERT_EQ(ok.result, ParseResult::kOk) << ok.error;
  EXPECT_EQ(ok.args[2], ten);

  Parsed over = Parse(Multibulk({"SET", "k", ten + "y"}), limits);
  EXPECT_EQ(over.result, ParseResult::kError);
  EXPECT_EQ(over.error, "Protocol error: bulk length 11 exceeds the limit of 10 bytes");
}

// --- Multibulk errors ---------------------------------------------------------

TEST(RespParseCommandTest, NonNumericMultibulkLength) {
  Parsed p = Parse("*abc\r\n");
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.error, "Protocol error: invalid multibulk length");
}

TEST(RespParseCommandTest, MultibulkLengthOverMaxArgs) {
  Parsed p = Parse("*99999999999\r\n");
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.error, "Protocol error: invalid multibulk length");
}

TEST(RespParseCommandTest, MultibulkLengthMalformedVariants) {
  for (const char* in : {"*\r\n", "*1x\r\n", "*+1\r\n", "*1\rX", "*99999999999999999999999\r\n",
                         "*1111111111111111111111111111111111111"}) {
    Parsed p = Parse(in);
    EXPECT_EQ(p.result, ParseResult::kError) << in;
    EXPECT_EQ(p.error, "Protocol error: invalid multibulk length") << in;
  }
}

TEST(RespParseCommandTest, MissingDollar) {
  Parsed p = Parse("*2\r\n$3\r\nGET\r\n:1\r\n");
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.error, "Protocol error: expected '$', got ':'");

  Parsed unprintable = Parse(std::string("*1\r\n\x01", 5));
  EXPECT_EQ(unprintable.result, ParseResult::kError);
  EXPECT_EQ(unprintable.error, "Protocol error: expected '$', got '?'");
}

TEST(RespParseCommandTest, NegativeBulkLength) {
  for (const char* in : {"*1\r\n$-1\r\n", "*1\r\n$-5\r\nhello\r\n"}) {
    Parsed p = Parse(in);
    EXPECT_EQ(p.result, ParseResult::kError) << in;
    EXPECT_EQ(p.error, "Protocol error: invalid bulk length") << in;
  }
}

TEST(RespParseCommandTest, NonNumericBulkLength) {
  for (const char* in :
       {"*1\r\n$abc\r\n", "*1\r\n$\r\n", "*1\r\n$3x\r\nGET\r\n", "*1\r\n$3\rxGET"}) {
    Parsed p = Parse(in);
    EXPECT_EQ(p.result, ParseResult::kError) << in;
    EXPECT_EQ(p.error, "Protocol error: invalid bulk length") << in;
  }
}

TEST(RespParseCommandTest, HundredMegabyteBulkIsRejectedFromItsLengthAlone) {
  // Only the length line has arrived; waiting for 100 MB would let one client
  // make the server buffer it.
  Parsed p = Parse("*2\r\n$3\r\nSET\r\n$104857600\r\n");
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.error, "Protocol error: bulk length 104857600 exceeds the limit of 1048576 bytes");
}

TEST(RespParseCommandTest, BulkNotTerminatedByCrlf) {
  for (const char* in : {"*1\r\n$3\r\nGETxx", "*1\r\n$3\r\nGET\rx", "*1\r\n$3\r\nGET\n\r",
                         "*2\r\n$3\r\nGET\r\n$1\r\nkey\r\n"}) {
    Parsed p = Parse(in);
    EXPECT_EQ(p.result, ParseResult::kError) << in;
    EXPECT_EQ(p.error, "Protocol error: bulk string not terminated by CRLF") << in;
  }
}

// --- Inline requests --------------------------------------------------------

TEST(RespParseCommandTest, InlineWithSpacesAndTabs) {
  Parsed p = Parse("  SET\t key \t\tvalue  \r\n");
  ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
  EXPECT_EQ(p.args, (Args{"SET", "key", "value"}));
  EXPECT_EQ(p.consumed, 22u);
}

TEST(RespParseCommandTest, InlineWithBareLf) {
  Parsed p = Parse("GET k\nGET j\n");
  ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
  EXPECT_EQ(p.args, (Args{"GET", "k"}));
  EXPECT_EQ(p.consumed, 6u);
}

// Inline lines split as Redis's sdssplitargs splits them (redis-cli sends
// these; tests/command_table_test.cc compares them with redis-server).
TEST(RespParseCommandTest, InlineQuotes) {
  Parsed p = Parse("SET \"a key\" 'single' \"\"\r\n");
  ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
  EXPECT_EQ(p.args, (Args{"SET", "a key", "single", ""}));

  Parsed mixed = Parse("ECHO \"it's\" 'say \"hi\"'\n");
  ASSERT_EQ(mixed.result, ParseResult::kOk) << mixed.error;
  EXPECT_EQ(mixed.args, (Args{"ECHO", "it's", "say \"hi\""}));

  Parsed escapes = Parse("ECHO \"a\\nb\\x41\\\"\\\\\\t\\q\" 'it\\'s' 'back\\slash'\n");
  ASSERT_EQ(escapes.result, ParseResult::kOk) << escapes.error;
  EXPECT_EQ(escapes.args, (Args{"ECHO", "a\nbA\"\\\tq", "it's", "back\\slash"}));

  Parsed glued = Parse("ECHO ab\"c d\" x\"\"\n");
  ASSERT_EQ(glued.result, ParseResult::kOk) << glued.error;
  EXPECT_EQ(glued.args, (Args{"ECHO", "abc d", "x"}));

  Parsed nul = Parse("SET k \"\\x00\\xff\"\n");
  ASSERT_EQ(nul.result, ParseResult::kOk) << nul.error;
  EXPECT_EQ(nul.args, (Args{"SET", "k", std::string("\0\xff", 2)}));
}

TEST(RespParseCommandTest, InlineUnbalancedQuotes) {
  for (const char* line :
       {"SET \"key value\r\n", "SET \"a\"b\n", "SET 'it''s'\n", "ECHO 'x\n", "ECHO \"x\\\"\n"}) {
    Parsed p = Parse(line);
    EXPECT_EQ(p.result, ParseResult::kError) << line;
    EXPECT_EQ(p.error, "Protocol error: unbalanced quotes in request") << line;
  }
}

TEST(RespParseCommandTest, EmptyInlineLineIsOkWithNoArgs) {
  for (const char* in : {"\r\n", "\n", "   \t \r\n"}) {
    Parsed p = Parse(in);
    ASSERT_EQ(p.result, ParseResult::kOk) << in;
    EXPECT_TRUE(p.args.empty()) << in;
    EXPECT_EQ(p.consumed, std::string_view(in).size()) << in;
  }
}

TEST(RespParseCommandTest, TooLongInlineLine) {
  ParseLimits limits;
  limits.max_inline_bytes = 16;
  // Without a newline: more than the limit buffered is an error at once.
  Parsed pending = Parse(std::string(16, 'a'), limits);
  EXPECT_EQ(pending.result, ParseResult::kNeedMore);
  Parsed over = Parse(std::string(17, 'a'), limits);
  EXPECT_EQ(over.result, ParseResult::kError);
  EXPECT_EQ(over.error, "Protocol error: too big inline request");
  // With a newline after a line longer than the limit.
  Parsed line = Parse(std::string(20, 'a') + "\n", limits);
  EXPECT_EQ(line.result, ParseResult::kError);
  EXPECT_EQ(line.error, "Protocol error: too big inline request");
  // A line of exactly the limit is fine.
  Parsed ok = Parse(std::string(16, 'a') + "\n", limits);
  ASSERT_EQ(ok.result, ParseResult::kOk) << ok.error;
  EXPECT_EQ(ok.args, (Args{std::string(16, 'a')}));
}

TEST(RespParseCommandTest, DefaultInlineLimitIs64KiB) {
  Parsed p = Parse(std::string((64 << 10) + 1, 'a'));
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.error, "Protocol error: too big inline request");
}

TEST(RespParseCommandTest, InlineTooManyArguments) {
  ParseLimits limits;
  limits.max_args = 2;
  EXPECT_EQ(Parse("a b\n", limits).result, ParseResult::kOk);
  Parsed p = Parse("a b c\n", limits);
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.error, "Protocol error: too many arguments");
}

// --- Encoders ------------------------------------------------------------------

TEST(RespEncodeTest, Simple) {
  std::string out;
  AppendSimple(&out, "OK");
  EXPECT_EQ(out, "+OK\r\n");
}

TEST(RespEncodeTest, ErrorReplacesCrLf) {
  std::string out = "prefix";
  AppendError(&out, "ERR bad\r\nthing\n");
  EXPECT_EQ(out, "prefix-ERR bad  thing \r\n");
}

TEST(RespEncodeTest, Int) {
  std::string out;
  AppendInt(&out, 0);
  AppendInt(&out, -42);
  AppendInt(&out, INT64_MAX);
  AppendInt(&out, INT64_MIN);
  EXPECT_EQ(out, ":0\r\n:-42\r\n:9223372036854775807\r\n:-9223372036854775808\r\n");
}

TEST(RespEncodeTest, Bulk) {
  std::string out;
  AppendBulk(&out, "hello");
  AppendBulk(&out, "");
  AppendBulk(&out, std::string("a\0\r\n", 4));
  EXPECT_EQ(out, std::string("$5\r\nhello\r\n$0\r\n\r\n$4\r\na\0\r\n\r\n", 27));
}

TEST(RespEncodeTest, NilAndArrays) {
  std::string out;
  AppendNil(&out);
  AppendArray(&out, 3);
  AppendArray(&out, 0);
  AppendNilArray(&out);
  EXPECT_EQ(out, "$-1\r\n*3\r\n*0\r\n*-1\r\n");
}

TEST(RespEncodeTest, EncodedCommandParsesBack) {
  std::string out;
  AppendArray(&out, 3);
  AppendBulk(&out, "SET");
  AppendBulk(&out, "k");
  AppendBulk(&out, std::string("\0\xff", 2));
  Parsed p = Parse(out);
  ASSERT_EQ(p.result, ParseResult::kOk) << p.error;
  EXPECT_EQ(p.args, (Args{"SET", "k", std::string("\0\xff", 2)}));
}

// --- Reply parser ------------------------------------------------------------

TEST(RespParseReplyTest, Scalars) {
  std::string in;
  AppendSimple(&in, "OK");
  AppendError(&in, "ERR no");
  AppendInt(&in, -7);
  AppendBulk(&in, std::string("b\r\nc", 4));
  AppendNil(&in);
  AppendNilArray(&in);

  std::string_view rest(in);
  Reply r;
  size_t consumed = 0;
  std::string error;

  ASSERT_EQ(ParseReply(rest, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.type, Reply::Type::kSimple);
  EXPECT_EQ(r.str, "OK");
  EXPECT_EQ(consumed, 5u);
  rest.remove_prefix(consumed);

  ASSERT_EQ(ParseReply(rest, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.type, Reply::Type::kError);
  EXPECT_EQ(r.str, "ERR no");
  rest.remove_prefix(consumed);

  ASSERT_EQ(ParseReply(rest, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.type, Reply::Type::kInt);
  EXPECT_EQ(r.integer, -7);
  rest.remove_prefix(consumed);

  ASSERT_EQ(ParseReply(rest, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.type, Reply::Type::kBulk);
  EXPECT_EQ(r.str, std::string("b\r\nc", 4));
  EXPECT_EQ(consumed, 10u);
  rest.remove_prefix(consumed);

  ASSERT_EQ(ParseReply(rest, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.type, Reply::Type::kNil);
  EXPECT_EQ(consumed, 5u);
  rest.remove_prefix(consumed);

  r.type = Reply::Type::kInt;
  ASSERT_EQ(ParseReply(rest, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.type, Reply::Type::kNil);
  EXPECT_EQ(consumed, 5u);
  rest.remove_prefix(consumed);
  EXPECT_TRUE(rest.empty());
}

// *3 [ :1, *2 [ $1 a, *0 ], *2 [ $-1, +OK ] ]
std::string NestedReply() {
  std::string in;
  AppendArray(&in, 3);
  AppendInt(&in, 1);
  AppendArray(&in, 2);
  AppendBulk(&in, "a");
  AppendArray(&in, 0);
  AppendArray(&in, 2);
  AppendNil(&in);
  AppendSimple(&in, "OK");
  return in;
}

TEST(RespParseReplyTest, NestedArraysRoundTrip) {
  const std::string in = NestedReply();
  Reply r;
  size_t consumed = 0;
  std::string error;
  ASSERT_EQ(ParseReply(in, &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(consumed, in.size());
  ASSERT_EQ(r.type, Reply::Type::kArray);
  ASSERT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.elements[0].type, Reply::Type::kInt);
  EXPECT_EQ(r.elements[0].integer, 1);
  ASSERT_EQ(r.elements[1].type, Reply::Type::kArray);
  ASSERT_EQ(r.elements[1].elements.size(), 2u);
  EXPECT_EQ(r.elements[1].elements[0].type, Reply::Type::kBulk);
  EXPECT_EQ(r.elements[1].elements[0].str, "a");
  EXPECT_EQ(r.elements[1].elements[1].type, Reply::Type::kArray);
  EXPECT_TRUE(r.elements[1].elements[1].elements.empty());
  ASSERT_EQ(r.elements[2].elements.size(), 2u);
  EXPECT_EQ(r.elements[2].elements[0].type, Reply::Type::kNil);
  EXPECT_EQ(r.elements[2].elements[1].type, Reply::Type::kSimple);
  EXPECT_EQ(r.elements[2].elements[1].str, "OK");
}

TEST(RespParseReplyTest, EveryProperPrefixNeedsMore) {
  const std::string in = NestedReply();
  for (size_t n = 0; n < in.size(); n++) {
    Reply r;
    size_t consumed = 0;
    std::string error;
    EXPECT_EQ(ParseReply(std::string_view(in.data(), n), &r, &consumed, &error),
              ParseResult::kNeedMore)
        << "prefix of " << n << " bytes: " << error;
  }
}

TEST(RespParseReplyTest, UnknownTypeByteWithFullLine) {
  Reply r;
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(ParseReply("?12\r\n", &r, &consumed, &error), ParseResult::kError);
  EXPECT_EQ(error, "unknown reply type byte 0x3f");
}

TEST(RespParseReplyTest, UnknownTypeByteIsAnErrorAtOnce) {
  // No valid reply starts with these bytes, so there is nothing to wait for,
  // and the message should name the real problem.
  for (const char* in : {"?", "!abc", "hello\r\n", "X1"}) {
    Reply r;
    size_t consumed = 0;
    std::string error;
    EXPECT_EQ(ParseReply(in, &r, &consumed, &error), ParseResult::kError) << in;
    EXPECT_NE(error.find("unknown reply type byte"), std::string::npos) << in << ": " << error;
  }
}

TEST(RespParseReplyTest, MalformedLength) {
  Reply r;
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(ParseReply("$abc\r\n", &r, &consumed, &error), ParseResult::kError);
  EXPECT_EQ(error, "malformed reply length");
}

TEST(RespParseReplyTest, TooDeepNestingIsAnError) {
  std::string in;
  for (int i = 0; i < 40; i++) AppendArray(&in, 1);
  AppendInt(&in, 1);
  Reply r;
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(ParseReply(in, &r, &consumed, &error), ParseResult::kError);
  EXPECT_EQ(error, "reply nested too deep");
}

// --- Render ------------------------------------------------------------------

TEST(RespRenderTest, Scalars) {
  Reply r;
  r.type = Reply::Type::kSimple;
  r.str = "OK";
  EXPECT_EQ(r.Render(), "OK");
  r.type = Reply::Type::kError;
  r.str = "ERR unknown command";
  EXPECT_EQ(r.Render(), "(error) ERR unknown command");
  r.type = Reply::Type::kInt;
  r.integer = -3;
  EXPECT_EQ(r.Render(), "(integer) -3");
  r.type = Reply::Type::kNil;
  EXPECT_EQ(r.Render(), "(nil)");
  r.type = Reply::Type::kBulk;
  r.str = std::string("a\"b\\c\n\r\t\0\xff~", 11);
  EXPECT_EQ(r.Render(), "\"a\\\"b\\\\c\\n\\r\\x09\\x00\\xff~\"");
  r.type = Reply::Type::kArray;
  EXPECT_EQ(r.Render(), "(empty array)");
}

TEST(RespRenderTest, NestedArrayIndentsLikeRedisCli) {
  Reply r;
  size_t consumed = 0;
  std::string error;
  ASSERT_EQ(ParseReply(NestedReply(), &r, &consumed, &error), ParseResult::kOk) << error;
  EXPECT_EQ(r.Render(),
            "1) (integer) 1\n"
            "2) 1) \"a\"\n"
            "   2) (empty array)\n"
            "3) 1) (nil)\n"
            "   2) OK");
}

TEST(RespViewScalarReplyTest, EachScalarTypeIsViewedInPlaceAndAnythingElseRefused) {
  ScalarReply r;
  std::string bulk;
  AppendBulk(&bulk, std::string("a\r\nb\0c", 6));
  ASSERT_TRUE(ViewScalarReply(bulk, &r));
  EXPECT_EQ(r.type, '$');
  EXPECT_FALSE(r.nil);
  EXPECT_EQ(r.payload, std::string_view("a\r\nb\0c", 6));
  EXPECT_EQ(r.payload.data(), bulk.data() + 4);  // no copy
  ASSERT_TRUE(ViewScalarReply("$-1\r\n", &r));
  EXPECT_TRUE(r.nil);
  ASSERT_TRUE(ViewScalarReply("$0\r\n\r\n", &r));
  EXPECT_FALSE(r.nil);
  EXPECT_EQ(r.payload, "");
  ASSERT_TRUE(ViewScalarReply("-ERR no\r\n", &r));
  EXPECT_EQ(r.type, '-');
  EXPECT_EQ(r.payload, "ERR no");
  ASSERT_TRUE(ViewScalarReply("+PONG\r\n", &r));
  EXPECT_EQ(r.payload, "PONG");
  ASSERT_TRUE(ViewScalarReply(":-42\r\n", &r));
  EXPECT_EQ(r.payload, "-42");
  for (std::string_view bad : {"", "+OK", "*1\r\n+a\r\n", "$3\r\nab\r\n", "$2\r\nab\r\nx",
                               "+a\r\n+b\r\n", "$x\r\n\r\n", "?\r\n"}) {
    EXPECT_FALSE(ViewScalarReply(bad, &r)) << bad;
  }
}

}  // namespace
}  // namespace faha::resp
