// kill -9 against exactly-once processing: examples/points_service.cc
// awards points for course-finished events in local transactions (balance,
// award record, points-awarded message and acknowledgement, committed
// together). It is killed with SIGKILL at random moments while it works,
// and restarted, until every event is processed; then its books must hold:
// every event awarded exactly once, no points lost or doubled, one
// points-awarded message per award.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

extern char** environ;

namespace txmq {
namespace {

using ::txmq::testing::TempDir;

std::string PointsService() {
  const char* path = getenv("TXMQ_POINTS_SERVICE");
  return path != nullptr ? path : "examples/txmq-points-service";
}

// Runs the service with `args`; with `kill_after`, SIGKILLs it that long
// after it printed "ready". Returns the wait status; `output` gets what it
// printed.
int RunService(std::vector<std::string> args,
               std::optional<absl::Duration> kill_after = std::nullopt,
               std::string* output = nullptr) {
  args.insert(args.begin(), PointsService());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (pipe(out) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  pid_t pid;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return -1;
  }
  if (kill_after.has_value()) {
    char c;  // wait for "ready" (or the end)
    while (read(out[0], &c, 1) == 1 && c != '\n') {
    }
    absl::SleepFor(*kill_after);
    kill(pid, SIGKILL);
  }
  char buf[256];  // read to the end: the child must not die of SIGPIPE
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) {
    if (output != nullptr) output->append(buf, n);
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(PointsCrashTest, NoPointsAwardedTwiceOrLostAcrossKill9) {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  constexpr int kEvents = 1500;
  int status = RunService({dir, "produce", std::to_string(kEvents)});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  std::mt19937 random(20261126);
  int kills = 0;
  for (int round = 0; round < 40; ++round) {
    // 5 to 150 ms into serving: mid-transaction, mid-commit, mid-ack.
    std::uniform_int_distribution<int> ms(5, 150);
    status = RunService({dir, "serve", "4"}, absl::Milliseconds(ms(random)));
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      ++kills;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
      break;  // drained before the kill
    }
  }
  // Finish the work, then audit the books.
  status = RunService({dir, "serve", "4"});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::string books;
  status = RunService({dir, "check"}, std::nullopt, &books);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "after " << kills << " kills: " << books;
  EXPECT_GE(kills, 5);
  RecordProperty("kills", kills);
  std::printf("survived %d kills\n", kills);
}

}  // namespace
}  // namespace txmq
