// LocalProducer: the in-process Producer (include/txmq/producer.h).
//
// Each send is encoded and validated on the caller's thread (PendingRecord),
// its queue chosen, and handed to the writer as a SendRequest; the writer
// stamps id, offset and store time while it appends.

#ifndef TXMQ_LIB_BROKER_PRODUCER_IMPL_H_
#define TXMQ_LIB_BROKER_PRODUCER_IMPL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "broker/core.h"
#include "txmq/producer.h"

namespace txmq {

// The queue of `key` among `queue_count` queues: a fixed 64-bit FNV-1a hash,
// the same in every process and release (it decides message order, so it
// may never change).
uint32_t QueueForKey(std::string_view key, uint32_t queue_count);

class LocalProducer final : public Producer {
 public:
  LocalProducer(BrokerCore* core, const ProducerOptions& options)
      : core_(core), options_(options) {}

  absl::StatusOr<SendResult> Send(const Message& message) override;
  void SendAsync(const Message& message, SendCallback done) override;
  std::future<absl::StatusOr<SendResult>> SendAsync(
      const Message& message) override;
  absl::StatusOr<std::vector<SendResult>> SendBatch(
      const std::vector<Message>& messages) override;
  absl::StatusOr<std::unique_ptr<Transaction>> Begin(
      const Message& message, const BeginOptions& options) override;
  absl::StatusOr<TransactionResult> SendInTransaction(
      const Message& message,
      absl::FunctionRef<TransactionState(const TransactionId&)>
          local_transaction,
      const BeginOptions& options) override;
  const ProducerOptions& options() const override { return options_; }

  // Sends each of `messages` on its own, as SendAsync would, but in one
  // writer request: one outcome per message, in order, delivered to `done`
  // at once ON THE WRITER THREAD (or on the caller's, when none was queued
  // or the broker is closing). So `done` must be quick and must not call
  // the broker. For the RPC server (lib/rpc/server.cc), which fulfils a
  // promise there. The messages are encoded before SendEach returns.
  using EachCallback =
      std::function<void(std::vector<absl::StatusOr<SendResult>>)>;
  void SendEach(const std::vector<const Message*>& messages, EachCallback done);

 private:
  BrokerCore* const core_;
  const ProducerOptions options_;
  std::atomic<uint32_t> round_robin_{0};
};

// Producer::SendInTransaction in terms of `producer`'s Begin, Commit and
// Rollback (for every Producer implementation: local and remote).
absl::StatusOr<TransactionResult> SendInTransactionOf(
    Producer& producer, const Message& message,
    absl::FunctionRef<TransactionState(const TransactionId&)> local_transaction,
    const BeginOptions& options);

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_PRODUCER_IMPL_H_
