// Consumer: one member of a consumer group reading one topic.
//
// A consumer group is a name. Each group has, per queue of each topic it
// reads, a durable committed offset: every message below it has been
// acknowledged by the group. Every group gets every message of the topic
// (publish/subscribe between groups); within a group each message is
// delivered to one consumer (competing consumers).
//
//   Receive(max, wait)  claims up to `max` messages not yet handed to any
//                       consumer of this group in this process and returns
//                       them, waiting up to `wait` for the first one.
//   Ack(...)            marks messages processed. The committed offset of a
//                       queue advances over the acknowledged prefix and is
//                       written to disk in the background (Flush waits).
//
// Delivery is at least once: after a restart, delivery resumes at the
// committed offset, so a message received but not acknowledged (or
// acknowledged but not yet flushed) before a crash is delivered again.
// Within one process and with no crash, a message that is acknowledged in
// time is delivered exactly once per group. Within a queue, messages are
// handed out in offset order.
//
// Retries (RocketMQ's model). A received message is invisible to the other
// consumers of the group for ConsumerOptions::invisible_duration. If it is
// not acknowledged by then, or the consumer calls ReconsumeLater, the
// broker stores a copy in the group's retry queue for the topic (topic
// "%RETRY%<group>%<topic>", created with the consumer) to be delivered
// after a back-off (RetryPolicy), and counts the original as consumed. The
// copy comes back to the same group only, through the same Receive, with
// the original id, topic, queue, offset and store time and
// reconsume_times() one higher. After RetryPolicy::max_reconsume_times
// redeliveries, the next failure moves the message to the group's
// dead-letter queue (topic "%DLQ%<group>"), where Broker::ListDeadLetters
// shows it and Broker::RedriveDeadLetters gives it back to the group.
// Redelivery times use the broker's clock (Options::clock).
//
// Several Consumer objects of one group (and one topic), on any threads,
// share the group's queues without a lock: they claim offsets with an atomic
// compare-and-swap per queue.
//
// Thread rules: a Consumer is thread-compatible: call it from one thread at
// a time (use one Consumer per thread; they are cheap). A Consumer and every
// batch it returned must be destroyed before the Broker.

#ifndef TXMQ_CONSUMER_H_
#define TXMQ_CONSUMER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/message.h"

namespace txmq {

// Where a group that has never read a topic starts. Has no effect once the
// group has a committed offset for the topic.
enum class StartFrom {
  kEarliest,  // the oldest stored message
  kLatest,    // only messages stored after the consumer was created
};

// When and how often a message that failed is delivered again.
struct RetryPolicy {
  // The wait before the n-th redelivery is backoff[n-1]; past the end, the
  // last entry repeats. Default: RocketMQ's schedule (delay levels 3 to
  // 18): 10 s, 30 s, 1 min, 2 min, ..., 10 min, 20 min, 30 min, 1 h, 2 h.
  std::vector<absl::Duration> backoff = {
      absl::Seconds(10), absl::Seconds(30), absl::Minutes(1), absl::Minutes(2),
      absl::Minutes(3),  absl::Minutes(4),  absl::Minutes(5), absl::Minutes(6),
      absl::Minutes(7),  absl::Minutes(8),  absl::Minutes(9), absl::Minutes(10),
      absl::Minutes(20), absl::Minutes(30), absl::Hours(1),   absl::Hours(2)};
  // Redeliveries before a message goes to the dead-letter queue: a
  // message is delivered at most 1 + max_reconsume_times times. 0: the
  // first failure dead-letters it.
  uint32_t max_reconsume_times = 16;

  // The wait before redelivery number `n` (1-based).
  absl::Duration Backoff(uint32_t n) const {
    if (backoff.empty()) return absl::ZeroDuration();
    return backoff[std::min<size_t>(n == 0 ? 0 : n - 1, backoff.size() - 1)];
  }
};

// How the consumers of one group share a topic.
enum class MessageModel {
  // Each message goes to one consumer of the group (competing consumers).
  kClustering,
  // Every consumer of the group gets every message: each consumer is an
  // instance of the group with progress, retries and dead letters of its
  // own, kept under the group name "<group>%<instance>" (ListGroups shows
  // it so; its retry and dead-letter queues are "%RETRY%<group>%<instance>
  // %<topic>" and "%DLQ%<group>%<instance>").
  kBroadcasting,
};

struct ConsumerOptions {
  StartFrom start_from = StartFrom::kEarliest;
  MessageModel model = MessageModel::kClustering;
  // Broadcasting only: the instance's name (as a group name: letters,
  // digits, '_', '-', '.'), so that a restarted process resumes where the
  // instance stopped. Empty: the lowest number ("0", "1", ...) that no
  // live broadcasting consumer of the group and topic in this process
  // uses, so the i-th consumer a process creates resumes the i-th one's
  // progress.
  std::string instance;
  // Which messages the consumer wants, by tag (RocketMQ's tag expression):
  // "*" (all), or "TagA || TagB" (messages with any of these tags). The
  // others are acknowledged for the group without being delivered, so all
  // consumers of a group on a topic must use the same expression.
  std::string tag_filter = "*";
  // How long a received message stays invisible to the group's other
  // consumers while it is not acknowledged; then it is delivered again
  // (through the retry queue, counting as a failure). ChangeInvisibleDuration
  // extends it for one message. absl::InfiniteDuration(): never while the
  // broker runs (only a restart delivers it again). At least 1 ms.
  absl::Duration invisible_duration = absl::Seconds(30);
  // The group's retry schedule. The consumers of a group on a topic should
  // agree; the most recently created one's policy applies to the group.
  RetryPolicy retry;
  // Ordered consumption (RocketMQ's orderly listener): each queue's
  // messages are handed out in append order ONE AT A TIME across the whole
  // group: the next message of a queue is delivered only after the
  // previous one is acknowledged. A failure (ReconsumeLater, or the
  // invisible time running out) does not reorder the queue: the message
  // waits at its head for the back-off (RetryPolicy; RocketMQ's orderly
  // consumers wait 1 s: {.backoff = {absl::Seconds(1)}}) and is delivered
  // again with reconsume_times() one higher while the queue delivers
  // nothing else; after max_reconsume_times it goes to the dead-letter
  // queue and the queue moves on. Use a key (kKeyHash) to keep related
  // messages on one queue. All consumers of a group on a topic must agree
  // on this option.
  bool ordered = false;
};

// The messages one Receive returned.
//
// Lifetime: the batch pins a consistent snapshot of the data file, and the
// MessageViews point into it (no copies). They are valid until the batch is
// destroyed. Holding a batch keeps the pages it reads from being reused and
// delays the growth of the data file's map, so process a batch and let it go
// (hold it for milliseconds, not minutes). Moving a batch keeps its views
// valid.
//
// Thread-compatible. Move-only.
class ReceivedBatch {
 public:
  // What keeps the views valid. Implementations of Consumer subclass it.
  class Resources {
   public:
    virtual ~Resources() = default;
  };

  ReceivedBatch() = default;
  ReceivedBatch(std::vector<MessageView> messages,
                std::unique_ptr<Resources> resources)
      : resources_(std::move(resources)), messages_(std::move(messages)) {}
  ReceivedBatch(ReceivedBatch&&) = default;
  ReceivedBatch& operator=(ReceivedBatch&&) = default;
  ReceivedBatch(const ReceivedBatch&) = delete;
  ReceivedBatch& operator=(const ReceivedBatch&) = delete;
  ~ReceivedBatch() = default;

  const std::vector<MessageView>& messages() const { return messages_; }
  // For Consumer implementations (e.g. to acknowledge a batch they made
  // without walking its views).
  const Resources* resources() const { return resources_.get(); }
  size_t size() const { return messages_.size(); }
  bool empty() const { return messages_.empty(); }
  const MessageView& operator[](size_t i) const { return messages_[i]; }
  std::vector<MessageView>::const_iterator begin() const {
    return messages_.begin();
  }
  std::vector<MessageView>::const_iterator end() const {
    return messages_.end();
  }

 private:
  // Declared first so that it is destroyed last, after the views.
  std::unique_ptr<Resources> resources_;
  std::vector<MessageView> messages_;
};

class Consumer {
 public:
  virtual ~Consumer() = default;

  // Returns up to `max_messages` messages, waiting up to `wait` for at least
  // one. An empty batch (OK) means none arrived in time, or, rarely, that
  // the broker is waiting for received batches to be released (to grow its
  // map or drop a deleted topic's tables) and this call returned early so
  // that the caller can release the ones it holds; just call again.
  // Errors: NOT_FOUND (the topic was deleted), INVALID_ARGUMENT
  // (max_messages == 0), DATA_LOSS (a stored record is damaged),
  // RESOURCE_EXHAUSTED (too many batches held at once: Options::max_readers).
  virtual absl::StatusOr<ReceivedBatch> Receive(size_t max_messages,
                                                absl::Duration wait) = 0;

  // Acknowledges one message, every message of a batch, or the message at
  // (queue, offset) of the topic (not for redelivered messages: their
  // copy is acknowledged through the view). Acknowledging twice is
  // harmless. Returns at once; the
  // committed offset reaches the disk with the writer's next commit.
  // Errors: INVALID_ARGUMENT when the message is of another topic or was
  // never handed out to this group; NOT_FOUND when the topic was deleted.
  virtual absl::Status Ack(const MessageView& message) = 0;
  virtual absl::Status Ack(const ReceivedBatch& batch) = 0;
  virtual absl::Status Ack(uint32_t queue, uint64_t offset) = 0;

  // Gives up on a received message for now (RocketMQ's RECONSUME_LATER):
  // the broker delivers it again after the policy's back-off for its next
  // redelivery, or after `delay` when given (zero: at once), or
  // dead-letters it when it has been redelivered max_reconsume_times
  // already. Returns at once; the message counts as acknowledged once its
  // copy is stored. Errors: FAILED_PRECONDITION when the message is
  // acknowledged already or was redelivered meanwhile (its invisible time
  // ran out); INVALID_ARGUMENT as for Ack; NOT_FOUND (topic deleted).
  virtual absl::Status ReconsumeLater(
      const MessageView& message,
      std::optional<absl::Duration> delay = std::nullopt) = 0;

  // Keeps a received message invisible for `duration` from now instead of
  // what is left of its invisible time (RocketMQ's
  // changeInvisibleDuration), e.g. while a slow job runs. Errors:
  // FAILED_PRECONDITION when it is acknowledged or its invisible time ran
  // out already (it is being delivered again), INVALID_ARGUMENT for a
  // duration below 1 ms or a message not from this consumer's topic.
  virtual absl::Status ChangeInvisibleDuration(const MessageView& message,
                                               absl::Duration duration) = 0;

  // Waits until the committed offsets of every acknowledgement made so far
  // are durable. Errors: as for sends (include/txmq/producer.h).
  virtual absl::Status Flush() = 0;

  // The group's committed offset of `queue` (what a restart resumes from).
  virtual absl::StatusOr<uint64_t> CommittedOffset(uint32_t queue) const = 0;

  virtual const std::string& group() const = 0;
  virtual const std::string& topic() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_CONSUMER_H_
