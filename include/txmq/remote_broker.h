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
#include "txmq/producer.h"
#include "txmq/transaction.h"

namespace txmq {

struct ConnectOptions {
  // The server's shared token (a TCP server requires it).
  std::string token;
  // How long Connect waits for the connection and the login.
  absl::Duration connect_timeout = absl::Seconds(10);
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
};

}  // namespace txmq

#endif  // TXMQ_REMOTE_BROKER_H_
