#include "retry/redelivery.h"

#include "absl/strings/str_format.h"
#include "log/append.h"
#include "log/record_codec.h"
#include "storage/keys.h"
#include "txn/txn_store.h"

namespace txmq {
namespace {

std::array<uint8_t, 16> ExpiryId(uint64_t serial, uint32_t queue) {
  std::array<uint8_t, 16> id{};
  char* out = reinterpret_cast<char*>(id.data());
  PutBigEndian(serial, 8, out);
  PutBigEndian(queue, 4, out + 8);
  return id;
}

}  // namespace

class Redelivery::RequeueRequest final : public WriteRequest {
 public:
  RequeueRequest(Redelivery* owner, std::shared_ptr<GroupState> state,
                 uint32_t queue, std::vector<uint64_t> offsets,
                 std::optional<absl::Duration> delay,
                 std::optional<uint32_t> dead_letter_times)
      : owner_(owner),
        state_(std::move(state)),
        queue_(queue),
        offsets_(std::move(offsets)),
        delay_(delay),
        dead_letter_times_(dead_letter_times) {
    // A lost copy leaves the original unacknowledged: it is delivered again
    // after a restart.
    lazy = true;
  }

  size_t weight() const override { return offsets_.size(); }

  absl::Status Apply(WriteContext& ctx) override {
    done_.clear();
    copies_ = dead_ = 0;
    Topic& topic = *state_->topic();
    const std::shared_ptr<const RedeliveryTargets> targets = state_->targets();
    if (topic.deleted() || targets == nullptr) return absl::OkStatus();
    QueueCursor& cursor = state_->cursor(queue_);
    for (uint64_t offset : offsets_) {
      if (cursor.IsAcked(offset)) continue;
      const OffsetKey key(offset);
      std::string_view stored;
      int rc = GetRow(ctx.txn(), topic.queue(queue_).dbi,
                      std::string_view(key.bytes, 8), &stored);
      if (rc == MDB_NOTFOUND) {  // deleted by retention: nothing to redo
        done_.push_back(offset);
        continue;
      }
      if (rc != MDB_SUCCESS) {
        return ctx.Fail(rc, "cannot read a message to deliver again");
      }
      absl::Status s = CopyOne(ctx, *targets, stored);
      if (ctx.failed()) return s;
      // Not copied (a damaged record, a deleted retry topic): it counts as
      // consumed rather than failing forever.
      done_.push_back(offset);
    }
    return absl::OkStatus();
  }

  void Complete(absl::Status status) override {
    QueueCursor& cursor = state_->cursor(queue_);
    if (status.ok()) {
      owner_->redeliveries_.fetch_add(copies_, std::memory_order_relaxed);
      owner_->dead_lettered_.fetch_add(dead_, std::memory_order_relaxed);
      bool advanced = false;
      for (uint64_t offset : done_) {
        absl::StatusOr<bool> acked = cursor.Ack(offset, offset + 1);
        advanced |= acked.ok() && *acked;
      }
      if (advanced && cursor.MarkDirty()) {
        owner_->groups_->SchedulePersist(state_, queue_);
      }
    } else {
      // Try again when a short lease runs out.
      const int64_t retry =
          absl::ToUnixMillis(owner_->clock_->Now() + absl::Seconds(1));
      bool arm = false;
      for (uint64_t offset : offsets_) {
        arm |= cursor.Lease(offset, offset + 1, retry, /*owner=*/0);
      }
      if (arm) owner_->Arm(*state_, queue_, retry);
    }
    delete this;
  }

 private:
  // Copies `stored` to the retry queue or, when its retries are spent, to
  // the dead-letter queue.
  absl::Status CopyOne(WriteContext& ctx, const RedeliveryTargets& targets,
                       std::string_view stored) {
    absl::StatusOr<uint32_t> times =
        dead_letter_times_.has_value()
            ? absl::StatusOr<uint32_t>(*dead_letter_times_)
            : PendingRecord::ReconsumeTimesOf(stored);
    if (!times.ok()) return times.status();
    const uint32_t next = *times + 1;
    if (dead_letter_times_.has_value() ||
        next > targets.policy.max_reconsume_times) {
      // `stored` points into the map: copy it before any write.
      absl::StatusOr<PendingRecord> copy = PendingRecord::CopyFor(
          stored, targets.dead_letter->name(), *times, 0);
      if (!copy.ok()) return copy.status();
      absl::StatusOr<SendResult> sent =
          AppendToQueue(ctx, *targets.dead_letter, 0, *copy);
      if (!sent.ok()) return sent.status();
      ++dead_;
      return absl::OkStatus();
    }
    const int64_t due_ms =
        ctx.now_ms() + absl::ToInt64Milliseconds(
                           delay_.value_or(targets.policy.Backoff(next)));
    absl::StatusOr<PendingRecord> copy =
        PendingRecord::CopyFor(stored, targets.retry->name(), next, due_ms);
    if (!copy.ok()) return copy.status();
    absl::StatusOr<SendResult> sent =
        owner_->delays_->Store(ctx, *targets.retry, 0, *copy);
    if (!sent.ok()) return sent.status();
    ++copies_;
    return absl::OkStatus();
  }

  Redelivery* const owner_;
  const std::shared_ptr<GroupState> state_;
  const uint32_t queue_;
  const std::vector<uint64_t> offsets_;
  const std::optional<absl::Duration> delay_;
  const std::optional<uint32_t> dead_letter_times_;
  // Apply's results (recomputed if the batch is applied again).
  std::vector<uint64_t> done_;
  uint64_t copies_ = 0;
  uint64_t dead_ = 0;
};

Redelivery::Redelivery(Writer* writer, GroupRegistry* groups,
                       DelayWriter* delays, TimerSink* timers,
                       CommitSignal* signal, std::shared_ptr<Clock> clock)
    : writer_(writer),
      groups_(groups),
      delays_(delays),
      timers_(timers),
      signal_(signal),
      clock_(std::move(clock)) {}

void Redelivery::Arm(const GroupState& state, uint32_t queue, int64_t due_ms) {
  timers_->Schedule(kTimerLeaseExpiry, ExpiryId(state.serial(), queue), due_ms);
}

void Redelivery::OnExpiry(const TimerTarget& target) {
  const char* id = reinterpret_cast<const char*>(target.id.data());
  const uint64_t serial = GetBigEndian(id, 8);
  const uint32_t queue = static_cast<uint32_t>(GetBigEndian(id + 8, 4));
  std::shared_ptr<GroupState> state = groups_->FindBySerial(serial);
  if (state == nullptr || queue >= state->topic()->queue_count()) return;
  std::vector<OffsetRange> unacked;
  const int64_t next = state->cursor(queue).TakeExpired(
      absl::ToUnixMillis(clock_->Now()), &unacked);
  if (next != INT64_MAX) Arm(*state, queue, next);
  std::vector<uint64_t> offsets;
  for (const OffsetRange& r : unacked) {
    for (uint64_t o = r.begin; o < r.end; ++o) offsets.push_back(o);
  }
  if (!offsets.empty()) {
    Fail(std::move(state), queue, std::move(offsets), std::nullopt);
  }
  // A blocked ordered queue whose wait is over: let consumers look again.
  signal_->Notify();
}

void Redelivery::Fail(std::shared_ptr<GroupState> state, uint32_t queue,
                      std::vector<uint64_t> offsets,
                      std::optional<absl::Duration> delay) {
  const std::shared_ptr<const RedeliveryTargets> targets = state->targets();
  if (targets == nullptr || !targets->ordered) {
    Requeue(std::move(state), queue, std::move(offsets), delay, std::nullopt);
    return;
  }
  QueueCursor& cursor = state->cursor(queue);
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  for (uint64_t offset : offsets) {
    const uint32_t failures = cursor.Failures(offset);
    if (failures >= targets->policy.max_reconsume_times) {
      Requeue(state, queue, {offset}, std::nullopt, failures);
      continue;
    }
    const int64_t not_before_ms =
        now_ms + absl::ToInt64Milliseconds(
                     delay.value_or(targets->policy.Backoff(failures + 1)));
    bool arm = false;
    cursor.Defer(offset, not_before_ms, &arm);
    if (arm) Arm(*state, queue, not_before_ms);  // wakes the consumers then
  }
  signal_->Notify();
}

void Redelivery::Requeue(std::shared_ptr<GroupState> state, uint32_t queue,
                         std::vector<uint64_t> offsets,
                         std::optional<absl::Duration> delay,
                         std::optional<uint32_t> dead_letter_times) {
  // Bounded requests: a consumer that let a huge batch expire does not
  // make one huge transaction.
  constexpr size_t kPerRequest = 1024;
  for (size_t i = 0; i < offsets.size(); i += kPerRequest) {
    const size_t end = std::min(offsets.size(), i + kPerRequest);
    writer_->Submit(new RequeueRequest(
        this, state, queue,
        std::vector<uint64_t>(offsets.begin() + i, offsets.begin() + end),
        delay, dead_letter_times));
  }
}

}  // namespace txmq
