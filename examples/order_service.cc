// The order service of the two-process example (README, "Two processes"):
// it embeds the broker, keeps its orders in its own SQLite database,
// publishes "order-created" transactionally, answers check-backs from that
// database, and serves the broker to other processes over RPC, where the
// inventory service (examples/inventory_service.cc) consumes.
//
//   build/examples/txmq-order-service DIR unix:/tmp/orders.sock [ORDERS]
//
// Places ORDERS orders (default 10; every fifth payment is declined: its
// local transaction rolls back and nothing is published), then serves until
// every published order is consumed by the group "inventory-service" (or
// Ctrl-C), and exits.

#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "order_db.h"
#include "txmq/rpc_server.h"
#include "txmq/txmq.h"

namespace {

using txmq_examples::OrderDb;

std::atomic<bool> interrupted{false};

void Say(const std::string& what) {
  std::printf("orders:    %s\n", what.c_str());
  std::fflush(stdout);
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "order service failed: %s\n", status.ToString().c_str());
  return 1;
}

class OrderChecker final : public txmq::TransactionChecker {
 public:
  explicit OrderChecker(OrderDb* db) : db_(db) {}
  txmq::TransactionState Check(const txmq::HalfMessage& half) override {
    return db_->HasTransaction(half.id.ToString())
               ? txmq::TransactionState::kCommit
               : txmq::TransactionState::kRollback;
  }

 private:
  OrderDb* const db_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: txmq-order-service DIR unix:/path/to.sock|HOST:PORT "
                 "[ORDERS]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const std::string listen = argv[2];
  const int count = argc > 3 ? std::atoi(argv[3]) : 10;
  std::filesystem::create_directories(dir);
  ::signal(SIGINT, [](int) { interrupted.store(true); });
  ::signal(SIGTERM, [](int) { interrupted.store(true); });

  OrderDb orders(dir + "/orders.db");
  auto broker = txmq::Broker::Open(dir + "/mq");
  if (!broker.ok()) return Fail(broker.status());
  absl::Status created = (*broker)->CreateTopic("order-created", {.queues = 2});
  if (!created.ok() && !absl::IsAlreadyExists(created)) return Fail(created);
  if (absl::Status s = (*broker)->RegisterChecker(
          "order-service", std::make_shared<OrderChecker>(&orders));
      !s.ok()) {
    return Fail(s);
  }
  // Other processes reach the broker here while this one keeps using it.
  auto server = txmq::RpcServer::Start(**broker, {.listen = listen});
  if (!server.ok()) return Fail(server.status());
  Say("serving the broker on " + (*server)->address());

  auto producer = (*broker)->CreateProducer({.group = "order-service"});
  if (!producer.ok()) return Fail(producer.status());
  static const char* kItems[] = {"keyboard", "monitor", "mouse", "laptop",
                                 "headphones"};
  int published = 0;
  for (int i = 0; i < count && !interrupted.load(); ++i) {
    const int order = 1001 + i;
    const std::string item = kItems[i % 5];
    const bool payment_ok = i % 5 != 4;
    auto result = (*producer)->SendInTransaction(
        {.topic = "order-created", .key = std::to_string(order), .body = item},
        [&](const txmq::TransactionId& txid) {
          if (!payment_ok || !orders.Insert(order, item, txid.ToString())) {
            return txmq::TransactionState::kRollback;
          }
          return txmq::TransactionState::kCommit;
        });
    if (!result.ok()) return Fail(result.status());
    if (result->sent.has_value()) {
      ++published;
      Say(absl::StrFormat("order %d (%s): saved, message published", order,
                          item));
    } else {
      Say(absl::StrFormat("order %d (%s): payment declined, nothing published",
                          order, item));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }

  // Serve until the inventory service has consumed everything.
  while (!interrupted.load()) {
    auto lag = (*broker)->DescribeGroup("inventory-service", "order-created");
    if (lag.ok() && lag->total() == 0 && published > 0) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  Say(
      absl::StrFormat("%d orders published, all consumed by the inventory "
                      "service; stopping",
                      published));
  (*server)->Stop();
  return 0;
}
