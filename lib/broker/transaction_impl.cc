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

namespace {

// A commit or rollback: acknowledged as soon as its batch applied, before
// the commit's flushes (include/txmq/transaction.h). Heap-allocated and
// owned by the writer until Complete, because a batch that must be applied
// again (the map grew) applies it again after the caller has its answer.
class ResolveRequest final : public WriteRequest {
 public:
  struct Shared {
    Outcome outcome;
    SendResult result;
  };
  ResolveRequest(TxnWriter* txns, TransactionId id, bool commit,
                 std::shared_ptr<Shared> shared)
      : txns_(txns), id_(id), commit_(commit), shared_(std::move(shared)) {
    early_ack = true;
  }

  absl::Status Apply(WriteContext& ctx) override {
    if (!commit_) return txns_->ApplyRollback(ctx, id_);
    absl::StatusOr<SendResult> sent = txns_->ApplyCommit(ctx, id_);
    if (!sent.ok()) return sent.status();
    result_ = *sent;
    return absl::OkStatus();
  }
  void Acknowledge(absl::Status status) override {
    acknowledged_ok_ = status.ok();
    Report(std::move(status));
  }
  void Complete(absl::Status status) override {
    if (reported_ && !status.ok() && acknowledged_ok_) {
      // Told the caller it is resolved, but it was not written.
      txns_->RememberUnwritten(id_, commit_);
    }
    Report(std::move(status));
    delete this;
  }

 private:
  void Report(absl::Status status) {
    if (reported_) return;
    reported_ = true;
    shared_->result = result_;
    shared_->outcome.Set(std::move(status));
  }

  TxnWriter* const txns_;
  const TransactionId id_;
  const bool commit_;
  const std::shared_ptr<Shared> shared_;
  SendResult result_;
  bool reported_ = false;
  bool acknowledged_ok_ = false;
};

}  // namespace

absl::StatusOr<SendResult> CommitThroughWriter(BrokerCore* core,
                                               const TransactionId& id) {
  if (absl::Status s = CheckNotOnWriterThread(); !s.ok()) return s;
  auto shared = std::make_shared<ResolveRequest::Shared>();
  core->writer->Submit(
      new ResolveRequest(core->txns.get(), id, /*commit=*/true, shared));
  if (absl::Status s = shared->outcome.Wait(); !s.ok()) return s;
  return shared->result;
}

absl::Status RollbackThroughWriter(BrokerCore* core, const TransactionId& id) {
  if (absl::Status s = CheckNotOnWriterThread(); !s.ok()) return s;
  auto shared = std::make_shared<ResolveRequest::Shared>();
  core->writer->Submit(
      new ResolveRequest(core->txns.get(), id, /*commit=*/false, shared));
  return shared->outcome.Wait();
}

}  // namespace txmq
