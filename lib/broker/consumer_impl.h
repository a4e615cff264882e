// LocalConsumer: the in-process Consumer (include/txmq/consumer.h).
//
// Receive: pass the MapGate, take a read transaction, claim offsets from
// the group's QueueCursors (lock-free), and read the claimed records in
// place. The batch keeps the gate pass and the transaction until it dies.

#ifndef TXMQ_LIB_BROKER_CONSUMER_IMPL_H_
#define TXMQ_LIB_BROKER_CONSUMER_IMPL_H_

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
  LocalConsumer(BrokerCore* core, std::shared_ptr<GroupState> state,
                TagFilter filter);

  absl::StatusOr<ReceivedBatch> Receive(size_t max_messages,
                                        absl::Duration wait) override;
  absl::Status Ack(const MessageView& message) override;
  absl::Status Ack(const ReceivedBatch& batch) override;
  absl::Status Ack(uint32_t queue, uint64_t offset) override;
  absl::Status Flush() override;
  absl::StatusOr<uint64_t> CommittedOffset(uint32_t queue) const override;
  const std::string& group() const override { return state_->group(); }
  const std::string& topic() const override { return state_->topic()->name(); }

 private:
  absl::Status ReadClaim(MDB_txn* txn, const Claim& claim,
                         LocalBatchResources& resources,
                         std::vector<MessageView>& views, uint64_t* copied);
  absl::Status AckRange(uint32_t queue, uint64_t begin, uint64_t end);
  absl::Status CheckTopic() const;
  // Drops the views the tag filter rejects, acknowledging them.
  absl::Status Filter(std::vector<MessageView>& views);
  bool OwnTopic(const MessageView& message) const;

  BrokerCore* const core_;
  const std::shared_ptr<GroupState> state_;
  const std::shared_ptr<ReadTxnCache> txns_;
  const TagFilter filter_;
  uint32_t next_queue_ = 0;
  std::vector<std::string_view> records_;  // ReadClaim's scratch
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_CONSUMER_IMPL_H_
