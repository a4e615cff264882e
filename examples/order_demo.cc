// The seed's scenario, end to end, in a few seconds: an order service writes
// orders to its own SQLite database and publishes "order-created" as a
// transactional message; an inventory service (a consumer group) reserves
// stock for each order it receives. One local transaction fails (nothing is
// published) and one order is interrupted after its local commit, before
// the message is committed, as a crash would leave it; the broker checks
// back with the order service, which finds the order in its database, and
// the message is delivered after all.
//
//   build/examples/txmq-order-demo [DIR]
//   (DIR is emptied first and kept; without it a temporary directory is
//   used and removed at the end)

#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "order_db.h"
#include "txmq/txmq.h"

namespace {

using txmq_examples::OrderDb;

void Say(const std::string& who, const std::string& what) {
  static absl::Mutex mu;
  absl::MutexLock lock(&mu);
  std::printf("%-10s %s\n", (who + ":").c_str(), what.c_str());
  std::fflush(stdout);
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "demo failed: %s\n", status.ToString().c_str());
  return 1;
}

// What the broker asks when a transaction's outcome is unknown.
class OrderChecker final : public txmq::TransactionChecker {
 public:
  explicit OrderChecker(OrderDb* db) : db_(db) {}
  txmq::TransactionState Check(const txmq::HalfMessage& half) override {
    const bool found = db_->HasTransaction(half.id.ToString());
    Say("broker",
        absl::StrFormat("check-back for transaction %s (order %s): %s",
                        half.id.ToString().substr(0, 12) + "...",
                        std::string(half.message.key()),
                        found ? "the order is in the orders table -> COMMIT"
                              : "no such order -> ROLLBACK"));
    return found ? txmq::TransactionState::kCommit
                 : txmq::TransactionState::kRollback;
  }

 private:
  OrderDb* const db_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  bool temporary = false;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/txmq-order-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
    temporary = true;
  }
  // A fresh directory: the demo's order ids are fixed.
  std::error_code ec;
  std::filesystem::remove_all(dir + "/mq", ec);
  std::filesystem::remove(dir + "/orders.db", ec);
  std::filesystem::remove(dir + "/orders.db-wal", ec);
  std::filesystem::remove(dir + "/orders.db-shm", ec);
  Say("setup", "broker data in " + dir + "/mq, orders in " + dir +
                   "/orders.db" +
                   (temporary ? " (a temporary directory)" : ""));
  OrderDb orders(dir + "/orders.db");
  auto broker = txmq::Broker::Open(dir + "/mq");
  if (!broker.ok()) return Fail(broker.status());
  absl::Status created = (*broker)->CreateTopic("order-created", {.queues = 2});
  if (!created.ok() && !absl::IsAlreadyExists(created)) return Fail(created);
  txmq::CheckPolicy policy;
  policy.transaction_timeout = absl::Seconds(1);  // RocketMQ's default: 6 s
  if (absl::Status s = (*broker)->RegisterChecker(
          "order-service", std::make_shared<OrderChecker>(&orders), policy);
      !s.ok()) {
    return Fail(s);
  }

  // The inventory service: a consumer group on its own thread.
  std::atomic<int> reserved{0};
  std::atomic<bool> stop{false};
  std::thread inventory([&] {
    auto consumer =
        (*broker)->CreateConsumer("inventory-service", "order-created");
    if (!consumer.ok()) return;
    while (!stop.load()) {
      auto batch = (*consumer)->Receive(16, absl::Milliseconds(100));
      if (!batch.ok()) return;
      for (const txmq::MessageView& m : *batch) {
        Say("inventory",
            absl::StrFormat("order %s received: reserve one %s",
                            std::string(m.key()), std::string(m.body())));
        reserved.fetch_add(1);
      }
      (void)(*consumer)->Ack(*batch);
    }
  });

  auto producer = (*broker)->CreateProducer({.group = "order-service"});
  if (!producer.ok()) return Fail(producer.status());
  struct Order {
    int id;
    std::string item;
    bool payment_ok;
  };
  const Order placed[] = {{1001, "keyboard", true},
                          {1002, "monitor", true},
                          {1003, "mouse", false},
                          {1004, "laptop", true}};
  for (const Order& order : placed) {
    const txmq::Message message{.topic = "order-created",
                                .key = std::to_string(order.id),
                                .body = order.item};
    auto result = (*producer)->SendInTransaction(
        message, [&](const txmq::TransactionId& txid) {
          // The local transaction: the order row, with the transaction id.
          if (!order.payment_ok ||
              !orders.Insert(order.id, order.item, txid.ToString())) {
            Say("orders", absl::StrFormat("order %d (%s): payment declined, "
                                          "local rollback",
                                          order.id, order.item));
            return txmq::TransactionState::kRollback;
          }
          Say("orders", absl::StrFormat("order %d (%s): saved locally, "
                                        "committing the message",
                                        order.id, order.item));
          return txmq::TransactionState::kCommit;
        });
    if (!result.ok()) return Fail(result.status());
    if (!result->sent.has_value()) {
      Say("orders", absl::StrFormat("order %d: message rolled back, nothing "
                                    "published",
                                    order.id));
    }
  }

  // Order 1005: the half message is stored and the order saved, and then
  // the service "crashes" before it can commit the message.
  {
    auto txn = (*producer)->Begin(
        {.topic = "order-created", .key = "1005", .body = "headphones"});
    if (!txn.ok()) return Fail(txn.status());
    orders.Insert(1005, "headphones", (*txn)->id().ToString());
    Say("orders",
        "order 1005 (headphones): saved locally, then the service stops "
        "before Commit (the message stays a half message, invisible)");
  }
  Say("broker", absl::StrFormat("%d half message pending; it will be checked "
                                "back after the 1 s transaction timeout",
                                (*broker)->Stats().pending_transactions));

  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (reserved.load() < 4 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  stop.store(true);
  inventory.join();
  const txmq::BrokerStats stats = (*broker)->Stats();
  Say("summary",
      absl::StrFormat("4 orders saved locally, 4 reserved by inventory, 1 "
                      "rolled back, %d pending, %d check-backs",
                      stats.pending_transactions, stats.checks));
  if (reserved.load() != 4 || stats.pending_transactions != 0) {
    return Fail(absl::InternalError("the order and the messages disagree"));
  }
  if (temporary) {
    producer->reset();
    broker->reset();
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}
