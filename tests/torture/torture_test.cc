// Crash torture (issue 7): a child process runs a mixed workload on one
// directory (tests/torture/torture_child.cc: plain sends, transactional
// sends against its own SQLite database with a checker, consumers
// acknowledging, delayed messages, retention deleting) and is killed with
// SIGKILL at a random moment, over and over. After each kill the directory,
// exactly as the kill left it, is checked against the ledger the child kept
// (DESIGN.md's guarantees):
//   - every table agrees with every other (Inspector::Verify);
//   1 every send that returned OK is stored, byte for byte, at the id it
//     was given (or, in the topic with a 1 s retention, deleted by the
//     retention: below its queue's first offset);
//   2 no message of a transaction whose local transaction did not commit is
//     visible, and no transaction's message is visible twice;
//   3 a transaction whose local transaction committed is visible or still
//     pending, never lost;
//   6 a consumer never sees a queue's offsets go back within its session;
// and at the end, with the broker reopened and a checker over the SQLite
// database registered:
//   3 every pending transaction is resolved: committed exactly when its
//     local transaction committed, exactly once;
//   1 every acknowledged delayed message is delivered;
//   5 every stored message of "plain" was delivered to group "workers" at
//     least once (what the consumers saw before the kills, plus what the
//     group still gets).
//
// Environment:
//   TXMQ_TORTURE_KILLS    kills per run (default 200)
//   TXMQ_TORTURE_SECONDS  soak: kill for this long instead (overrides
//                         TXMQ_TORTURE_KILLS)
//   TXMQ_TORTURE_SEED     the seed of the kill times and of the workload's
//                         choices (default: random; printed)
//   TXMQ_TORTURE_OUT      where a failure's record goes (default
//                         /tmp/txmq-torture-failure-SEED): the seed, the
//                         round, the ledger, the SQLite database and the
//                         data directory as the failing kill left them.
//   TXMQ_TORTURE_RECORD   check such a record again instead of running:
//                         the checks after a kill, then the final ones.
// Replay: TXMQ_TORTURE_SEED=S TXMQ_TORTURE_KILLS=N build/tests/torture_test
// runs the same kill schedule and workload choices (thread timing differs).

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "child_process.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "torture/torture_common.h"
#include "txmq/inspector.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::ChildProcess;
using ::txmq::testing::TempDir;
using ::txmq::torture::BodyOf;

std::string TortureChild() {
  const char* path = getenv("TXMQ_TORTURE_CHILD");
  return path != nullptr ? path : "tests/txmq_torture_child";
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = getenv(name);
  int64_t n;
  return value != nullptr && absl::SimpleAtoi(value, &n) ? n : fallback;
}

// What the ledger says, from its complete lines.
struct Ledger {
  struct Sent {
    std::string id;
    uint32_t queue = 0;
    uint64_t offset = 0;
  };
  std::map<std::string, Sent> plain;          // token -> what Send returned
  std::map<std::string, Sent> expiring;       // token -> what Send returned
  std::set<std::string> delayed;              // tokens
  std::map<std::string, std::string> halves;  // order -> transaction id
  std::map<std::string, bool> local;          // order -> committed locally
  std::set<std::string> committed;            // Commit returned OK
  std::set<std::string> received;             // ids a consumer got
  std::vector<std::string> violations;        // the child's own findings
  size_t lines = 0;

  static Ledger Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    Ledger ledger;
    // Only complete lines: the kill may tear the last one.
    const size_t end = text.rfind('\n');
    if (end == std::string::npos) return ledger;
    const std::vector<absl::string_view> all =
        absl::StrSplit(absl::string_view(text).substr(0, end), '\n');
    for (size_t i = 0; i < all.size(); ++i) {
      const absl::string_view line = all[i];
      // A line the kill tore (the next child says so).
      if (i + 1 < all.size() && absl::StartsWith(all[i + 1], "S ") &&
          absl::EndsWith(all[i + 1], " after-torn-line")) {
        continue;
      }
      ++ledger.lines;
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      const std::string& tag = f[0];
      if (tag == "p" && f.size() == 3) {
        ledger.plain[f[1]] = {f[2]};
      } else if (tag == "e" && f.size() == 5) {
        Sent s{f[2]};
        EXPECT_TRUE(absl::SimpleAtoi(f[3], &s.queue));
        EXPECT_TRUE(absl::SimpleAtoi(f[4], &s.offset));
        ledger.expiring[f[1]] = s;
      } else if (tag == "d" && f.size() == 2) {
        ledger.delayed.insert(f[1]);
      } else if (tag == "H" && f.size() == 3) {
        ledger.halves[f[1]] = f[2];
      } else if (tag == "L" && f.size() == 3) {
        ledger.local[f[1]] = f[2] == "1";
      } else if (tag == "C" && f.size() == 2) {
        ledger.committed.insert(f[1]);
      } else if (tag == "K" && f.size() == 2) {
        ledger.received.insert(f[1]);
      } else if (tag == "X") {
        ledger.violations.emplace_back(line);
      } else if (tag != "P" && tag != "B" && tag != "R" && tag != "S") {
        ADD_FAILURE() << "a ledger line the test does not know: " << line;
      }
    }
    return ledger;
  }
};

// The orders whose local transaction committed, from the child's database.
std::set<std::string> CommittedOrders(const std::string& db_path) {
  std::set<std::string> orders;
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db_path;
    sqlite3_close(db);
    return orders;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT order_id FROM orders", -1, &stmt,
                         nullptr) == SQLITE_OK) {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      orders.insert(
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return orders;
}

class Torture {
 public:
  Torture()
      : seed_(
            EnvInt("TXMQ_TORTURE_SEED",
                   static_cast<int64_t>(std::random_device{}() & 0x7fffffff))),
        rng_(seed_),
        dir_(tmp_.Sub("data")),
        db_(tmp_.Sub("orders.db")),
        ledger_(tmp_.Sub("ledger.txt")) {
    std::printf("torture: seed %lld (replay: TXMQ_TORTURE_SEED=%lld)\n",
                static_cast<long long>(seed_), static_cast<long long>(seed_));
  }

  // Starts from a failure record (KeepRecord) instead of an empty
  // directory: its data directory, database and ledger.
  void LoadRecord(const std::string& record) {
    std::error_code ec;
    for (const char* name : {"data", "orders.db", "ledger.txt"}) {
      std::filesystem::copy(record + "/" + name, tmp_.Sub(name),
                            std::filesystem::copy_options::recursive, ec);
      ASSERT_FALSE(ec) << "cannot copy " << record << "/" << name << ": "
                       << ec.message();
    }
    std::printf("torture: checking the record %s\n", record.c_str());
  }

  // Checks the directory as it is (a loaded record).
  void CheckRecord() { CheckAsLeft(); }

  // One round: start the child, let it work for a random while, kill it,
  // check the directory as the kill left it.
  void Round() {
    {
      ChildProcess child(
          TortureChild(),
          {dir_, db_, ledger_, std::to_string(seed_), std::to_string(round_)},
          tmp_.Sub("child.err"));
      ASSERT_TRUE(child.ok()) << "round " << round_
                              << ": the child did not start: " << ChildErrors();
      absl::SleepFor(absl::Milliseconds(
          std::uniform_int_distribution<int>(20, 250)(rng_)));
      const int status = child.Kill();
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "round " << round_ << ": the child died on its own (status "
          << status << "): " << ChildErrors();
    }
    ++kills_;
    CheckAsLeft();
    ++round_;
  }

  // Reopens the broker with a checker and checks what must hold once
  // everything pending is resolved and due.
  void Final();

  void Report() const {
    std::printf(
        "torture: %d kills survived, %zu acknowledged sends checked, %zu "
        "transactions, %zu deliveries recorded, violations: %s\n",
        kills_, checked_plain_ + checked_expiring_, checked_orders_, received_,
        ::testing::Test::HasFailure() ? "SOME (see above)" : "0");
    ::testing::Test::RecordProperty("kills", kills_);
  }

  // Keeps what a failure needs to be looked at and replayed.
  void KeepRecord() const {
    const char* out_env = getenv("TXMQ_TORTURE_OUT");
    const std::string out =
        out_env != nullptr ? std::string(out_env)
                           : absl::StrCat("/tmp/txmq-torture-failure-", seed_);
    std::error_code ec;
    std::filesystem::remove_all(out, ec);
    std::filesystem::create_directories(out, ec);
    std::filesystem::copy(tmp_.path(), out,
                          std::filesystem::copy_options::recursive, ec);
    std::ofstream record(out + "/RECORD");
    record << "seed " << seed_ << "\nround " << round_ << "\nkills " << kills_
           << "\nreplay: TXMQ_TORTURE_SEED=" << seed_
           << " TXMQ_TORTURE_KILLS=" << round_ + 1
           << " build/tests/torture_test\n";
    std::printf("torture: failure record in %s\n", out.c_str());
  }

  int kills() const { return kills_; }

  // What the children wrote to stderr (the last 2 KiB).
  std::string ChildErrors() const {
    std::ifstream in(tmp_.Sub("child.err"));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    return text.size() > 2048 ? text.substr(text.size() - 2048) : text;
  }

 private:
  void CheckAsLeft();

  const int64_t seed_;
  std::mt19937_64 rng_;
  TempDir tmp_;
  const std::string dir_, db_, ledger_;
  int round_ = 0;
  int kills_ = 0;
  // What earlier rounds checked already.
  std::set<std::string> checked_tokens_;
  size_t checked_plain_ = 0, checked_expiring_ = 0, checked_orders_ = 0;
  size_t received_ = 0;
  std::vector<uint64_t> orders_read_ = std::vector<uint64_t>(2, 0);
  std::map<std::string, int> order_messages_;  // order -> messages seen
};

void Torture::CheckAsLeft() {
  const std::string when =
      absl::StrCat("round ", round_, " (seed ", seed_, ")");
  const Ledger ledger = Ledger::Read(ledger_);
  for (const std::string& v : ledger.violations) {
    ADD_FAILURE() << when << ": the child saw " << v;
  }
  ::txmq::testing::ExpectDirectoryVerifies(dir_, when);
  if (::testing::Test::HasFailure()) return;
  auto inspector = Inspector::Open(dir_);
  ASSERT_TRUE(inspector.ok()) << when << ": " << inspector.status();

  // 1: acknowledged sends are stored, intact (checked once each: nothing
  // deletes them later, and Verify covers the tables as a whole).
  auto check_sent = [&](const std::string& topic, const std::string& token,
                        const Ledger::Sent& sent, bool may_expire) {
    auto id = MessageId::Parse(sent.id);
    ASSERT_TRUE(id.ok()) << when << ": " << sent.id;
    auto stored = (*inspector)->GetMessage(*id);
    if (!stored.ok() && may_expire && absl::IsNotFound(stored.status())) {
      auto topics = (*inspector)->ListTopics();
      ASSERT_TRUE(topics.ok());
      for (const TopicInfo& t : *topics) {
        if (t.name != topic) continue;
        EXPECT_LT(sent.offset, t.queues[sent.queue].first_offset)
            << when << ": acknowledged message " << token << " (" << sent.id
            << ") is gone, but not by retention";
      }
      return;
    }
    ASSERT_TRUE(stored.ok())
        << when << ": acknowledged message " << token << " (" << sent.id
        << ") is lost: " << stored.status();
    EXPECT_EQ(stored->topic, topic) << when;
    EXPECT_EQ(stored->key, token) << when;
    EXPECT_TRUE(stored->body == BodyOf(token))
        << when << ": the body of " << token << " changed";
  };
  for (const auto& [token, sent] : ledger.plain) {
    if (!checked_tokens_.insert(token).second) continue;
    check_sent("plain", token, sent, false);
    ++checked_plain_;
  }
  for (const auto& [token, sent] : ledger.expiring) {
    if (!checked_tokens_.insert(token).second) continue;
    check_sent("expiring", token, sent, true);
    ++checked_expiring_;
  }
  received_ = ledger.received.size();

  // 2: what "orders" shows was committed locally, and is shown once.
  const std::set<std::string> local = CommittedOrders(db_);
  for (uint32_t q = 0; q < 2; ++q) {
    auto read = (*inspector)->Read("orders", q, orders_read_[q], SIZE_MAX);
    ASSERT_TRUE(read.ok()) << when << ": " << read.status();
    for (const StoredMessage& m : *read) {
      EXPECT_TRUE(local.contains(m.key))
          << when << ": order " << m.key
          << " is visible but its local transaction did not commit";
      EXPECT_EQ(++order_messages_[m.key], 1)
          << when << ": order " << m.key << " is visible twice";
      orders_read_[q] = m.offset + 1;
    }
  }
  // 3: a locally committed order is visible or pending, never lost.
  auto pending = (*inspector)->ListTransactions("order-service");
  ASSERT_TRUE(pending.ok()) << when << ": " << pending.status();
  std::set<std::string> pending_ids;
  for (const HalfMessageInfo& h : *pending) {
    pending_ids.insert(h.id.ToString());
  }
  for (const auto& [order, txid] : ledger.halves) {
    if (!local.contains(order)) continue;
    EXPECT_TRUE(order_messages_.contains(order) || pending_ids.contains(txid))
        << when << ": order " << order
        << " committed locally, but its message is neither visible nor "
           "pending";
  }
  checked_orders_ = ledger.halves.size();
}

// Resolves from the SQLite database, as the child's checker would after a
// restart.
class DbChecker final : public TransactionChecker {
 public:
  explicit DbChecker(std::set<std::string> committed)
      : committed_(std::move(committed)) {}
  TransactionState Check(const HalfMessage& half) override {
    return committed_.contains(std::string(half.message.key()))
               ? TransactionState::kCommit
               : TransactionState::kRollback;
  }

 private:
  const std::set<std::string> committed_;
};

void Torture::Final() {
  const std::string when =
      absl::StrCat("after ", kills_, " kills (seed ", seed_, ")");
  const Ledger ledger = Ledger::Read(ledger_);
  const std::set<std::string> local = CommittedOrders(db_);
  auto broker = Broker::Open(dir_);
  ASSERT_TRUE(broker.ok()) << when << ": " << broker.status();
  TXMQ_ASSERT_OK((*broker)->RegisterChecker(
      "order-service", std::make_shared<DbChecker>(local),
      {.transaction_timeout = absl::Milliseconds(10),
       .first_interval = absl::Milliseconds(10),
       .max_interval = absl::Milliseconds(50)}));
  // 3: every pending transaction gets resolved.
  EXPECT_TRUE(::txmq::testing::Eventually([&] {
    auto pending = (*broker)->ListTransactions("order-service");
    return pending.ok() && pending->empty();
  })) << when
      << ": transactions still pending";
  // 1: every acknowledged delayed message is delivered (the last were due
  // 400 ms after the last kill at most).
  auto consumer = (*broker)->CreateConsumer("final-delayed", "delayed");
  TXMQ_ASSERT_OK(consumer);
  std::set<std::string> delayed_seen;
  EXPECT_TRUE(::txmq::testing::Eventually([&] {
    auto batch = (*consumer)->Receive(10000, absl::Milliseconds(10));
    if (!batch.ok()) return false;
    for (const MessageView& m : *batch) {
      delayed_seen.insert(std::string(m.key()));
      EXPECT_TRUE(m.body() == BodyOf(std::string(m.key()))) << when;
    }
    for (const std::string& token : ledger.delayed) {
      if (!delayed_seen.contains(token)) return false;
    }
    return true;
  })) << when
      << ": acknowledged delayed messages never delivered";

  // 3: exactly the locally committed orders are visible, once each.
  auto orders = (*broker)->CreateConsumer("final-orders", "orders");
  TXMQ_ASSERT_OK(orders);
  std::map<std::string, int> visible;
  while (true) {
    auto batch = (*orders)->Receive(10000, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    for (const MessageView& m : *batch) ++visible[std::string(m.key())];
  }
  for (const auto& [order, txid] : ledger.halves) {
    const int seen = visible.contains(order) ? visible[order] : 0;
    EXPECT_EQ(seen, local.contains(order) ? 1 : 0)
        << when << ": order " << order << " (transaction " << txid
        << ") committed locally: " << local.contains(order);
  }
  for (const auto& [order, n] : visible) {
    EXPECT_TRUE(local.contains(order))
        << when << ": order " << order << " visible without a local commit";
  }

  // 5: every stored message of "plain" reached group "workers" at least
  // once: before a kill (the ledger's K lines) or now.
  auto workers = (*broker)->CreateConsumer("workers", "plain");
  TXMQ_ASSERT_OK(workers);
  std::set<std::string> delivered = ledger.received;
  while (true) {
    auto batch = (*workers)->Receive(10000, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    for (const MessageView& m : *batch) delivered.insert(m.id().ToString());
  }
  auto all = (*broker)->CreateConsumer("final-plain", "plain");
  TXMQ_ASSERT_OK(all);
  size_t stored = 0;
  while (true) {
    auto batch = (*all)->Receive(10000, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    for (const MessageView& m : *batch) {
      ++stored;
      EXPECT_TRUE(delivered.contains(m.id().ToString()))
          << when << ": message " << m.id().ToString()
          << " was never delivered to group workers";
    }
  }
  EXPECT_GE(stored, ledger.plain.size()) << when;
}

TEST(TortureTest, EveryGuaranteeHoldsAcrossRandomKills) {
  Torture torture;
  if (const char* record = getenv("TXMQ_TORTURE_RECORD")) {
    // Replays the checks on a failure record: as the kill left it, then
    // after recovery.
    torture.LoadRecord(record);
    torture.CheckRecord();
    if (!::testing::Test::HasFailure()) torture.Final();
    return;
  }
  const int64_t seconds = EnvInt("TXMQ_TORTURE_SECONDS", 0);
  const int64_t kills = EnvInt("TXMQ_TORTURE_KILLS", 200);
  const absl::Time until = absl::Now() + absl::Seconds(seconds);
  while (!::testing::Test::HasFailure() &&
         (seconds > 0 ? absl::Now() < until : torture.kills() < kills)) {
    torture.Round();
  }
  if (!::testing::Test::HasFailure()) torture.Final();
  torture.Report();
  if (::testing::Test::HasFailure()) torture.KeepRecord();
  EXPECT_GT(torture.kills(), 0);
}

}  // namespace
}  // namespace txmq
