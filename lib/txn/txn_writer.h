// TxnWriter: the writer-thread half of transactional messages. Each method
// runs inside a WriteRequest::Apply and changes the transaction tables
// (txn/txn_store.h) within the batch's LMDB transaction, keeping their
// invariant; after the commit it tells the timer service (TimerSink) what
// to schedule or cancel.
//
// Resolution rules (include/txmq/transaction.h): the half row is the truth
// while pending; once resolved, the outcome row answers repeated or
// conflicting resolutions.
//
// Thread: writer only, except the counters (atomics, any thread).

#ifndef TXMQ_LIB_TXN_TXN_WRITER_H_
#define TXMQ_LIB_TXN_TXN_WRITER_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "log/record_codec.h"
#include "storage/env.h"
#include "topic/topic_registry.h"
#include "txmq/transaction.h"
#include "txn/txn_store.h"
#include "write/writer.h"

namespace txmq {

// Where the writer (and the check service) send timer changes, after the
// change is committed to the timer table. At most one timer per (kind, id):
// scheduling again moves it. Thread-safe.
class TimerSink {
 public:
  virtual ~TimerSink() = default;
  virtual void Schedule(uint8_t kind, const std::array<uint8_t, 16>& id,
                        int64_t due_ms) = 0;
  virtual void Cancel(uint8_t kind, const std::array<uint8_t, 16>& id) = 0;
  // Fire every past-due timer again (see TimerService::Rescan).
  virtual void Rescan() = 0;
};

class DelayWriter;

class TxnWriter {
 public:
  // `run` distinguishes this broker run in new transaction ids; outcomes are
  // kept `outcome_retention` after resolution. All pointers outlive the
  // TxnWriter.
  TxnWriter(TxnTables tables, TopicRegistry* topics, TimerSink* timers,
            DelayWriter* delays, uint32_t run,
            absl::Duration outcome_retention);

  // Counts pending and exhausted transactions. Call once at open.
  absl::Status LoadCounts(MDB_txn* txn);

  // Stores `record` (its queue already stamped) as a half message of
  // `group` whose first check is due at `first_check_ms`.
  absl::StatusOr<TransactionId> ApplyBegin(WriteContext& ctx,
                                           const PendingRecord& record,
                                           const std::string& group,
                                           int64_t first_check_ms);

  // Commit: appends the message to its queue. Idempotent; FAILED_PRECONDITION
  // after a rollback; NOT_FOUND for an unknown id or a deleted topic.
  absl::StatusOr<SendResult> ApplyCommit(WriteContext& ctx,
                                         const TransactionId& id);
  // Rollback: drops the half message. Idempotent; FAILED_PRECONDITION after
  // a commit; NOT_FOUND for an unknown id.
  absl::Status ApplyRollback(WriteContext& ctx, const TransactionId& id);

  // A checker's answer for `id`, which had `checks` unknown answers when it
  // was read. Ignored when the transaction moved on meanwhile (resolved,
  // exhausted, or checked again). kUnknown counts a check and schedules the
  // next one, or moves the transaction to the exhausted hold; so does an
  // answer that cannot be applied (a commit into a deleted topic), so that
  // no transaction is left unchecked.
  absl::Status ApplyCheckResult(WriteContext& ctx, const TransactionId& id,
                                uint32_t checks, TransactionState state,
                                const CheckPolicy& policy);

  // A commit or rollback of `id` was acknowledged to its caller but its
  // batch then failed to commit (txmq/transaction.h: such a resolution is
  // repaired by the check-back). Until `id` is resolved, a conflicting
  // resolution is refused, as if the acknowledged one had been written. In
  // memory only: after a restart the check-back decides.
  void RememberUnwritten(const TransactionId& id, bool commit);

  // Forgets the outcome of `id` whose retention timer (due at `due_ms`)
  // fired.
  absl::Status ApplyExpireOutcome(WriteContext& ctx, const TransactionId& id,
                                  int64_t due_ms);

  uint64_t pending() const { return pending_.load(std::memory_order_relaxed); }
  uint64_t exhausted() const {
    return exhausted_.load(std::memory_order_relaxed);
  }
  const TxnTables& tables() const { return tables_; }

 private:
  // Resolves a pending transaction: deletes its half, state and timer rows
  // and writes the outcome. `state` is its decoded state.
  absl::Status Finish(WriteContext& ctx, const TransactionId& id,
                      const TxnState& state, const TxnOutcome& outcome);
  // The answer for a transaction without a half row.
  absl::StatusOr<TxnOutcome> Resolved(WriteContext& ctx,
                                      const TransactionId& id);

  const TxnTables tables_;
  TopicRegistry* const topics_;
  TimerSink* const timers_;
  DelayWriter* const delays_;
  const uint32_t run_;
  const int64_t retention_ms_;
  uint64_t sequence_ = 0;
  int64_t last_begin_ms_ = 0;
  // Thread: writer. See RememberUnwritten.
  absl::flat_hash_map<TransactionId, bool> unwritten_;  // id -> commit?
  std::atomic<uint64_t> pending_{0};
  std::atomic<uint64_t> exhausted_{0};
};

// The wait before the check that follows `checks` unknown answers.
absl::Duration CheckBackoff(const CheckPolicy& policy, uint32_t checks);

}  // namespace txmq

#endif  // TXMQ_LIB_TXN_TXN_WRITER_H_
