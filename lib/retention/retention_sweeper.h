// RetentionSweeper: deletes the messages whose topic's retention ran out
// (TopicOptions::retention in include/txmq/broker.h).
//
// No thread of its own. One volatile timer (kTimerRetentionSweep, no disk
// row) on the TimerService calls OnDue() every retention_check_interval;
// OnDue re-arms it and starts a sweep, or, while one is still running,
// has another start as soon as that one ends (so no sweep is lost when
// the clock jumps further while a sweep runs). A sweep
// is a chain of writer requests: each deletes at most kMaxDeletesPerRequest
// messages in the writer's transaction and, when it completes, submits the
// next one, so a large backlog is deleted in many small transactions that
// producers' batches interleave with, never in one huge one.
//
// What a sweep deletes, per queue (the expired prefix):
//
//   offset    first                                      end-1
//             |expired expired expired|kept kept ... kept|last|
//             <- deleted ------------> ^ stop: the first message not
//                                        expired, or the last message
//
// A message has expired when its store time is before now - retention (the
// broker's clock, WriteContext::now_ms). The sweep stops at the first one
// that has not, so [first, end) stays contiguous even if a clock step back
// left older store times further on; and it never deletes a queue's last
// message (end - 1), because the end offset is recovered from the last key
// when the directory opens (docs/format.md).
//
// QueueState::first moves with the deletion: stored (release) in Apply,
// before the transaction commits, and restored if it aborts (topic.h says
// why readers need that order). A crash mid-sweep leaves each queue as of
// its last committed request, and TopicRegistry::Load recovers `first` from
// the first key; the rest is deleted by the next sweep. The requests are
// lazy (a lost deletion is redone by the next sweep).
//
// A topic deleted during a sweep is skipped: Apply checks Topic::deleted()
// before it touches a table, and topic deletion is an exclusive write, so
// the answer holds for the whole transaction.
//
// Thread rules: Start before the timer thread runs; OnDue on the timer
// thread; the requests apply and complete on the writer thread; expired()
// and running() from any thread (a mutex guards the sweep state).

#ifndef TXMQ_LIB_RETENTION_RETENTION_SWEEPER_H_
#define TXMQ_LIB_RETENTION_RETENTION_SWEEPER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "topic/topic_registry.h"
#include "txmq/broker.h"
#include "txmq/clock.h"
#include "txn/txn_writer.h"
#include "write/writer.h"

namespace txmq {

class RetentionSweeper {
 public:
  // The most messages one writer request (one transaction) deletes.
  static constexpr size_t kMaxDeletesPerRequest = 1024;

  using LogFn = std::function<void(LogLevel, std::string_view)>;

  // All pointers outlive the sweeper, and the writer's requests complete
  // before it goes (the broker stops the timer thread, then the writer).
  // `interval` is Options::retention_check_interval.
  RetentionSweeper(TopicRegistry* topics, Writer* writer, TimerSink* timers,
                   std::shared_ptr<Clock> clock, absl::Duration interval,
                   LogFn log);
  RetentionSweeper(const RetentionSweeper&) = delete;
  RetentionSweeper& operator=(const RetentionSweeper&) = delete;

  // Arms the first sweep, one interval from now.
  void Start();
  // Thread: timer. The sweep timer fired: re-arm it, and start a sweep (or
  // another one after the one running). Never blocks on the writer.
  void OnDue();

  // Messages deleted since the broker opened (BrokerStats). Counted with
  // QueueState::first, just before the deleting transaction commits (and
  // taken back if it aborts).
  uint64_t expired() const { return expired_.load(std::memory_order_relaxed); }
  // Whether a sweep is in progress or due to start (for tests).
  bool running() const {
    absl::MutexLock lock(&mu_);
    return running_;
  }

 private:
  class SweepRequest;

  void Arm();
  // Submits the first request of a sweep over the topics that have a
  // retention, or, when there are none, ends the sweep. Call with running_
  // set, without mu_.
  void StartSweep();
  // Thread: writer. The sweep ended (OK: it went through every queue).
  void Finish(const absl::Status& status);

  TopicRegistry* const topics_;
  Writer* const writer_;
  TimerSink* const timers_;
  const std::shared_ptr<Clock> clock_;
  const int64_t interval_ms_;
  const LogFn log_;

  mutable absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  // The timer fired while a sweep ran: start another when it ends.
  bool again_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> expired_{0};
  // Thread: writer only. Queues (by number) whose damaged record the log
  // has been told about, so a damaged queue is reported once, not at every
  // sweep.
  absl::flat_hash_set<uint32_t> reported_damage_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_RETENTION_RETENTION_SWEEPER_H_
