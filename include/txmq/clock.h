// The broker's clock, injectable so that tests (and simulations) control
// time.
//
// Every time the broker stamps or schedules (store times, message ids,
// transaction begin times, check-back due times) comes from its Clock, never
// from a producer's. Options::clock defaults to the system clock.

#ifndef TXMQ_CLOCK_H_
#define TXMQ_CLOCK_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace txmq {

// Thread-safe: Now() and OnAdvance() may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // True when time passes by itself (the system clock): a thread waiting
  // for a time T may sleep for T - Now(). False when only Advance-style
  // calls move it: such a clock calls the listeners registered here each
  // time it moves, and waiting threads sleep until then.
  virtual bool RealTime() const = 0;

  // Registers `listener`, called (from the thread that moves the clock)
  // after each move of a clock that is not RealTime(). The listener must be
  // quick and must not call back into the clock. Listeners are never
  // removed: a broker registers one that turns into a no-op when the broker
  // closes, so a clock may outlive its brokers and the other way round.
  virtual void OnAdvance(std::function<void()> listener) = 0;
};

// The system clock (absl::Now()). Shared; never destroyed.
std::shared_ptr<Clock> SystemClock();

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  bool RealTime() const override { return false; }
  void OnAdvance(std::function<void()> listener) override {
    absl::MutexLock lock(&mu_);
    listeners_.push_back(std::move(listener));
  }

  // Moves the clock forward by `d` (or backward, for tests of clocks that
  // jump back) and tells the listeners.
  void Advance(absl::Duration d) {
    std::vector<std::function<void()>> listeners;
    {
      absl::MutexLock lock(&mu_);
      now_ += d;
      listeners = listeners_;
    }
    for (auto& listener : listeners) listener();
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txmq

#endif  // TXMQ_CLOCK_H_
