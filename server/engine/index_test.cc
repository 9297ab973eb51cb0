// Tests of Index over a fake log: model check, forced collisions, Scan, memory, concurrent reads.
#include "server/engine/index.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/checksum.h"

namespace faha {
namespace {

// Key i of version v lives at segment v, offset 64 + 8 * i. Nonzero, never the
// tombstone value 1, and within 48 bits for v < 2^16 and i < 2^28.
uint64_t Location(size_t i, uint64_t version = 1) {
  return (version << 32) | (64 + 8 * static_cast<uint64_t>(i));
}
size_t KeyIndexOf(uint64_t location) { return ((location & 0xFFFFFFFFull) - 64) / 8; }
uint64_t VersionOf(uint64_t location) { return location >> 32; }

// The log stand-in: a fixed list of keys. Immutable after construction, so safe
// from any thread. A location it never handed out reads as a key that no test
// uses, and is counted.
class FakeLog : public KeyReader {
 public:
  explicit FakeLog(std::vector<std::string> keys) : keys_(std::move(keys)) {}

  std::string_view KeyAt(uint64_t location) const override {
    reads_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t offset = location & 0xFFFFFFFFull;
    const uint64_t segment = location >> 32;
    if (segment == 0 || segment > 0xFFFF || offset < 64 || (offset - 64) % 8 != 0 ||
        (offset - 64) / 8 >= keys_.size()) {
      bad_reads_.fetch_add(1, std::memory_order_relaxed);
      return "\x01not-a-key";
    }
    return keys_[(offset - 64) / 8];
  }

  const std::string& key(size_t i) const { return keys_[i]; }
  size_t size() const { return keys_.size(); }
  size_t bad_reads() const { return bad_reads_.load(); }
  size_t reads() const { return reads_.load(); }

 private:
  const std::vector<std::string> keys_;
  mutable std::atomic<size_t> reads_{0};
  mutable std::atomic<size_t> bad_reads_{0};
};

std::vector<std::string> MakeKeys(size_t n, const std::string& prefix = "key:") {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; i++) keys.push_back(prefix + std::to_string(i));
  return keys;
}

// Bytes of slot arrays, given what a fresh index of the same shape reports.
size_t SlotBytes(const Index& index, size_t fresh_bytes, size_t shards) {
  return index.MemoryBytes() - fresh_bytes + shards * 16 * sizeof(uint64_t);
}

TEST(IndexTest, UpsertFindEraseReturnValues) {
  FakeLog log(MakeKeys(3));
  Index index(&log);
  const std::string& a = log.key(0);
  const std::string& b = log.key(1);

  EXPECT_EQ(index.Find(a, HashKey(a)), 0u);
  EXPECT_EQ(index.Erase(a, HashKey(a)), 0u);
  EXPECT_EQ(index.Upsert(a, HashKey(a), Location(0, 1)), 0u);
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.Find(a, HashKey(a)), Location(0, 1));
  EXPECT_EQ(index.Find(b, HashKey(b)), 0u);

  EXPECT_EQ(index.Upsert(a, HashKey(a), Location(0, 2)), Location(0, 1));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.Find(a, HashKey(a)), Location(0, 2));

  EXPECT_EQ(index.Upsert(b, HashKey(b), Location(1, 7)), 0u);
  EXPECT_EQ(index.size(), 2u);

  EXPECT_EQ(index.Erase(a, HashKey(a)), Location(0, 2));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.Find(a, HashKey(a)), 0u);
  EXPECT_EQ(index.Erase(a, HashKey(a)), 0u);
  EXPECT_EQ(index.Find(b, HashKey(b)), Location(1, 7));

  EXPECT_EQ(index.Upsert(a, HashKey(a), Location(0, 3)), 0u);
  EXPECT_EQ(index.Find(a, HashKey(a)), Location(0, 3));
  EXPECT_EQ(index.size(), 2u);
  EXPECT_EQ(log.bad_reads(), 0u);
}

// Log cleaning's liveness test: true exactly for the current location of a
// key, found without reading a single key from the log, also behind
// colliding tags and tombstones.
TEST(IndexTest, HoldsLocationComparesLocationsOnlyAndReadsNoKeys) {
  FakeLog log(MakeKeys(920));
  Index index(&log, /*shard_bits=*/0);
  // Keys 20.. first, with their own hashes: the slot array grows to 2048 now
  // and not again below (a resize would rehash the crafted hash away).
  for (size_t i = 20; i < 920; i++) {
    ASSERT_EQ(index.Upsert(log.key(i), HashKey(log.key(i)), Location(i, 1)), 0u);
  }
  constexpr uint64_t kSameTagAndHome = 0xCAFE'0000'0000'0005ull;
  const size_t bytes = index.MemoryBytes();
  for (size_t i = 0; i < 20; i++) {
    ASSERT_EQ(index.Upsert(log.key(i), kSameTagAndHome, Location(i, 1)), 0u);
  }
  ASSERT_EQ(index.MemoryBytes(), bytes);
  index.Upsert(log.key(3), kSameTagAndHome, Location(3, 2));  // overwritten
  index.Erase(log.key(4), kSameTagAndHome);                   // deleted: a tombstone
  const size_t reads = log.reads();
  for (size_t i = 0; i < 20; i++) {
    EXPECT_EQ(index.HoldsLocation(kSameTagAndHome, Location(i, 1)), i != 3 && i != 4) << i;
  }
  EXPECT_TRUE(index.HoldsLocation(kSameTagAndHome, Location(3, 2)));
  EXPECT_FALSE(index.HoldsLocation(kSameTagAndHome, Location(4, 1)));
  for (size_t i = 20; i < 920; i++) {
    EXPECT_TRUE(index.HoldsLocation(HashKey(log.key(i)), Location(i, 1))) << i;
    EXPECT_FALSE(index.HoldsLocation(HashKey(log.key(i)), Location(i, 2))) << i;
  }
  EXPECT_FALSE(index.HoldsLocation(0x1234'5678'9ABC'DEF0ull, Location(7, 1)));
  EXPECT_EQ(log.reads(), reads);
}

TEST(IndexTest, FullWidthLocationsRoundTrip) {
  FakeLog log(MakeKeys(2));
  Index index(&log);
  const uint64_t high = Location(1, 0xFFFF);  // every segment bit set
  ASSERT_LT(high, 1ull << Index::kLocationBits);
  EXPECT_EQ(index.Upsert(log.key(1), HashKey(log.key(1)), high), 0u);
  EXPECT_EQ(index.Find(log.key(1), HashKey(log.key(1))), high);
  EXPECT_EQ(index.Erase(log.key(1), HashKey(log.key(1))), high);
}

TEST(IndexTest, RandomOperationsMatchModel) {
  constexpr size_t kKeys = 60000;
  constexpr int kOps = 200000;
  FakeLog log(MakeKeys(kKeys));
  Index index(&log, /*shard_bits=*/1);  // few shards, so each grows many times
  std::unordered_map<std::string, uint64_t> model;
  std::mt19937_64 rng(12345);
  size_t last_bytes = index.MemoryBytes();
  int resizes = 0;

  for (int op = 0; op < kOps; op++) {
    const size_t i = rng() % kKeys;
    const std::string& key = log.key(i);
    const uint64_t hash = HashKey(key);
    auto it = model.find(key);
    const uint64_t expected = it == model.end() ? 0 : it->second;
    const int kind = static_cast<int>(rng() % 10);
    if (kind < 6) {
      const uint64_t loc = Location(i, 1 + rng() % 0xFFFF);
      ASSERT_EQ(index.Upsert(key, hash, loc), expected) << "op " << op;
      model[key] = loc;
    } else if (kind < 8) {
      ASSERT_EQ(index.Erase(key, hash), expected) << "op " << op;
      model.erase(key);
    } else {
      ASSERT_EQ(index.Find(key, hash), expected) << "op " << op;
    }
    ASSERT_EQ(index.size(), model.size()) << "op " << op;
    const size_t bytes = index.MemoryBytes();
    if (bytes != last_bytes) resizes++;
    last_bytes = bytes;
  }
  EXPECT_GE(resizes, 8);  // both shards went through several generations

  for (size_t i = 0; i < kKeys; i++) {
    auto it = model.find(log.key(i));
    ASSERT_EQ(index.Find(log.key(i), HashKey(log.key(i))), it == model.end() ? 0 : it->second)
        << log.key(i);
  }
  std::map<uint64_t, int> scanned;
  uint64_t cursor = 0;
  do {
    cursor = index.Scan(cursor, 1000, [&](uint64_t loc) { scanned[loc]++; });
  } while (cursor != 0);
  ASSERT_EQ(scanned.size(), model.size());
  for (const auto& [key, loc] : model) {
    EXPECT_EQ(scanned[loc], 1) << key;
  }
  EXPECT_EQ(log.bad_reads(), 0u);
}

TEST(IndexTest, ForcedTagAndHomeSlotCollisions) {
  constexpr size_t kFillers = 1000;
  constexpr size_t kColliders = 42;
  std::vector<std::string> keys = MakeKeys(kFillers, "filler:");
  for (size_t i = 0; i < kColliders + 1; i++) keys.push_back("collider:" + std::to_string(i));
  FakeLog log(std::move(keys));
  Index index(&log, /*shard_bits=*/0);

  for (size_t i = 0; i < kFillers; i++) {
    ASSERT_EQ(index.Upsert(log.key(i), HashKey(log.key(i)), Location(i)), 0u);
  }
  // A crafted hash breaks the "hash == HashKey(key)" contract, which only
  // matters when a resize rehashes; the slot array must not change below.
  const size_t bytes_before = index.MemoryBytes();

  // Same 16-bit tag and the same home slot (the last one, so probes wrap).
  constexpr uint64_t kCollidingHash = 0xBEEF'FFFF'FFFF'FFFFull;
  auto collider = [&](size_t c) -> const std::string& { return log.key(kFillers + c); };
  auto collider_loc = [&](size_t c, uint64_t version) { return Location(kFillers + c, version); };

  for (size_t c = 0; c < kColliders; c++) {
    ASSERT_EQ(index.Upsert(collider(c), kCollidingHash, collider_loc(c, 1)), 0u) << c;
  }
  EXPECT_EQ(index.size(), kFillers + kColliders);
  for (size_t c = 0; c < kColliders; c++) {
    EXPECT_EQ(index.Find(collider(c), kCollidingHash), collider_loc(c, 1)) << c;
  }
  // A key with the same hash that was never inserted is absent.
  EXPECT_EQ(index.Find(collider(kColliders), kCollidingHash), 0u);
  EXPECT_EQ(index.Erase(collider(kColliders), kCollidingHash), 0u);

  // Overwrite one in the middle of the run.
  EXPECT_EQ(index.Upsert(collider(20), kCollidingHash, collider_loc(20, 2)), collider_loc(20, 1));
  EXPECT_EQ(index.size(), kFillers + kColliders);

  // Erase every third collider: the rest, behind tombstones, stay reachable.
  for (size_t c = 0; c < kColliders; c += 3) {
    const uint64_t want = collider_loc(c, c == 20 ? 2 : 1);
    EXPECT_EQ(index.Erase(collider(c), kCollidingHash), want) << c;
  }
  for (size_t c = 0; c < kColliders; c++) {
    const uint64_t want = c % 3 == 0 ? 0 : collider_loc(c, c == 20 ? 2 : 1);
    EXPECT_EQ(index.Find(collider(c), kCollidingHash), want) << c;
  }
  EXPECT_EQ(index.Erase(collider(0), kCollidingHash), 0u);
  // The last collider ends the probe run; erase it too, then the one before.
  EXPECT_EQ(index.Erase(collider(kColliders - 1), kCollidingHash), collider_loc(kColliders - 1, 1));
  EXPECT_EQ(index.Erase(collider(kColliders - 2), kCollidingHash), collider_loc(kColliders - 2, 1));
  EXPECT_EQ(index.Find(collider(kColliders - 3), kCollidingHash), 0u);  // erased as a multiple of 3
  EXPECT_EQ(index.Find(collider(kColliders - 4), kCollidingHash), collider_loc(kColliders - 4, 1));

  // Re-insert the erased ones with a new version.
  for (size_t c = 0; c < kColliders; c++) {
    if (c % 3 == 0 || c >= kColliders - 2) {
      EXPECT_EQ(index.Upsert(collider(c), kCollidingHash, collider_loc(c, 3)), 0u) << c;
    }
  }
  EXPECT_EQ(index.size(), kFillers + kColliders);
  for (size_t c = 0; c < kColliders; c++) {
    uint64_t want = collider_loc(c, 1);
    if (c == 20) want = collider_loc(c, 2);
    if (c % 3 == 0 || c >= kColliders - 2) want = collider_loc(c, 3);
    EXPECT_EQ(index.Find(collider(c), kCollidingHash), want) << c;
  }
  // Entries of other keys are untouched.
  for (size_t i = 0; i < kFillers; i++) {
    ASSERT_EQ(index.Find(log.key(i), HashKey(log.key(i))), Location(i)) << i;
  }
  EXPECT_EQ(index.MemoryBytes(), bytes_before) << "a resize rehashed the crafted entries";
  EXPECT_EQ(log.bad_reads(), 0u);
}

TEST(IndexTest, CollisionsWithDifferentTagsInOneProbeRun) {
  // Keys share the home slot but not the tag: the tag filter must not stop the
  // probe early, and no key may be compared against the wrong record.
  FakeLog log(MakeKeys(10));
  Index index(&log, /*shard_bits=*/0);
  auto hash = [](size_t i) { return (static_cast<uint64_t>(i + 1) << 48) | 5; };
  for (size_t i = 0; i < 10; i++) ASSERT_EQ(index.Upsert(log.key(i), hash(i), Location(i)), 0u);
  // The tag spares the log read for every other key in the run.
  for (size_t i = 0; i < 10; i++) {
    const size_t reads_before = log.reads();
    EXPECT_EQ(index.Find(log.key(i), hash(i)), Location(i)) << i;
    EXPECT_EQ(log.reads() - reads_before, 1u) << i;
  }
  for (size_t i = 0; i < 10; i += 2) EXPECT_EQ(index.Erase(log.key(i), hash(i)), Location(i));
  for (size_t i = 0; i < 10; i++) {
    const size_t reads_before = log.reads();
    EXPECT_EQ(index.Find(log.key(i), hash(i)), i % 2 ? Location(i) : 0) << i;
    EXPECT_EQ(log.reads() - reads_before, i % 2 ? 1u : 0u) << i;
  }
  EXPECT_EQ(index.size(), 5u);
  EXPECT_EQ(log.bad_reads(), 0u);
}

TEST(IndexTest, Clear) {
  FakeLog log(MakeKeys(5000));
  Index index(&log, /*shard_bits=*/3);
  const size_t fresh_bytes = index.MemoryBytes();
  for (size_t i = 0; i < log.size(); i++) {
    index.Upsert(log.key(i), HashKey(log.key(i)), Location(i));
  }
  ASSERT_EQ(index.size(), 5000u);
  ASSERT_GT(index.MemoryBytes(), fresh_bytes);

  index.Clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_EQ(index.MemoryBytes(), fresh_bytes);
  for (size_t i = 0; i < log.size(); i++) {
    ASSERT_EQ(index.Find(log.key(i), HashKey(log.key(i))), 0u) << i;
  }
  int visits = 0;
  EXPECT_EQ(index.Scan(0, 100, [&](uint64_t) { visits++; }), 0u);
  EXPECT_EQ(visits, 0);

  EXPECT_EQ(index.Upsert(log.key(7), HashKey(log.key(7)), Location(7, 2)), 0u);
  EXPECT_EQ(index.Find(log.key(7), HashKey(log.key(7))), Location(7, 2));
  EXPECT_EQ(index.size(), 1u);
}

void ExpectScanVisitsEachLiveKeyOnce(int shard_bits) {
  constexpr size_t kKeys = 5000;
  FakeLog log(MakeKeys(kKeys));
  Index index(&log, shard_bits);
  for (size_t i = 0; i < kKeys; i++) index.Upsert(log.key(i), HashKey(log.key(i)), Location(i));
  for (size_t i = 0; i < kKeys; i += 5) index.Erase(log.key(i), HashKey(log.key(i)));
  const size_t live = kKeys - kKeys / 5;
  ASSERT_EQ(index.size(), live);

  for (size_t count : {size_t{1}, size_t{2}, size_t{7}, size_t{100}, size_t{1} << 30}) {
    std::vector<int> seen(kKeys, 0);
    uint64_t cursor = 0;
    size_t calls = 0;
    do {
      size_t visited = 0;
      cursor = index.Scan(cursor, count, [&](uint64_t loc) {
        ASSERT_EQ(VersionOf(loc), 1u);
        seen[KeyIndexOf(loc)]++;
        visited++;
      });
      // Each call either reaches `count` or finishes the iteration.
      EXPECT_TRUE(visited >= count || cursor == 0) << "count " << count << " call " << calls;
      ASSERT_LE(++calls, (size_t{1} << shard_bits) + 1) << "cursor never returned to 0";
    } while (cursor != 0);
    for (size_t i = 0; i < kKeys; i++) {
      ASSERT_EQ(seen[i], i % 5 == 0 ? 0 : 1) << "key " << i << " count " << count;
    }
  }
}

TEST(IndexTest, ScanVisitsEveryLiveKeyExactlyOnce) { ExpectScanVisitsEachLiveKeyOnce(4); }

TEST(IndexTest, ScanVisitsEveryLiveKeyExactlyOnceDefaultShards) {
  ExpectScanVisitsEachLiveKeyOnce(10);
}

TEST(IndexTest, ScanOfEmptyIndexFinishesAtOnce) {
  FakeLog log(MakeKeys(1));
  Index index(&log);
  int visits = 0;
  EXPECT_EQ(index.Scan(0, 10, [&](uint64_t) { visits++; }), 0u);
  EXPECT_EQ(visits, 0);
}

TEST(IndexTest, MemoryPerKeyAt200kKeys) {
  constexpr size_t kKeys = 200000;
  FakeLog log(MakeKeys(kKeys));
  Index index(&log);
  for (size_t i = 0; i < kKeys; i++) {
    ASSERT_EQ(index.Upsert(log.key(i), HashKey(log.key(i)), Location(i)), 0u);
  }
  ASSERT_EQ(index.size(), kKeys);
  const double per_key = static_cast<double>(index.MemoryBytes()) / static_cast<double>(kKeys);
  RecordProperty("bytes_per_key", std::to_string(per_key));
  EXPECT_LE(per_key, 32.0);
}

TEST(IndexTest, TableStaysBetween3Over8And3Over4Full) {
  // index.h: "kept at most 3/4 full, so the table costs 8 / load bytes per key
  // (11-21 B)". A resize that doubles a 3/4-full table leaves it 3/8 full.
  constexpr size_t kKeys = 20000;
  FakeLog log(MakeKeys(kKeys));
  Index index(&log, /*shard_bits=*/0);
  const size_t fresh_bytes = index.MemoryBytes();
  for (size_t n = 1; n <= kKeys; n++) {
    index.Upsert(log.key(n - 1), HashKey(log.key(n - 1)), Location(n - 1));
    const size_t slots = SlotBytes(index, fresh_bytes, 1) / sizeof(uint64_t);
    ASSERT_LE(n * 4, slots * 3) << "more than 3/4 full at " << n << " keys";
    if (n >= 6) {
      ASSERT_GE(n * 8, slots * 3) << "less than 3/8 full at " << n << " keys: " << slots
                                  << " slots";
    }
  }
}

TEST(IndexTest, ConcurrentReadersSeeEveryPresentKey) {
  constexpr size_t kKeys = 40000;
  constexpr size_t kPreloaded = 10000;
  constexpr uint64_t kMaxVersion = 100;
  FakeLog log(MakeKeys(kKeys));
  Index index(&log, /*shard_bits=*/2);  // few shards: resizes happen under the readers
  for (size_t i = 0; i < kPreloaded; i++) {
    index.Upsert(log.key(i), HashKey(log.key(i)), Location(i, 1));
  }

  std::atomic<size_t> published{kPreloaded};  // keys [0, published) are present
  std::atomic<bool> done{false};
  std::atomic<int> readers_started{0};
  std::atomic<uint64_t> reads{0}, missing{0}, wrong{0};

  auto reader = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    readers_started.fetch_add(1);
    uint64_t n = 0;
    while (!done.load(std::memory_order_acquire)) {
      const size_t limit = published.load(std::memory_order_acquire);
      const size_t i = rng() % limit;
      const uint64_t loc = index.Find(log.key(i), HashKey(log.key(i)));
      if (loc == 0) {
        missing.fetch_add(1);
      } else if (KeyIndexOf(loc) != i || VersionOf(loc) < 1 || VersionOf(loc) > kMaxVersion ||
                 (loc & 0xFFFFFFFFull) != Location(i, 0)) {
        wrong.fetch_add(1);
      }
      if (++n % 256 == 0) reads.fetch_add(256, std::memory_order_relaxed);
    }
  };
  std::thread r1(reader, 1), r2(reader, 2);
  while (readers_started.load() < 2) std::this_thread::yield();

  std::mt19937_64 rng(99);
  for (size_t i = kPreloaded; i < kKeys; i++) {
    index.Upsert(log.key(i), HashKey(log.key(i)), Location(i, 1));
    published.store(i + 1, std::memory_order_release);
    const size_t j = rng() % (i + 1);
    index.Upsert(log.key(j), HashKey(log.key(j)), Location(j, 2 + rng() % (kMaxVersion - 1)));
  }
  // Keep overwriting until the readers have done a fair number of lookups.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (reads.load() < 200000 && std::chrono::steady_clock::now() < deadline) {
    const size_t j = rng() % kKeys;
    index.Upsert(log.key(j), HashKey(log.key(j)), Location(j, 2 + rng() % (kMaxVersion - 1)));
  }
  done.store(true, std::memory_order_release);
  r1.join();
  r2.join();

  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(missing.load(), 0u);
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(index.size(), kKeys);
  EXPECT_EQ(log.bad_reads(), 0u);
}

}  // namespace
}  // namespace faha
