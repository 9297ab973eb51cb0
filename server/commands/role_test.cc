// Refusals are codes, and RESP spells each one as Redis does.
#include "server/commands/role.h"

#include <gtest/gtest.h>

namespace faha {
namespace {

TEST(RefusalTest, EachKindHasRedissCodeWordAndRespText) {
  EXPECT_FALSE(Refusal{}.refused());
  EXPECT_EQ(Refusal{}.code(), "");
  Refusal moved = Refusal::Moved("10.0.0.2:7379");
  EXPECT_TRUE(moved.refused());
  EXPECT_EQ(moved.code(), "MOVED");
  EXPECT_EQ(moved.RespText(), "MOVED 0 10.0.0.2:7379");  // slot 0: one group serves all
  EXPECT_EQ(Refusal::TryAgain("a failover is under way").RespText(),
            "TRYAGAIN a failover is under way");
  EXPECT_EQ(
      (Refusal{Refusal::Kind::kReadOnly, "You can't write against a read only backup"}).RespText(),
      "READONLY You can't write against a read only backup");
  EXPECT_EQ((Refusal{Refusal::Kind::kStaleRead, "send READONLY"}).RespText(),
            "STALEREAD send READONLY");
}

}  // namespace
}  // namespace faha
