// CheckService: runs the check-backs of producer groups.
//
// Each group with a registered TransactionChecker has a worker thread of its
// own, so a slow or throwing checker delays only its group. The timer
// thread routes due transactions to their group (OnDue). A due transaction
// of a group without a checker is not checked and costs no memory: its
// timer row stays on disk, and when a checker registers the timer service
// reads the past-due rows again (Rescan). A worker reads the half message (a
// short read transaction, copied out), calls the checker holding no broker
// lock, and sends the answers to the writer in one request. An answer the
// writer cannot take (the batch failed) re-arms its timer.
//
// Thread-safe. Register/Unregister from any thread except a checker of the
// same group (they wait for the check in progress). OnDue from the timer
// thread.

#ifndef TXMQ_LIB_TXN_CHECK_SERVICE_H_
#define TXMQ_LIB_TXN_CHECK_SERVICE_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "storage/env.h"
#include "txmq/clock.h"
#include "txmq/transaction.h"
#include "txn/txn_writer.h"
#include "write/writer.h"

namespace txmq {

// Transactions whose check ran and whose answer is not applied yet: a
// timer that fires for one of them meanwhile (a Rescan) is ignored, so
// the checker is not asked twice. Shared with the answers' writer
// request, which may complete after its group is gone.
struct CheckInFlight {
  absl::Mutex mu;
  absl::flat_hash_set<TransactionId> ids ABSL_GUARDED_BY(mu);
  void Erase(const TransactionId& id) {
    absl::MutexLock lock(&mu);
    ids.erase(id);
  }
};

class CheckService {
 public:
  // All pointers outlive the service.
  CheckService(Env* env, TxnWriter* txns, Writer* writer, TimerSink* timers,
               std::shared_ptr<Clock> clock);
  ~CheckService();  // Stop()
  CheckService(const CheckService&) = delete;
  CheckService& operator=(const CheckService&) = delete;

  absl::Status Register(std::string_view group,
                        std::shared_ptr<TransactionChecker> checker,
                        const CheckPolicy& policy);
  // `only_if`: unregister only while it is the group's checker (OK and
  // nothing done otherwise).
  absl::Status Unregister(std::string_view group,
                          const TransactionChecker* only_if = nullptr);
  // Stops every worker (each finishes the check in progress). Idempotent.
  void Stop();

  // The policy of `group`, or the default one.
  CheckPolicy PolicyFor(std::string_view group) const;

  // Thread: timer. Routes due transactions to their groups. Returns those
  // it could not look up now (the reader gate was closed).
  std::vector<TransactionId> OnDue(std::vector<TransactionId> ids);

  uint64_t checks() const { return checks_.load(std::memory_order_relaxed); }

 private:
  struct Group {
    std::shared_ptr<TransactionChecker> checker;
    CheckPolicy policy;
    absl::Mutex mu;
    std::deque<TransactionId> queue ABSL_GUARDED_BY(mu);
    absl::flat_hash_set<TransactionId> queued ABSL_GUARDED_BY(mu);
    bool stop ABSL_GUARDED_BY(mu) = false;
    const std::shared_ptr<CheckInFlight> in_flight =
        std::make_shared<CheckInFlight>();
    std::thread worker;
  };

  void RunWorker(Group* group, std::string name);
  // Stops and joins `group`'s worker (after the check in progress).
  void StopGroup(Group& group);
  // Checks up to a batch of `group`'s due transactions.
  void CheckBatch(Group& group, const std::string& name,
                  std::vector<TransactionId>& batch);

  Env* const env_;
  TxnWriter* const txns_;
  Writer* const writer_;
  TimerSink* const timers_;
  const std::shared_ptr<Clock> clock_;

  // Serializes Register, Unregister and Stop (each may wait for a worker).
  // Never taken by workers or the timer thread.
  absl::Mutex registration_mu_;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(registration_mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Group>> groups_
      ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> checks_{0};
};

}  // namespace txmq

#endif  // TXMQ_LIB_TXN_CHECK_SERVICE_H_
