// GroupRegistry: the in-memory state of every (consumer group, topic) pair
// in use, shared by all Consumers of that pair in this process.
//
// A pair is loaded on first use: its committed offsets are read, and for a
// group new to the topic the start (earliest or latest) is written, in one
// writer transaction. Acknowledgements move the in-memory cursors; the
// writer persists them in the background (SchedulePersist) or on demand
// (Flush).
//
// Thread-safe. Get and Flush block on the writer, so they must not be
// called on the writer thread. ForgetTopic runs on the writer thread.

#ifndef TXMQ_LIB_CONSUME_GROUP_REGISTRY_H_
#define TXMQ_LIB_CONSUME_GROUP_REGISTRY_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "consume/queue_cursor.h"
#include "storage/env.h"
#include "topic/topic.h"
#include "txmq/broker.h"
#include "txmq/consumer.h"
#include "write/writer.h"

namespace txmq {

// Where a group's failed messages of one topic go (consumer.h, "Retries").
struct RedeliveryTargets {
  std::shared_ptr<Topic> retry;        // "%RETRY%<group>%<topic>"
  std::shared_ptr<Topic> dead_letter;  // "%DLQ%<group>"
  RetryPolicy policy;
  // Ordered consumption: a failed message waits at the head of its queue
  // (QueueCursor::Defer) instead of being copied to the retry queue.
  bool ordered = false;
};

// One group's cursors on one topic (a user topic, or the group's retry
// topic for it).
class GroupState {
 public:
  // `serial` names the state in timers; unique within the registry.
  GroupState(std::string group, std::shared_ptr<Topic> topic,
             const std::vector<uint64_t>& committed, uint64_t serial);
  GroupState(const GroupState&) = delete;
  GroupState& operator=(const GroupState&) = delete;

  const std::string& group() const { return group_; }
  const std::shared_ptr<Topic>& topic() const { return topic_; }
  QueueCursor& cursor(uint32_t queue) { return *cursors_[queue]; }
  uint64_t serial() const { return serial_; }

  // Set by each consumer created for the state; null until then.
  void SetTargets(RedeliveryTargets targets) {
    auto shared = std::make_shared<const RedeliveryTargets>(std::move(targets));
    absl::MutexLock lock(&mu_);
    targets_ = std::move(shared);
  }
  std::shared_ptr<const RedeliveryTargets> targets() const {
    absl::MutexLock lock(&mu_);
    return targets_;
  }

 private:
  const std::string group_;
  const std::shared_ptr<Topic> topic_;
  const uint64_t serial_;
  std::deque<std::unique_ptr<QueueCursor>> cursors_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const RedeliveryTargets> targets_ ABSL_GUARDED_BY(mu_);
};

class GroupRegistry {
 public:
  // `env` and `writer` outlive the registry.
  GroupRegistry(Env* env, Writer* writer) : env_(env), writer_(writer) {}

  // Errors: NOT_FOUND (the topic was deleted), and write errors.
  absl::StatusOr<std::shared_ptr<GroupState>> Get(
      std::string_view group, const std::shared_ptr<Topic>& topic,
      StartFrom start_from);

  // Queues a background write of `queue`'s committed offset. Call after
  // QueueCursor::MarkDirty() returned true.
  void SchedulePersist(const std::shared_ptr<GroupState>& state,
                       uint32_t queue);
  // Writes every queue's committed offset and waits until it is durable.
  absl::Status Flush(const std::shared_ptr<GroupState>& state);

  // Thread: writer. Drops the states of a deleted topic.
  void ForgetTopic(const Topic& topic);

  // The loaded state of (group, topic), or null when no consumer of it was
  // created since the broker opened.
  std::shared_ptr<GroupState> Find(std::string_view group,
                                   const Topic& topic) const;
  // The loaded state with this serial, or null (its topic was deleted).
  std::shared_ptr<GroupState> FindBySerial(uint64_t serial) const;

  // Moves the group's offsets on `topic` (Broker::ResetGroup), on disk and
  // in the loaded state.
  absl::Status Reset(std::string_view group,
                     const std::shared_ptr<Topic>& topic,
                     const OffsetReset& reset);

 private:
  Env* const env_;
  Writer* const writer_;
  // Serializes loading, so one pair is loaded once. Never taken by the
  // writer thread, so holding it while waiting for the writer is safe.
  absl::Mutex load_mu_;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(load_mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<GroupState>> states_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<GroupState>> by_serial_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_GROUP_REGISTRY_H_
