// RemoteBroker: a broker served by another process (txmq::RpcServer, or
// `txmq serve`), reached over Cap'n Proto RPC. Its producers are the same
// txmq::Producer as in-process ones, so code moves between an embedded and
// a remote broker with a changed constructor:
//
//   auto remote = txmq::RemoteBroker::Connect("unix:/run/orders/mq.sock", {});
//   if (!remote.ok()) return remote.status();
//   auto producer = (*remote)->CreateProducer({.group = "order-service"});
//   auto result = (*producer)->Send({.topic = "order-created", .body = "..."});
//
// Errors are those of the in-process API, carried over the wire, plus
// UNAVAILABLE when a call gets no answer (the connection broke, the server
// stopped): the call may or may not have taken effect, as with any remote
// call; a send that got UNAVAILABLE may be stored.
//
// Threads: thread-safe. One thread per RemoteBroker runs the connection;
// calls from any thread wait on it. Callbacks (SendAsync) run on a separate
// callback thread, in completion order, and may call any method.
//
// Lifetime: destroy producers (and their transactions) before the
// RemoteBroker.

#ifndef TXMQ_REMOTE_BROKER_H_
#define TXMQ_REMOTE_BROKER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/broker.h"
#include "txmq/consumer.h"
#include "txmq/producer.h"
#include "txmq/transaction.h"

namespace txmq {

struct ConnectOptions {
  // The server's shared token (a TCP server requires it).
  std::string token;
  // How long Connect waits for the connection and the login.
  absl::Duration connect_timeout = absl::Seconds(10);
  // Flow control of each consumer: the messages received and not yet
  // settled (acknowledged, given back with ReconsumeLater, or past their
  // invisible duration) are at most this many; a Receive beyond that
  // returns an empty batch until some are settled. The server holds no
  // more than this per consumer.
  uint32_t max_in_flight = 1024;
};

class RemoteBroker {
 public:
  // Connects to "unix:/path" or "host:port" and logs in. Errors:
  // UNAVAILABLE (nothing answers there, or no answer in time),
  // PERMISSION_DENIED (the token was refused), INVALID_ARGUMENT (a bad
  // address).
  static absl::StatusOr<std::unique_ptr<RemoteBroker>> Connect(
      std::string_view address, const ConnectOptions& options = {});

  // Disconnects. Calls in progress on other threads fail with UNAVAILABLE.
  virtual ~RemoteBroker() = default;

  // As Broker's.
  virtual absl::Status CreateTopic(std::string_view name,
                                   const TopicOptions& options = {}) = 0;
  virtual absl::Status DeleteTopic(std::string_view name) = 0;
  virtual absl::StatusOr<std::vector<TopicInfo>> ListTopics() = 0;
  virtual absl::StatusOr<TopicInfo> DescribeTopic(std::string_view name) = 0;

  // A producer whose sends are stored by the server's broker (durable as
  // the server's Options::durability says before they return).
  // Transactions: Begin stores the half message and returns a Transaction
  // whose Commit and Rollback resolve it by id; if this client goes away
  // between Begin and Commit, the server's check-back resolves it (the
  // group's checker registered with the server's broker).
  virtual absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const ProducerOptions& options = {}) = 0;

  virtual absl::StatusOr<SendResult> CommitTransaction(
      const TransactionId& id) = 0;
  virtual absl::Status RollbackTransaction(const TransactionId& id) = 0;

  // The checker of producer group `group` runs in this process: the
  // server's broker calls it back (over this connection, on a thread of
  // this RemoteBroker's) for check-backs, until UnregisterChecker, or this
  // RemoteBroker or its connection ends (then the group has no checker
  // until one registers again; its half messages wait, uncounted). A later
  // registration of the group, by anyone, replaces this one. Errors: as
  // Broker::RegisterChecker.
  virtual absl::Status RegisterChecker(
      std::string_view group, std::shared_ptr<TransactionChecker> checker,
      const CheckPolicy& policy = {}) = 0;
  // Errors: NOT_FOUND when this connection has no checker for `group`.
  virtual absl::Status UnregisterChecker(std::string_view group) = 0;

  // A consumer of `topic` in consumer group `group` on the server's
  // broker, with the in-process Consumer's calls and guarantees. Its
  // batches hold copies of the messages (not views into the server's
  // file), so they may be held as long as needed; what is held counts
  // against ConnectOptions::max_in_flight until acknowledged. Acknowledge
  // through the views (Ack(view), Ack(batch)); Ack(queue, offset) as in
  // process. Destroy consumers before the RemoteBroker. Errors: as
  // Broker::CreateConsumer.
  virtual absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(
      std::string_view group, std::string_view topic,
      const ConsumerOptions& options = {}) = 0;
};

}  // namespace txmq

#endif  // TXMQ_REMOTE_BROKER_H_
