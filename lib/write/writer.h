// Writer: the one thread that writes to the LMDB environment.
//
// Every write (sends, topic changes, cursor moves) is a WriteRequest handed
// to Submit(). The writer drains everything queued, applies it in ONE write
// transaction, commits (which in kSync mode is also the fsync), and only
// then completes the requests: group commit, the LevelDB DBImpl::Write
// pattern. N concurrent producers cost one commit, not N.
//
//   producers --Submit--> [queue] --drain--> Apply, Apply, ... --> commit
//                                                                   |
//        <--------------- Complete(status) for each request <-------+
//
// Early acknowledgement: transaction commits and rollbacks (early_ack) are
// answered once their batch applied, before the flush. Their producers
// usually send a Begin right away, so the writer then waits up to 100 us
// (twice at most) for those and applies them in the same transaction: a
// closed-loop transactional producer costs one commit cycle per
// transaction, not two (docs/performance.md).
//
// Map growth: before a batch, when the map is 3/4 used, the writer closes
// the MapGate (no new readers), and grows the map as soon as the readers
// inside have left; meanwhile it keeps writing. If the map fills anyway, the
// batch is aborted, the writer waits for the readers, grows, and applies
// the same batch again; callers never see MDB_MAP_FULL unless the disk or
// Options::max_map_bytes is exhausted. The wait is bounded (2 s): a thread
// that holds a received batch while it waits for a write would otherwise
// deadlock with it; past the bound the batch fails with UNAVAILABLE.
//
// kAsync: commits do not flush; a syncer thread flushes the data file every
// async_sync_interval, beside the writer (a flush covers every commit made
// before it started), so a slow fsync never stalls commits. A request with
// needs_sync (Broker::Sync) flushes on the writer thread and learns of an
// earlier background flush that failed.
//
// Thread rules: Submit from any thread. Apply and Complete run on the
// writer thread. A request's Complete is the last time the writer touches
// it, so Complete may destroy or release the request.

#ifndef TXMQ_LIB_WRITE_WRITER_H_
#define TXMQ_LIB_WRITE_WRITER_H_

#include <lmdb.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "storage/env.h"
#include "topic/topic.h"
#include "txmq/clock.h"
#include "write/commit_signal.h"

namespace txmq {

// What a request sees while it is applied. Thread: writer only.
class WriteContext {
 public:
  WriteContext(MDB_txn* txn, int64_t now_ms, MDB_dbi key_index)
      : txn_(txn), now_ms_(now_ms), key_index_(key_index) {}

  MDB_txn* txn() const { return txn_; }
  // The key index table (log/key_index.h), which appends write to.
  MDB_dbi key_index() const { return key_index_; }
  // The broker's clock for this batch, Unix milliseconds.
  int64_t now_ms() const { return now_ms_; }

  // Reports an LMDB failure; the writer then aborts the whole batch (and
  // grows the map and retries it on MDB_MAP_FULL). Returns the status to
  // hand back from Apply.
  absl::Status Fail(int rc, std::string_view what);
  // The same with the status already made (Env::WriteError).
  absl::Status Fail(int rc, absl::Status status);
  bool failed() const { return rc_ != MDB_SUCCESS; }
  int rc() const { return rc_; }
  const absl::Status& status() const { return status_; }

  // Marks a queue whose writer_next moved: after the commit its `end` is
  // published; on abort writer_next is rolled back to `end`.
  void Touch(QueueState* queue);
  // Runs `f` on the writer thread after the commit, before completions.
  void AfterCommit(std::function<void()> f) {
    after_commit_.push_back(std::move(f));
  }
  // Takes over what a context of a nested transaction (of this one's)
  // recorded, once that nested transaction committed into this one.
  void Adopt(WriteContext& nested) {
    touched_.insert(touched_.end(), nested.touched_.begin(),
                    nested.touched_.end());
    for (auto& f : nested.after_commit_) after_commit_.push_back(std::move(f));
    nested.touched_.clear();
    nested.after_commit_.clear();
  }

 private:
  friend class Writer;
  MDB_txn* txn_;
  int64_t now_ms_;
  MDB_dbi key_index_;
  int rc_ = MDB_SUCCESS;
  absl::Status status_;
  std::vector<QueueState*> touched_;
  std::vector<std::function<void()>> after_commit_;
};

class WriteRequest {
 public:
  virtual ~WriteRequest() = default;

  // Applies the request in the batch's transaction. Returns non-OK to fail
  // this request alone, in which case it must not have written anything;
  // LMDB failures go through ctx.Fail() and fail the batch. May run more
  // than once (the batch is retried after the map grows): it must derive
  // everything from state that an abort rolls back.
  virtual absl::Status Apply(WriteContext& ctx) = 0;

  // Delivers the outcome: Apply's status if the batch committed, the
  // batch's error otherwise. The last call the writer makes on the request.
  virtual void Complete(absl::Status status) = 0;

  // For `early_ack` requests: called with Apply's status once the whole
  // batch applied, before the commit and its flushes. Complete follows
  // later as usual (and must then not report again). Only for requests whose
  // effect may be lost by a crash or a failed commit because something else
  // repairs it: transaction commits and rollbacks, which the check-back
  // resolves again ("the commit need not wait for fsync").
  virtual void Acknowledge(absl::Status status) { (void)status; }

  // About how many records the request writes; the writer caps the total
  // per LMDB transaction.
  virtual size_t weight() const { return 1; }

  // Applied in a transaction of its own (topic creation and deletion).
  bool exclusive = false;
  // In kAsync mode, the writer fsyncs before completing this request.
  bool needs_sync = false;
  // Acknowledge before the commit (see Acknowledge). Implies `lazy`.
  bool early_ack = false;
  // The request's effect may be lost by a power loss because something
  // repairs it (a lost offset write means a redelivery, a lost transaction
  // resolution is checked back). In kSync mode, a batch of lazy requests
  // only commits with LMDB's MDB_NOMETASYNC: one flush instead of two. The
  // data file stays intact (LMDB writes the meta page only after flushing
  // the pages it names); the batch reaches the disk with the next flush.
  bool lazy = false;
};

// The outcome of a request whose submitter blocks until it completes:
// Complete() calls Set(), the submitter calls Wait(). The submitter may
// destroy it as soon as Wait() returns.
class Outcome {
 public:
  void Set(absl::Status status) {
    status_ = std::move(status);
    done_.Notify();
  }
  absl::Status Wait() {
    done_.WaitForNotification();
    return status_;
  }

 private:
  absl::Status status_;
  absl::Notification done_;
};

class Writer {
 public:
  using LogFn = std::function<void(std::string_view)>;

  // Work that may only run while no reader is inside the MapGate (closing
  // LMDB table handles). The writer polls Pending() between batches, closes
  // the gate, and calls Run() once the readers have left.
  struct ReaderFreeWork {
    std::function<bool()> pending;
    std::function<void()> run;
  };

  // `env` and `signal` outlive the writer. `clock` stamps each batch
  // (WriteContext::now_ms). Starts the thread.
  Writer(Env* env, CommitSignal* signal, std::shared_ptr<Clock> clock,
         absl::Duration async_sync_interval, LogFn log,
         ReaderFreeWork reader_free_work = {});
  ~Writer();  // Stop()
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Queues `request`; the writer calls its Complete exactly once. After
  // Stop, Complete(UNAVAILABLE) runs on the caller's thread.
  void Submit(WriteRequest* request);

  // Applies what is queued, then stops the thread. Idempotent.
  void Stop();

  // Counters for tests and benchmarks.
  uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  uint64_t map_growths() const {
    return growths_.load(std::memory_order_relaxed);
  }

 private:
  void Run();
  // Applies `requests` in one transaction; `may_linger`: nothing older is
  // still waiting, so newer requests may join (TakeLingering).
  void ApplyGroup(std::vector<WriteRequest*> requests, bool may_linger);
  // Acknowledges the early_ack requests from `first` on; returns how many.
  size_t AcknowledgeEarly(const std::vector<WriteRequest*>& requests,
                          const std::vector<absl::Status>& results,
                          size_t first);
  // Waits briefly for `expected` new requests and appends the queued ones
  // that may join the transaction in progress.
  void TakeLingering(size_t expected, std::vector<WriteRequest*>* requests);
  absl::Status GrowBlocking();
  // Thread: writer. Flushes the environment (kAsync) and reports a lost
  // background sync once.
  absl::Status SyncNow();
  // kAsync: the syncer thread, which does the periodic flushes.
  void RunSyncer();
  void MaybeDoReaderFreeWork();
  void Log(std::string_view message);

  Env* const env_;
  CommitSignal* const signal_;
  const std::shared_ptr<Clock> clock_;
  const absl::Duration async_sync_interval_;
  const LogFn log_;
  const ReaderFreeWork reader_free_work_;

  absl::Mutex mu_;
  std::vector<WriteRequest*> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  // Thread: writer only.
  bool unsynced_ = false;
  // kSync: the last commit was lazy (its meta page is not flushed yet).
  bool lazy_unsynced_ = false;
  absl::Time last_sync_;

  // kAsync's periodic flush, asked of the syncer thread.
  absl::Mutex sync_mu_;
  bool sync_wanted_ ABSL_GUARDED_BY(sync_mu_) = false;
  bool sync_stop_ ABSL_GUARDED_BY(sync_mu_) = false;
  absl::Status lost_sync_ ABSL_GUARDED_BY(sync_mu_);
  std::thread syncer_;

  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> growths_{0};
  std::thread thread_;
};

// Applies `apply` through `writer` in its next batch and waits for the
// outcome. Must not be called on the writer thread (it would wait for
// itself).
// True on a writer thread (inside Apply, AfterCommit and Complete calls,
// and so inside local transactions). A call that waits for the writer
// would wait for itself there.
bool OnWriterThread();
// FAILED_PRECONDITION on a writer thread, else OK. Every call that submits
// a request and waits for it checks this first.
absl::Status CheckNotOnWriterThread();

// Applies `apply` in a writer request and waits for its outcome. Errors:
// Apply's or the batch's, FAILED_PRECONDITION on a writer thread.
absl::Status RunWrite(Writer& writer,
                      std::function<absl::Status(WriteContext&)> apply,
                      bool exclusive = false, bool needs_sync = false);

}  // namespace txmq

#endif  // TXMQ_LIB_WRITE_WRITER_H_
