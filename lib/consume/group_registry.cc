#include "consume/group_registry.h"

#include <optional>
#include <vector>

#include "absl/strings/str_format.h"
#include "consume/cursor_store.h"
#include "consume/offset_search.h"

namespace txmq {
namespace {

std::string StateKey(std::string_view group, std::string_view topic) {
  std::string key(group);
  key.push_back('\0');
  key.append(topic);
  return key;
}

absl::Status TopicGone(const Topic& topic) {
  return absl::NotFoundError(
      absl::StrFormat("topic '%s' was deleted", topic.name()));
}

// Writes `queue`'s committed offset, and deletes the ack rows it passed.
absl::Status PersistCursor(WriteContext& ctx, MDB_dbi table, GroupState& state,
                           uint32_t queue) {
  QueueCursor& cursor = state.cursor(queue);
  const uint64_t offset = cursor.TakeForPersist();
  const std::string& topic = state.topic()->name();
  int rc = PutCursor(ctx.txn(), table, state.group(), topic, queue, offset);
  if (rc == MDB_SUCCESS && cursor.ack_rows_until().has_value()) {
    rc = DeleteAckRowsBelow(ctx.txn(), table, state.group(), topic, queue,
                            offset);
    if (rc == MDB_SUCCESS) {
      ctx.AfterCommit([&cursor, offset] { cursor.ForgetAckRowsBelow(offset); });
    }
  }
  if (rc != MDB_SUCCESS) return ctx.Fail(rc, "cannot store a consumer offset");
  return absl::OkStatus();
}

// Writes one queue's committed offset in the background.
class PersistRequest : public WriteRequest {
 public:
  PersistRequest(Env* env, std::shared_ptr<GroupState> state, uint32_t queue)
      : env_(env), state_(std::move(state)), queue_(queue) {
    lazy = true;  // a lost offset write means a redelivery (at least once)
  }

  absl::Status Apply(WriteContext& ctx) override {
    const Topic& topic = *state_->topic();
    if (topic.deleted()) return absl::OkStatus();
    return PersistCursor(ctx, env_->cursor_table(), *state_, queue_);
  }
  // A failed background write loses nothing but progress: the next
  // acknowledgement schedules another, and delivery is at least once.
  void Complete(absl::Status) override { delete this; }

 private:
  Env* const env_;
  const std::shared_ptr<GroupState> state_;
  const uint32_t queue_;
};

}  // namespace

GroupState::GroupState(std::string group, std::shared_ptr<Topic> topic,
                       const std::vector<uint64_t>& committed, uint64_t serial)
    : group_(std::move(group)), topic_(std::move(topic)), serial_(serial) {
  for (uint64_t offset : committed) {
    cursors_.push_back(std::make_unique<QueueCursor>(offset));
  }
}

absl::StatusOr<std::shared_ptr<GroupState>> GroupRegistry::Get(
    std::string_view group, const std::shared_ptr<Topic>& topic,
    StartFrom start_from) {
  const std::string key = StateKey(group, topic->name());
  absl::MutexLock load_lock(&load_mu_);
  {
    absl::MutexLock lock(&mu_);
    auto it = states_.find(key);
    if (it != states_.end() && it->second->topic() == topic) return it->second;
  }
  std::vector<uint64_t> committed(topic->queue_count());
  std::vector<std::vector<uint64_t>> acked(topic->queue_count());
  absl::Status s = RunWrite(*writer_, [&](WriteContext& ctx) -> absl::Status {
    if (topic->deleted()) return TopicGone(*topic);
    std::vector<std::optional<uint64_t>> stored;
    if (int rc = ReadCursors(ctx.txn(), env_->cursor_table(), group,
                             topic->name(), topic->queue_count(), &stored);
        rc != MDB_SUCCESS) {
      return ctx.Fail(rc, "cannot read consumer offsets");
    }
    for (uint32_t q = 0; q < topic->queue_count(); ++q) {
      if (stored[q].has_value()) {
        committed[q] = *stored[q];
        acked[q].clear();
        if (int rc = ReadAckRows(ctx.txn(), env_->cursor_table(), group,
                                 topic->name(), q, &acked[q]);
            rc != MDB_SUCCESS) {
          return ctx.Fail(rc, "cannot read consumer acknowledgements");
        }
        continue;
      }
      const QueueState& queue = topic->queue(q);
      committed[q] = start_from == StartFrom::kLatest
                         ? queue.writer_next
                         : queue.first.load(std::memory_order_relaxed);
      if (int rc = PutCursor(ctx.txn(), env_->cursor_table(), group,
                             topic->name(), q, committed[q]);
          rc != MDB_SUCCESS) {
        return ctx.Fail(rc, "cannot store consumer offsets");
      }
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto state = std::make_shared<GroupState>(std::string(group), topic,
                                            committed, next_serial_++);
  for (uint32_t q = 0; q < topic->queue_count(); ++q) {
    for (uint64_t offset : acked[q]) state->cursor(q).PreAck(offset);
  }
  if (auto it = states_.find(key); it != states_.end()) {
    by_serial_.erase(it->second->serial());  // of a deleted topic
  }
  states_[key] = state;
  by_serial_[state->serial()] = state;
  return state;
}

void GroupRegistry::SchedulePersist(const std::shared_ptr<GroupState>& state,
                                    uint32_t queue) {
  writer_->Submit(new PersistRequest(env_, state, queue));
}

absl::Status GroupRegistry::Flush(const std::shared_ptr<GroupState>& state) {
  return RunWrite(
      *writer_,
      [&](WriteContext& ctx) -> absl::Status {
        const Topic& topic = *state->topic();
        if (topic.deleted()) return TopicGone(topic);
        for (uint32_t q = 0; q < topic.queue_count(); ++q) {
          if (absl::Status s =
                  PersistCursor(ctx, env_->cursor_table(), *state, q);
              !s.ok()) {
            return s;
          }
        }
        return absl::OkStatus();
      },
      /*exclusive=*/false, /*needs_sync=*/true);
}

std::shared_ptr<GroupState> GroupRegistry::Find(std::string_view group,
                                                const Topic& topic) const {
  absl::MutexLock lock(&mu_);
  auto it = states_.find(StateKey(group, topic.name()));
  if (it == states_.end() || it->second->topic().get() != &topic) {
    return nullptr;
  }
  return it->second;
}

absl::Status GroupRegistry::Reset(std::string_view group,
                                  const std::shared_ptr<Topic>& topic,
                                  const OffsetReset& reset) {
  const int64_t time_ms = absl::ToUnixMillis(reset.time);
  return RunWrite(*writer_, [&](WriteContext& ctx) -> absl::Status {
    if (topic->deleted()) return TopicGone(*topic);
    std::vector<uint64_t> offsets(topic->queue_count());
    for (uint32_t q = 0; q < topic->queue_count(); ++q) {
      const QueueState& queue = topic->queue(q);
      const uint64_t first = queue.first.load(std::memory_order_relaxed);
      switch (reset.to) {
        case OffsetReset::To::kEarliest:
          offsets[q] = first;
          break;
        case OffsetReset::To::kLatest:
          offsets[q] = queue.writer_next;
          break;
        case OffsetReset::To::kTime: {
          absl::StatusOr<uint64_t> found = FirstStoredAtOrAfter(
              ctx.txn(), queue.dbi, first, queue.writer_next, time_ms);
          if (!found.ok()) return found.status();
          offsets[q] = *found;
          break;
        }
      }
      int rc = PutCursor(ctx.txn(), env_->cursor_table(), group, topic->name(),
                         q, offsets[q]);
      // Acknowledgements of local transactions go too: a reset delivers
      // from the new offset on, whatever was processed before.
      if (rc == MDB_SUCCESS) {
        rc = DeleteAckRowsBelow(ctx.txn(), env_->cursor_table(), group,
                                topic->name(), q, UINT64_MAX);
      }
      if (rc != MDB_SUCCESS) {
        return ctx.Fail(rc, "cannot store consumer offsets");
      }
    }
    ctx.AfterCommit([this, group = std::string(group), topic, offsets] {
      if (std::shared_ptr<GroupState> state = Find(group, *topic)) {
        for (uint32_t q = 0; q < offsets.size(); ++q) {
          state->cursor(q).Reset(offsets[q]);
          state->cursor(q).ForgetAckRowsBelow(UINT64_MAX);
        }
      }
    });
    return absl::OkStatus();
  });
}

std::shared_ptr<GroupState> GroupRegistry::FindBySerial(uint64_t serial) const {
  absl::MutexLock lock(&mu_);
  auto it = by_serial_.find(serial);
  return it == by_serial_.end() ? nullptr : it->second;
}

void GroupRegistry::ForgetTopic(const Topic& topic) {
  absl::MutexLock lock(&mu_);
  for (auto it = states_.begin(); it != states_.end();) {
    if (it->second->topic().get() == &topic) {
      by_serial_.erase(it->second->serial());
      states_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace txmq
