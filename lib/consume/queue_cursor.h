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
// Thread-safe. Claim is lock-free; Ack takes a per-queue mutex (never a
// group-wide or broker-wide one).

#ifndef TXMQ_LIB_CONSUME_QUEUE_CURSOR_H_
#define TXMQ_LIB_CONSUME_QUEUE_CURSOR_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

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
  // Whether returned_ may be non-empty: keeps Claim's fast path lock-free.
  std::atomic<bool> has_returned_{false};

  absl::Mutex mu_;
  uint64_t acked_ ABSL_GUARDED_BY(mu_);
  // Acknowledged ranges above acked_: begin -> end, disjoint, not adjacent.
  std::map<uint64_t, uint64_t> ranges_ ABSL_GUARDED_BY(mu_);
  // Ranges handed back by Unclaim: begin -> end.
  std::map<uint64_t, uint64_t> returned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_QUEUE_CURSOR_H_
