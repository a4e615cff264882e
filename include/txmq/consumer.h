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
// Within one process and with no crash, each message is delivered exactly
// once per group. Within a queue, messages are handed out in offset order.
// (Redelivery of messages that stay unacknowledged in a running process, and
// retries/dead letters, come with the consumption issue.)
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

#include <cstddef>
#include <cstdint>
#include <memory>
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

struct ConsumerOptions {
  StartFrom start_from = StartFrom::kEarliest;
  // Which messages the consumer wants, by tag (RocketMQ's tag expression):
  // "*" (all), or "TagA || TagB" (messages with any of these tags). The
  // others are acknowledged for the group without being delivered, so all
  // consumers of a group on a topic must use the same expression.
  std::string tag_filter = "*";
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
  // (queue, offset). Acknowledging twice is harmless. Returns at once; the
  // committed offset reaches the disk with the writer's next commit.
  // Errors: INVALID_ARGUMENT when the message is of another topic or was
  // never handed out to this group; NOT_FOUND when the topic was deleted.
  virtual absl::Status Ack(const MessageView& message) = 0;
  virtual absl::Status Ack(const ReceivedBatch& batch) = 0;
  virtual absl::Status Ack(uint32_t queue, uint64_t offset) = 0;

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
