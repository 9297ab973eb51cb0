// ByteBuffer: bytes kept through growth, reads straight into its room, and
// the front dropped as a parser consumes it.
#include "common/byte_buffer.h"

#include <gtest/gtest.h>
#include <sys/uio.h>
#include <unistd.h>

#include <string>
#include <utility>

namespace faha {
namespace {

TEST(ByteBufferTest, AppendsKeepEveryByteThroughGrowth) {
  ByteBuffer b;
  EXPECT_EQ(b.capacity(), 0u);
  std::string want;
  for (int i = 0; i < 300; i++) {
    const std::string piece(static_cast<size_t>(i % 37) + 1, static_cast<char>('a' + i % 26));
    b.append(piece);
    want += piece;
    ASSERT_EQ(b.view(), want) << "after append " << i;
  }
  EXPECT_GE(b.capacity(), b.size());
  EXPECT_LT(b.capacity(), 2 * b.size() + 64) << "growth is by doubling, not unbounded";
}

TEST(ByteBufferTest, ReadsFillTheRoomWithoutACopy) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ByteBuffer b;
  b.append("head:");
  b.Reserve(100);
  ASSERT_GE(b.room(), 100u);
  const size_t capacity = b.capacity();
  ASSERT_EQ(write(fds[1], "0123456789", 10), 10);
  iovec iov{b.end(), b.room()};
  const ssize_t n = readv(fds[0], &iov, 1);
  ASSERT_EQ(n, 10);
  b.Commit(static_cast<size_t>(n));
  EXPECT_EQ(b.view(), "head:0123456789");
  EXPECT_EQ(b.capacity(), capacity) << "a read into the room does not reallocate";
  close(fds[0]);
  close(fds[1]);
}

TEST(ByteBufferTest, AMovedFromBufferIsEmptyAndUsable) {
  ByteBuffer a;
  a.append("moved");
  ByteBuffer b = std::move(a);
  EXPECT_EQ(b.view(), "moved");
  EXPECT_EQ(a.size(), 0u);  // a moved-from buffer is empty: the contract under test
  EXPECT_EQ(a.room(), 0u);
  a.append("again");
  EXPECT_EQ(a.view(), "again");
  a = std::move(b);
  EXPECT_EQ(a.view(), "moved");
}

TEST(ByteBufferTest, EraseFrontClearAndRelease) {
  ByteBuffer b;
  b.append("GET a\r\nGET b\r\n");
  b.EraseFront(7);
  EXPECT_EQ(b.view(), "GET b\r\n");
  EXPECT_EQ(b[4], 'b');
  const size_t capacity = b.capacity();
  b.clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.capacity(), capacity) << "clear keeps the memory";
  EXPECT_EQ(b.room(), capacity);
  b.Release();
  EXPECT_EQ(b.capacity(), 0u);
  b.append("x");
  EXPECT_EQ(b.view(), "x");
}

}  // namespace
}  // namespace faha
