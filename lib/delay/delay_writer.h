// DelayWriter: delayed delivery, on the transactional messages' machinery.
//
//   delay   key = delay id (u48be due ms | u32be run | u48be sequence)
//           value = MessageRecord (flat Cap'n Proto, queue set)
//   timer   kind 3 row at the due time, id = the delay id
//
// A delayed send stores the record here and arms a timer; when the timer
// fires, one writer transaction appends the record to its queue (stamping
// id, offset and store time) and deletes both rows, so a delayed message
// is delivered exactly once, and a crash before that only delays it until
// the restart re-arms the timer. Far-future delays stay on disk: the timer
// wheel holds only the next 10 minutes.
//
// Thread: writer only (Apply*); the counter from any thread.

#ifndef TXMQ_LIB_DELAY_DELAY_WRITER_H_
#define TXMQ_LIB_DELAY_DELAY_WRITER_H_

#include <lmdb.h>

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "log/record_codec.h"
#include "topic/topic_registry.h"
#include "txmq/message.h"
#include "txn/txn_writer.h"
#include "write/writer.h"

namespace txmq {

class DelayWriter {
 public:
  // All pointers outlive the writer.
  DelayWriter(MDB_dbi delay_table, MDB_dbi timer_table, TopicRegistry* topics,
              TimerSink* timers, uint32_t run);

  // Counts the delayed messages. Call once at open.
  absl::Status LoadCount(MDB_txn* txn);
  uint64_t pending() const { return pending_.load(std::memory_order_relaxed); }

  // Stores `record` (queue stamped) for queue `queue` of `topic`, to be
  // delivered at `due_ms`. Returns the result a sender gets.
  absl::StatusOr<SendResult> ApplyDelay(WriteContext& ctx, const Topic& topic,
                                        uint32_t queue,
                                        const PendingRecord& record,
                                        int64_t due_ms);

  // Stores `record` in queue `queue` of `topic`: appended now, or kept
  // here (ApplyDelay) when its deliver_at is ahead of the batch's time.
  absl::StatusOr<SendResult> Store(WriteContext& ctx, Topic& topic,
                                   uint32_t queue, PendingRecord& record);

  // Delivers the delayed message `id` whose timer (at `due_ms`) fired. A
  // message whose topic was deleted is dropped. OK when already delivered.
  absl::Status ApplyDeliver(WriteContext& ctx,
                            const std::array<uint8_t, 16>& id, int64_t due_ms);

 private:
  const MDB_dbi delay_;
  const MDB_dbi timer_;
  TopicRegistry* const topics_;
  TimerSink* const timers_;
  const uint32_t run_;
  uint64_t sequence_ = 0;
  std::atomic<uint64_t> pending_{0};
};

}  // namespace txmq

#endif  // TXMQ_LIB_DELAY_DELAY_WRITER_H_
