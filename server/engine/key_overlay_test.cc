// KeyOverlay: puts, deletes and flushes, applied one by one or merged from a
// batch's payload, answer Find as the store's evaluation needs.
#include "server/engine/key_overlay.h"

#include <gtest/gtest.h>

#include "nvm/log.h"

namespace faha {
namespace {

TEST(KeyOverlayTest, TheNewestRecordOfAKeyWinsAndAFlushHidesWhatCameBefore) {
  KeyOverlay o;
  uint64_t at = 0;
  EXPECT_EQ(o.Find("a", &at), KeyOverlay::Says::kNothing);
  o.Put("a", 10);
  o.Put("b", 20);
  o.Delete("b");
  EXPECT_EQ(o.Find("a", &at), KeyOverlay::Says::kAt);
  EXPECT_EQ(at, 10u);
  EXPECT_EQ(o.Find("b", &at), KeyOverlay::Says::kDeleted);
  o.FlushAll();
  EXPECT_TRUE(o.flushed());
  EXPECT_EQ(o.Find("a", &at), KeyOverlay::Says::kDeleted);  // gone in the flush
  o.Put("a", 30);
  EXPECT_EQ(o.Find("a", &at), KeyOverlay::Says::kAt);
  EXPECT_EQ(at, 30u);
  o.Reset();
  EXPECT_FALSE(o.flushed());
  EXPECT_EQ(o.Find("a", &at), KeyOverlay::Says::kNothing);
}

TEST(KeyOverlayTest, MergeTakesABatchsRecordsAtTheirLocations) {
  nvm::BatchBuilder batch;
  const size_t first = batch.Add(nvm::RecordType::kPut, "gone", "v", 0);
  batch.Add(nvm::RecordType::kFlushAll, {}, {}, 0);
  const size_t kept = batch.Add(nvm::RecordType::kPut, "kept", "v", 0);
  batch.Add(nvm::RecordType::kDelete, "deleted", {}, 0);
  KeyOverlay o;
  o.Merge(batch.payload(), 1000);
  uint64_t at = 0;
  EXPECT_TRUE(o.flushed());
  EXPECT_EQ(o.Find("gone", &at), KeyOverlay::Says::kDeleted) << first;
  ASSERT_EQ(o.Find("kept", &at), KeyOverlay::Says::kAt);
  EXPECT_EQ(at, 1000 + kept);
  EXPECT_EQ(o.Find("deleted", &at), KeyOverlay::Says::kDeleted);
  EXPECT_EQ(o.Find("never", &at), KeyOverlay::Says::kDeleted);  // after the flush
  EXPECT_EQ(o.size(), 2u);
}

// FLUSHDB hides one database's committed keys, not another's.
TEST(KeyOverlayTest, FlushingADatabaseHidesOnlyItsKeys) {
  KeyOverlay o;
  const std::string three = ns::DbPrefix(3), four = ns::DbPrefix(4);
  o.Put("a", 10);
  o.Put(three + "a", 20);
  o.FlushNamespace(3);
  uint64_t where = 0;
  EXPECT_EQ(o.Find("a", &where), KeyOverlay::Says::kAt);
  EXPECT_EQ(where, 10u);
  EXPECT_EQ(o.Find(three + "a", &where), KeyOverlay::Says::kDeleted);
  EXPECT_EQ(o.Find(three + "b", &where), KeyOverlay::Says::kDeleted);
  EXPECT_EQ(o.Find(four + "b", &where), KeyOverlay::Says::kNothing);
  EXPECT_EQ(o.Find("b", &where), KeyOverlay::Says::kNothing);
  o.Put(three + "b", 30);  // written after the flush: there
  EXPECT_EQ(o.Find(three + "b", &where), KeyOverlay::Says::kAt);
  o.Reset(o.flushes());  // a group's mark keeps what was flushed
  EXPECT_EQ(o.Find(three + "c", &where), KeyOverlay::Says::kDeleted);
  EXPECT_FALSE(o.Hides("a"));
}

}  // namespace
}  // namespace faha
