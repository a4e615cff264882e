// TransactionHandle (the handle Producer::Begin returns) and the calls that
// resolve a transaction through the writer.

#ifndef TXMQ_LIB_BROKER_TRANSACTION_IMPL_H_
#define TXMQ_LIB_BROKER_TRANSACTION_IMPL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "broker/core.h"
#include "log/record_codec.h"
#include "txmq/transaction.h"

namespace txmq {

// Stores `record` (queue stamped) as a half message of `group`, durable in
// every mode, first check after `first_check` (zero: the group's policy).
absl::StatusOr<TransactionId> BeginThroughWriter(BrokerCore* core,
                                                 PendingRecord record,
                                                 const std::string& group,
                                                 absl::Duration first_check);
absl::StatusOr<SendResult> CommitThroughWriter(BrokerCore* core,
                                               const TransactionId& id);
absl::Status RollbackThroughWriter(BrokerCore* core, const TransactionId& id);

class TransactionHandle final : public Transaction {
 public:
  TransactionHandle(BrokerCore* core, TransactionId id)
      : core_(core), id_(id) {}
  const TransactionId& id() const override { return id_; }
  absl::StatusOr<SendResult> Commit() override {
    return CommitThroughWriter(core_, id_);
  }
  absl::Status Rollback() override { return RollbackThroughWriter(core_, id_); }

 private:
  BrokerCore* const core_;
  const TransactionId id_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_TRANSACTION_IMPL_H_
