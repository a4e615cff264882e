// QueueCursor: one consumer group's position on one queue, in memory.
//
//      committed            claimed (next_)             queue end
//   ---------|======================|------------------------|
//    acked   ^  handed out, some     ^  not handed out yet
//            |  acked (ranges_)      |
//
// Claim() hands out offsets lock-free: consumers of the group race on one
// atomic with compare-and-swap, so every offset is handed out exactly once.
// Ack() records processed offsets; `committed` is the first offset not yet
// acknowledged, i.e. the group's progress, and is what the writer persists.
//
// Invisible time: a consumer leases what it claimed until a deadline
// (LeaseTable); acknowledging ends the lease, and when a deadline passes
// the broker takes the lease (TakeExpired) and redelivers what is still
// unacknowledged. A consumer that goes away hands its leases back
// (ReturnOwned): the next Claim of any consumer gets them first.
//
// Thread-safe. Claim is lock-free; Ack and the lease calls take a per-queue
// mutex (never a group-wide or broker-wide one).

#ifndef TXMQ_LIB_CONSUME_QUEUE_CURSOR_H_
#define TXMQ_LIB_CONSUME_QUEUE_CURSOR_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "consume/lease_table.h"

namespace txmq {

class QueueCursor {
 public:
  // Starts with everything below `committed` acknowledged.
  explicit QueueCursor(uint64_t committed);
  QueueCursor(const QueueCursor&) = delete;
  QueueCursor& operator=(const QueueCursor&) = delete;

  // Claims up to `max` consecutive offsets below `limit` (the queue's
  // committed end). Returns [begin, end); begin == end when none is left.
  std::pair<uint64_t, uint64_t> Claim(uint64_t max, uint64_t limit);

  // Hands back [begin, end), claimed but never delivered (a Receive that
  // failed). The next Claim returns it before anything new.
  void Unclaim(uint64_t begin, uint64_t end);

  // Records [begin, end) as processed. Offsets below committed() are
  // ignored (acknowledging twice is harmless). Returns whether committed()
  // advanced. Errors: INVALID_ARGUMENT when an offset was never claimed.
  absl::StatusOr<bool> Ack(uint64_t begin, uint64_t end);

  // Moves the cursor: everything below `offset` counts as acknowledged and
  // the next claim starts there. Outstanding claims are forgotten.
  void Reset(uint64_t offset);

  // Leases [begin, end), just claimed by consumer `owner`, until
  // `deadline_ms`. Returns true when the caller must arm this queue's expiry
  // timer at `deadline_ms` (it is earlier than the one armed).
  bool Lease(uint64_t begin, uint64_t end, int64_t deadline_ms, uint64_t owner);
  // Moves the deadline of the leased `offset` to `deadline_ms`; `*arm` as
  // for Lease. Errors: FAILED_PRECONDITION when `offset` is not leased
  // (acknowledged, or its invisible time ran out already).
  absl::Status Extend(uint64_t offset, int64_t deadline_ms, bool* arm);
  // Ends the lease of `offset` without acknowledging it (the broker
  // redelivers it now). False when it was not leased.
  bool Release(uint64_t offset);
  // Takes the leases due at `now_ms` and appends their unacknowledged
  // offsets. Returns the earliest remaining deadline (INT64_MAX: none),
  // which the caller arms the timer for.
  int64_t TakeExpired(int64_t now_ms, std::vector<OffsetRange>* unacked);
  // Ends the leases of `owner` and hands their unacknowledged offsets back
  // (Unclaim), so that other consumers get them now.
  void ReturnOwned(uint64_t owner);
  bool IsAcked(uint64_t offset);
  bool IsLeased(uint64_t offset) {
    absl::MutexLock lock(&mu_);
    return leases_.Contains(offset);
  }

  // Acknowledgements made in local transactions (ack rows, see
  // consume/cursor_store.h). At load, before any claim, PreAck marks the
  // offsets of the stored ack rows acknowledged; the next claims may still
  // hand them out, and the consumer drops them (IsAcked) while
  // preacked_until() is above what it claimed.
  void PreAck(uint64_t offset);
  uint64_t preacked_until() const {
    return preacked_until_.load(std::memory_order_relaxed);
  }
  // The highest offset with an ack row that may still be on disk above the
  // committed offset, or nullopt. NoteAckRow after writing one (writer);
  // ForgetAckRowsBelow after deleting those below `committed`.
  void NoteAckRow(uint64_t offset);
  std::optional<uint64_t> ack_rows_until() const;
  void ForgetAckRowsBelow(uint64_t committed);

  // Ordered consumption (ConsumerOptions::ordered): one message of the
  // queue in flight at a time, group-wide. Claims [c, c + 1) when nothing
  // is in flight, c being the head: the oldest message not acknowledged.
  // A deferred head is claimed again (before anything newer) once
  // `now_ms` reaches its not-before time; until then nothing is. Takes the
  // per-queue mutex (ordered consumers trade the lock-free claim for the
  // order).
  std::pair<uint64_t, uint64_t> ClaimOrdered(uint64_t limit, int64_t now_ms);
  // Puts the in-flight `offset` back at the head, blocking the queue until
  // `not_before_ms`, and counts a failed delivery of it. `*arm`: the caller
  // must arm the queue's timer at `not_before_ms` (to wake consumers then;
  // TakeExpired keeps it armed for the wait as for leases).
  void Defer(uint64_t offset, int64_t not_before_ms, bool* arm);
  // Failed deliveries of `offset` counted by Defer (0 for others).
  uint32_t Failures(uint64_t offset);
  size_t leases() {
    absl::MutexLock lock(&mu_);
    return leases_.size();
  }

  // Retention deleted everything below `offset`: it counts as acknowledged
  // and is never handed out (claims and acknowledgements above it stand;
  // late acknowledgements below it are ignored). No effect once
  // committed() >= offset, which is the lock-free fast path. Returns
  // whether committed() advanced.
  bool SkipTo(uint64_t offset);

  // Every offset below it is acknowledged.
  uint64_t committed() const {
    return committed_.load(std::memory_order_seq_cst);
  }
  // Every offset below it has been handed out.
  uint64_t claimed() const { return next_.load(std::memory_order_relaxed); }

  // Persistence handshake with the writer. After Ack advanced committed(),
  // the acknowledging thread calls MarkDirty(); only when it returns true
  // does it schedule a write. The writer calls TakeForPersist() and writes
  // the value it returns.
  //
  // Why no update is lost (all seq_cst): Ack stores committed_ (1) then
  // exchanges dirty_ to true (2); the writer stores dirty_ = false (3) then
  // loads committed_ (4). If (2) precedes (3), then (1) precedes (4) and
  // the writer persists the new value. Otherwise (2) reads false and the
  // acknowledging thread schedules another write.
  bool MarkDirty() { return !dirty_.exchange(true, std::memory_order_seq_cst); }
  uint64_t TakeForPersist() {
    dirty_.store(false, std::memory_order_seq_cst);
    return committed();
  }

 private:
  // The next offset to hand out. Only ever moved forward by a successful
  // compare-and-swap; see Claim for the memory-ordering argument.
  std::atomic<uint64_t> next_;
  // Mirrors acked_ for lock-free readers (the writer, CommittedOffset).
  std::atomic<uint64_t> committed_;
  std::atomic<bool> dirty_{false};
  // One past the highest pre-acknowledged offset (0: none).
  std::atomic<uint64_t> preacked_until_{0};
  // One past the highest ack row written or loaded (0: none on disk above
  // the committed offset).
  std::atomic<uint64_t> ack_rows_until_{0};
  // Whether returned_ may be non-empty: keeps Claim's fast path lock-free.
  std::atomic<bool> has_returned_{false};

  absl::Mutex mu_;
  uint64_t acked_ ABSL_GUARDED_BY(mu_);
  // Acknowledged ranges above acked_: begin -> end, disjoint, not adjacent.
  std::map<uint64_t, uint64_t> ranges_ ABSL_GUARDED_BY(mu_);
  // Ranges handed back by Unclaim: begin -> end.
  std::map<uint64_t, uint64_t> returned_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
  // Ordered consumption: the deferred head, its failures, and when it may
  // be delivered again.
  uint64_t deferred_offset_ ABSL_GUARDED_BY(mu_) = UINT64_MAX;
  uint32_t deferred_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t not_before_ms_ ABSL_GUARDED_BY(mu_) = INT64_MIN;
  // The deadline this queue's expiry timer is armed for (INT64_MAX: none).
  int64_t armed_ms_ ABSL_GUARDED_BY(mu_) = INT64_MAX;

  // Appends the parts of [begin, end) not acknowledged.
  void AppendUnacked(uint64_t begin, uint64_t end,
                     std::vector<OffsetRange>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnclaimLocked(uint64_t begin, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
};

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_QUEUE_CURSOR_H_
