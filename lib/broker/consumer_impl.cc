#include "broker/consumer_impl.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_format.h"
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

LocalConsumer::LocalConsumer(BrokerCore* core,
                             std::shared_ptr<GroupState> state,
                             TagFilter filter)
    : core_(core),
      state_(std::move(state)),
      txns_(std::make_shared<ReadTxnCache>(core->env->env())),
      filter_(std::move(filter)) {}

absl::Status LocalConsumer::Filter(std::vector<MessageView>& views) {
  if (filter_.accepts_all()) return absl::OkStatus();
  size_t kept = 0;
  for (size_t i = 0; i < views.size(); ++i) {
    if (filter_.Accepts(views[i])) {
      views[kept++] = views[i];
      continue;
    }
    if (absl::Status s = AckRange(views[i].queue(), views[i].offset(),
                                  views[i].offset() + 1);
        !s.ok()) {
      return s;
    }
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
  const Topic& topic = *state_->topic();
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
    const uint32_t n = topic.queue_count();
    absl::InlinedVector<uint64_t, 16> limits(n);
    for (uint32_t q = 0; q < n; ++q) {
      limits[q] = topic.queue(q).end.load(std::memory_order_acquire);
    }
    MDB_txn* txn = nullptr;
    if (int rc = txns_->Acquire(&txn); rc != MDB_SUCCESS) {
      return LmdbStatus(rc,
                        "cannot begin a read transaction (raise "
                        "Options::max_readers if batches pile up)");
    }

    std::vector<Claim> claims;
    uint64_t remaining = max_messages;
    for (uint32_t i = 0; i < n && remaining > 0; ++i) {
      const uint32_t q = (next_queue_ + i) % n;
      auto [begin, end] = state_->cursor(q).Claim(remaining, limits[q]);
      if (begin < end) {
        claims.push_back({q, begin, end});
        remaining -= end - begin;
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
          state_->cursor(c.queue).Unclaim(c.begin, c.end);
        }
        return s;
      }
    }
    core_->zero_copy_reads.fetch_add(views.size() - copied,
                                     std::memory_order_relaxed);
    if (copied != 0) {
      core_->copied_reads.fetch_add(copied, std::memory_order_relaxed);
    }
    if (absl::Status s = Filter(views); !s.ok()) return s;
    if (views.empty()) continue;  // all filtered out: claim further
    return ReceivedBatch(std::move(views), std::move(resources));
  }
}

absl::Status LocalConsumer::ReadClaim(MDB_txn* txn, const Claim& claim,
                                      LocalBatchResources& resources,
                                      std::vector<MessageView>& views,
                                      uint64_t* copied) {
  const Topic& topic = *state_->topic();
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, topic.queue(claim.queue).dbi, &cursor);
      rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read a queue");
  }
  // Pass 1 walks the B-tree and collects the records; pass 2 decodes them,
  // prefetching a few records ahead (decoding is bound by memory latency).
  records_.clear();
  // Offsets below the queue's first were deleted by retention: they count
  // as consumed, and the cursor moves past them.
  const uint64_t begin =
      SkipExpired(*core_->groups, state_, claim.queue, claim.begin);
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
          offset, claim.queue, topic.name(), mdb_strerror(rc)));
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
    if (absl::Status s = internal::MessageViewDecoder::Decode(
            records_[i], topic.name(), &view);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status LocalConsumer::AckRange(uint32_t queue, uint64_t begin,
                                     uint64_t end) {
  if (absl::Status s = CheckTopic(); !s.ok()) return s;
  if (queue >= state_->topic()->queue_count()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "topic '%s' has no queue %d", state_->topic()->name(), queue));
  }
  QueueCursor& cursor = state_->cursor(queue);
  absl::StatusOr<bool> advanced = cursor.Ack(begin, end);
  if (!advanced.ok()) return advanced.status();
  if (*advanced && cursor.MarkDirty()) {
    core_->groups->SchedulePersist(state_, queue);
  }
  return absl::OkStatus();
}

bool LocalConsumer::OwnTopic(const MessageView& message) const {
  // Views this consumer made point at the topic's own name: compare the
  // pointer first, the bytes only for views from elsewhere.
  const std::string& name = state_->topic()->name();
  return message.topic().data() == name.data() || message.topic() == name;
}

absl::Status LocalConsumer::Ack(const MessageView& message) {
  if (!OwnTopic(message)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message of topic '%s' acknowledged to a consumer of topic '%s'",
        std::string(message.topic()), state_->topic()->name()));
  }
  return AckRange(message.queue(), message.offset(), message.offset() + 1);
}

absl::Status LocalConsumer::Ack(const ReceivedBatch& batch) {
  // A batch of this group's: acknowledge its claims, a range per queue,
  // without walking the views.
  if (const auto* local =
          dynamic_cast<const LocalBatchResources*>(batch.resources());
      local != nullptr && local->owner() == state_.get()) {
    for (const Claim& claim : local->claims()) {
      if (absl::Status s = AckRange(claim.queue, claim.begin, claim.end);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  // Consecutive offsets of one queue are acknowledged as one range.
  size_t i = 0;
  const std::vector<MessageView>& views = batch.messages();
  while (i < views.size()) {
    if (!OwnTopic(views[i])) return Ack(views[i]);
    size_t j = i + 1;
    while (j < views.size() && views[j].queue() == views[i].queue() &&
           views[j].offset() == views[j - 1].offset() + 1 &&
           OwnTopic(views[j])) {
      ++j;
    }
    if (absl::Status s = AckRange(views[i].queue(), views[i].offset(),
                                  views[j - 1].offset() + 1);
        !s.ok()) {
      return s;
    }
    i = j;
  }
  return absl::OkStatus();
}

absl::Status LocalConsumer::Ack(uint32_t queue, uint64_t offset) {
  return AckRange(queue, offset, offset + 1);
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
