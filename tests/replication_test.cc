// Replication with real processes, over TCP on 127.0.0.1 or, with
// FAHA_REPL_TRANSPORT=rdma and FAHA_TEST_HOST set (ctest's
// replication_over_rdma in the soft-RoCE guest), over RDMA verbs: a primary and its
// backups must end with the same batches and the same data; killing the
// primary with kill -9 must leave every acknowledged write on every backup;
// backups that were killed or started empty catch up while writes go on; a
// silent backup makes writes fail after --repl_timeout_ms; frames of an old
// epoch and bad bytes on the replication port are refused and change nothing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "faha/client.h"
#include "nvm/log.h"
#include "rdma/transport.h"
#include "rdma/verbs.h"
#include "tests/harness.h"

namespace faha::test {
namespace {

using namespace std::chrono_literals;

// One secret per test process: ctest runs tests side by side, and a port that
// FreePort gave one test's backup may be taken by another test's by the time it
// starts; with a shared secret the other test's primary was let in and
// replicated into it (a failure seen once in 350-test runs).
const std::string kSecret =
    "replication-test-secret-" + std::to_string(getpid()) + "-" +
    std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());

// Over RDMA the suite needs a device and its address; elsewhere it skips.
class TransportEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (TestReplTransport() != "rdma") return;
    if (TestHost() == "127.0.0.1") {
      if (getenv("FAHA_REQUIRE_RDMA"))
        FAIL() << "FAHA_TEST_HOST must name the RDMA device's address";
      GTEST_SKIP() << "replication over RDMA runs in the soft-RoCE guest (FAHA_TEST_HOST unset)";
    }
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new TransportEnvironment);

std::string WriteSecret(const std::string& dir) {
  std::string path = dir + "/secret";
  std::ofstream(path) << kSecret << "\n";
  chmod(path.c_str(), 0600);
  return path;
}

std::string Info(Client* c, const std::string& field) { return InfoField(c, field, "replication"); }

struct Digest {
  long long lsn = -1;
  std::string log, data;
  long long keys = 0;
  bool operator==(const Digest& o) const {
    return lsn == o.lsn && log == o.log && data == o.data && keys == o.keys;
  }
};

Digest GetDigest(Client* c) {
  Digest d;
  auto r = c->Command({"FAHA.DIGEST"});
  if (!r.ok() || r->type != Reply::Type::kArray || r->elements.size() != 4) return d;
  d.lsn = r->elements[0].integer;
  d.log = r->elements[1].str;
  d.data = r->elements[2].str;
  d.keys = r->elements[3].integer;
  return d;
}

long long MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

std::string Show(const Digest& d) {
  return "lsn=" + std::to_string(d.lsn) + " log=" + d.log + " data=" + d.data +
         " keys=" + std::to_string(d.keys);
}

// A primary and its backups, each a real faha-server process.
class Cluster {
 public:
  Cluster(int backups, std::vector<std::string> primary_flags = {},
          std::vector<std::string> backup_flags = {})
      : n_(backups) {
    secret_ = WriteSecret(dir_.path());
    for (int i = 0; i < n_; i++) repl_ports_.push_back(FreePort());
    primary_flags_ = std::move(primary_flags);
    backup_flags_ = std::move(backup_flags);
  }
  std::string dir() const { return dir_.path(); }
  std::string backup_dir(int i) const { return dir_.path() + "/b" + std::to_string(i); }
  std::string primary_dir() const { return dir_.path() + "/p"; }

  void StartBackup(int i) {
    backups_.resize(n_);
    std::vector<std::string> flags = {
        "--role=backup", "--repl_port=" + std::to_string(repl_ports_[i]),
        "--cluster_secret_file=" + secret_, "--repl_transport=" + TestReplTransport()};
    for (const auto& f : backup_flags_) flags.push_back(f);
    backups_[i] = std::make_unique<ServerProcess>(backup_dir(i), flags);
    backups_[i]->Start();
    ASSERT_TRUE(backups_[i]->WaitReady()) << backups_[i]->Log();
  }
  void StartPrimary() {
    std::string list;
    for (int i = 0; i < n_; i++) {
      list += (i ? "," : "") + TestHost() + ":" + std::to_string(repl_ports_[i]);
    }
    std::vector<std::string> flags = {"--backups=" + list, "--cluster_secret_file=" + secret_,
                                      "--repl_transport=" + TestReplTransport()};
    for (const auto& f : primary_flags_) flags.push_back(f);
    primary_ = std::make_unique<ServerProcess>(primary_dir(), flags);
    primary_->Start();
    ASSERT_TRUE(primary_->WaitReady()) << primary_->Log();
  }
  void Start() {
    for (int i = 0; i < n_; i++) {
      StartBackup(i);
      if (::testing::Test::HasFatalFailure()) return;
    }
    StartPrimary();
    if (::testing::Test::HasFatalFailure()) return;
    ASSERT_TRUE(WaitInSync(n_)) << primary_->Log();
  }
  // Polls the primary's INFO until `want` backups are in sync.
  bool WaitInSync(int want, int timeout_ms = 30000) {
    auto c = ConnectClient(primary_->address());
    if (!c) return false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Info(c.get(), "in_sync_backups") == std::to_string(want)) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // Waits until every backup has applied the primary's committed LSN, then
  // checks that all digests are equal.
  void ExpectSameDigests() {
    auto p = ConnectClient(primary_->address());
    ASSERT_TRUE(p);
    Digest want = GetDigest(p.get());
    ASSERT_GE(want.lsn, 0);
    for (int i = 0; i < n_; i++) {
      auto b = ConnectClient(backups_[i]->address());
      ASSERT_TRUE(b);
      Digest got;
      auto deadline = std::chrono::steady_clock::now() + 30s;
      while (std::chrono::steady_clock::now() < deadline) {
        got = GetDigest(b.get());
        if (got.lsn >= want.lsn) break;
        std::this_thread::sleep_for(20ms);
      }
      EXPECT_EQ(Show(got), Show(want)) << "backup " << i << " differs from the primary\n"
                                       << backups_[i]->Log();
    }
  }
  ServerProcess& primary() { return *primary_; }
  ServerProcess& backup(int i) { return *backups_[i]; }
  const std::string& secret_file() const { return secret_; }
  int repl_port(int i) const { return repl_ports_[i]; }

 private:
  TempDir dir_;
  int n_;
  std::string secret_;
  std::vector<int> repl_ports_;
  std::vector<std::string> primary_flags_;
  std::vector<std::string> backup_flags_;
  std::unique_ptr<ServerProcess> primary_;
  std::vector<std::unique_ptr<ServerProcess>> backups_;
};

// Writes unique keys through pipelined async puts and records each one the
// server acknowledged. Stops on request or when the server goes away.
class Writer {
 public:
  Writer(std::string addr, std::string prefix)
      : addr_(std::move(addr)), prefix_(std::move(prefix)) {}
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~Writer() { Stop(); }
  uint64_t acked() const { return acked_count_.load(); }
  uint64_t failed() const { return failed_count_.load(); }
  // Key -> value of every acknowledged write.
  std::map<std::string, std::string> Acked() {
    std::lock_guard<std::mutex> l(mu_);
    return acked_;
  }
  static std::string ValueFor(const std::string& key) {
    return "value-of-" + key + std::string(key.size() % 50, 'x');
  }

 private:
  void Run() {
    uint64_t n = 0;
    while (!stop_) {
      ClientOptions o;
      o.address = addr_;
      o.op_timeout_ms = 5000;
      auto c = Client::Connect(o);
      if (!c.ok()) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      while (!stop_) {
        for (int i = 0; i < 16; i++) {
          std::string key = prefix_ + std::to_string(n++);
          (*c)->PutAsync(key, ValueFor(key), [this, key](const Status& s) {
            if (s.ok()) {
              std::lock_guard<std::mutex> l(mu_);
              acked_[key] = ValueFor(key);
              acked_count_++;
            } else {
              failed_count_++;
            }
          });
        }
        if (!(*c)->Flush().ok()) break;
      }
    }
  }
  std::string addr_, prefix_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, std::string> acked_;
  std::atomic<uint64_t> acked_count_{0}, failed_count_{0};
};

template <typename F>
bool WaitFor(F cond, int timeout_ms = 30000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(ReplicationTest, PrimaryAndTwoBackupsHoldTheSameBatchesAndData) {
  Cluster cl(2);
  cl.Start();
  ASSERT_FALSE(HasFatalFailure());
  // Unique keys from two writers, plus read-modify-write commands whose result
  // depends on batches still in flight: counters must add up exactly.
  Writer w1(cl.primary().address(), "a-"), w2(cl.primary().address(), "b-");
  w1.Start();
  w2.Start();
  std::atomic<int64_t> incr_acked{0};
  std::vector<std::thread> incrs;
  for (int t = 0; t < 3; t++) {
    incrs.emplace_back([&] {
      auto c = ConnectClient(cl.primary().address());
      for (int i = 0; i < 300 && c; i++) {
        auto r = c->Command({"INCRBY", "counter", "2"});
        if (r.ok() && r->type == Reply::Type::kInt) incr_acked += 2;
        // Their results do not matter: only the state they leave is compared.
        c->Command({"SET", "nx-" + std::to_string(i % 50), "x", "NX"}).IgnoreError();
        c->Command({"DEL", "a-" + std::to_string(i)}).IgnoreError();
      }
    });
  }
  for (auto& t : incrs) t.join();
  ASSERT_TRUE(WaitFor([&] { return w1.acked() + w2.acked() > 20000; }, 60000));
  w1.Stop();
  w2.Stop();
  EXPECT_EQ(w1.failed() + w2.failed(), 0u);
  auto p = ConnectClient(cl.primary().address());
  auto r = p->Command({"GET", "counter"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->str, std::to_string(incr_acked.load()));
  cl.ExpectSameDigests();
  // The backups answer reads once asked to, and refuse writes.
  auto b = ConnectClient(cl.backup(0).address());
  auto denied = b->Command({"GET", "counter"});
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->type, Reply::Type::kError);
  EXPECT_NE(denied->str.find("STALEREAD"), std::string::npos) << denied->str;
  ASSERT_TRUE(b->Command({"READONLY"}).ok());
  auto got = b->Command({"GET", "counter"});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->str, std::to_string(incr_acked.load()));
  auto w = b->Command({"SET", "k", "v"});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->str.rfind("READONLY", 0), 0u) << w->str;
  auto role = b->Command({"ROLE"});
  ASSERT_TRUE(role.ok());
  ASSERT_EQ(role->elements.size(), 5u);
  EXPECT_EQ(role->elements[0].str, "backup");
  EXPECT_EQ(role->elements[1].str, TestHost());
  EXPECT_EQ(role->elements[2].integer, cl.primary().port());
  EXPECT_EQ(role->elements[4].integer, GetDigest(p.get()).lsn);
}

TEST(ReplicationTest, KillNinePrimaryLeavesEveryAcknowledgedWriteOnEveryBackup) {
  for (int round = 0; round < 2; round++) {
    // Round 1 freezes backup 1 before the kill, so that batches are in flight
    // to it: none of them may have been acknowledged.
    Cluster cl(2, {"--repl_timeout_ms=10000"});
    cl.Start();
    ASSERT_FALSE(HasFatalFailure());
    std::vector<std::unique_ptr<Writer>> writers;
    for (int t = 0; t < 4; t++) {
      writers.push_back(std::make_unique<Writer>(
          cl.primary().address(), "r" + std::to_string(round) + "t" + std::to_string(t) + "-"));
      writers.back()->Start();
    }
    auto total = [&] {
      uint64_t n = 0;
      for (auto& w : writers) n += w->acked();
      return n;
    };
    ASSERT_TRUE(WaitFor([&] { return total() > 3000u + 4000u * round; }, 60000));
    if (round == 1) {
      EXPECT_EQ(cl.backup(1).Kill(SIGSTOP), 0);
      std::this_thread::sleep_for(300ms);
    }
    EXPECT_EQ(cl.primary().Kill(SIGKILL), 128 + SIGKILL);
    if (round == 1) cl.backup(1).Kill(SIGCONT);
    std::map<std::string, std::string> acked;
    for (auto& w : writers) {
      w->Stop();
      auto a = w->Acked();
      acked.insert(a.begin(), a.end());
    }
    ASSERT_GT(acked.size(), 3000u);
    for (int i = 0; i < 2; i++) {
      // Crash the backup too, then bring its data directory up alone.
      EXPECT_EQ(cl.backup(i).Kill(SIGKILL), 128 + SIGKILL);
      ServerProcess alone(cl.backup_dir(i));
      alone.Start();
      ASSERT_TRUE(alone.WaitReady()) << alone.Log();
      auto c = ConnectClient(alone.address());
      ASSERT_TRUE(c);
      uint64_t missing = 0;
      std::string first_missing;
      for (const auto& [key, value] : acked) {
        std::string v;
        Status s = c->Get(key, &v);
        if (!s.ok() || v != value) {
          if (missing++ == 0) first_missing = key + " (" + s.ToString() + ")";
        }
      }
      EXPECT_EQ(missing, 0u) << "backup " << i << " lacks " << missing << " of " << acked.size()
                             << " acknowledged writes, first " << first_missing;
      if (missing == 0) {
        printf("round %d backup %d: all %zu acknowledged writes present\n", round, i, acked.size());
      }
    }
  }
}

// The committing thread sends each new batch to a caught-up backup itself,
// as much of it as the socket takes at once; the sender thread sends the rest
// (Replicator::Ship). Batches of several MiB, and a backup frozen while they
// are shipped, make the socket take a frame in part or not at all.
TEST(ReplicationTest, BatchesTheSocketTakesInPartsArriveWholeOnEveryBackup) {
  Cluster cl(2, {"--repl_timeout_ms=10000"});
  cl.Start();
  ASSERT_FALSE(HasFatalFailure());
  ClientOptions o;
  o.address = cl.primary().address();
  o.op_timeout_ms = 20000;
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::map<std::string, std::string> acked;
  std::mutex mu;
  uint64_t failed = 0;
  auto rests = [&]() -> uint64_t {
    if (TestReplTransport() != "tcp") return 1;  // verbs frames go through the sender
    auto p = ConnectClient(cl.primary().address());
    return p ? std::stoull(Info(p.get(), "repl_direct_rests")) : 0;
  };
  // At least 6 rounds, and more (up to 15) until the socket took some frame in
  // part: whether it does depends on the timing (under ASan it once did not).
  int rounds = 0;
  for (int round = 0; round < 15 && (round < 6 || rests() == 0); round++, rounds++) {
    // Every third round freezes backup 1 while its batches are shipped.
    const bool freeze = round % 3 == 2;
    if (freeze) {
      ASSERT_EQ(cl.backup(1).Kill(SIGSTOP), 0);
    }
    for (int i = 0; i < 8; i++) {
      const std::string key = "big-" + std::to_string(round) + "-" + std::to_string(i);
      const std::string value(900 * 1024 - i, static_cast<char>('a' + (round * 8 + i) % 26));
      (*c)->PutAsync(key, value, [&, key, value](const Status& s) {
        std::lock_guard<std::mutex> l(mu);
        if (s.ok()) {
          acked[key] = value;
        } else {
          failed++;
        }
      });
    }
    if (freeze) {
      std::this_thread::sleep_for(300ms);
      cl.backup(1).Kill(SIGCONT);
    }
    ASSERT_TRUE((*c)->Flush().ok());
  }
  EXPECT_EQ(failed, 0u);
  EXPECT_EQ(acked.size(), static_cast<size_t>(rounds) * 8);
  if (TestReplTransport() == "tcp") {
    auto p = ConnectClient(cl.primary().address());
    ASSERT_TRUE(p);
    EXPECT_GT(std::stoull(Info(p.get(), "repl_direct_sends")), 0u);
    EXPECT_GT(std::stoull(Info(p.get(), "repl_direct_rests")), 0u);
  }
  {
    // A frame scrambled on the wire would have ended a session (the backup
    // then catches up, and the data would still agree).
    auto p = ConnectClient(cl.primary().address());
    ASSERT_TRUE(p);
    for (const char* b : {"backup0", "backup1"}) {
      const std::string line = Info(p.get(), b);
      EXPECT_NE(line.find(",sessions=1"), std::string::npos) << "a session ended: " << line;
    }
  }
  cl.ExpectSameDigests();
  for (int i = 0; i < 2; i++) {
    auto b = ConnectClient(cl.backup(i).address());
    ASSERT_TRUE(b);
    ASSERT_TRUE(b->Command({"READONLY"}).ok());
    for (const auto& [key, value] : acked) {
      std::string got;
      ASSERT_TRUE(b->Get(key, &got).ok()) << "backup " << i << " " << key;
      if (got != value) ADD_FAILURE() << "backup " << i << " holds another value for " << key;
    }
  }
}

TEST(ReplicationTest, KilledAndEmptyBackupsCatchUpWhileWritesContinue) {
  // Under TCG emulation (the guest suite) the empty backup needs about 21 s
  // to apply 115k records while the writer goes on.
  constexpr int kCatchUpMs = 60000;
  Cluster cl(2, {"--min_sync_backups=1"});
  cl.StartBackup(0);
  cl.StartPrimary();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(cl.WaitInSync(1));
  // 100k writes with redis-benchmark before the second backup exists.
  RunResult rb =
      RunTool({"redis-benchmark", "-h", TestHost(), "-p", std::to_string(cl.primary().port()), "-t",
               "set", "-n", "100000", "-P", "16", "-d", "100", "-r", "1000000", "-q"},
              "", 120000);
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  Writer w(cl.primary().address(), "live-");
  w.Start();
  // An empty backup joins while writes continue.
  auto t0 = std::chrono::steady_clock::now();
  cl.StartBackup(1);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(cl.WaitInSync(2, kCatchUpMs)) << cl.primary().Log();
  printf("empty backup started and in sync after %lld ms\n", MsSince(t0));
  // Backup 0 dies under load; writes go on through backup 1; it comes back.
  uint64_t before_kill = w.acked();
  EXPECT_EQ(cl.backup(0).Kill(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return w.acked() > before_kill + 2000; }));
  t0 = std::chrono::steady_clock::now();
  cl.StartBackup(0);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(cl.WaitInSync(2, kCatchUpMs)) << cl.primary().Log();
  printf("killed backup restarted and in sync after %lld ms\n", MsSince(t0));
  uint64_t after_rejoin = w.acked();
  ASSERT_TRUE(WaitFor([&] { return w.acked() > after_rejoin + 2000; }));
  w.Stop();
  cl.ExpectSameDigests();
  auto p = ConnectClient(cl.primary().address());
  EXPECT_GT(GetDigest(p.get()).lsn, 100000);
}

// A backup away while its primary's log cleaning compacts the LSNs it would
// need: on return it is sent back to LSN 1 and copies the primary's log
// (compacted batches included), then holds the same data. Cleaning runs on
// both nodes all the time (small segments, high threshold): the backup cleans
// too, judging by what its primary's heartbeats say is committed.
TEST(ReplicationTest, BackupAwayWhileThePrimaryCleansStartsOverWithAFullCopy) {
  const std::vector<std::string> cleaning = {"--segment_mb=2", "--max_batch_kb=1100",
                                             "--clean_threshold=0.9", "--clean_interval_ms=5"};
  std::vector<std::string> pflags = {"--min_sync_backups=0"};
  pflags.insert(pflags.end(), cleaning.begin(), cleaning.end());
  Cluster cl(1, pflags, cleaning);
  cl.Start();
  ASSERT_FALSE(HasFatalFailure());
  auto overwrite = [&](const char* n) {
    RunResult rb =
        RunTool({"redis-benchmark", "-h", TestHost(), "-p", std::to_string(cl.primary().port()),
                 "-t", "set", "-n", n, "-P", "16", "-d", "200", "-r", "2000", "-q"},
                "", 120000);
    ASSERT_EQ(rb.exit_code, 0) << rb.err;
  };
  overwrite("40000");
  auto p = ConnectClient(cl.primary().address());
  ASSERT_TRUE(p);
  {
    // The backup cleans its own log while it follows the primary.
    auto b0 = ConnectClient(cl.backup(0).address());
    ASSERT_TRUE(b0);
    ASSERT_TRUE(WaitFor([&] {
      return std::stoll(InfoField(b0.get(), "log_segments_cleaned", "persistence")) > 0;
    })) << cl.backup(0).Log();
    Digest want = GetDigest(p.get()), got;
    ASSERT_TRUE(WaitFor([&] {
      got = GetDigest(b0.get());
      return got.lsn >= want.lsn;
    }));
    EXPECT_EQ(got.data, want.data);
    EXPECT_EQ(got.keys, want.keys);
  }
  EXPECT_EQ(cl.backup(0).Kill(SIGKILL), 128 + SIGKILL);
  const long long cleaned_before =
      std::stoll(InfoField(p.get(), "log_segments_cleaned", "persistence"));
  overwrite("60000");
  ASSERT_TRUE(WaitFor([&] {
    return std::stoll(InfoField(p.get(), "log_segments_cleaned", "persistence")) >
           cleaned_before + 2;
  })) << cl.primary().Log();
  cl.StartBackup(0);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(cl.WaitInSync(1)) << cl.primary().Log();
  EXPECT_NE(cl.primary().Log().find("starts over with a full copy"), std::string::npos)
      << cl.primary().Log();
  // Same committed LSN, same data (log digests differ: each node cleans on
  // its own schedule, and compacted batches are left out of it).
  Digest want = GetDigest(p.get());
  auto b = ConnectClient(cl.backup(0).address());
  ASSERT_TRUE(b);
  Digest got;
  ASSERT_TRUE(WaitFor([&] {
    got = GetDigest(b.get());
    return got.lsn >= want.lsn;
  }));
  EXPECT_EQ(got.lsn, want.lsn);
  EXPECT_EQ(got.data, want.data) << cl.backup(0).Log();
  EXPECT_EQ(got.keys, want.keys);
  EXPECT_EQ(got.keys, 2000);
}

TEST(ReplicationTest, SilentBackupMakesWritesFailAfterTheTimeout) {
  Cluster cl(1, {"--repl_timeout_ms=300"});
  cl.Start();
  ASSERT_FALSE(HasFatalFailure());
  auto p = ConnectClient(cl.primary().address());
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->Put("before", "1").ok());
  ASSERT_EQ(cl.backup(0).Kill(SIGSTOP), 0);  // returns once every thread has stopped
  auto t0 = std::chrono::steady_clock::now();
  Status s = p->Put("during", "2");
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("NOREPLICAS"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("repl_timeout_ms"), std::string::npos) << s.ToString();
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 5000);
  cl.backup(0).Kill(SIGCONT);
  ASSERT_TRUE(cl.WaitInSync(1)) << cl.primary().Log();
  // Writes resume once the backup is back. The timeout is 300 ms and the
  // backup syncs to a disk that ctest -j2 shares: in CI the first write after
  // the backup rejoined was answered NOREPLICAS, the backup not having
  // acknowledged it within 300 ms (its log showed no error). A NOREPLICAS,
  // whose outcome is unknown, is retried as a client would; any other error
  // fails the test.
  Status after;
  for (int64_t deadline = MonoMs() + 5000; MonoMs() < deadline;) {
    after = p->Put("after", "3");
    if (after.ok() || after.message().find("NOREPLICAS") == std::string::npos) break;
  }
  EXPECT_TRUE(after.ok()) << after.ToString() << "\n" << cl.primary().Log();
  cl.ExpectSameDigests();
}

// ---- the replication port, spoken to directly ----

struct RawPeer {
  std::unique_ptr<rdma::Transport> transport;
  std::unique_ptr<rdma::Channel> ch;
  Status Connect(int port, const std::string& secret = kSecret) {
    rdma::TransportOptions o;
    o.secret = secret;
    auto t = rdma::MakeTransport(TestReplTransport(), o);
    if (!t.ok()) return t.status();
    transport = std::move(*t);
    auto c = transport->Connect(TestHost() + ":" + std::to_string(port), 3000);
    if (!c.ok()) return c.status();
    ch = std::move(*c);
    return Status::OK();
  }
  Status Send(rdma::FrameType type, uint64_t epoch, uint64_t lsn, std::string_view body) {
    std::string out;
    rdma::EncodeFrame(&out, type, epoch, lsn, body);
    return ch->Send(out, 3000);
  }
  StatusOr<rdma::ReplFrame> Receive() { return ch->Receive(3000); }
};

// Expects the next frame to be an ERROR whose text contains `contains`.
void ExpectError(RawPeer* peer, const std::string& what, const std::string& contains = "") {
  auto err = peer->Receive();
  ASSERT_TRUE(err.ok()) << what << ": " << err.status().ToString();
  EXPECT_EQ(err->type, rdma::FrameType::kError) << what;
  EXPECT_FALSE(err->body.empty()) << what;
  EXPECT_NE(std::string(err->body).find(contains), std::string::npos) << what << ": " << err->body;
}

// A BATCH body: batch header + payload with `count` puts starting at first_lsn.
std::string BatchBody(uint64_t first_lsn, uint64_t epoch, int count) {
  nvm::BatchBuilder b;
  for (int i = 0; i < count; i++) {
    b.Add(nvm::RecordType::kPut, "key" + std::to_string(first_lsn + i), "value", 0);
  }
  nvm::BatchHeader h = nvm::Log::FrameBatch(b.payload(), b.count(), first_lsn, epoch);
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + std::string(b.payload());
}

long long DurableLsn(ServerProcess& backup) {
  auto c = ConnectClient(backup.address());
  std::string v = c ? Info(c.get(), "durable_lsn") : "";
  return v.empty() ? -1 : std::stoll(v);
}

TEST(ReplicationTest, FramesOfAStaleEpochAreRefusedAndNothingIsWritten) {
  Cluster cl(1, {"--epoch=2", "--repl_timeout_ms=300"});
  cl.StartBackup(0);
  ASSERT_FALSE(HasFatalFailure());
  const int port = cl.repl_port(0);
  {
    RawPeer peer;
    ASSERT_TRUE(peer.Connect(port).ok());
    ASSERT_TRUE(peer.Send(rdma::FrameType::kHello, 5, 1, "127.0.0.1:1").ok());
    auto hello = peer.Receive();
    ASSERT_TRUE(hello.ok()) << hello.status().ToString();
    EXPECT_EQ(hello->type, rdma::FrameType::kHello);
    EXPECT_EQ(hello->lsn, 1u);
    // A good batch of epoch 5 is stored and acknowledged ...
    ASSERT_TRUE(peer.Send(rdma::FrameType::kBatch, 5, 1, BatchBody(1, 5, 3)).ok());
    auto ack = peer.Receive();
    ASSERT_TRUE(ack.ok()) << ack.status().ToString();
    EXPECT_EQ(ack->type, rdma::FrameType::kAck);
    EXPECT_EQ(ack->lsn, 3u);
    // ... a frame of epoch 4 in the same session is not.
    ASSERT_TRUE(peer.Send(rdma::FrameType::kBatch, 4, 4, BatchBody(4, 4, 2)).ok());
    ExpectError(&peer, "epoch 4 frame in an epoch 5 session", "epoch 4");
  }
  EXPECT_EQ(DurableLsn(cl.backup(0)), 3);
  // A new session of a lower epoch is refused, also after a restart.
  for (int restart = 0; restart < 2; restart++) {
    RawPeer peer;
    ASSERT_TRUE(peer.Connect(port).ok());
    ASSERT_TRUE(peer.Send(rdma::FrameType::kHello, 3, 1, "127.0.0.1:1").ok());
    ExpectError(&peer, "HELLO of epoch 3", "stale epoch 3: this backup has seen epoch 5");
    // Whatever follows is not written.
    // The backup may close the connection first: sent or not, nothing is written.
    peer.Send(rdma::FrameType::kBatch, 3, 4, BatchBody(4, 3, 2)).IgnoreError();
    EXPECT_EQ(DurableLsn(cl.backup(0)), 3);
    if (restart == 0) {
      cl.backup(0).Kill(SIGKILL);
      cl.StartBackup(0);
      ASSERT_FALSE(HasFatalFailure());
    }
  }
  auto c = ConnectClient(cl.backup(0).address());
  EXPECT_NE(Info(c.get(), "last_error").find("stale epoch"), std::string::npos);
  // A primary of an old epoch gets a clear error for its writes.
  cl.StartPrimary();
  ASSERT_FALSE(HasFatalFailure());
  auto p = ConnectClient(cl.primary().address());
  // Until its first session attempt was refused (slow over emulated RDMA) the
  // primary can only say it is still connecting; then it names the refusal.
  Status s = p->Put("k", "v");
  for (int64_t deadline = MonoMs() + 15000;
       s.message().find("stale epoch") == std::string::npos && MonoMs() < deadline;) {
    s = p->Put("k", "v");
  }
  EXPECT_NE(s.message().find("stale epoch 2: this backup has seen epoch 5"), std::string::npos)
      << s.ToString();
  EXPECT_EQ(DurableLsn(cl.backup(0)), 3);
}

TEST(ReplicationTest, BadBytesOnTheReplicationPortAreRefusedAndChangeNothing) {
  Cluster cl(1);
  cl.StartBackup(0);
  ASSERT_FALSE(HasFatalFailure());
  const int port = cl.repl_port(0);
  // Strangers: garbage, an HTTP request (TCP only: an rdma_cm port takes no
  // bytes before set-up), a peer with the wrong secret.
  if (TestReplTransport() == "tcp") {
    bool closed = false;
    RawExchange(port, std::string(300, '\x7f'), 5000, &closed);
    EXPECT_TRUE(closed);
    RawExchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5000, &closed);
    EXPECT_TRUE(closed);
  }
  {
    RawPeer wrong;
    Status s = wrong.Connect(port, "not-the-cluster-secret-at-all");
    EXPECT_EQ(s.code(), Status::Code::kAuth) << s.ToString();
  }
  // Authenticated, but malformed.
  auto session = [&](RawPeer* peer) {
    ASSERT_TRUE(peer->Connect(port).ok());
    ASSERT_TRUE(peer->Send(rdma::FrameType::kHello, 1, 1, "127.0.0.1:1").ok());
    auto hello = peer->Receive();
    ASSERT_TRUE(hello.ok()) << hello.status().ToString();
  };
  {
    // A frame whose own checksum is wrong (it covers the batch header; the
    // payload is the batch checksum's, below).
    RawPeer peer;
    session(&peer);
    std::string frame;
    rdma::EncodeFrame(&frame, rdma::FrameType::kBatch, 1, 1, BatchBody(1, 1, 2));
    frame[sizeof(rdma::ReplFrameHeader) + 12] ^= 0x20;  // the batch's record count
    ASSERT_TRUE(peer.ch->Send(frame, 3000).ok());
    ExpectError(&peer, "frame checksum", "replication frame checksum mismatch");
  }
  {
    // A well-framed batch whose batch checksum is wrong.
    RawPeer peer;
    session(&peer);
    std::string body = BatchBody(1, 1, 2);
    body[body.size() - 1] ^= 0x01;
    ASSERT_TRUE(peer.Send(rdma::FrameType::kBatch, 1, 1, body).ok());
    ExpectError(&peer, "batch checksum", "batch checksum mismatch");
  }
  {
    // A batch that skips LSNs, and one too short to hold a batch header.
    RawPeer peer;
    session(&peer);
    ASSERT_TRUE(peer.Send(rdma::FrameType::kBatch, 1, 7, BatchBody(7, 1, 2)).ok());
    ExpectError(&peer, "LSN gap", "but this log continues at");
    RawPeer peer2;
    session(&peer2);
    ASSERT_TRUE(peer2.Send(rdma::FrameType::kBatch, 1, 1, "short").ok());
    ExpectError(&peer2, "short body", "BATCH frame without a batch header");
  }
  {
    // A truncated frame, then the peer goes away.
    RawPeer peer;
    session(&peer);
    std::string frame;
    rdma::EncodeFrame(&frame, rdma::FrameType::kBatch, 1, 1, BatchBody(1, 1, 2));
    ASSERT_TRUE(peer.ch->Send(std::string_view(frame).substr(0, frame.size() / 2), 3000).ok());
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(DurableLsn(cl.backup(0)), 0);
  auto c = ConnectClient(cl.backup(0).address());
  ASSERT_TRUE(c);
  // Garbage, HTTP and the wrong secret over TCP; only the last over RDMA.
  EXPECT_GE(std::stoi(Info(c.get(), "peers_refused")), TestReplTransport() == "tcp" ? 3 : 1);
  // A real primary still gets through and replicates.
  cl.StartPrimary();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(cl.WaitInSync(1)) << cl.primary().Log();
  auto p = ConnectClient(cl.primary().address());
  ASSERT_TRUE(p->Put("k", "v").ok());
  cl.ExpectSameDigests();
}

// Strangers that connect to a backup's replication port and never send a
// byte (re-opened as soon as they are closed), from 127.0.0.2.. and, in the
// second round, from 127.0.0.1 like the primary itself: the primary's first
// write after it answers PING is acknowledged within a second, at its start
// and after a restart, and writes go on being acknowledged during the attack.
// Over RDMA a stranger cannot be silent: the rdma_cm request carries the
// proof of the secret, checked before anything is set up; strangers there
// send request after request with garbage, a wrong secret's proof, or the
// client kind (each refused), 4 at a time.
TEST(ReplicationTest, SilentStrangersOnTheReplicationPortDoNotKeepThePrimaryOut) {
  const bool rdma = TestReplTransport() == "rdma";
  for (const bool same_address : {false, true}) {
    if (rdma && !same_address) continue;  // the guest's one rxe address
    SCOPED_TRACE(same_address ? "strangers from 127.0.0.1" : "strangers from 127.0.0.2..");
    Cluster cl(1);
    cl.StartBackup(0);
    ASSERT_FALSE(HasFatalFailure());
    const int port = cl.repl_port(0);
    std::atomic<bool> stop{false};
    std::atomic<int> opened{0};
    auto attacker = [&](int n) {
      std::vector<int> fds(n, -1);
      while (!stop.load()) {
        for (int i = 0; i < n; i++) {
          if (fds[i] >= 0) {
            // Closed by the backup? Open another.
            pollfd p{fds[i], POLLIN, 0};
            if (poll(&p, 1, 0) == 0) continue;
            close(fds[i]);
            fds[i] = -1;
          }
          int fd = socket(AF_INET, SOCK_STREAM, 0);
          sockaddr_in src{};
          src.sin_family = AF_INET;
          const std::string from =
              same_address ? "127.0.0.1" : "127.0.0." + std::to_string(2 + i % 20);
          inet_pton(AF_INET, from.c_str(), &src.sin_addr);
          bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src));
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<uint16_t>(port));
          inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
          if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
            close(fd);
            continue;
          }
          fds[i] = fd;
          opened.fetch_add(1);
        }
        std::this_thread::sleep_for(5ms);
      }
      for (int fd : fds)
        if (fd >= 0) close(fd);
    };
    // Over RDMA: connection requests the backup must refuse, in a loop.
    auto rdma_attacker = [&](int which) {
      rdma::VerbsOptions options;
      options.ring_bytes = 64 << 10;
      options.queue_depth = 16;
      while (!stop.load()) {
        std::string rest(40, static_cast<char>('a' + which));
        std::string data = which % 3 == 0 ? std::string("garbage, not a FaHA request")
                           : which % 3 == 1
                               ? rdma::EncodeConnectData(rdma::ConnectKind::kReplication, rest)
                               : rdma::EncodeConnectData(rdma::ConnectKind::kClient, {});
        auto st = rdma::VerbsConnect(TestHost(), port, data, options, 2000);
        if (!st.ok()) opened.fetch_add(1);  // refused, as it must be
        std::this_thread::sleep_for(5ms);
      }
    };
    std::vector<std::thread> rdma_strangers;
    if (rdma) {
      // 4 (the guest's two emulated CPUs are the limit, not the backup).
      for (int i = 0; i < 4; i++) rdma_strangers.emplace_back(rdma_attacker, i);
    }
    std::thread strangers(attacker, rdma ? 0 : 20);
    // Stopped and joined however the test ends (a failed ASSERT returns early).
    struct Joiner {
      std::atomic<bool>* stop;
      std::thread* t;
      std::vector<std::thread>* more;
      ~Joiner() {
        stop->store(true);
        if (t->joinable()) t->join();
        for (auto& m : *more) {
          if (m.joinable()) m.join();
        }
      }
    } joiner{&stop, &strangers, &rdma_strangers};
    ASSERT_TRUE(WaitFor([&] { return opened.load() >= 20; }, 10000));
    std::this_thread::sleep_for(300ms);  // the backup's handshake slots are full of them
    for (int round = 0; round < 2; round++) {
      // round 1: the primary restarts while the strangers stay.
      if (round == 1) {
        cl.primary().Kill(SIGTERM);
        cl.primary().WaitExit();
      }
      cl.StartPrimary();
      ASSERT_FALSE(HasFatalFailure());
      const auto t0 = std::chrono::steady_clock::now();
      auto c = ConnectClient(cl.primary().address());
      ASSERT_TRUE(c);
      // As a client would: NOREPLICAS (not in sync yet) is retried.
      const double bound_ms = 1000 * TestSlowdown();
      Status first;
      do {
        first = c->Put("first-" + std::to_string(round), "v");
        if (!first.ok()) std::this_thread::sleep_for(10ms);
      } while (!first.ok() && MsSince(t0) < bound_ms);
      EXPECT_TRUE(first.ok()) << first.ToString() << "\n" << cl.primary().Log();
      EXPECT_LT(MsSince(t0), bound_ms) << cl.primary().Log() << cl.backup(0).Log();
      for (int i = 0; i < 50; i++) {
        Status s = c->Put("k" + std::to_string(round) + "-" + std::to_string(i), "v");
        ASSERT_TRUE(s.ok()) << s.ToString();
      }
    }
    stop.store(true);
    if (strangers.joinable()) strangers.join();
    for (auto& m : rdma_strangers) m.join();
    rdma_strangers.clear();
    auto b = ConnectClient(cl.backup(0).address());
    ASSERT_TRUE(b);
    // Silent ones are refused at the pre-auth deadline (1 s) at the latest.
    EXPECT_TRUE(WaitFor([&] { return std::stoll(Info(b.get(), "peers_refused")) > 0; }, 5000));
    cl.ExpectSameDigests();
  }
}

}  // namespace
}  // namespace faha::test
