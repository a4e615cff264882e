// Producer: sends messages to topics.
//
// Obtain one from Broker::CreateProducer. Every send is durable according to
// the broker's Options::durability when it completes OK:
//   kSync   the message is on disk (fsync): it survives kill -9 and power
//           loss.
//   kAsync  the message is committed to the data file (it survives kill -9);
//           it reaches the disk within Options::async_sync_interval.
// Sends from many threads are committed together (group commit), so
// throughput grows with the number of concurrent senders.
//
// Errors every send may return:
//   NOT_FOUND           the topic does not exist (create it with
//                       Broker::CreateTopic or 'txmq topic create').
//   INVALID_ARGUMENT    the message breaks a limit (include/txmq/message.h,
//                       Options::max_message_bytes); nothing was stored.
//   RESOURCE_EXHAUSTED  the disk is full or Options::max_map_bytes reached;
//                       nothing was stored; retry once space is freed.
//   UNAVAILABLE         the broker is closing, or the map had to grow while
//                       received batches were held for over 2 s (release
//                       them and retry).
//   DATA_LOSS/INTERNAL  the data file is damaged or the disk failed.
// A send that returns an error stored nothing; a batch is all or nothing.
//
// Thread-safe: one Producer may be shared by any number of threads. A
// Producer must be destroyed before the Broker that made it.

#ifndef TXMQ_PRODUCER_H_
#define TXMQ_PRODUCER_H_

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "txmq/message.h"
#include "txmq/transaction.h"

namespace txmq {

// How a producer picks the queue of a message within its topic.
enum class QueueSelector {
  // kKeyHash when the message has a key, else kRoundRobin.
  kAuto,
  // A stable hash of the key (the same in every process and after restarts):
  // one key always lands on one queue, so its messages keep their order.
  // Messages without a key go to queue 0.
  kKeyHash,
  // Each send to a topic takes the next queue (per producer).
  kRoundRobin,
};

struct ProducerOptions {
  // The producer group: whose TransactionChecker answers for this
  // producer's transactions (Broker::RegisterChecker). Required for Begin;
  // may be empty for plain sends.
  std::string group;
  QueueSelector selector = QueueSelector::kAuto;
};

class Producer {
 public:
  // Called once with the outcome of an asynchronous send, on the broker's
  // callback thread, in completion order. It should be quick: it delays the
  // callbacks behind it (not the writer). It may call any Producer method.
  using SendCallback = std::function<void(absl::StatusOr<SendResult>)>;

  virtual ~Producer() = default;

  // Stores `message` and returns what the broker assigned, after it is
  // durable (see above). Blocks the calling thread. A message whose
  // deliver_at is ahead is stored delayed (SendResult::delayed()): its queue
  // is chosen now, its offset and id when it is delivered. Errors:
  // NOT_FOUND (unknown topic), INVALID_ARGUMENT (limits, or deliver_at more
  // than 366 days ahead), RESOURCE_EXHAUSTED (map at max_map_bytes).
  virtual absl::StatusOr<SendResult> Send(const Message& message) = 0;

  // Encodes and queues `message` now, returns at once, and calls `done`
  // when it is durable or has failed. Validation errors are reported
  // through `done` too. `message` may be reused as soon as this returns.
  virtual void SendAsync(const Message& message, SendCallback done) = 0;

  // As above, with a future instead of a callback.
  virtual std::future<absl::StatusOr<SendResult>> SendAsync(
      const Message& message) = 0;

  // Stores all of `messages` atomically (one transaction: all or none, any
  // mix of topics) and returns their results in the same order. An empty
  // batch is INVALID_ARGUMENT.
  virtual absl::StatusOr<std::vector<SendResult>> SendBatch(
      const std::vector<Message>& messages) = 0;

  // Transactional messages (include/txmq/transaction.h).
  //
  // Stores `message` as a half message, invisible to consumers, and durable
  // before this returns in every durability mode (a crash after the local
  // transaction must not lose it). The queue is chosen now, as for Send.
  // Errors: FAILED_PRECONDITION (the producer has no group), and send
  // errors.
  virtual absl::StatusOr<std::unique_ptr<Transaction>> Begin(
      const Message& message, const BeginOptions& options = {}) = 0;

  // Begin, then run `local_transaction` (the host's own database work,
  // given the transaction id to record), then commit or roll back as it
  // answers. kUnknown, an exception, or a crash leave the transaction to
  // the check-back. Returns an error only when Begin failed or a commit or
  // rollback was refused (the transaction stays to the check-back then).
  virtual absl::StatusOr<TransactionResult> SendInTransaction(
      const Message& message,
      absl::FunctionRef<TransactionState(const TransactionId&)>
          local_transaction,
      const BeginOptions& options = {}) = 0;

  virtual const ProducerOptions& options() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_PRODUCER_H_
