// The workload of the crash-torture test (tests/torture/torture_test.cc),
// run as a separate process that the test kills with SIGKILL at a random
// moment, over and over, on the same directory:
//
//   txmq_torture_child DIR DB LEDGER SEED ROUND
//
// It opens DIR (kSync), prints "ready", and runs until killed:
//   - 2 threads send to "plain" (4 queues, kept forever): a unique token as
//     key, a body derived from it (BodyOf), random tags and properties;
//   - 1 thread sends to "expiring" (2 queues, 1 s retention, swept every
//     200 ms);
//   - 1 thread sends delayed messages to "delayed" (due in 20-400 ms);
//   - 1 thread runs transactions for producer group "order-service":
//     Begin("orders", key = order id), then the local transaction in its
//     own SQLite database DB (4 in 5 insert the order, 1 in 5 roll back),
//     then Commit or Rollback, except 1 in 8 that leave the outcome to the
//     check-back. Its checker answers from DB: a row commits; no row rolls
//     back, unless the order is still in flight in this process (unknown);
//   - 2 consumers of group "workers" on "plain", acknowledging everything
//     and flushing now and then; each checks that a queue's offsets only
//     grow within its session.
//
// The LEDGER (a file of its own, O_APPEND, one write per line, fdatasync
// after each) records what the workload was told, before and after each
// operation; the test checks the directory against it after each kill:
//   P <token>                     about to send to "plain"
//   p <token> <id>                that send returned OK
//   e <token> <id> <queue> <off>  a send to "expiring" returned OK
//   d <token>                     a delayed send returned OK
//   B <order>                     about to Begin
//   H <order> <txid>              Begin returned OK (the half is durable)
//   L <order> 1|0                 the local transaction committed (1, the
//                                 row is in DB) or rolled back (0)
//   C <order> / R <order>         Commit / Rollback returned OK
//   K <id>                        a consumer got the message (before Ack)
//   X <text>                      a violation the child saw itself
//   S <round> [after-torn-line]   a child starts; the kill had torn the
//                                 line before it
// The kill may tear the last line a child wrote: the next child ends it
// and says so, and the reader ignores it (and an unterminated last line).
//
// SEED and ROUND make the tokens unique across rounds and the workload's
// choices reproducible (thread timing is not).

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "torture/torture_common.h"
#include "txmq/txmq.h"

namespace {

using txmq::torture::BodyOf;

int Die(const std::string& what) {
  std::fprintf(stderr, "txmq_torture_child: %s\n", what.c_str());
  std::fflush(stderr);
  _exit(2);
}

class Ledger {
 public:
  explicit Ledger(const std::string& path)
      : fd_(open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
    if (fd_ < 0) Die("cannot open the ledger " + path);
  }
  // Ends a line the last kill tore, and marks where this round begins
  // ("S <round> after-torn-line" when the line before it is torn: the test
  // ignores that line).
  void StartRound(const std::string& round) {
    struct stat st;
    char last = '\n';
    if (fstat(fd_, &st) == 0 && st.st_size > 0 &&
        pread(fd_, &last, 1, st.st_size - 1) != 1) {
      Die("cannot read the ledger");
    }
    AddText(last == '\n' ? "S " + round + "\n"
                         : "\nS " + round + " after-torn-line\n");
  }
  void Add(const std::string& line) { AddText(line + "\n"); }
  // Several lines in one write and one flush.
  void AddAll(const std::vector<std::string>& lines) {
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    if (!text.empty()) AddText(text);
  }

 private:
  void AddText(const std::string& text) {
    if (write(fd_, text.data(), text.size()) !=
        static_cast<ssize_t>(text.size())) {
      Die("cannot write the ledger");
    }
    fdatasync(fd_);
  }

  const int fd_;
};

class Sqlite {
 public:
  explicit Sqlite(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) Die("sqlite open");
    sqlite3_busy_timeout(db_, 5000);
    Exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
        "CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY)");
  }
  ~Sqlite() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    absl::MutexLock lock(&mu_);
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      Die(absl::StrCat("sqlite: ", error != nullptr ? error : "?"));
    }
  }
  bool Has(const std::string& order) {
    absl::MutexLock lock(&mu_);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db_, "SELECT 1 FROM orders WHERE order_id = ?", -1,
                       &stmt, nullptr);
    sqlite3_bind_text(stmt, 1, order.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) Die("sqlite select");
    return rc == SQLITE_ROW;
  }

 private:
  absl::Mutex mu_;
  sqlite3* db_ = nullptr;
};

// Orders between Begin and their resolution in this process.
class InFlight {
 public:
  void Add(const std::string& order) {
    absl::MutexLock lock(&mu_);
    orders_.insert(order);
  }
  void Remove(const std::string& order) {
    absl::MutexLock lock(&mu_);
    orders_.erase(order);
  }
  bool Has(const std::string& order) {
    absl::MutexLock lock(&mu_);
    return orders_.contains(order);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> orders_;
};

class Checker final : public txmq::TransactionChecker {
 public:
  Checker(Sqlite* db, InFlight* in_flight) : db_(db), in_flight_(in_flight) {}
  txmq::TransactionState Check(const txmq::HalfMessage& half) override {
    const std::string order(half.message.key());
    // Decided by the row, read before the in-flight set: a row inserted
    // after the read but before the set is looked at is still in flight.
    if (db_->Has(order)) return txmq::TransactionState::kCommit;
    if (in_flight_->Has(order)) return txmq::TransactionState::kUnknown;
    if (db_->Has(order)) return txmq::TransactionState::kCommit;
    return txmq::TransactionState::kRollback;
  }

 private:
  Sqlite* const db_;
  InFlight* const in_flight_;
};

const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// Runs `call` again while it fails with UNAVAILABLE: the writer fails a
// batch so when a map growth waited 2 s for held batches (a consumer
// writing its ledger under load). Nothing of such a batch was stored; a
// real service retries too.
template <typename F>
auto Retry(F&& call) {
  while (true) {
    auto result = call();
    if (!absl::IsUnavailable(StatusOf(result))) return result;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void Ensure(txmq::Broker& broker, const std::string& topic,
            const txmq::TopicOptions& options) {
  absl::Status s = broker.CreateTopic(topic, options);
  if (!s.ok() && !absl::IsAlreadyExists(s)) Die(s.ToString());
}

txmq::Message Plain(const std::string& topic, const std::string& token,
                    std::mt19937_64& rng) {
  txmq::Message m{.topic = topic, .key = token, .body = BodyOf(token)};
  if (rng() % 2 == 0) m.tags.push_back(absl::StrCat("t", rng() % 4));
  if (rng() % 3 == 0) m.properties.emplace_back("p", token);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) Die("usage: DIR DB LEDGER SEED ROUND");
  const std::string dir = argv[1], db_path = argv[2], ledger_path = argv[3];
  const std::string seed = argv[4], round = argv[5];
  const std::string prefix = absl::StrCat(seed, "-", round, "-");
  uint64_t seed_value = 0;
  for (char c : prefix) seed_value = seed_value * 131 + c;

  txmq::Options options;
  options.initial_map_bytes = size_t{4} << 20;  // grows under the workload
  options.retention_check_interval = absl::Milliseconds(200);
  auto opened = txmq::Broker::Open(dir, options);
  if (!opened.ok()) Die(opened.status().ToString());
  txmq::Broker& broker = **opened;
  Ensure(broker, "plain", {.queues = 4});
  Ensure(broker, "expiring", {.queues = 2, .retention = absl::Seconds(1)});
  Ensure(broker, "delayed", {.queues = 2});
  Ensure(broker, "orders", {.queues = 2});

  Ledger ledger(ledger_path);
  ledger.StartRound(round);
  Sqlite db(db_path);
  InFlight in_flight;
  absl::Status registered = broker.RegisterChecker(
      "order-service", std::make_shared<Checker>(&db, &in_flight),
      {.transaction_timeout = absl::Milliseconds(100),
       .max_checks = 1000000,
       .first_interval = absl::Milliseconds(50),
       .max_interval = absl::Milliseconds(200)});
  if (!registered.ok()) Die(registered.ToString());

  std::printf("ready\n");
  std::fflush(stdout);

  std::vector<std::thread> threads;
  // Plain senders.
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed_value + t);
      auto producer = broker.CreateProducer();
      if (!producer.ok()) Die(producer.status().ToString());
      for (uint64_t n = 0;; ++n) {
        const std::string token = absl::StrCat(prefix, "p", t, "-", n);
        ledger.Add("P " + token);
        const txmq::Message m = Plain("plain", token, rng);
        auto sent = Retry([&] { return (*producer)->Send(m); });
        if (!sent.ok()) Die(sent.status().ToString());
        ledger.Add(absl::StrCat("p ", token, " ", sent->id.ToString()));
      }
    });
  }
  // Expiring sender.
  threads.emplace_back([&] {
    std::mt19937_64 rng(seed_value + 10);
    auto producer = broker.CreateProducer();
    if (!producer.ok()) Die(producer.status().ToString());
    for (uint64_t n = 0;; ++n) {
      const std::string token = absl::StrCat(prefix, "e", n);
      const txmq::Message m = Plain("expiring", token, rng);
      auto sent = Retry([&] { return (*producer)->Send(m); });
      if (!sent.ok()) Die(sent.status().ToString());
      ledger.Add(absl::StrCat("e ", token, " ", sent->id.ToString(), " ",
                              sent->queue, " ", sent->offset));
    }
  });
  // Delayed sender.
  threads.emplace_back([&] {
    std::mt19937_64 rng(seed_value + 20);
    auto producer = broker.CreateProducer();
    if (!producer.ok()) Die(producer.status().ToString());
    for (uint64_t n = 0;; ++n) {
      const std::string token = absl::StrCat(prefix, "d", n);
      txmq::Message m = Plain("delayed", token, rng);
      m.deliver_at = absl::Now() + absl::Milliseconds(20 + rng() % 380);
      auto sent = Retry([&] { return (*producer)->Send(m); });
      if (!sent.ok()) Die(sent.status().ToString());
      ledger.Add("d " + token);
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  // Transactions.
  threads.emplace_back([&] {
    std::mt19937_64 rng(seed_value + 30);
    auto producer = broker.CreateProducer({.group = "order-service"});
    if (!producer.ok()) Die(producer.status().ToString());
    for (uint64_t n = 0;; ++n) {
      const std::string order = absl::StrCat(prefix, "o", n);
      const bool local_commits = rng() % 5 != 0;
      const bool leave_to_check = rng() % 8 == 0;
      in_flight.Add(order);
      ledger.Add("B " + order);
      auto txn = Retry([&] {
        return (*producer)->Begin(
            {.topic = "orders", .key = order, .body = BodyOf(order)},
            {.first_check = absl::Milliseconds(100)});
      });
      if (!txn.ok()) Die(txn.status().ToString());
      ledger.Add(absl::StrCat("H ", order, " ", (*txn)->id().ToString()));
      if (local_commits) {
        db.Exec(absl::StrFormat("INSERT INTO orders VALUES ('%s')", order));
      }
      ledger.Add(absl::StrCat("L ", order, " ", local_commits ? 1 : 0));
      if (leave_to_check) {
        in_flight.Remove(order);  // as if this process had died
        continue;
      }
      if (local_commits) {
        auto committed = Retry([&] { return (*txn)->Commit(); });
        if (!committed.ok()) Die("commit: " + committed.status().ToString());
        ledger.Add("C " + order);
      } else {
        absl::Status rolled_back = Retry([&] { return (*txn)->Rollback(); });
        if (!rolled_back.ok()) Die("rollback: " + rolled_back.ToString());
        ledger.Add("R " + order);
      }
      in_flight.Remove(order);
    }
  });
  // Consumers.
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&, c] {
      auto consumer = broker.CreateConsumer("workers", "plain");
      if (!consumer.ok()) Die(consumer.status().ToString());
      std::vector<int64_t> last(4, -1);
      for (int n = 0;; ++n) {
        auto batch = Retry(
            [&] { return (*consumer)->Receive(16, absl::Milliseconds(50)); });
        if (!batch.ok()) Die(batch.status().ToString());
        std::vector<std::string> lines;
        for (const txmq::MessageView& m : *batch) {
          if (static_cast<int64_t>(m.offset()) <= last[m.queue()]) {
            lines.push_back(
                absl::StrFormat("X consumer %d: queue %d went from %d to %d", c,
                                m.queue(), last[m.queue()], m.offset()));
          }
          last[m.queue()] = static_cast<int64_t>(m.offset());
          lines.push_back("K " + m.id().ToString());
        }
        ledger.AddAll(lines);
        absl::Status acked = (*consumer)->Ack(*batch);
        if (!acked.ok()) Die(acked.ToString());
        if (n % 8 == 7) (*consumer)->Flush().IgnoreError();
      }
    });
  }
  for (auto& t : threads) t.join();
}
