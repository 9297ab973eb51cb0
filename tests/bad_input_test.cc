// Bad input against a real server: malformed RESP and native frames, a 100 MB
// bulk length, keys and values over the limits, unknown commands, AUTH
// failures, and flipped bytes in a log segment. Each gets a clear error (or a
// refusal at recovery naming the offset); the server neither crashes nor hangs,
// and nothing acknowledged is lost.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "common/native_protocol.h"
#include "faha/client.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(
        dir_.path() + "/data",
        std::vector<std::string>{"--max_key_bytes=64", "--max_value_bytes=4096",
                                 "--requirepass=pw"});
    server_->Start();
    ASSERT_TRUE(server_->WaitReady()) << server_->Log();
    ClientOptions o;
    o.address = server_->address();
    o.password = "pw";
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
    ASSERT_TRUE(client_->Put("precious", "acknowledged").ok());
  }
  // The server still serves and still has the acknowledged write.
  void ExpectHealthy() {
    ClientOptions o;
    o.address = server_->address();
    o.password = "pw";
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString() << "\n" << server_->Log();
    std::string v;
    ASSERT_TRUE((*c)->Get("precious", &v).ok());
    EXPECT_EQ(v, "acknowledged");
  }
  std::string Resp(const std::string& bytes, bool* closed = nullptr) {
    return RawExchange(server_->port(), "AUTH pw\r\n" + bytes, 3000, closed);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(BadInputTest, MalformedRespIsAnsweredWithAProtocolErrorAndClosed) {
  struct Case {
    std::string bytes, want;
  };
  std::vector<Case> cases = {
      {"*abc\r\n", "-ERR Protocol error: invalid multibulk length"},
      {"*2\r\n$3\r\nGET\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'"},
      {"*2\r\n$3\r\nGET\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length"},
      {"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: bulk string not terminated by CRLF"},
      {"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$104857600\r\n", "bulk length 104857600 exceeds the limit"},
      {"SET \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes"},
  };
  for (const auto& c : cases) {
    bool closed = false;
    std::string got = Resp(c.bytes, &closed);
    EXPECT_NE(got.find(c.want), std::string::npos) << "input " << c.bytes << " got " << got;
    EXPECT_TRUE(closed) << "connection left open after: " << c.bytes;
  }
  ExpectHealthy();
}

TEST_F(BadInputTest, HundredMegabyteBulkIsRefusedWithoutReadingIt) {
  // Send the header and 1 MB of the body: the answer must come at once.
  std::string bytes = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$104857600\r\n" + std::string(1 << 20, 'x');
  bool closed = false;
  std::string got = Resp(bytes, &closed);
  EXPECT_NE(got.find("exceeds the limit"), std::string::npos) << got;
  EXPECT_TRUE(closed);
  ExpectHealthy();
}

TEST_F(BadInputTest, LimitsUnknownCommandsAndWrongArity) {
  std::string got = Resp("SET " + std::string(65, 'k') + " v\r\nQUIT\r\n");
  EXPECT_NE(got.find("-ERR key is longer than max_key_bytes (64)"), std::string::npos) << got;
  got = Resp("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4097\r\n" + std::string(4097, 'v') + "\r\n");
  EXPECT_NE(got.find("exceeds the limit of 4096 bytes"), std::string::npos) << got;
  got = Resp(
      "FROB a b\r\nGET\r\nSET k v PX -1\r\nSET k v NX XX\r\nINCR precious\r\nSELECT "
      "16\r\nQUIT\r\n");
  EXPECT_NE(got.find("-ERR unknown command 'FROB', with args beginning with: 'a' 'b'"),
            std::string::npos)
      << got;
  EXPECT_NE(got.find("-ERR wrong number of arguments for 'get' command"), std::string::npos) << got;
  EXPECT_NE(got.find("-ERR invalid expire time in 'set' command"), std::string::npos) << got;
  EXPECT_NE(got.find("-ERR syntax error"), std::string::npos) << got;
  EXPECT_NE(got.find("-ERR value is not an integer or out of range"), std::string::npos) << got;
  EXPECT_NE(got.find("-ERR DB index is out of range"), std::string::npos) << got;
  // Through the client library: oversized values are refused by the server.
  Status s = client_->Put("k", std::string(5000, 'v'));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("max_value_bytes"), std::string::npos) << s.ToString();
  // None of that changed anything.
  ExpectHealthy();
  ClientOptions o;
  o.address = server_->address();
  o.password = "pw";
  auto c = Client::Connect(o);
  EXPECT_EQ((*c)->Command({"DBSIZE"})->integer, 1);
}

TEST_F(BadInputTest, CommandLargerThanTheInputLimitIsRefused) {
  // Each value is within --max_value_bytes but together they exceed the input
  // limit (one log batch): refused and closed, never an endless wait.
  ServerProcess small(dir_.path() + "/small", {"--max_batch_kb=256", "--max_value_bytes=4096"});
  small.Start();
  ASSERT_TRUE(small.WaitReady()) << small.Log();
  std::string cmd = "*201\r\n$4\r\nMSET\r\n";
  for (int i = 0; i < 100; i++) {
    std::string k = "k" + std::to_string(i);
    cmd += "$" + std::to_string(k.size()) + "\r\n" + k + "\r\n$4000\r\n" + std::string(4000, 'v') +
           "\r\n";
  }
  bool closed = false;
  std::string got = RawExchange(small.port(), cmd, 5000, &closed);
  EXPECT_NE(got.find("-ERR Protocol error: command larger than the input limit"), std::string::npos)
      << got;
  EXPECT_TRUE(closed);
  // A smaller MSET that still needs more than one batch gets a clear error.
  std::string mid = "*133\r\n$4\r\nMSET\r\n";
  for (int i = 0; i < 66; i++) {
    std::string k = "k" + std::to_string(i);
    mid += "$" + std::to_string(k.size()) + "\r\n" + k + "\r\n$4000\r\n" + std::string(4000, 'v') +
           "\r\n";
  }
  got = RawExchange(small.port(), mid + "DBSIZE\r\nQUIT\r\n", 5000);
  EXPECT_NE(got.find("-ERR this write is larger than one log batch"), std::string::npos) << got;
  EXPECT_NE(got.find(":0\r\n"), std::string::npos) << got;
}

TEST_F(BadInputTest, AuthFailures) {
  std::string got = RawExchange(
      server_->port(),
      "GET precious\r\nAUTH nope\r\nAUTH a b c\r\nAUTH bob pw\r\nSET x y\r\nQUIT\r\n", 3000);
  EXPECT_EQ(got,
            "-NOAUTH Authentication required.\r\n"
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            "-ERR wrong number of arguments for 'auth' command\r\n"
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            "-NOAUTH Authentication required.\r\n"
            "+OK\r\n");
  ExpectHealthy();
  ClientOptions o;
  o.address = server_->address();
  o.password = "pw";
  auto c = Client::Connect(o);
  std::string v;
  EXPECT_TRUE((*c)->Get("x", &v).IsNotFound());
}

// Native PING, AUTH, GET, PUT and DELETE take the path their Redis commands
// take (Commands::Execute): the same errors, word for word, as RESP's PING,
// AUTH, GET, SET ... PX and DEL, with the native protocol's codes.
TEST_F(BadInputTest, NativeOpsAnswerAsTheirRedisCommandsDo) {
  auto request = [](native::Op op, uint64_t id, std::string key, std::string value,
                    int64_t arg = 0) {
    std::string out;
    native::EncodeRequest(&out, op, id, key, value, arg);
    return out;
  };
  const std::string bytes =
      request(native::Op::kPing, 1, "", "") + request(native::Op::kAuth, 2, "", "nope") +
      request(native::Op::kAuth, 3, "", "pw") + request(native::Op::kPut, 4, "k", "v", -5) +
      request(native::Op::kGet, 5, "k", "") + request(native::Op::kGet, 6, "precious", "") +
      request(native::Op::kPut, 7, "t", "v", 100000) + request(native::Op::kDelete, 8, "t", "");
  const std::string raw = RawExchange(server_->port(), bytes, 1500);
  std::vector<native::Response> got;
  std::vector<std::string> bodies;
  for (size_t at = 0; at < raw.size();) {
    native::Response r;
    size_t used = 0;
    std::string err;
    ASSERT_EQ(native::DecodeResponse(std::string_view(raw).substr(at), 1 << 20, &r, &used, &err),
              native::DecodeResult::kOk)
        << err;
    bodies.emplace_back(r.body);
    got.push_back(r);
    at += used;
  }
  ASSERT_EQ(got.size(), 8u);
  const std::string resp =
      RawExchange(server_->port(), "AUTH nope\r\nAUTH pw\r\nSET k v PX -5\r\nQUIT\r\n", 3000);
  EXPECT_EQ(got[0].code, native::Code::kOk);
  EXPECT_EQ(bodies[0], "PONG");
  EXPECT_EQ(got[1].code, native::Code::kNoAuth);
  EXPECT_EQ("-" + bodies[1] + "\r\n", resp.substr(0, resp.find("\r\n") + 2));
  EXPECT_EQ(got[2].code, native::Code::kOk);
  EXPECT_EQ(got[3].code, native::Code::kError);
  EXPECT_NE(resp.find("-" + bodies[3] + "\r\n"), std::string::npos) << bodies[3] << " vs " << resp;
  EXPECT_EQ(bodies[3], "ERR invalid expire time in 'set' command");
  EXPECT_EQ(got[4].code, native::Code::kNotFound);
  EXPECT_EQ(got[5].code, native::Code::kOk);
  EXPECT_EQ(bodies[5], "acknowledged");
  EXPECT_EQ(got[6].code, native::Code::kOk);
  EXPECT_EQ(got[7].code, native::Code::kOk);
  EXPECT_EQ(got[7].arg, 1);  // DEL's count: the key existed
  ExpectHealthy();
}

TEST_F(BadInputTest, MalformedNativeFramesAreRefused) {
  auto frame = [](native::Op op, std::string key, std::string value,
                  uint8_t version = native::kVersion, uint32_t reserved = 0) {
    std::string out;
    native::EncodeRequest(&out, op, 9, key, value);
    out[1] = static_cast<char>(version);
    memcpy(&out[12], &reserved, 4);
    return out;
  };
  std::string auth;
  native::EncodeRequest(&auth, native::Op::kAuth, 1, "", "pw");
  struct Case {
    std::string bytes, want;
  };
  std::string oversized_header = frame(native::Op::kPut, "k", "");
  uint32_t big = 100u << 20;
  memcpy(&oversized_header[8], &big, 4);  // value_bytes = 100 MB, body never sent
  std::string bad_op = frame(native::Op::kGet, "k", "");
  bad_op[2] = 42;
  std::vector<Case> cases = {
      {frame(native::Op::kGet, "k", "", 7), "unsupported protocol version 7"},
      {bad_op, "unknown opcode 42"},
      {frame(native::Op::kGet, "k", "", native::kVersion, 5),
       "reserved header fields must be zero"},
      {frame(native::Op::kPut, std::string(65, 'k'), "v"), "exceeds max_key_bytes (64)"},
      {oversized_header, "exceeds max_value_bytes (4096)"},
      {frame(native::Op::kCommand, "", "\x05\x00\x00\x00garbage"), "malformed argument list"},
  };
  for (const auto& c : cases) {
    bool closed = false;
    std::string got = RawExchange(server_->port(), auth + c.bytes, 3000, &closed);
    EXPECT_NE(got.find(c.want), std::string::npos)
        << c.want << " not in reply of " << got.size() << " bytes";
    EXPECT_TRUE(closed) << c.want;
  }
  // A truncated frame followed by silence is not an error: the server waits
  // for the rest without blocking anyone else.
  bool closed = true;
  RawExchange(server_->port(), auth + frame(native::Op::kPut, "k", "value").substr(0, 40), 300,
              &closed);
  EXPECT_FALSE(closed);
  ExpectHealthy();
}

TEST_F(BadInputTest, FlippedBytesInTheLogAreFoundAtRecovery) {
  // Several batches, so the damage has valid batches after it.
  for (int i = 0; i < 50; i++)
    ASSERT_TRUE(client_->Put("k" + std::to_string(i), std::string(200, 'a' + i % 26)).ok());
  client_.reset();
  ASSERT_EQ(server_->Kill(SIGTERM), 0);
  std::string seg = dir_.path() + "/data/segment-00000001.log";
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 48 + 200);  // inside the second batch
    f.write("\xff\xff\xff\xff", 4);
  }
  server_->Start();
  EXPECT_FALSE(server_->WaitReady(10000));
  std::string log = server_->Log();
  EXPECT_NE(log.find("cannot open the log: Corruption: " + seg + " offset "), std::string::npos)
      << log;
  EXPECT_NE(log.find("--recovery_drop_corrupt"), std::string::npos) << log;
  // With the explicit flag it starts, saying what it dropped.
  ServerProcess again(dir_.path() + "/data", {"--recovery_drop_corrupt", "--requirepass=pw"});
  again.Start();
  ASSERT_TRUE(again.WaitReady()) << again.Log();
  EXPECT_NE(again.Log().find("because --recovery_drop_corrupt is set"), std::string::npos)
      << again.Log();
  ClientOptions o;
  o.address = again.address();
  o.password = "pw";
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok());
  std::string v;
  EXPECT_TRUE((*c)->Get("precious", &v).ok());  // the first batch survived
}

}  // namespace
}  // namespace faha::test
