// PushConsumer: the broker calls your listener with each message, on a
// thread pool (RocketMQ's push consumer with a MessageListener).
//
//   auto consumer = broker->CreatePushConsumer(
//       "points-service", "course-finished",
//       [&](const txmq::MessageView& m) {
//         return Award(m) ? txmq::ConsumeResult::kSuccess
//                         : txmq::ConsumeResult::kReconsumeLater;
//       });
//
// kSuccess acknowledges the message; kReconsumeLater (or an exception
// thrown by the listener) gives it up for a retry (Consumer::ReconsumeLater:
// the group's RetryPolicy, then the dead-letter queue). A listener call
// that outlasts the invisible duration counts as failed and the message is
// delivered again, so a listener must be idempotent or quick (at-least-once
// delivery, as with pull consumers).
//
// Everything in include/txmq/consumer.h applies: groups, clustering or
// broadcasting, ordered consumption (ConsumerOptions::ordered: a queue's
// messages reach the listener one at a time in append order, whatever the
// thread count), tag filters.
//
// Thread rules: the listener runs on the consumer's threads, several at
// once (unless ordered: then at most one per queue at a time). It may call
// any broker method except destroying this PushConsumer. Lifetime: destroy
// the PushConsumer before the Broker; destruction stops the threads after
// the listener calls in progress return, and hands the messages it
// received but did not process back to the group.

#ifndef TXMQ_PUSH_CONSUMER_H_
#define TXMQ_PUSH_CONSUMER_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/time/time.h"
#include "txmq/consumer.h"
#include "txmq/message.h"

namespace txmq {

// What a listener says about a message.
enum class ConsumeResult {
  kSuccess,         // processed: acknowledge it
  kReconsumeLater,  // failed: deliver it again later (a retry)
};

// Called once per delivery. `message` is valid during the call only.
using MessageListener = std::function<ConsumeResult(const MessageView&)>;

struct PushConsumerOptions {
  // The group's settings. The invisible duration is the longest a listener
  // call may take before the message is delivered again (RocketMQ's
  // consumeTimeout, 15 minutes).
  ConsumerOptions consumer = {.invisible_duration = absl::Minutes(15)};
  // Listener threads: 1 to 256.
  int threads = 4;
  // Messages a thread receives at once (then hands to the listener one by
  // one): 1 to 1024.
  size_t batch = 32;
};

class PushConsumer {
 public:
  // Stops the threads (see the lifetime rule above).
  virtual ~PushConsumer() = default;

  // Messages the listener processed (kSuccess) and gave up (kReconsumeLater
  // or an exception), since creation.
  virtual uint64_t succeeded() const = 0;
  virtual uint64_t failed() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_PUSH_CONSUMER_H_
