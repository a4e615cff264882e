// The order service of the transactional kill -9 tests, run as a separate
// process: it writes orders to its own SQLite database and publishes
// "order-created" transactionally, and dies at a chosen point.
//
//   txmq_txn_child DIR DB MODE
//     MODE a       dies (SIGKILL to itself) after a Begin, before the local
//                  transaction
//     MODE b       dies after the local transaction committed, before Commit
//     MODE c       dies while Commit runs
//     MODE random  runs until the parent kills it
//   In a, b and c it first completes a few normal transactions.
//
// Each transaction: Begin(message keyed by the order id); the local
// transaction inserts (order_id, txid) in SQLite (WAL, synchronous=FULL),
// for 4 orders out of 5 (the fifth "fails" and inserts nothing); then
// Commit or Rollback accordingly.

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "txmq/txmq.h"

namespace {

int Die(const std::string& what) {
  std::fprintf(stderr, "txmq_txn_child: %s\n", what.c_str());
  return 2;
}

bool Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite: %s\n", error != nullptr ? error : "?");
    sqlite3_free(error);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return Die("usage: DIR DB a|b|c|random");
  const std::string dir = argv[1], db_path = argv[2], mode = argv[3];
  auto broker = txmq::Broker::Open(dir);
  if (!broker.ok()) return Die(broker.status().ToString());
  absl::Status created = (*broker)->CreateTopic("order-created", {.queues = 2});
  if (!created.ok() && !absl::IsAlreadyExists(created)) {
    return Die(created.ToString());
  }
  auto producer = (*broker)->CreateProducer({.group = "order-service"});
  if (!producer.ok()) return Die(producer.status().ToString());

  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK)
    return Die("sqlite open");
  if (!Exec(db,
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
            "CREATE TABLE IF NOT EXISTS orders ("
            "order_id INTEGER PRIMARY KEY, txid TEXT UNIQUE NOT NULL)")) {
    return 2;
  }
  std::printf("ready\n");
  std::fflush(stdout);

  std::mt19937_64 rng(std::random_device{}());
  const int crash_at = mode == "random" ? -1 : 3 + static_cast<int>(rng() % 10);
  for (int i = 0;; ++i) {
    const int64_t order = static_cast<int64_t>(rng() >> 2);
    // At the crash point of b and c the local transaction commits (that is
    // the case they test); elsewhere 1 in 5 fails and inserts nothing.
    const bool local_commits = (i == crash_at && mode != "a") || rng() % 5 != 0;
    auto txn =
        (*producer)->Begin({.topic = "order-created",
                            .key = std::to_string(order),
                            .properties = {{"order", std::to_string(order)}},
                            .body = absl::StrFormat("{\"order\": %d}", order)},
                           {.first_check = absl::Milliseconds(50)});
    if (!txn.ok()) return Die(txn.status().ToString());
    if (i == crash_at && mode == "a") raise(SIGKILL);
    if (local_commits &&
        !Exec(db, absl::StrFormat("INSERT INTO orders VALUES (%d, '%s')", order,
                                  (*txn)->id().ToString()))) {
      return 2;
    }
    if (i == crash_at && local_commits && mode == "b") raise(SIGKILL);
    if (i == crash_at && local_commits && mode == "c") {
      std::thread killer([&rng] {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
        raise(SIGKILL);
      });
      killer.detach();
    }
    absl::Status resolved =
        local_commits ? (*txn)->Commit().status() : (*txn)->Rollback();
    if (!resolved.ok()) return Die(resolved.ToString());
    if (i == crash_at && mode == "c") {
      pause();  // the killer thread ends it
    }
  }
}
