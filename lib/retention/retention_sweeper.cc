#include "retention/retention_sweeper.h"

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "log/key_index.h"
#include "log/record_layout.h"
#include "retention/retention_policy.h"
#include "storage/keys.h"
#include "timer/timer_service.h"
#include "txmq/message.h"
#include "txn/txn_store.h"

namespace txmq {
namespace {

static_assert(IsVolatileKind(kTimerRetentionSweep),
              "the sweep timer must have no row in the timer table");

constexpr std::array<uint8_t, 16> kSweepTimerId{};

// The record `v` as 8-byte aligned words, or nullopt when its size is not
// a whole number of words. `scratch` holds a copy of a record that is not
// aligned in the map (docs/format.md says none is; the reader needs
// aligned words).
std::optional<std::string_view> Aligned(const MDB_val& v,
                                        std::vector<uint64_t>& scratch) {
  std::string_view record(static_cast<const char*>(v.mv_data), v.mv_size);
  if (record.size() % 8 != 0) return std::nullopt;
  if (reinterpret_cast<uintptr_t>(record.data()) % 8 != 0) {
    scratch.resize(record.size() / 8);
    std::memcpy(scratch.data(), record.data(), record.size());
    record = std::string_view(reinterpret_cast<const char*>(scratch.data()),
                              record.size());
  }
  return record;
}

// The store time of the record `v`, or nullopt when it does not decode.
std::optional<int64_t> StoreTimeMs(const MDB_val& v,
                                   std::vector<uint64_t>& scratch) {
  std::optional<std::string_view> aligned = Aligned(v, scratch);
  if (!aligned.has_value()) return std::nullopt;
  const std::string_view record = *aligned;
  HotFields hot;
  switch (ReadHotFields(record, &hot)) {
    case LayoutResult::kOk:
      return hot.store_ms;
    case LayoutResult::kUnsupported: {
      absl::StatusOr<MessageView> view = MessageView::FromRecord(record);
      if (!view.ok()) return std::nullopt;
      return absl::ToUnixMillis(view->store_time());
    }
    case LayoutResult::kMalformed:
      break;
  }
  return std::nullopt;
}

}  // namespace

// One link of a sweep: deletes up to kMaxDeletesPerRequest expired messages,
// starting at (topic_, queue_), and submits the next link when it completes.
class RetentionSweeper::SweepRequest final : public WriteRequest {
 public:
  SweepRequest(RetentionSweeper* sweeper,
               std::vector<std::shared_ptr<Topic>> topics, size_t topic,
               uint32_t queue)
      : sweeper_(sweeper),
        topics_(std::move(topics)),
        topic_(topic),
        queue_(queue) {
    lazy = true;  // a lost deletion is redone by the next sweep
  }

  size_t weight() const override { return kMaxDeletesPerRequest; }

  absl::Status Apply(WriteContext& ctx) override {
    // Applied again after an abort (the map grew): the transaction is
    // rolled back, so roll `first` back too, and start over.
    Undo();
    done_ = true;
    size_t budget = kMaxDeletesPerRequest;
    for (size_t t = topic_; t < topics_.size(); ++t) {
      const Topic& topic = *topics_[t];
      const int64_t retention_ms = topic.retention_ms();
      if (topic.deleted() || retention_ms == kKeepForever) continue;
      const int64_t cutoff_ms = ctx.now_ms() - retention_ms;
      for (uint32_t q = t == topic_ ? queue_ : 0; q < topic.queue_count();
           ++q) {
        if (budget == 0) {
          // Out of budget before looking: the next link starts here.
          next_topic_ = t;
          next_queue_ = q;
          done_ = false;
          return absl::OkStatus();
        }
        bool more = false;
        const size_t n =
            SweepQueue(ctx, topic, topic.queue(q), cutoff_ms, budget, &more);
        if (ctx.failed()) return ctx.status();
        budget -= n;
        if (more) {
          next_topic_ = t;
          next_queue_ = q;
          done_ = false;
          return absl::OkStatus();
        }
      }
    }
    return absl::OkStatus();
  }

  void Complete(absl::Status status) override {
    if (!status.ok()) {
      Undo();  // the transaction aborted: nothing was deleted
      sweeper_->Finish(status);
    } else if (done_) {
      sweeper_->Finish(absl::OkStatus());
    } else {
      sweeper_->writer_->Submit(new SweepRequest(sweeper_, std::move(topics_),
                                                 next_topic_, next_queue_));
    }
    delete this;
  }

 private:
  struct Moved {
    QueueState* queue;
    uint64_t old_first;
    size_t deleted;
  };

  // Deletes the expired prefix of `queue`, at most `budget` messages;
  // `*more` says the budget ran out before the prefix did. Returns how many
  // it deleted. LMDB errors go to ctx.Fail.
  size_t SweepQueue(WriteContext& ctx, const Topic& topic, QueueState& queue,
                    int64_t cutoff_ms, size_t budget, bool* more) {
    if (queue.writer_next < 2) return 0;  // nothing but the last message
    const uint64_t last = queue.writer_next - 1;
    MDB_cursor* cursor = nullptr;
    if (int rc = mdb_cursor_open(ctx.txn(), queue.dbi, &cursor);
        rc != MDB_SUCCESS) {
      ctx.Fail(rc, "retention: cannot open a queue").IgnoreError();
      return 0;
    }
    size_t deleted = 0;
    uint64_t next_first = 0;
    MDB_val k, v;
    int rc;
    // Always the table's first record: the one after the last deleted.
    while ((rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)) == MDB_SUCCESS) {
      if (k.mv_size != 8) {
        ReportDamage(topic, queue, "has a key that is not an offset");
        break;
      }
      const uint64_t offset =
          GetBigEndian(static_cast<const char*>(k.mv_data), 8);
      if (offset >= last) break;  // never the last message
      std::optional<int64_t> store_ms = StoreTimeMs(v, scratch_);
      if (!store_ms.has_value()) {
        ReportDamage(
            topic, queue,
            absl::StrFormat("has a damaged message at offset %d", offset));
        break;
      }
      if (*store_ms >= cutoff_ms) break;  // the first one not expired
      if (deleted == budget) {
        *more = true;
        break;
      }
      // Its key index row goes with it (the record decoded above).
      std::optional<std::string_view> record = Aligned(v, scratch_);
      absl::StatusOr<MessageView> view = MessageView::FromRecord(*record);
      if (view.ok()) {
        rc = DeleteKeyIndex(ctx.txn(), ctx.key_index(), queue.number,
                            view->key(), offset);
        if (rc != MDB_SUCCESS) break;
      }
      if (rc = mdb_cursor_del(cursor, 0); rc != MDB_SUCCESS) break;
      ++deleted;
      next_first = offset + 1;
    }
    mdb_cursor_close(cursor);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      ctx.Fail(rc, absl::StrFormat("retention: cannot delete expired messages "
                                   "of topic '%s'",
                                   topic.name()))
          .IgnoreError();
      return 0;  // the batch aborts; Complete undoes `first`
    }
    if (deleted > 0) {
      moved_.push_back(
          {&queue, queue.first.load(std::memory_order_relaxed), deleted});
      // Before the commit: see QueueState::first. The count moves with it,
      // so that a reader that sees the new `first` also sees the count
      // (message_count() + expired stays the number of messages stored).
      sweeper_->expired_.fetch_add(deleted, std::memory_order_relaxed);
      queue.first.store(next_first, std::memory_order_release);
    }
    return deleted;
  }

  void Undo() {
    for (auto it = moved_.rbegin(); it != moved_.rend(); ++it) {
      it->queue->first.store(it->old_first, std::memory_order_release);
      sweeper_->expired_.fetch_sub(it->deleted, std::memory_order_relaxed);
    }
    moved_.clear();
  }

  void ReportDamage(const Topic& topic, const QueueState& queue,
                    std::string_view what) {
    if (!sweeper_->reported_damage_.insert(queue.number).second) return;
    if (sweeper_->log_) {
      sweeper_->log_(
          LogLevel::kError,
          absl::StrFormat("retention: queue %d of topic '%s' %s; its older "
                          "messages are kept (run 'txmq verify')",
                          queue.index, topic.name(), std::string(what)));
    }
  }

  RetentionSweeper* const sweeper_;
  std::vector<std::shared_ptr<Topic>> topics_;
  const size_t topic_;
  const uint32_t queue_;

  // The outcome of the last Apply.
  bool done_ = true;
  size_t next_topic_ = 0;
  uint32_t next_queue_ = 0;
  std::vector<Moved> moved_;
  std::vector<uint64_t> scratch_;
};

RetentionSweeper::RetentionSweeper(TopicRegistry* topics, Writer* writer,
                                   TimerSink* timers,
                                   std::shared_ptr<Clock> clock,
                                   absl::Duration interval, LogFn log)
    : topics_(topics),
      writer_(writer),
      timers_(timers),
      clock_(std::move(clock)),
      interval_ms_(std::max<int64_t>(1, absl::ToInt64Milliseconds(interval))),
      log_(std::move(log)) {}

void RetentionSweeper::Start() { Arm(); }

void RetentionSweeper::Arm() {
  timers_->Schedule(kTimerRetentionSweep, kSweepTimerId,
                    absl::ToUnixMillis(clock_->Now()) + interval_ms_);
}

void RetentionSweeper::OnDue() {
  Arm();
  {
    absl::MutexLock lock(&mu_);
    if (running_) {
      again_ = true;
      return;
    }
    running_ = true;
  }
  StartSweep();
}

void RetentionSweeper::StartSweep() {
  std::vector<std::shared_ptr<Topic>> topics;
  for (std::shared_ptr<Topic>& topic : topics_->All()) {
    if (topic->retention_ms() != kKeepForever) {
      topics.push_back(std::move(topic));
    }
  }
  if (topics.empty()) {
    absl::MutexLock lock(&mu_);
    running_ = again_ = false;
    return;
  }
  writer_->Submit(new SweepRequest(this, std::move(topics), 0, 0));
}

void RetentionSweeper::Finish(const absl::Status& status) {
  // UNAVAILABLE is passing (the broker is closing, or the map waits for
  // held batches to grow); anything else is worth a line. Either way the
  // next sweep tries again.
  if (!status.ok() && !absl::IsUnavailable(status) && log_) {
    log_(LogLevel::kWarning,
         absl::StrFormat("retention sweep failed (%s); retrying in the next "
                         "sweep",
                         status.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (!again_) {
      running_ = false;
      return;
    }
    again_ = false;
  }
  StartSweep();
}

}  // namespace txmq
