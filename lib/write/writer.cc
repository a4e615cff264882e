#include "write/writer.h"

#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "storage/lmdb_status.h"
#include "util/strings.h"

namespace txmq {
namespace {

// How long a full map waits for received batches to be released before the
// writes that need the space fail with UNAVAILABLE.
constexpr absl::Duration kReaderDrainLimit = absl::Seconds(2);

// The most records (WriteRequest::weight) one write transaction applies.
// Bounds the memory of a transaction's dirty pages; far above what group
// commit gathers from producers waiting on their sends.
constexpr size_t kMaxBatchWeight = 8192;

// After acknowledging early, how long (and how many times) the writer waits
// for the acknowledged producers' next requests before it commits.
constexpr absl::Duration kLinger = absl::Microseconds(100);
constexpr int kLingerRounds = 2;

}  // namespace

absl::Status WriteContext::Fail(int rc, std::string_view what) {
  return Fail(rc, LmdbStatus(rc, what));
}

absl::Status WriteContext::Fail(int rc, absl::Status status) {
  if (rc_ == MDB_SUCCESS) {
    rc_ = rc;
    status_ = std::move(status);
  }
  return status_;
}

void WriteContext::Touch(QueueState* queue) { touched_.push_back(queue); }

Writer::Writer(Env* env, CommitSignal* signal, std::shared_ptr<Clock> clock,
               absl::Duration async_sync_interval, LogFn log,
               ReaderFreeWork reader_free_work)
    : env_(env),
      signal_(signal),
      clock_(std::move(clock)),
      async_sync_interval_(async_sync_interval),
      log_(std::move(log)),
      reader_free_work_(std::move(reader_free_work)),
      last_sync_(absl::Now()) {
  thread_ = std::thread([this] { Run(); });
  if (!env_->config().sync_commits) {
    syncer_ = std::thread([this] { RunSyncer(); });
  }
}

Writer::~Writer() { Stop(); }

void Writer::Submit(WriteRequest* request) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(request);
      return;
    }
  }
  request->Complete(
      absl::UnavailableError("the broker is closing; no more writes"));
}

void Writer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopping_ = true;
    stopped_ = true;
  }
  thread_.join();
  if (syncer_.joinable()) {
    {
      absl::MutexLock lock(&sync_mu_);
      sync_stop_ = true;
    }
    syncer_.join();
  }
}

void Writer::RunSyncer() {
  while (true) {
    {
      absl::MutexLock lock(&sync_mu_);
      auto ready = [this] {
        sync_mu_.AssertHeld();
        return sync_wanted_ || sync_stop_;
      };
      sync_mu_.Await(absl::Condition(&ready));
      if (!sync_wanted_) return;  // stopping, nothing left to flush
      sync_wanted_ = false;
    }
    // LMDB's flush is an fdatasync of the data file: safe beside the
    // writer's commits, and it covers every commit made before it started.
    if (absl::Status s = env_->Sync(); !s.ok()) {
      // The kernel may have dropped the pages it failed to write and will
      // not report it again: keep the error for the next explicit sync.
      Log(ToStd(s.message()));
      absl::MutexLock lock(&sync_mu_);
      lost_sync_ = s;
    }
  }
}

void Writer::Log(std::string_view message) {
  if (log_) log_(message);
}

namespace {
thread_local bool t_writer_thread = false;
}  // namespace

bool OnWriterThread() { return t_writer_thread; }

absl::Status CheckNotOnWriterThread() {
  if (!t_writer_thread) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "this call waits for the broker's writer, and was made on the writer "
      "thread itself (from a local transaction's callback?): use the "
      "LocalTransaction's own Send and Ack there");
}

void Writer::Run() {
  t_writer_thread = true;
  std::vector<WriteRequest*> batch;
  const bool async = !env_->config().sync_commits;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this] {
        mu_.AssertHeld();
        return !queue_.empty() || stopping_;
      };
      if (env_->gate().closed()) {
        // A map growth waits for readers to leave; look again soon.
        mu_.AwaitWithDeadline(absl::Condition(&ready),
                              absl::Now() + absl::Milliseconds(1));
      } else if (async && unsynced_) {
        mu_.AwaitWithDeadline(absl::Condition(&ready),
                              last_sync_ + async_sync_interval_);
      } else {
        mu_.Await(absl::Condition(&ready));
      }
      batch.swap(queue_);
      if (batch.empty() && stopping_) break;
    }
    MaybeDoReaderFreeWork();
    // kAsync commits do not flush, so file growth costs them nothing, and
    // a prefill would only stall them.
    if (!async) {
      if (absl::Status s = env_->PrefillAhead(); !s.ok()) {
        Log(ToStd(s.message()));  // a full disk shows up in the commit next
      }
    }
    // Exclusive requests get a transaction of their own; the rest are
    // applied together in queue order, at most kMaxBatchWeight records per
    // transaction (LMDB keeps a transaction's dirty pages in memory).
    size_t begin = 0;
    while (begin < batch.size()) {
      size_t end = begin + 1;
      if (!batch[begin]->exclusive) {
        size_t weight = batch[begin]->weight();
        while (end < batch.size() && !batch[end]->exclusive &&
               weight + batch[end]->weight() <= kMaxBatchWeight) {
          weight += batch[end]->weight();
          ++end;
        }
      }
      // Only the last group may take newer requests (linger): they must not
      // overtake the ones still waiting in this drained batch.
      ApplyGroup(std::vector<WriteRequest*>(batch.begin() + begin,
                                            batch.begin() + end),
                 /*may_linger=*/end == batch.size());
      begin = end;
    }
    batch.clear();
    if (async && unsynced_ &&
        absl::Now() - last_sync_ >= async_sync_interval_) {
      // The periodic flush runs on the syncer thread: a slow fsync must not
      // stall the commits behind it.
      absl::MutexLock lock(&sync_mu_);
      sync_wanted_ = true;
      last_sync_ = absl::Now();
      unsynced_ = false;
    }
  }
  if (async && unsynced_) SyncNow().IgnoreError();
  if (lazy_unsynced_) env_->Sync().IgnoreError();
}

absl::Status Writer::SyncNow() {
  absl::Status s = env_->Sync();
  last_sync_ = absl::Now();
  unsynced_ = false;
  absl::MutexLock lock(&sync_mu_);
  if (s.ok() && !lost_sync_.ok()) {
    s = absl::DataLossError(absl::StrFormat(
        "an earlier background sync failed (%s); messages committed before "
        "it may not be on disk",
        lost_sync_.message()));
    lost_sync_ = absl::OkStatus();
  }
  return s;
}

void Writer::ApplyGroup(std::vector<WriteRequest*> requests, bool may_linger) {
  std::vector<absl::Status> results(requests.size());
  std::optional<int64_t> now_ms;
  bool acknowledged = false;
  while (true) {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env_->env(), nullptr, 0, &txn);
        rc != MDB_SUCCESS) {
      const absl::Status s = LmdbStatus(rc, "cannot begin a write transaction");
      for (WriteRequest* r : requests) r->Complete(s);
      return;
    }
    // One time for all attempts: a batch re-applied after the map grew
    // assigns the same ids, so early acknowledgements stay true.
    if (!now_ms.has_value()) now_ms = absl::ToUnixMillis(clock_->Now());
    WriteContext ctx(txn, *now_ms, env_->key_index_table());
    for (size_t i = 0; i < requests.size() && !ctx.failed(); ++i) {
      results[i] = requests[i]->Apply(ctx);
    }
    if (!ctx.failed() && !acknowledged) {
      size_t acked = AcknowledgeEarly(requests, results, 0);
      acknowledged = true;
      // The producers just acknowledged (transaction commits) usually send
      // their next request (a Begin) right away. Waiting a moment for it
      // and applying it in this same transaction saves it a whole commit
      // cycle: a transaction then costs one cycle, not two.
      for (int round = 0; round < kLingerRounds && acked > 0 && may_linger &&
                          env_->config().sync_commits && !ctx.failed();
           ++round) {
        const size_t first = requests.size();
        TakeLingering(acked, &requests);
        if (requests.size() == first) break;
        results.resize(requests.size());
        for (size_t i = first; i < requests.size() && !ctx.failed(); ++i) {
          results[i] = requests[i]->Apply(ctx);
        }
        if (!ctx.failed()) acked = AcknowledgeEarly(requests, results, first);
      }
    }
    if (ctx.failed()) {
      mdb_txn_abort(txn);
    } else {
      bool lazy = env_->config().sync_commits;
      for (size_t i = 0; i < requests.size() && lazy; ++i) {
        lazy = requests[i]->lazy || requests[i]->early_ack;
      }
      if (lazy) mdb_env_set_flags(env_->env(), MDB_NOMETASYNC, 1);
      const int rc = mdb_txn_commit(txn);
      if (lazy) mdb_env_set_flags(env_->env(), MDB_NOMETASYNC, 0);
      if (rc != MDB_SUCCESS) {
        ctx.Fail(rc, env_->WriteError(rc, "cannot commit")).IgnoreError();
      } else if (env_->config().sync_commits) {
        // A full commit's flush also carries an earlier lazy meta page.
        lazy_unsynced_ = lazy;
      }
    }

    if (!ctx.failed()) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      env_->RefreshUsage();
      for (QueueState* q : ctx.touched_) {
        q->end.store(q->writer_next, std::memory_order_release);
      }
      for (auto& f : ctx.after_commit_) f();
      if (!ctx.touched_.empty()) signal_->Notify();
      bool must_sync = false;
      for (WriteRequest* r : requests) must_sync |= r->needs_sync;
      if (env_->config().sync_commits) {
        // kSync commits are flushed, but the last lazy one's meta page is
        // not: a request that asks for durability (Sync) flushes it.
        if (must_sync && lazy_unsynced_) {
          absl::Status flushed = env_->Sync();
          lazy_unsynced_ = !flushed.ok();
          for (size_t i = 0; i < requests.size(); ++i) {
            if (requests[i]->needs_sync && results[i].ok()) {
              results[i] = flushed;
            }
          }
        }
      } else {
        if (must_sync) {
          // Only the requests that asked for the flush learn that it failed:
          // the others are committed, which is all kAsync promises them.
          absl::Status flushed = SyncNow();
          for (size_t i = 0; i < requests.size(); ++i) {
            if (requests[i]->needs_sync && results[i].ok()) {
              results[i] = flushed;
            }
          }
        } else {
          unsynced_ = true;
        }
      }
      for (size_t i = 0; i < requests.size(); ++i) {
        requests[i]->Complete(results[i]);
      }
      return;
    }

    // Aborted: nothing of this batch happened.
    for (QueueState* q : ctx.touched_) {
      q->writer_next = q->end.load(std::memory_order_relaxed);
    }
    absl::Status error = ctx.status();
    if (ctx.rc() == MDB_MAP_FULL) {
      absl::Status grown = GrowBlocking();
      if (grown.ok()) continue;  // apply the same batch again
      error = grown;
    }
    if (acknowledged) {
      Log(absl::StrFormat(
          "a batch with acknowledged transaction resolutions failed (%s); the "
          "check-back resolves those transactions again",
          error.message()));
    }
    for (WriteRequest* r : requests) r->Complete(error);
    return;
  }
}

size_t Writer::AcknowledgeEarly(const std::vector<WriteRequest*>& requests,
                                const std::vector<absl::Status>& results,
                                size_t first) {
  size_t acked = 0;
  for (size_t i = first; i < requests.size(); ++i) {
    if (requests[i]->early_ack) {
      requests[i]->Acknowledge(results[i]);
      ++acked;
    }
  }
  return acked;
}

void Writer::TakeLingering(size_t expected,
                           std::vector<WriteRequest*>* requests) {
  absl::MutexLock lock(&mu_);
  auto arrived = [this, expected] {
    mu_.AssertHeld();
    return queue_.size() >= expected || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&arrived), kLinger);
  // Take what came, up to the first exclusive request and the weight cap.
  size_t weight = 0;
  for (WriteRequest* r : *requests) weight += r->weight();
  size_t taken = 0;
  while (taken < queue_.size() && !queue_[taken]->exclusive &&
         weight + queue_[taken]->weight() <= kMaxBatchWeight) {
    weight += queue_[taken]->weight();
    requests->push_back(queue_[taken]);
    ++taken;
  }
  queue_.erase(queue_.begin(), queue_.begin() + taken);
}

absl::Status Writer::GrowBlocking() {
  if (absl::StatusOr<size_t> next = env_->NextMapSize(); !next.ok()) {
    return next.status();  // at max_map_bytes: nothing to wait for
  }
  MapGate& gate = env_->gate();
  gate.Close();
  // Never wait for readers without a bound: a thread that holds a batch
  // may itself be waiting for this very write (consume-transform-produce).
  if (!gate.WaitEmpty(absl::Now() + kReaderDrainLimit)) {
    gate.Open();
    return absl::UnavailableError(absl::StrFormat(
        "the data file's map is full and must grow, but %d received batches "
        "are still held; release received batches before sending, and retry",
        gate.readers_inside()));
  }
  const size_t before = env_->map_bytes();
  absl::Status s = env_->Grow();
  gate.Open();
  if (s.ok()) {
    growths_.fetch_add(1, std::memory_order_relaxed);
    Log(absl::StrFormat("map grown from %d to %d bytes", before,
                        env_->map_bytes()));
  }
  return s;
}

void Writer::MaybeDoReaderFreeWork() {
  MapGate& gate = env_->gate();
  const bool work = reader_free_work_.pending && reader_free_work_.pending();
  const bool grow = env_->NeedsGrowth() && env_->NextMapSize().ok();
  if (!gate.closed()) {
    if (!work && !grow) return;
    gate.Close();
  }
  // Only once the readers are out; until then keep writing.
  if (!gate.Empty()) return;
  if (grow) {
    const size_t before = env_->map_bytes();
    if (absl::Status s = env_->Grow(); s.ok()) {
      growths_.fetch_add(1, std::memory_order_relaxed);
      Log(absl::StrFormat("map grown from %d to %d bytes", before,
                          env_->map_bytes()));
    } else {
      Log(ToStd(s.message()));
    }
  }
  if (work) reader_free_work_.run();
  gate.Open();
}

namespace {

class FunctionRequest : public WriteRequest {
 public:
  explicit FunctionRequest(std::function<absl::Status(WriteContext&)> apply)
      : apply_(std::move(apply)) {}
  absl::Status Apply(WriteContext& ctx) override { return apply_(ctx); }
  void Complete(absl::Status status) override {
    outcome_.Set(std::move(status));
  }
  absl::Status Wait() { return outcome_.Wait(); }

 private:
  std::function<absl::Status(WriteContext&)> apply_;
  Outcome outcome_;
};

}  // namespace

absl::Status RunWrite(Writer& writer,
                      std::function<absl::Status(WriteContext&)> apply,
                      bool exclusive, bool needs_sync) {
  if (absl::Status s = CheckNotOnWriterThread(); !s.ok()) return s;
  FunctionRequest request(std::move(apply));
  request.exclusive = exclusive;
  request.needs_sync = needs_sync;
  writer.Submit(&request);
  return request.Wait();
}

}  // namespace txmq
