#include "delay/delay_writer.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "log/append.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"
#include "txn/txn_store.h"

namespace txmq {
namespace {

std::string_view IdView(const std::array<uint8_t, 16>& id) {
  return std::string_view(reinterpret_cast<const char*>(id.data()), id.size());
}

}  // namespace

DelayWriter::DelayWriter(MDB_dbi delay_table, MDB_dbi timer_table,
                         TopicRegistry* topics, TimerSink* timers, uint32_t run)
    : delay_(delay_table),
      timer_(timer_table),
      topics_(topics),
      timers_(timers),
      run_(run) {}

absl::Status DelayWriter::LoadCount(MDB_txn* txn) {
  MDB_stat stat;
  if (int rc = mdb_stat(txn, delay_, &stat); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot count delayed messages");
  }
  pending_.store(stat.ms_entries);
  return absl::OkStatus();
}

absl::StatusOr<SendResult> DelayWriter::ApplyDelay(WriteContext& ctx,
                                                   const Topic& topic,
                                                   uint32_t queue,
                                                   const PendingRecord& record,
                                                   int64_t due_ms) {
  if (topic.deleted()) {
    return absl::NotFoundError(
        absl::StrFormat("topic '%s' was deleted", topic.name()));
  }
  std::array<uint8_t, 16> id;
  char* out = reinterpret_cast<char*>(id.data());
  PutBigEndian(static_cast<uint64_t>(due_ms), 6, out);
  PutBigEndian(run_, 4, out + 6);
  PutBigEndian(sequence_++, 6, out + 10);  // never reused, even on abort
  int rc = PutRow(ctx.txn(), delay_, IdView(id), record.Serialize());
  if (rc == MDB_SUCCESS) {
    rc = PutRow(ctx.txn(), timer_, TimerKey(due_ms, kTimerDelivery, id), "");
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot store a delayed message");
  ctx.AfterCommit([this, id, due_ms] {
    pending_.fetch_add(1, std::memory_order_relaxed);
    timers_->Schedule(kTimerDelivery, id, due_ms);
  });
  return SendResult{.queue = queue,
                    .offset = SendResult::kNotYetDelivered,
                    .store_time = absl::FromUnixMillis(ctx.now_ms()),
                    .deliver_at = absl::FromUnixMillis(due_ms)};
}

absl::StatusOr<SendResult> DelayWriter::Store(WriteContext& ctx, Topic& topic,
                                              uint32_t queue,
                                              PendingRecord& record) {
  const int64_t deliver_at_ms = record.deliver_at_ms();
  if (deliver_at_ms > ctx.now_ms()) {
    return ApplyDelay(ctx, topic, queue, record, deliver_at_ms);
  }
  return AppendToQueue(ctx, topic, queue, record);
}

absl::Status DelayWriter::ApplyDeliver(WriteContext& ctx,
                                       const std::array<uint8_t, 16>& id,
                                       int64_t due_ms) {
  std::string_view stored;
  int rc = GetRow(ctx.txn(), delay_, IdView(id), &stored);
  if (rc == MDB_NOTFOUND) return absl::OkStatus();  // delivered already
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot read a delayed message");
  // The record names its topic and queue.
  std::vector<uint64_t> words((stored.size() + 7) / 8);
  std::memcpy(words.data(), stored.data(), stored.size());
  absl::StatusOr<MessageView> view = MessageView::FromRecord(std::string_view(
      reinterpret_cast<const char*>(words.data()), stored.size()));
  absl::StatusOr<PendingRecord> record = PendingRecord::FromStored(stored);
  std::shared_ptr<Topic> topic =
      view.ok() ? topics_->Find(view->topic()) : nullptr;
  if (topic != nullptr && record.ok()) {
    const uint32_t queue = std::min(view->queue(), topic->queue_count() - 1);
    absl::StatusOr<SendResult> sent =
        AppendToQueue(ctx, *topic, queue, *record);
    if (!sent.ok() && ctx.failed()) return sent.status();
  }
  // Delivered, or undeliverable (topic deleted, record damaged): drop both
  // rows either way, or the timer would fire forever.
  rc = DeleteRow(ctx.txn(), delay_, IdView(id));
  if (rc == MDB_SUCCESS) {
    rc = DeleteRow(ctx.txn(), timer_, TimerKey(due_ms, kTimerDelivery, id));
    if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
  }
  if (rc != MDB_SUCCESS)
    return ctx.Fail(rc, "cannot deliver a delayed message");
  ctx.AfterCommit([this] { pending_.fetch_sub(1, std::memory_order_relaxed); });
  return absl::OkStatus();
}

}  // namespace txmq
