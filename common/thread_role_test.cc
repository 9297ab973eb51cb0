// ThreadRole's run-time checks, in the builds that have them (no NDEBUG: the
// sanitizer builds): a second thread taking a held role, using one it does
// not hold or giving it back aborts with the role's name; nested scopes on
// one thread do not. (The compile-time half is clang's -Wthread-safety.)
#include "common/thread_role.h"

#include <gtest/gtest.h>

#include <thread>

namespace faha {
namespace {

#ifdef NDEBUG
TEST(ThreadRoleTest, ChecksOnlyInBuildsWithoutNdebug) {
  GTEST_SKIP() << "release build: ThreadRole compiles to nothing";
}
#else
// The misuses below are on purpose: hidden from the compile-time analysis.
void Take(ThreadRole* r) NO_THREAD_SAFETY_ANALYSIS { r->Take(); }
void Give(ThreadRole* r) NO_THREAD_SAFETY_ANALYSIS { r->Give(); }
void Assert(ThreadRole* r) NO_THREAD_SAFETY_ANALYSIS { r->Assert(); }

class ThreadRoleDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ThreadRoleDeathTest, AHeldRoleIsTakenByNoOtherThread) {
  ThreadRole role("the test's role");
  Take(&role);
  Assert(&role);
  EXPECT_DEATH(std::thread([&] { Take(&role); }).join(),
               "thread role 'the test's role' taken while another thread holds it");
  EXPECT_DEATH(std::thread([&] { Assert(&role); }).join(),
               "'the test's role' used by a thread that does not hold it");
  EXPECT_DEATH(std::thread([&] { Give(&role); }).join(),
               "given back by a thread that does not hold it");
  Give(&role);
  // Given back, another thread may take it.
  std::thread([&] {
    Take(&role);
    Give(&role);
  }).join();
}

TEST_F(ThreadRoleDeathTest, ScopesNestOnOneThreadAndExcludeOthers) {
  ThreadRole role("the writer");
  {
    ThreadRole::Scope outer(&role);
    ThreadRole::Scope inner(&role);  // a _wt function calling another
    Assert(&role);
    EXPECT_DEATH(std::thread([&] { ThreadRole::Scope other(&role); }).join(),
                 "'the writer' taken while another thread holds it");
  }
  EXPECT_DEATH(Assert(&role), "'the writer' used by a thread that does not hold it");
  std::thread([&] { ThreadRole::Scope later(&role); }).join();
}
#endif

}  // namespace
}  // namespace faha
