// TimerService: the timer thread. It keeps a TimerWheel filled from the
// durable timer table (txn/txn_store.h) for a window ahead of the clock,
// fires due check-backs, and hands them to the check service.
//
//   timer table (disk)   |-- rows due before loaded_until --|-- later rows --|
//   wheel (memory)       |<------ the same rows ----------->|  (not loaded)
//                        now                   now + window
//
// Only timers due within `window` of the clock are in memory; later ones
// stay on disk until the window reaches them, so memory does not grow with
// the number of far-future timers. On start, the first load reads every row
// due before now + window: that is the recovery of every armed check-back
// after a restart.
//
// The writer reports each committed timer change (ScheduleCheck,
// CancelCheck) through an inbox. Why no change is missed: the thread drains
// the inbox, then loads from a fresh snapshot, then drains again. A change
// committed before the snapshot is in it; one committed after reaches the
// inbox after the load, when loaded_until already covers it.
//
// Thread-safe: ScheduleCheck, CancelCheck and Wake from any thread. The
// wheel and the watermark belong to the timer thread.

#ifndef TXMQ_LIB_TIMER_TIMER_SERVICE_H_
#define TXMQ_LIB_TIMER_TIMER_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/env.h"
#include "timer/timer_wheel.h"
#include "txmq/clock.h"
#include "txn/txn_writer.h"

namespace txmq {

class TimerService final : public TimerSink {
 public:
  struct Handlers {
    // Due check-backs. Runs on the timer thread; returns the ids it could
    // not take now (they are retried a few milliseconds later).
    std::function<std::vector<TransactionId>(std::vector<TransactionId>)>
        check_due;
    // Called about every `maintenance_every` of clock time (pruning).
    std::function<void(absl::Time now)> maintenance;
  };

  // `env` outlives the service. Does not start the thread.
  TimerService(Env* env, MDB_dbi timer_table, std::shared_ptr<Clock> clock,
               Handlers handlers, absl::Duration window = absl::Minutes(10),
               absl::Duration maintenance_every = absl::Seconds(10));
  ~TimerService() override;
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  void Start();
  // Stops the thread. Idempotent. Later Schedule/Cancel calls are ignored.
  void Stop();

  void ScheduleCheck(const TransactionId& id, int64_t due_ms) override;
  void CancelCheck(const TransactionId& id) override;
  // Look at the clock again now (a ManualClock moved).
  void Wake();

  // Timers in memory (the wheel), for tests and stats.
  size_t armed() const { return armed_.load(std::memory_order_relaxed); }
  // Rows read from disk so far.
  uint64_t loaded() const { return loaded_.load(std::memory_order_relaxed); }

 private:
  struct Op {
    TimerTarget target;
    int64_t due_ms;  // ScheduleCheck; kCancel for CancelCheck
  };
  static constexpr int64_t kCancel = INT64_MIN;

  void Run();
  void DrainInbox();
  // Loads rows due in [loaded_until_, until_ms). False when the reader gate
  // was closed (try again later).
  bool LoadUntil(int64_t until_ms);
  int64_t NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

  Env* const env_;
  const MDB_dbi timer_table_;
  const std::shared_ptr<Clock> clock_;
  const Handlers handlers_;
  const absl::Duration window_;
  const absl::Duration maintenance_every_;

  absl::Mutex mu_;
  std::vector<Op> inbox_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;

  // Shared with the clock listener, which outlives this service.
  struct Waker {
    absl::Mutex mu;
    TimerService* service ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<Waker> waker_;

  // Thread: timer thread only.
  std::unique_ptr<TimerWheel> wheel_;
  int64_t loaded_until_ = INT64_MIN;
  int64_t next_maintenance_ms_ = 0;

  std::atomic<size_t> armed_{0};
  std::atomic<uint64_t> loaded_{0};
  std::thread thread_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_TIMER_TIMER_SERVICE_H_
