#include "broker/transaction_impl.h"

#include <utility>

namespace txmq {

absl::StatusOr<TransactionId> BeginThroughWriter(BrokerCore* core,
                                                 PendingRecord record,
                                                 const std::string& group,
                                                 absl::Duration first_check) {
  if (first_check > absl::Hours(24 * 365)) {
    return absl::InvalidArgumentError(
        "BeginOptions::first_check is at most a year");
  }
  if (first_check <= absl::ZeroDuration()) {
    first_check = core->checks->PolicyFor(group).transaction_timeout;
  }
  const int64_t delay_ms = absl::ToInt64Milliseconds(first_check);
  TransactionId id;
  absl::Status s = RunWrite(
      *core->writer,
      [&](WriteContext& ctx) -> absl::Status {
        absl::StatusOr<TransactionId> begun =
            core->txns->ApplyBegin(ctx, record, group, ctx.now_ms() + delay_ms);
        if (!begun.ok()) return begun.status();
        id = *begun;
        return absl::OkStatus();
      },
      /*exclusive=*/false, /*needs_sync=*/true);
  if (!s.ok()) return s;
  return id;
}

absl::StatusOr<SendResult> CommitThroughWriter(BrokerCore* core,
                                               const TransactionId& id) {
  SendResult result;
  absl::Status s = RunWrite(*core->writer, [&](WriteContext& ctx) {
    absl::StatusOr<SendResult> sent = core->txns->ApplyCommit(ctx, id);
    if (!sent.ok()) return sent.status();
    result = *sent;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return result;
}

absl::Status RollbackThroughWriter(BrokerCore* core, const TransactionId& id) {
  return RunWrite(*core->writer, [&](WriteContext& ctx) {
    return core->txns->ApplyRollback(ctx, id);
  });
}

}  // namespace txmq
