// LocalConsumer: the in-process Consumer (include/txmq/consumer.h).
//
// Receive: pass the MapGate, take a read transaction, claim offsets from
// the group's QueueCursors (lock-free), lease them for the invisible
// duration, and read the claimed records in place. The batch keeps the
// gate pass and the transaction until it dies.
//
// A consumer reads two group states: the topic's queues, and after them
// the group's retry queue for the topic ("%RETRY%<group>%<topic>", one
// queue), whose copies it decodes with their origin (the view's copy
// offset says where to acknowledge them).

#ifndef TXMQ_LIB_BROKER_CONSUMER_IMPL_H_
#define TXMQ_LIB_BROKER_CONSUMER_IMPL_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core.h"
#include "consume/group_registry.h"
#include "consume/tag_filter.h"
#include "storage/read_txn_cache.h"
#include "txmq/consumer.h"

namespace txmq {

class LocalBatchResources;
struct Claim;

class LocalConsumer final : public Consumer {
 public:
  struct Params {
    std::string group;  // as the user named it
    // The group's states on the topic and on its retry topic (for a
    // broadcasting consumer, its instance's).
    std::shared_ptr<GroupState> state;
    std::shared_ptr<GroupState> retry;
    TagFilter filter;
    absl::Duration invisible_duration;
    bool ordered = false;
    // Run when the consumer goes (frees a broadcasting instance number).
    std::function<void()> on_close;
  };
  LocalConsumer(BrokerCore* core, Params params);
  // Hands the leases of what it received and did not acknowledge back to
  // the group, so that the other consumers get those messages now.
  ~LocalConsumer() override;

  absl::StatusOr<ReceivedBatch> Receive(size_t max_messages,
                                        absl::Duration wait) override;
  absl::Status Ack(const MessageView& message) override;
  absl::Status Ack(const ReceivedBatch& batch) override;
  absl::Status Ack(uint32_t queue, uint64_t offset) override;
  absl::Status ReconsumeLater(const MessageView& message,
                              std::optional<absl::Duration> delay) override;
  absl::Status ChangeInvisibleDuration(const MessageView& message,
                                       absl::Duration duration) override;
  absl::Status Flush() override;
  absl::StatusOr<uint64_t> CommittedOffset(uint32_t queue) const override;
  const std::string& group() const override { return group_; }
  const std::string& topic() const override { return state_->topic()->name(); }
  // For LocalTransaction::Ack: whether this consumer is of `core`'s
  // broker, and the acknowledgement itself, written as an ack row in
  // `ctx`'s transaction (consume/cursor_store.h) and applied to the cursor
  // after the commit. Thread: writer.
  bool BelongsTo(const BrokerCore& core) const { return core_ == &core; }
  absl::Status AckInTransaction(WriteContext& ctx, const MessageView& message);

  // The group its progress is kept under: group(), or for a broadcasting
  // consumer "<group>%<instance>".
  const std::string& progress_group() const { return state_->group(); }

 private:
  // Queue `i` of the claim space: the topic's queues 0..n-1, then the
  // retry queue as n.
  GroupState& StateOf(uint32_t i) const {
    return i < queue_count_ ? *state_ : *retry_;
  }
  const std::shared_ptr<GroupState>& SharedStateOf(uint32_t i) const {
    return i < queue_count_ ? state_ : retry_;
  }
  uint32_t QueueOf(uint32_t i) const { return i < queue_count_ ? i : 0; }

  absl::Status ReadClaim(MDB_txn* txn, const Claim& claim,
                         LocalBatchResources& resources,
                         std::vector<MessageView>& views, uint64_t* copied);
  // Acknowledges [begin, end) of claim-space queue `i`.
  absl::Status AckIn(uint32_t i, uint64_t begin, uint64_t end);
  // The claim-space queue and offset a view of this consumer's topic was
  // read from. INVALID_ARGUMENT for another topic's message.
  absl::StatusOr<std::pair<uint32_t, uint64_t>> Locate(
      const MessageView& message) const;
  absl::Status CheckTopic() const;
  // Drops the views acknowledged already by a local transaction before a
  // restart (QueueCursor::PreAck).
  void DropPreAcked(const std::vector<Claim>& claims,
                    std::vector<MessageView>& views);
  // Drops the views the tag filter rejects, acknowledging them.
  absl::Status Filter(std::vector<MessageView>& views);
  bool OwnTopic(const MessageView& message) const;

  BrokerCore* const core_;
  const std::string group_;
  const std::shared_ptr<GroupState> state_;
  const std::shared_ptr<GroupState> retry_;
  const uint32_t queue_count_;
  const std::shared_ptr<ReadTxnCache> txns_;
  const TagFilter filter_;
  const int64_t invisible_ms_;  // INT64_MAX: never expires
  const uint64_t id_;           // the owner of this consumer's leases
  const bool ordered_;
  const std::function<void()> on_close_;
  uint32_t next_queue_ = 0;
  std::vector<std::string_view> records_;  // ReadClaim's scratch
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_CONSUMER_IMPL_H_
