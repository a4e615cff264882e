// Redelivery: what becomes of a received message that is not acknowledged
// in time, or that its consumer gives up on (include/txmq/consumer.h,
// "Retries").
//
//   lease expires (timer thread)        ReconsumeLater (consumer thread)
//                \                         /
//                 Requeue (writer request, one transaction per batch):
//                   copy -> "%RETRY%<group>%<topic>"  delayed by the back-off
//                   or, after max_reconsume_times,
//                   copy -> "%DLQ%<group>"            at once
//                 then (after the commit) the original counts as
//                 acknowledged in its cursor.
//
// The copy and the acknowledgement are not one durable step: a crash
// between them delivers the message once more (at least once), never
// loses it. Each queue of a group has one expiry timer on the timer wheel
// (a volatile timer: leases live in memory and a restart redelivers from
// the committed offset anyway), armed at its earliest lease deadline.
//
// Thread rules: Arm, Requeue and the counters from any thread; OnExpiry on
// the timer thread.

#ifndef TXMQ_LIB_RETRY_REDELIVERY_H_
#define TXMQ_LIB_RETRY_REDELIVERY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "consume/group_registry.h"
#include "delay/delay_writer.h"
#include "timer/timer_service.h"
#include "txmq/clock.h"
#include "write/commit_signal.h"
#include "write/writer.h"

namespace txmq {

// A queue's lease-expiry timer: id = u64be(group state serial) ||
// u32be(queue).
inline constexpr uint8_t kTimerLeaseExpiry = kVolatileKind | 4;

class Redelivery {
 public:
  // All pointers outlive the object. `signal` wakes waiting consumers
  // when a blocked ordered queue may deliver again.
  Redelivery(Writer* writer, GroupRegistry* groups, DelayWriter* delays,
             TimerSink* timers, CommitSignal* signal,
             std::shared_ptr<Clock> clock);
  Redelivery(const Redelivery&) = delete;
  Redelivery& operator=(const Redelivery&) = delete;

  // Arms (or moves earlier) the expiry timer of `queue` of `state`.
  void Arm(const GroupState& state, uint32_t queue, int64_t due_ms);

  // Thread: timer. The expiry timer `target` fired: requeues what its
  // queue's expired leases left unacknowledged and re-arms the timer.
  void OnExpiry(const TimerTarget& target);

  // The deliveries of the messages at `offsets` of `queue` failed
  // (ReconsumeLater, or their invisible time ran out). They are delivered
  // again after `delay`, or else the back-off of the group's policy, or
  // dead-lettered when their retries are spent:
  //  - unordered groups: a copy goes to the retry (or dead-letter) queue
  //    and then the original is acknowledged. Asynchronous; offsets
  //    acknowledged meanwhile are skipped; if the write fails, they are
  //    leased for another second and tried again when that runs out.
  //  - ordered groups: the message waits at the head of its queue
  //    (QueueCursor::Defer), which delivers nothing else meanwhile.
  void Fail(std::shared_ptr<GroupState> state, uint32_t queue,
            std::vector<uint64_t> offsets, std::optional<absl::Duration> delay);

  uint64_t redeliveries() const {
    return redeliveries_.load(std::memory_order_relaxed);
  }
  uint64_t dead_lettered() const {
    return dead_lettered_.load(std::memory_order_relaxed);
  }

 private:
  class RequeueRequest;

  // Unordered: copies in writer requests. `dead_letter_times`: straight to
  // the dead-letter queue with that count (an ordered group's message).
  void Requeue(std::shared_ptr<GroupState> state, uint32_t queue,
               std::vector<uint64_t> offsets,
               std::optional<absl::Duration> delay,
               std::optional<uint32_t> dead_letter_times);

  Writer* const writer_;
  GroupRegistry* const groups_;
  DelayWriter* const delays_;
  TimerSink* const timers_;
  CommitSignal* const signal_;
  const std::shared_ptr<Clock> clock_;
  std::atomic<uint64_t> redeliveries_{0};
  std::atomic<uint64_t> dead_lettered_{0};
};

}  // namespace txmq

#endif  // TXMQ_LIB_RETRY_REDELIVERY_H_
