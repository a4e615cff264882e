// TimerService: the timer thread. It keeps a TimerWheel filled from the
// durable timer table (txn/txn_store.h) for a window ahead of the clock,
// and hands due timers (check-backs, outcome expiries) to the broker.
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
// The writer reports each committed timer change (Schedule, Cancel) through
// an inbox. Why no change is missed: the thread drains
// the inbox, then loads from a fresh snapshot, then drains again. A change
// committed before the snapshot is in it; one committed after reaches the
// inbox after the load, when loaded_until already covers it.
//
// Volatile timers (a kind with bit 7 set, IsVolatileKind) have no disk row:
// they are for in-memory state that a restart rebuilds anyway (a received
// message's invisible time, the retention sweep). Those due beyond the
// window wait in an ordered map until the window reaches them.
//
// Thread-safe: Schedule, Cancel, Rescan and Wake from any thread. The
// wheel, the far map and the watermark belong to the timer thread.

#ifndef TXMQ_LIB_TIMER_TIMER_SERVICE_H_
#define TXMQ_LIB_TIMER_TIMER_SERVICE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/env.h"
#include "timer/timer_wheel.h"
#include "txmq/clock.h"
#include "txn/txn_writer.h"

namespace txmq {

// Kinds 128..255: timers without a row in the timer table.
inline constexpr uint8_t kVolatileKind = 0x80;
constexpr bool IsVolatileKind(uint8_t kind) {
  return (kind & kVolatileKind) != 0;
}

class TimerService final : public TimerSink {
 public:
  // Due timers, all kinds, in due order. Runs on the timer thread; returns
  // the ones it could not take now (retried a few milliseconds later).
  using DueFn = std::function<std::vector<Timer>(std::vector<Timer>)>;

  // `env` outlives the service. Does not start the thread.
  TimerService(Env* env, MDB_dbi timer_table, std::shared_ptr<Clock> clock,
               DueFn due, absl::Duration window = absl::Minutes(10));
  ~TimerService() override;
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  void Start();
  // Stops the thread. Idempotent. Later Schedule/Cancel calls are ignored.
  void Stop();

  void Schedule(uint8_t kind, const std::array<uint8_t, 16>& id,
                int64_t due_ms) override;
  void Cancel(uint8_t kind, const std::array<uint8_t, 16>& id) override;
  // Look at the clock again now (a ManualClock moved).
  void Wake();
  // Load the whole window from disk again, so that past-due timers fire
  // again (a producer group's checker registered: its transactions that
  // fell due while it had none are checked now).
  void Rescan() override;

  // Timers in memory (the wheel), for tests and stats.
  size_t armed() const { return armed_.load(std::memory_order_relaxed); }
  // Rows read from disk so far.
  uint64_t loaded() const { return loaded_.load(std::memory_order_relaxed); }

 private:
  struct Op {
    TimerTarget target;
    int64_t due_ms;  // Schedule; kCancel for Cancel
  };
  static constexpr int64_t kCancel = INT64_MIN;

  void Run();
  void DrainInbox();
  // Loads rows due in [loaded_until_, until_ms). False when the reader gate
  // was closed (try again later).
  bool LoadUntil(int64_t until_ms);
  // Moves the far volatile timers that the window now covers into the
  // wheel.
  void AdmitFar();
  void CancelFar(const TimerTarget& target);
  int64_t NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

  Env* const env_;
  const MDB_dbi timer_table_;
  const std::shared_ptr<Clock> clock_;
  const DueFn due_;
  const absl::Duration window_;

  absl::Mutex mu_;
  std::vector<Op> inbox_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool rescan_ ABSL_GUARDED_BY(mu_) = false;
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
  // Volatile timers due at or after loaded_until_: due -> target, and the
  // due time of each target (one timer per target, as in the wheel).
  std::multimap<int64_t, TimerTarget> far_;
  absl::flat_hash_map<TimerTarget, int64_t> far_due_;

  std::atomic<size_t> armed_{0};
  std::atomic<uint64_t> loaded_{0};
  std::thread thread_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_TIMER_TIMER_SERVICE_H_
