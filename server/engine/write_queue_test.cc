// WriteQueue: who commits (inline or the sequencer), how much a group takes,
// cut groups put back in order, and tickets that publish in write order.
#include "server/engine/write_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace faha {
namespace {

QueuedWrite W(const std::string& key, size_t value_bytes = 1) {
  QueuedWrite w;
  w.op.kind = WriteOp::Kind::kPut;
  w.op.args = {key, std::string(value_bytes, 'v')};
  w.sink = nullptr;
  w.conn_id = 1;
  return w;
}

std::vector<std::string> Keys(const std::vector<QueuedWrite>& group) {
  std::vector<std::string> keys;
  for (const auto& w : group) keys.emplace_back(w.op.args[0]);
  return keys;
}

TEST(WriteQueueTest, TheFirstSubmitterCommitsInlineAndTheNextOnesWaitForIt) {
  WriteQueue q(1 << 20);
  q.Configure(/*inline_commit=*/true, /*max_syncing=*/1);
  std::vector<QueuedWrite> writes = {W("a"), W("b")}, group;
  ASSERT_TRUE(q.PushAll(&writes, &group)) << "nobody was committing: this thread commits";
  EXPECT_TRUE(writes.empty());
  EXPECT_EQ(Keys(group), (std::vector<std::string>{"a", "b"}));
  // Committing: later writes are queued for whoever commits next.
  std::vector<QueuedWrite> more = {W("c")}, none;
  EXPECT_FALSE(q.PushAll(&more, &none));
  EXPECT_TRUE(none.empty());
  q.ReleaseCommitting();
  std::vector<QueuedWrite> next;
  ASSERT_TRUE(q.TakeGroup(&next));
  EXPECT_EQ(Keys(next), (std::vector<std::string>{"c"}));
}

// A replicated primary's sync asked of the sequencer while a group commits:
// TakeGroup returns at once with no group and without committing, and the
// writes queued meanwhile stay for whoever commits next.
TEST(WriteQueueTest, ASyncAskedForWakesTheSequencerWithoutAGroup) {
  WriteQueue q(1 << 20);
  q.Configure(/*inline_commit=*/true, /*max_syncing=*/1);
  std::vector<QueuedWrite> writes = {W("a")}, group;
  ASSERT_TRUE(q.PushAll(&writes, &group));  // committing inline
  std::vector<QueuedWrite> more = {W("b")}, none;
  EXPECT_FALSE(q.PushAll(&more, &none));
  std::atomic<bool> woke{false};
  std::vector<QueuedWrite> taken;
  std::thread sequencer([&] {
    EXPECT_TRUE(q.TakeGroup(&taken));
    woke = true;
  });
  q.RequestSync();
  sequencer.join();
  EXPECT_TRUE(woke.load());
  EXPECT_TRUE(taken.empty()) << "a sync comes with no group";
  q.ReleaseCommitting();  // the inline committer is done; "b" is still queued
  ASSERT_TRUE(q.TakeGroup(&taken));
  EXPECT_EQ(Keys(taken), (std::vector<std::string>{"b"}));
}

TEST(WriteQueueTest, WithoutInlineCommitsEveryGroupIsTheSequencers) {
  WriteQueue q(1 << 20);
  q.Configure(/*inline_commit=*/false, /*max_syncing=*/1);
  std::vector<QueuedWrite> writes = {W("a")}, group;
  EXPECT_FALSE(q.PushAll(&writes, &group));
  EXPECT_TRUE(group.empty());
  ASSERT_TRUE(q.TakeGroup(&group));
  EXPECT_EQ(Keys(group), (std::vector<std::string>{"a"}));
}

TEST(WriteQueueTest, AGroupTakesAboutItsByteBoundButAtLeastOneWrite) {
  WriteQueue q(3000);
  q.Configure(false, 1);
  q.Push(W("big", 10000));  // alone over the bound: taken alone
  for (int i = 0; i < 5; i++) q.Push(W("k" + std::to_string(i), 1000));
  std::vector<QueuedWrite> group;
  ASSERT_TRUE(q.TakeGroup(&group));
  EXPECT_EQ(Keys(group), (std::vector<std::string>{"big"}));
  q.ReleaseCommitting();
  group.clear();
  ASSERT_TRUE(q.TakeGroup(&group));
  EXPECT_EQ(group.size(), 2u) << "two writes of ~1 KiB fit in 3000 bytes, three do not";
  // The committing thread cut its group after the first: the rest goes
  // back in front, in order.
  std::vector<QueuedWrite> rest(std::make_move_iterator(group.begin() + 1),
                                std::make_move_iterator(group.end()));
  group.resize(1);
  q.PutBack(&rest);
  q.ReleaseCommitting();
  std::vector<QueuedWrite> next;
  ASSERT_TRUE(q.TakeGroup(&next));
  EXPECT_EQ(Keys(next), (std::vector<std::string>{"k1", "k2"}));
}

TEST(WriteQueueTest, StoppedItHandsOutWhatIsQueuedThenNothing) {
  WriteQueue q(1 << 20);
  q.Configure(true, 1);
  q.Push(W("a"));
  q.Stop();
  std::vector<QueuedWrite> group;
  ASSERT_TRUE(q.TakeGroup(&group)) << "what was queued before Stop is still committed";
  q.ReleaseCommitting();
  group.clear();
  EXPECT_FALSE(q.TakeGroup(&group));
  std::vector<QueuedWrite> late = {W("late")};
  EXPECT_FALSE(q.PushAll(&late, &group));
  EXPECT_TRUE(group.empty());
  q.WaitIdle();
}

TEST(WriteQueueTest, GroupsSyncingTogetherArePublishedInTheOrderTheyWereWritten) {
  WriteQueue q(1 << 20);
  q.Configure(true, 2);
  std::vector<QueuedWrite> a = {W("a")}, group;
  ASSERT_TRUE(q.PushAll(&a, &group));
  const uint64_t first = q.BeginSync();  // gives committing back
  std::vector<QueuedWrite> b = {W("b")};
  group.clear();
  ASSERT_TRUE(q.PushAll(&b, &group)) << "a second group may be written while the first syncs";
  const uint64_t second = q.BeginSync();
  EXPECT_EQ(second, first + 1);
  // Two syncing: a third group waits for one of them.
  std::vector<QueuedWrite> c = {W("c")};
  group.clear();
  EXPECT_FALSE(q.PushAll(&c, &group));
  std::atomic<bool> second_published{false};
  std::thread later([&] {
    q.WaitTurn(second);  // must wait for the first
    second_published = true;
    q.EndSync();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(second_published.load()) << "the later group was published first";
  q.WaitTurn(first);
  q.EndSync();
  later.join();
  EXPECT_TRUE(second_published.load());
  group.clear();
  ASSERT_TRUE(q.TakeGroup(&group));
  EXPECT_EQ(Keys(group), (std::vector<std::string>{"c"}));
  q.ReleaseCommitting();
  q.Stop();
  q.WaitIdle();
}

}  // namespace
}  // namespace faha
