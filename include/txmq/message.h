// Messages: what a producer sends, what the broker assigns, and the zero-copy
// view a consumer reads.
//
// A `Message` is a plain value the producer fills in and hands to a
// `Producer`. The broker then assigns it a `MessageId`, a queue and an offset
// within that queue, and stamps its store time; `SendResult` reports them.
// Consumers never get a `Message` back: they get `MessageView`s that point
// straight into the broker's memory-mapped storage (no copy of the body).
//
// Limits (checked by the producer; a violation is INVALID_ARGUMENT):
//   - key: at most 1024 bytes, any bytes.
//   - tags: at most 32, each 1..128 bytes, no '|' (reserved for filters).
//   - property names: 1..128 bytes; values at most 32 KiB; at most 256 of
//     them; names are unique within one message.
//   - the whole encoded record (body + everything above + ~100 bytes of
//     framing) at most `Options::max_message_bytes`.

#ifndef TXMQ_MESSAGE_H_
#define TXMQ_MESSAGE_H_

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace txmq {

namespace internal {
class MessageViewDecoder;
}  // namespace internal

// A message id: 16 bytes, unique within one data directory and sortable by
// store time (millisecond resolution; ties are ordered by queue and offset).
//
// Layout (big-endian): 6 bytes store time in Unix milliseconds, 4 bytes
// broker-wide queue number, 6 bytes offset in that queue. Because the id
// names the queue and offset, looking a message up by id is one B-tree probe.
// Queue numbers are never reused, even after a topic is deleted, so an id is
// never reused either.
//
// A value type: copy freely. Thread-compatible.
class MessageId {
 public:
  static constexpr size_t kSize = 16;

  // The all-zero id; no stored message has it.
  constexpr MessageId() = default;
  static MessageId FromBytes(const std::array<uint8_t, kSize>& bytes);
  // Builds the id of the message stored at `offset` of broker-wide queue
  // `queue_number` at `store_time_ms` (Unix milliseconds).
  static MessageId Make(int64_t store_time_ms, uint32_t queue_number,
                        uint64_t offset);

  // Parses the 32 lowercase or uppercase hex digits `ToString` produces.
  // Errors: INVALID_ARGUMENT when `text` is not exactly 32 hex digits.
  static absl::StatusOr<MessageId> Parse(std::string_view text);

  // 32 lowercase hex digits.
  std::string ToString() const;

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  int64_t store_time_ms() const;
  uint32_t queue_number() const;
  uint64_t offset() const;
  bool IsZero() const { return *this == MessageId(); }

  friend auto operator<=>(const MessageId&, const MessageId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const MessageId& id) {
    return H::combine(std::move(h), id.bytes_);
  }

 private:
  friend class internal::MessageViewDecoder;
  std::array<uint8_t, kSize> bytes_{};
};

// A message to send. A value type: copy, move, reuse.
struct Message {
  // The topic; it must exist (Broker::CreateTopic).
  std::string topic;
  // Optional. Messages with the same key go to the same queue when the
  // producer selects queues by key hash, so they keep their order.
  std::string key;
  // Optional labels a consumer can filter on.
  std::vector<std::string> tags;
  // Optional string properties, in the order given.
  std::vector<std::pair<std::string, std::string>> properties;
  // The payload: any bytes.
  std::string body;
  // Delayed delivery: the message stays invisible to consumers until this
  // time (the broker's clock, millisecond precision; at most a year ahead).
  // absl::InfinitePast() (the default) or any time not in the future:
  // deliver at once.
  absl::Time deliver_at = absl::InfinitePast();
};

// What the broker assigned to a stored message.
struct SendResult {
  // For a delayed message: the offset before delivery (and the id is zero);
  // both are assigned when the message is delivered into its queue.
  static constexpr uint64_t kNotYetDelivered = UINT64_MAX;

  MessageId id;
  // The queue within the topic, 0 .. queue_count-1.
  uint32_t queue = 0;
  // The message's position in its queue: 0, 1, 2, ... without gaps.
  uint64_t offset = 0;
  // When the broker stored it (the broker's clock, millisecond resolution).
  absl::Time store_time;
  // When it becomes visible: store_time, or a delayed message's time.
  absl::Time deliver_at;

  bool delayed() const { return offset == kNotYetDelivered; }
};

// A read-only view of one stored message.
//
// Lifetime: every string_view a `MessageView` returns points into the batch
// it came from (usually straight into the memory-mapped data file). It is
// valid until that batch (`ReceivedBatch`) is destroyed; copy out what you
// need to keep. A view is cheap to copy but a copy has the same lifetime.
//
// Thread-compatible: several threads may read the same view concurrently
// while the batch is alive.
class MessageView {
 public:
  MessageView() = default;

  std::string_view topic() const { return topic_; }
  uint32_t queue() const { return queue_; }
  uint64_t offset() const { return offset_; }
  const MessageId& id() const { return id_; }
  // Empty when the message has no key.
  std::string_view key() const { return key_; }
  std::string_view body() const { return body_; }
  // When the producer called Send (the producer's clock).
  absl::Time born_time() const { return absl::FromUnixMillis(born_ms_); }
  // When the broker stored it (the broker's clock).
  absl::Time store_time() const { return absl::FromUnixMillis(store_ms_); }
  // How many deliveries of this message to the consumer's group failed
  // before this one (RocketMQ's reconsumeTimes): 0 on the first delivery.
  // A redelivered message (include/txmq/consumer.h, "Retries") keeps its
  // id, topic, queue, offset and store time; only this count grows.
  uint32_t reconsume_times() const { return reconsume_times_; }

  // Tags and properties are decoded on demand from the stored record (a few
  // tens of nanoseconds each), so a consumer that ignores them pays nothing.
  // A damaged record yields what could be decoded ('txmq verify' reports
  // the damage).
  std::vector<std::string_view> tags() const;
  std::vector<std::pair<std::string_view, std::string_view>> properties() const;
  // The value of property `name`, or nullopt.
  std::optional<std::string_view> property(std::string_view name) const;

  // The stored record itself (Cap'n Proto, see docs/format.md), for tools
  // that copy or forward messages verbatim. 8-byte aligned.
  std::string_view record() const { return record_; }

  // Decodes a stored record (as `record()` returns it). The views point into
  // `record`, which must be 8-byte aligned and outlive the view.
  // Errors: DATA_LOSS when `record` is not a valid message record.
  static absl::StatusOr<MessageView> FromRecord(std::string_view record);

 private:
  friend class internal::MessageViewDecoder;
  std::string_view record_;
  std::string_view topic_;
  std::string_view key_;
  std::string_view body_;
  MessageId id_;
  uint64_t offset_ = 0;
  int64_t born_ms_ = 0;
  int64_t store_ms_ = 0;
  uint32_t queue_ = 0;
  uint32_t reconsume_times_ = 0;
  // Where a consumer read a redelivered copy: its offset in the group's
  // retry queue (kNotACopy for the original message).
  static constexpr uint64_t kNotACopy = UINT64_MAX;
  uint64_t copy_offset_ = kNotACopy;
};

}  // namespace txmq

#endif  // TXMQ_MESSAGE_H_
