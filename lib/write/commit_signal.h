// CommitSignal: wakes consumers waiting for new messages.
//
// The writer calls Notify() after every commit that appended messages;
// consumers read epoch(), look for messages, and if there are none call
// WaitChange(seen, deadline). Notify costs one atomic increment when nobody
// waits.
//
// Thread-safe.

#ifndef TXMQ_LIB_WRITE_COMMIT_SIGNAL_H_
#define TXMQ_LIB_WRITE_COMMIT_SIGNAL_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace txmq {

class CommitSignal {
 public:
  uint64_t epoch() const { return epoch_.load(std::memory_order_seq_cst); }

  void Notify() {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    // seq_cst pairs with WaitChange: a waiter increments waiters_ before it
    // reads epoch_, and we increment epoch_ before we read waiters_, so
    // either it sees the new epoch or we see it waiting (and signal under
    // the mutex it waits with).
    if (waiters_.load(std::memory_order_seq_cst) > 0) {
      absl::MutexLock lock(&mu_);
      changed_.SignalAll();
    }
  }

  // Returns true when the epoch moved past `seen`, false at the deadline.
  bool WaitChange(uint64_t seen, absl::Time deadline) {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool changed;
    {
      absl::MutexLock lock(&mu_);
      while (!(changed = epoch() != seen)) {
        if (changed_.WaitWithDeadline(&mu_, deadline)) {
          changed = epoch() != seen;
          break;
        }
      }
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    return changed;
  }

 private:
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> waiters_{0};
  absl::Mutex mu_;
  absl::CondVar changed_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_WRITE_COMMIT_SIGNAL_H_
