#include "txn/txn_writer.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "delay/delay_writer.h"
#include "log/append.h"
#include "log/record_layout.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"

namespace txmq {
namespace {

std::vector<uint64_t> AlignedCopy(std::string_view bytes) {
  std::vector<uint64_t> words((bytes.size() + 7) / 8);
  std::memcpy(words.data(), bytes.data(), bytes.size());
  return words;
}

absl::Status NoSuchTransaction(const TransactionId& id) {
  return absl::NotFoundError(absl::StrFormat(
      "transaction %s is unknown (never begun here, or resolved longer ago "
      "than Options::outcome_retention)",
      id.ToString()));
}

}  // namespace

absl::Duration CheckBackoff(const CheckPolicy& policy, uint32_t checks) {
  absl::Duration wait = policy.first_interval;
  for (uint32_t i = 1; i < checks && wait < policy.max_interval; ++i) {
    wait *= 2;
  }
  return std::min(wait, policy.max_interval);
}

TxnWriter::TxnWriter(TxnTables tables, TopicRegistry* topics, TimerSink* timers,
                     DelayWriter* delays, uint32_t run,
                     absl::Duration outcome_retention)
    : tables_(tables),
      topics_(topics),
      timers_(timers),
      delays_(delays),
      run_(run),
      retention_ms_(absl::ToInt64Milliseconds(outcome_retention)) {}

absl::Status TxnWriter::LoadCounts(MDB_txn* txn) {
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, tables_.half, &cursor); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read pending transactions");
  }
  uint64_t pending = 0, exhausted = 0;
  MDB_val k, v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    ++pending;
    // flags byte: offset 4
    if (v.mv_size > 4 && (static_cast<const char*>(v.mv_data)[4] & 1)) {
      ++exhausted;
    }
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) {
    return LmdbStatus(rc, "cannot read pending transactions");
  }
  pending_.store(pending);
  exhausted_.store(exhausted);
  return absl::OkStatus();
}

absl::StatusOr<TransactionId> TxnWriter::ApplyBegin(WriteContext& ctx,
                                                    const PendingRecord& record,
                                                    const std::string& group,
                                                    int64_t first_check_ms) {
  // begin time | run | sequence. The time never goes backwards within a
  // run (so ids stay sorted even if the clock does), and the run makes ids
  // of different runs differ.
  const int64_t begin_ms = std::max(ctx.now_ms(), last_begin_ms_);
  std::array<uint8_t, TransactionId::kSize> bytes;
  char* out = reinterpret_cast<char*>(bytes.data());
  PutBigEndian(static_cast<uint64_t>(begin_ms), 6, out);
  PutBigEndian(run_, 4, out + 6);
  PutBigEndian(sequence_, 6, out + 10);
  const TransactionId id = TransactionId::FromBytes(bytes);

  TxnState state;
  state.next_check_ms = first_check_ms;
  state.begin_ms = ctx.now_ms();
  state.group = group;
  int rc = PutRow(ctx.txn(), tables_.half, IdKey(id),
                  EncodeHalf(state, record.Serialize()));
  if (rc == MDB_SUCCESS) {
    rc = PutRow(ctx.txn(), tables_.timer,
                TimerKey(first_check_ms, kTimerCheckBack, id.bytes()), "");
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot store a half message");
  // Never reused, even when this batch aborts (a gap is harmless).
  ++sequence_;
  last_begin_ms_ = begin_ms;
  ctx.AfterCommit([this, id, first_check_ms] {
    pending_.fetch_add(1, std::memory_order_relaxed);
    timers_->Schedule(kTimerCheckBack, id.bytes(), first_check_ms);
  });
  return id;
}

absl::StatusOr<TxnOutcome> TxnWriter::Resolved(WriteContext& ctx,
                                               const TransactionId& id) {
  std::string_view value;
  const int rc = GetRow(ctx.txn(), tables_.outcome, IdKey(id), &value);
  if (rc == MDB_NOTFOUND) return NoSuchTransaction(id);
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot read a transaction");
  return DecodeTxnOutcome(value);
}

absl::Status TxnWriter::Finish(WriteContext& ctx, const TransactionId& id,
                               const TxnState& state,
                               const TxnOutcome& outcome) {
  const int64_t expires_ms = outcome.resolved_ms + retention_ms_;
  int rc = DeleteRow(ctx.txn(), tables_.half, IdKey(id));
  if (rc == MDB_SUCCESS && !state.exhausted) {
    rc = DeleteRow(ctx.txn(), tables_.timer,
                   TimerKey(state.next_check_ms, kTimerCheckBack, id.bytes()));
    if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;  // tolerate a missing timer
  }
  if (rc == MDB_SUCCESS) {
    rc = PutRow(ctx.txn(), tables_.outcome, IdKey(id),
                EncodeTxnOutcome(outcome));
  }
  if (rc == MDB_SUCCESS) {
    rc = PutRow(ctx.txn(), tables_.timer,
                TimerKey(expires_ms, kTimerOutcomeExpiry, id.bytes()), "");
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot resolve a transaction");
  const bool exhausted = state.exhausted;
  ctx.AfterCommit([this, id, exhausted, expires_ms] {
    unwritten_.erase(id);
    pending_.fetch_sub(1, std::memory_order_relaxed);
    if (exhausted) exhausted_.fetch_sub(1, std::memory_order_relaxed);
    timers_->Cancel(kTimerCheckBack, id.bytes());
    timers_->Schedule(kTimerOutcomeExpiry, id.bytes(), expires_ms);
  });
  return absl::OkStatus();
}

void TxnWriter::RememberUnwritten(const TransactionId& id, bool commit) {
  unwritten_.emplace(id, commit);
}

absl::StatusOr<SendResult> TxnWriter::ApplyCommit(WriteContext& ctx,
                                                  const TransactionId& id) {
  if (auto it = unwritten_.find(id); it != unwritten_.end() && !it->second) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "transaction %s was rolled back; it cannot be committed",
        id.ToString()));
  }
  std::string_view value;
  int rc = GetRow(ctx.txn(), tables_.half, IdKey(id), &value);
  if (rc == MDB_NOTFOUND) {
    absl::StatusOr<TxnOutcome> outcome = Resolved(ctx, id);
    if (!outcome.ok()) return outcome.status();
    if (outcome->kind == TxnOutcomeKind::kRolledBack) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "transaction %s was rolled back; it cannot be committed",
          id.ToString()));
    }
    return SendResult{.id = outcome->message_id,
                      .queue = outcome->queue,
                      .offset = outcome->offset,
                      .store_time = absl::FromUnixMillis(
                          outcome->message_id.store_time_ms())};
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot read a transaction");
  absl::StatusOr<HalfRow> half = DecodeHalf(value);
  if (!half.ok()) return half.status();
  // The stored record names its topic and queue.
  const std::vector<uint64_t> aligned = AlignedCopy(half->record);
  absl::StatusOr<MessageView> view = MessageView::FromRecord(std::string_view(
      reinterpret_cast<const char*>(aligned.data()), half->record.size()));
  if (!view.ok()) return view.status();
  absl::StatusOr<PendingRecord> record =
      PendingRecord::FromStored(half->record);
  if (!record.ok()) return record.status();
  std::shared_ptr<Topic> topic = topics_->Find(view->topic());
  if (topic == nullptr) {
    return absl::NotFoundError(absl::StrFormat(
        "transaction %s cannot commit: topic '%s' no longer exists; roll it "
        "back",
        id.ToString(), std::string(view->topic())));
  }
  const uint32_t queue = std::min(view->queue(), topic->queue_count() - 1);
  const TxnState state = half->state;  // `value` dies with the next write
  // A delayed message, committed: it waits for its time like a delayed send.
  absl::StatusOr<SendResult> sent = delays_->Store(ctx, *topic, queue, *record);
  if (!sent.ok()) return sent.status();
  TxnOutcome outcome{.kind = TxnOutcomeKind::kCommitted,
                     .resolved_ms = ctx.now_ms(),
                     .message_id = sent->id,
                     .queue = sent->queue,
                     .offset = sent->offset};
  if (absl::Status s = Finish(ctx, id, state, outcome); !s.ok()) return s;
  return sent;
}

absl::Status TxnWriter::ApplyRollback(WriteContext& ctx,
                                      const TransactionId& id) {
  if (auto it = unwritten_.find(id); it != unwritten_.end() && it->second) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "transaction %s was committed; it cannot be rolled back",
        id.ToString()));
  }
  std::string_view value;
  const int rc = GetRow(ctx.txn(), tables_.half, IdKey(id), &value);
  if (rc == MDB_NOTFOUND) {
    absl::StatusOr<TxnOutcome> outcome = Resolved(ctx, id);
    if (!outcome.ok()) return outcome.status();
    if (outcome->kind == TxnOutcomeKind::kCommitted) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "transaction %s was committed (message %s); it cannot be rolled "
          "back",
          id.ToString(), outcome->message_id.ToString()));
    }
    return absl::OkStatus();
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot read a transaction");
  absl::StatusOr<HalfRow> half = DecodeHalf(value);
  if (!half.ok()) return half.status();
  return Finish(ctx, id, half->state,
                TxnOutcome{.kind = TxnOutcomeKind::kRolledBack,
                           .resolved_ms = ctx.now_ms()});
}

absl::Status TxnWriter::ApplyCheckResult(WriteContext& ctx,
                                         const TransactionId& id,
                                         uint32_t checks,
                                         TransactionState answer,
                                         const CheckPolicy& policy) {
  std::string_view value;
  int rc = GetRow(ctx.txn(), tables_.half, IdKey(id), &value);
  if (rc == MDB_NOTFOUND) return absl::OkStatus();  // resolved meanwhile
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot read a transaction");
  absl::StatusOr<HalfRow> half = DecodeHalf(value);
  if (!half.ok()) return half.status();
  const TxnState* state = &half->state;
  if (state->exhausted || state->checks != checks) {
    return absl::OkStatus();  // a stale answer
  }
  if (answer != TransactionState::kUnknown) {
    absl::Status applied = answer == TransactionState::kCommit
                               ? ApplyCommit(ctx, id).status()
                               : ApplyRollback(ctx, id);
    // Applied, or the batch failed: done. An answer refused for a reason of
    // its own (a deleted topic) wrote nothing; count it as unknown below, so
    // the transaction keeps being checked and ends in the hold.
    if (applied.ok() || ctx.failed()) return applied;
  }
  // Re-read after a refused commit (its writes may have moved the value).
  if (int again = GetRow(ctx.txn(), tables_.half, IdKey(id), &value);
      again != MDB_SUCCESS) {
    return ctx.Fail(again, "cannot read a transaction");
  }
  half = DecodeHalf(value);
  if (!half.ok()) return half.status();
  state = &half->state;
  const std::string record(half->record);
  TxnState next = *state;
  next.checks = checks + 1;
  rc = DeleteRow(ctx.txn(), tables_.timer,
                 TimerKey(state->next_check_ms, kTimerCheckBack, id.bytes()));
  if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
  if (next.checks >= policy.max_checks) {
    next.exhausted = true;
  } else {
    next.next_check_ms = ctx.now_ms() + absl::ToInt64Milliseconds(
                                            CheckBackoff(policy, next.checks));
    if (rc == MDB_SUCCESS) {
      rc =
          PutRow(ctx.txn(), tables_.timer,
                 TimerKey(next.next_check_ms, kTimerCheckBack, id.bytes()), "");
    }
  }
  if (rc == MDB_SUCCESS) {
    rc = PutRow(ctx.txn(), tables_.half, IdKey(id), EncodeHalf(next, record));
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot record a check-back");
  ctx.AfterCommit([this, id, next] {
    if (next.exhausted) {
      exhausted_.fetch_add(1, std::memory_order_relaxed);
      timers_->Cancel(kTimerCheckBack, id.bytes());
    } else {
      timers_->Schedule(kTimerCheckBack, id.bytes(), next.next_check_ms);
    }
  });
  return absl::OkStatus();
}

absl::Status TxnWriter::ApplyExpireOutcome(WriteContext& ctx,
                                           const TransactionId& id,
                                           int64_t due_ms) {
  int rc = DeleteRow(ctx.txn(), tables_.outcome, IdKey(id));
  if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND) {
    rc = DeleteRow(ctx.txn(), tables_.timer,
                   TimerKey(due_ms, kTimerOutcomeExpiry, id.bytes()));
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return ctx.Fail(rc, "cannot expire a transaction outcome");
  }
  return absl::OkStatus();
}

}  // namespace txmq
