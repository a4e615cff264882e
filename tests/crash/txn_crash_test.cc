// kill -9 with a real local database (SQLite, the seed's MySQL stand-in): a
// child order service dies (a) after Begin, before its local transaction;
// (b) after the local transaction committed, before Commit; (c) during
// Commit; and at random moments. After each restart, with the checker
// registered, the published orders must equal the local database's orders:
// no loss, no duplicate, no ghost.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <set>
#include <string>

#include "child_process.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::ExpectDirectoryVerifies;
using ::txmq::testing::TempDir;

std::string TxnChild() {
  const char* path = getenv("TXMQ_TXN_CHILD");
  return path != nullptr ? path : "tests/txmq_txn_child";
}

// Runs the child to its end (modes a, b, c: it kills itself) or kills it
// after `kill_after` (mode random). Returns its wait status.
int RunChild(const std::string& dir, const std::string& db,
             const std::string& mode, absl::Duration kill_after) {
  std::vector<std::string> args = {TxnChild(), dir, db, mode};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  if (mode == "random") {
    absl::SleepFor(kill_after);
    kill(pid, SIGKILL);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// order id -> txid, as the local database has them.
std::map<std::string, std::string> LocalOrders(const std::string& db_path) {
  std::map<std::string, std::string> orders;
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) return orders;
  sqlite3_stmt* select = nullptr;
  sqlite3_prepare_v2(db, "SELECT order_id, txid FROM orders", -1, &select,
                     nullptr);
  while (select != nullptr && sqlite3_step(select) == SQLITE_ROW) {
    orders[std::to_string(sqlite3_column_int64(select, 0))] =
        reinterpret_cast<const char*>(sqlite3_column_text(select, 1));
  }
  sqlite3_finalize(select);
  sqlite3_close(db);
  return orders;
}

// The order service's checker: commit exactly what the local database has.
class OrderChecker final : public TransactionChecker {
 public:
  explicit OrderChecker(std::string db_path) {
    sqlite3_open(db_path.c_str(), &db_);
    sqlite3_prepare_v2(db_, "SELECT 1 FROM orders WHERE txid = ?", -1, &select_,
                       nullptr);
  }
  ~OrderChecker() override {
    sqlite3_finalize(select_);
    sqlite3_close(db_);
  }
  TransactionState Check(const HalfMessage& half) override {
    const std::string txid = half.id.ToString();
    sqlite3_reset(select_);
    sqlite3_bind_text(select_, 1, txid.c_str(), -1, SQLITE_TRANSIENT);
    return sqlite3_step(select_) == SQLITE_ROW ? TransactionState::kCommit
                                               : TransactionState::kRollback;
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
};

// Restarts the broker with the checker, waits until nothing is pending,
// and compares the topic with the local database.
void ExpectTopicEqualsLocalDatabase(const std::string& dir,
                                    const std::string& db, int round) {
  // As the kill left it, before any recovery: every table agrees.
  ExpectDirectoryVerifies(dir, "round " + std::to_string(round));
  auto broker = Broker::Open(dir);
  ASSERT_TRUE(broker.ok()) << broker.status();
  TXMQ_ASSERT_OK((*broker)->RegisterChecker(
      "order-service", std::make_shared<OrderChecker>(db)));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((*broker)->Stats().pending_transactions > 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ((*broker)->Stats().pending_transactions, 0u)
      << "round " << round << ": a half message was never resolved";
  const std::map<std::string, std::string> local = LocalOrders(db);
  std::map<std::string, int> published;
  auto consumer = (*broker)->CreateConsumer("audit-" + std::to_string(round),
                                            "order-created");
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  while (true) {
    auto batch = (*consumer)->Receive(1000, absl::ZeroDuration());
    ASSERT_TRUE(batch.ok());
    if (batch->empty()) break;
    for (const MessageView& m : *batch) ++published[std::string(m.key())];
  }
  for (const auto& [order, txid] : local) {
    auto it = published.find(order);
    ASSERT_NE(it, published.end())
        << "round " << round << ": order " << order << " (txn " << txid
        << ") committed locally but its message was lost";
    EXPECT_EQ(it->second, 1) << "order " << order << " published twice";
  }
  for (const auto& [order, count] : published) {
    EXPECT_TRUE(local.count(order))
        << "round " << round << ": ghost message for order " << order
        << ", which the local database does not have";
  }
}

class TxnCrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TxnCrashTest, MessagesEqualTheLocalDatabaseAfterEachCrash) {
  TempDir tmp;
  const std::string dir = tmp.Sub("mq"), db = tmp.Sub("orders.db");
  const int rounds = GetParam() == "random" ? 10 : 4;
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < rounds; ++round) {
    const int status =
        RunChild(dir, db, GetParam(), absl::Milliseconds(20 + rng() % 200));
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child ended otherwise: " << status;
    ExpectTopicEqualsLocalDatabase(dir, db, round);
  }
  EXPECT_FALSE(LocalOrders(db).empty());
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, TxnCrashTest,
                         ::testing::Values("a", "b", "c", "random"),
                         [](const auto& info) {
                           return info.param == "a" ? std::string("AfterBegin")
                                  : info.param == "b"
                                      ? std::string("AfterLocalCommit")
                                  : info.param == "c"
                                      ? std::string("DuringCommit")
                                      : std::string("AtRandom");
                         });

}  // namespace
}  // namespace txmq
