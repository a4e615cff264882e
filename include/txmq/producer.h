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
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "txmq/message.h"

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
  // The producer group (transactional messages use it; see issue 3). Empty
  // is allowed for plain sends.
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
  // durable (see above). Blocks the calling thread.
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

  virtual const ProducerOptions& options() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_PRODUCER_H_
