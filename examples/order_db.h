// The order service's own database (SQLite), shared by the order examples:
// one row per order, with the transaction id of its message, written in the
// local transaction; the checker looks transactions up in it.

#ifndef TXMQ_EXAMPLES_ORDER_DB_H_
#define TXMQ_EXAMPLES_ORDER_DB_H_

#include <sqlite3.h>

#include <string>

#include "absl/synchronization/mutex.h"

namespace txmq_examples {

class OrderDb {
 public:
  explicit OrderDb(const std::string& path) {
    sqlite3_open(path.c_str(), &db_);
    sqlite3_exec(db_,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY "
                 "KEY, item TEXT, txid TEXT UNIQUE)",
                 nullptr, nullptr, nullptr);
  }
  ~OrderDb() { sqlite3_close(db_); }

  bool Insert(int order, const std::string& item, const std::string& txid) {
    absl::MutexLock lock(&mu_);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db_, "INSERT INTO orders VALUES (?, ?, ?)", -1, &stmt,
                       nullptr);
    sqlite3_bind_int(stmt, 1, order);
    sqlite3_bind_text(stmt, 2, item.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, txid.c_str(), -1, SQLITE_TRANSIENT);
    const bool ok = sqlite3_step(stmt) == SQLITE_DONE;
    sqlite3_finalize(stmt);
    return ok;
  }

  bool HasTransaction(const std::string& txid) {
    absl::MutexLock lock(&mu_);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db_, "SELECT 1 FROM orders WHERE txid = ?", -1, &stmt,
                       nullptr);
    sqlite3_bind_text(stmt, 1, txid.c_str(), -1, SQLITE_TRANSIENT);
    const bool found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_finalize(stmt);
    return found;
  }

 private:
  absl::Mutex mu_;
  sqlite3* db_ = nullptr;
};

}  // namespace txmq_examples

#endif  // TXMQ_EXAMPLES_ORDER_DB_H_
