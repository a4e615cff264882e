#include "broker/consumer_impl.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_format.h"
#include "consume/cursor_store.h"
#include "consume/retention_skip.h"
#include "log/message_view_decoder.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"

namespace txmq {

// Offsets [begin, end) of `queue`, claimed for one batch.
struct Claim {
  uint32_t queue;
  uint64_t begin;
  uint64_t end;
};

// Keeps a batch's views valid: the read transaction (the snapshot they
// point into), the gate pass (no remap under them), and copies of the rare
// records that were not 8-byte aligned in the map.
class LocalBatchResources final : public ReceivedBatch::Resources {
 public:
  LocalBatchResources(GatePass pass, std::shared_ptr<ReadTxnCache> txns,
                      MDB_txn* txn, const GroupState* owner,
                      std::vector<Claim> claims)
      : pass_(std::move(pass)),
        txns_(std::move(txns)),
        txn_(txn),
        owner_(owner),
        claims_(std::move(claims)) {}
  ~LocalBatchResources() override {
    // End the transaction before leaving the gate.
    txns_->Release(txn_);
    pass_.Release();
  }

  std::string_view Copy(std::string_view record) {
    // Whole words, even for a damaged record of another length (which the
    // decoder then refuses).
    copies_.emplace_back(new uint64_t[(record.size() + 7) / 8]);
    std::memcpy(copies_.back().get(), record.data(), record.size());
    return std::string_view(reinterpret_cast<char*>(copies_.back().get()),
                            record.size());
  }

  // The group state whose cursors the claims came from, and the claims:
  // exactly the messages of the batch.
  const GroupState* owner() const { return owner_; }
  const std::vector<Claim>& claims() const { return claims_; }

 private:
  GatePass pass_;
  std::shared_ptr<ReadTxnCache> txns_;
  MDB_txn* txn_;
  const GroupState* owner_;
  std::vector<Claim> claims_;
  std::vector<std::unique_ptr<uint64_t[]>> copies_;
};

namespace {

// How long Receive waits at a closed MapGate before it returns an empty
// batch (see Receive).
constexpr absl::Duration kClosedGateSlice = absl::Milliseconds(5);

}  // namespace

LocalConsumer::LocalConsumer(BrokerCore* core, Params params)
    : core_(core),
      group_(std::move(params.group)),
      state_(std::move(params.state)),
      retry_(std::move(params.retry)),
      queue_count_(state_->topic()->queue_count()),
      txns_(core->read_txns),
      filter_(std::move(params.filter)),
      invisible_ms_(params.invisible_duration == absl::InfiniteDuration()
                        ? INT64_MAX
                        : absl::ToInt64Milliseconds(params.invisible_duration)),
      id_(core->next_consumer_id.fetch_add(1, std::memory_order_relaxed)),
      ordered_(params.ordered),
      on_close_(std::move(params.on_close)) {}

LocalConsumer::~LocalConsumer() {
  for (uint32_t i = 0; i <= queue_count_; ++i) {
    StateOf(i).cursor(QueueOf(i)).ReturnOwned(id_);
  }
  core_->signal.Notify();  // waiting consumers: look again
  if (on_close_) on_close_();
}

absl::Status LocalConsumer::Filter(std::vector<MessageView>& views) {
  if (filter_.accepts_all()) return absl::OkStatus();
  size_t kept = 0;
  for (size_t i = 0; i < views.size(); ++i) {
    if (filter_.Accepts(views[i])) {
      views[kept++] = views[i];
      continue;
    }
    if (absl::Status s = Ack(views[i]); !s.ok()) return s;
  }
  views.resize(kept);
  return absl::OkStatus();
}

absl::Status LocalConsumer::CheckTopic() const {
  if (state_->topic()->deleted()) {
    return absl::NotFoundError(
        absl::StrFormat("topic '%s' was deleted", state_->topic()->name()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReceivedBatch> LocalConsumer::Receive(size_t max_messages,
                                                     absl::Duration wait) {
  if (max_messages == 0) {
    return absl::InvalidArgumentError("Receive needs max_messages >= 1");
  }
  const absl::Time deadline = absl::Now() + wait;
  MapGate& gate = core_->env->gate();
  while (true) {
    if (absl::Status s = CheckTopic(); !s.ok()) return s;
    const uint64_t epoch = core_->signal.epoch();
    if (!gate.TryEnter()) {
      // The writer waits for readers to leave (map growth, closing a deleted
      // topic's tables). Wait a little, never long: this thread may hold a
      // batch the writer is waiting for, and then only returning lets it go.
      const absl::Time slice =
          std::min(deadline, absl::Now() + kClosedGateSlice);
      if (!gate.WaitOpen(slice)) return ReceivedBatch();
      continue;
    }
    GatePass pass(&gate);
    // Checked again inside the gate: a deleted topic's tables are dropped
    // only while no reader is inside, and the gate's reopening publishes
    // the deletion, so from here on the tables stay this topic's.
    if (absl::Status s = CheckTopic(); !s.ok()) return s;
    // Load the queue ends BEFORE beginning the transaction: the writer
    // publishes an end only after its commit, so a snapshot begun after the
    // load holds every offset below it.
    const uint32_t n = queue_count_ + 1;  // and the retry queue
    absl::InlinedVector<uint64_t, 17> limits(n);
    for (uint32_t i = 0; i < n; ++i) {
      limits[i] = StateOf(i)
                      .topic()
                      ->queue(QueueOf(i))
                      .end.load(std::memory_order_acquire);
    }
    MDB_txn* txn = nullptr;
    if (int rc = txns_->Acquire(&txn); rc != MDB_SUCCESS) {
      return LmdbStatus(rc,
                        "cannot begin a read transaction (raise "
                        "Options::max_readers if batches pile up)");
    }

    std::vector<Claim> claims;
    uint64_t remaining = max_messages;
    const int64_t now_ms = absl::ToUnixMillis(core_->clock->Now());
    const int64_t deadline_ms =
        invisible_ms_ == INT64_MAX ? INT64_MAX : now_ms + invisible_ms_;
    for (uint32_t k = 0; k < n && remaining > 0; ++k) {
      const uint32_t i = (next_queue_ + k) % n;
      QueueCursor& cursor = StateOf(i).cursor(QueueOf(i));
      auto [begin, end] = ordered_ ? cursor.ClaimOrdered(limits[i], now_ms)
                                   : cursor.Claim(remaining, limits[i]);
      if (begin < end) {
        claims.push_back({i, begin, end});
        remaining -= end - begin;
        if (cursor.Lease(begin, end, deadline_ms, id_)) {
          core_->redelivery->Arm(StateOf(i), QueueOf(i), deadline_ms);
        }
      }
    }
    next_queue_ = (next_queue_ + 1) % n;

    if (claims.empty()) {
      txns_->Release(txn);
      pass.Release();
      if (absl::Now() >= deadline ||
          !core_->signal.WaitChange(epoch, deadline)) {
        return ReceivedBatch();
      }
      continue;
    }

    auto resources = std::make_unique<LocalBatchResources>(
        std::move(pass), txns_, txn, state_.get(), claims);
    std::vector<MessageView> views;
    views.reserve(max_messages - remaining);
    uint64_t copied = 0;
    for (const Claim& claim : claims) {
      if (absl::Status s = ReadClaim(txn, claim, *resources, views, &copied);
          !s.ok()) {
        // Deliver none of it, and hand every claim back: a later Receive
        // (after a repair) gets them, and the committed offsets can still
        // advance past them.
        for (const Claim& c : claims) {
          QueueCursor& cursor = StateOf(c.queue).cursor(QueueOf(c.queue));
          for (uint64_t o = c.begin; o < c.end; ++o) cursor.Release(o);
          cursor.Unclaim(c.begin, c.end);
        }
        return s;
      }
    }
    core_->zero_copy_reads.fetch_add(views.size() - copied,
                                     std::memory_order_relaxed);
    if (copied != 0) {
      core_->copied_reads.fetch_add(copied, std::memory_order_relaxed);
    }
    DropPreAcked(claims, views);
    if (absl::Status s = Filter(views); !s.ok()) return s;
    if (views.empty()) continue;  // all filtered out: claim further
    return ReceivedBatch(std::move(views), std::move(resources));
  }
}

absl::Status LocalConsumer::ReadClaim(MDB_txn* txn, const Claim& claim,
                                      LocalBatchResources& resources,
                                      std::vector<MessageView>& views,
                                      uint64_t* copied) {
  const Topic& topic = *StateOf(claim.queue).topic();
  const uint32_t queue = QueueOf(claim.queue);
  const bool copies = claim.queue == queue_count_;
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, topic.queue(queue).dbi, &cursor);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read a queue");
  }
  // Pass 1 walks the B-tree and collects the records; pass 2 decodes them,
  // prefetching a few records ahead (decoding is bound by memory latency).
  records_.clear();
  // Offsets below the queue's first were deleted by retention: they count
  // as consumed, and the cursor moves past them.
  const uint64_t begin = SkipExpired(*core_->groups, SharedStateOf(claim.queue),
                                     queue, claim.begin);
  const OffsetKey first(begin);
  MDB_val k{8, const_cast<char*>(first.bytes)}, v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_KEY);
  for (uint64_t offset = begin; offset < claim.end; ++offset) {
    if (rc == MDB_SUCCESS &&
        (k.mv_size != 8 ||
         GetBigEndian(static_cast<char*>(k.mv_data), 8) != offset)) {
      rc = MDB_NOTFOUND;
    }
    if (rc != MDB_SUCCESS) {
      mdb_cursor_close(cursor);
      return absl::DataLossError(absl::StrFormat(
          "message %d of queue %d of topic '%s' is missing (%s); the data "
          "file is damaged (run 'txmq verify')",
          offset, queue, topic.name(), mdb_strerror(rc)));
    }
    std::string_view record(static_cast<const char*>(v.mv_data), v.mv_size);
    if (reinterpret_cast<uintptr_t>(record.data()) % 8 != 0) {
      record = resources.Copy(record);
      ++*copied;
    }
    records_.push_back(record);
    rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cursor);

  // The fields sit in a record's first two cache lines.
  constexpr size_t kPrefetchAhead = 8;
  for (size_t i = 0; i < records_.size(); ++i) {
    if (i + kPrefetchAhead < records_.size()) {
      __builtin_prefetch(records_[i + kPrefetchAhead].data());
      __builtin_prefetch(records_[i + kPrefetchAhead].data() + 64);
    }
    MessageView& view = views.emplace_back();
    // Views carry the consumer's topic name, copies too.
    const std::string& name = state_->topic()->name();
    if (absl::Status s = copies ? internal::MessageViewDecoder::DecodeCopy(
                                      records_[i], name, begin + i, &view)
                                : internal::MessageViewDecoder::Decode(
                                      records_[i], name, &view);
        !s.ok()) {
      return s;
    }
    if (ordered_) {
      internal::MessageViewDecoder::SetReconsumeTimes(
          view, view.reconsume_times() +
                    StateOf(claim.queue).cursor(queue).Failures(begin + i));
    }
  }
  return absl::OkStatus();
}

absl::Status LocalConsumer::AckIn(uint32_t i, uint64_t begin, uint64_t end) {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  QueueCursor& cursor = StateOf(i).cursor(QueueOf(i));
  absl::StatusOr<bool> advanced = cursor.Ack(begin, end);
  if (!advanced.ok()) return advanced.status();
  if (*advanced && cursor.MarkDirty()) {
    core_->groups->SchedulePersist(SharedStateOf(i), QueueOf(i));
  }
  // Ordered: the queue's next message may go now, perhaps to a consumer
  // that waits.
  if (ordered_) core_->signal.Notify();
  return absl::OkStatus();
}

absl::StatusOr<std::pair<uint32_t, uint64_t>> LocalConsumer::Locate(
    const MessageView& message) const {
  if (!OwnTopic(message)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message of topic '%s' given to a consumer of topic '%s'",
        std::string(message.topic()), state_->topic()->name()));
  }
  const uint64_t copy = internal::MessageViewDecoder::CopyOffset(message);
  if (copy != internal::MessageViewDecoder::kNotACopy) {
    return std::make_pair(queue_count_, copy);
  }
  if (message.queue() >= queue_count_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("topic '%s' has no queue %d", state_->topic()->name(),
                        message.queue()));
  }
  return std::make_pair(message.queue(), message.offset());
}

bool LocalConsumer::OwnTopic(const MessageView& message) const {
  // Views this consumer made point at the topic's own name: compare the
  // pointer first, the bytes only for views from elsewhere.
  const std::string& name = state_->topic()->name();
  return message.topic().data() == name.data() || message.topic() == name;
}

absl::Status LocalConsumer::Ack(const MessageView& message) {
  absl::StatusOr<std::pair<uint32_t, uint64_t>> at = Locate(message);
  if (!at.ok()) return at.status();
  return AckIn(at->first, at->second, at->second + 1);
}

absl::Status LocalConsumer::Ack(const ReceivedBatch& batch) {
  // A batch of this group's: acknowledge its claims, a range per queue,
  // without walking the views.
  if (const auto* local =
          dynamic_cast<const LocalBatchResources*>(batch.resources());
      local != nullptr && local->owner() == state_.get()) {
    for (const Claim& claim : local->claims()) {
      if (absl::Status s = AckIn(claim.queue, claim.begin, claim.end);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  for (const MessageView& view : batch) {
    if (absl::Status s = Ack(view); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status LocalConsumer::Ack(uint32_t queue, uint64_t offset) {
  if (queue >= queue_count_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "topic '%s' has no queue %d", state_->topic()->name(), queue));
  }
  return AckIn(queue, offset, offset + 1);
}

void LocalConsumer::DropPreAcked(const std::vector<Claim>& claims,
                                 std::vector<MessageView>& views) {
  bool any = false;
  for (const Claim& c : claims) {
    any |= StateOf(c.queue).cursor(QueueOf(c.queue)).preacked_until() > c.begin;
  }
  if (!any) return;
  std::erase_if(views, [this](const MessageView& view) {
    absl::StatusOr<std::pair<uint32_t, uint64_t>> at = Locate(view);
    return at.ok() &&
           StateOf(at->first).cursor(QueueOf(at->first)).IsAcked(at->second);
  });
}

absl::Status LocalConsumer::AckInTransaction(WriteContext& ctx,
                                             const MessageView& message) {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  absl::StatusOr<std::pair<uint32_t, uint64_t>> at = Locate(message);
  if (!at.ok()) return at.status();
  const auto [i, offset] = *at;
  QueueCursor& cursor = StateOf(i).cursor(QueueOf(i));
  if (cursor.IsAcked(offset)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "message %s is acknowledged already", message.id().ToString()));
  }
  // Still leased: its invisible time has not run out. If it runs out
  // before this transaction commits, the redelivery's writer request comes
  // after the commit, sees the acknowledgement and makes no copy.
  if (!cursor.IsLeased(offset)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "message %s is being delivered again (its invisible time ran out); "
        "roll back and process the redelivery",
        message.id().ToString()));
  }
  const GroupState& state = StateOf(i);
  if (int rc = PutAckRow(ctx.txn(), core_->env->cursor_table(), state.group(),
                         state.topic()->name(), QueueOf(i), offset);
      rc != MDB_SUCCESS) {
    return ctx.Fail(rc, "cannot store an acknowledgement");
  }
  ctx.AfterCommit(
      [this, state = SharedStateOf(i), queue = QueueOf(i), offset = offset] {
        QueueCursor& cursor = state->cursor(queue);
        cursor.NoteAckRow(offset);
        absl::StatusOr<bool> advanced = cursor.Ack(offset, offset + 1);
        if (advanced.ok() && *advanced && cursor.MarkDirty()) {
          core_->groups->SchedulePersist(state, queue);
        }
        if (ordered_) core_->signal.Notify();
      });
  return absl::OkStatus();
}

absl::Status LocalConsumer::ReconsumeLater(
    const MessageView& message, std::optional<absl::Duration> delay) {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  if (delay.has_value() && *delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ReconsumeLater needs a delay >= 0");
  }
  absl::StatusOr<std::pair<uint32_t, uint64_t>> at = Locate(message);
  if (!at.ok()) return at.status();
  const auto [i, offset] = *at;
  QueueCursor& cursor = StateOf(i).cursor(QueueOf(i));
  if (!cursor.Release(offset)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "message %s is %s", message.id().ToString(),
        cursor.IsAcked(offset)
            ? "acknowledged already"
            : "being delivered again already (its invisible time ran out)"));
  }
  core_->redelivery->Fail(SharedStateOf(i), QueueOf(i), {offset}, delay);
  return absl::OkStatus();
}

absl::Status LocalConsumer::ChangeInvisibleDuration(const MessageView& message,
                                                    absl::Duration duration) {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  if (duration < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError("an invisible duration is at least 1 ms");
  }
  absl::StatusOr<std::pair<uint32_t, uint64_t>> at = Locate(message);
  if (!at.ok()) return at.status();
  const auto [i, offset] = *at;
  const int64_t deadline_ms =
      duration == absl::InfiniteDuration()
          ? INT64_MAX
          : absl::ToUnixMillis(core_->clock->Now() + duration);
  bool arm = false;
  if (absl::Status s =
          StateOf(i).cursor(QueueOf(i)).Extend(offset, deadline_ms, &arm);
      !s.ok()) {
    return s;
  }
  if (arm) core_->redelivery->Arm(StateOf(i), QueueOf(i), deadline_ms);
  return absl::OkStatus();
}

absl::Status LocalConsumer::Flush() {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  return core_->groups->Flush(state_);
}

absl::StatusOr<uint64_t> LocalConsumer::CommittedOffset(uint32_t queue) const {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  if (queue >= state_->topic()->queue_count()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "topic '%s' has no queue %d", state_->topic()->name(), queue));
  }
  return state_->cursor(queue).committed();
}

}  // namespace txmq
