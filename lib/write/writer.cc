#include "write/writer.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "storage/lmdb_status.h"
#include "util/strings.h"

namespace txmq {

absl::Status WriteContext::Fail(int rc, std::string_view what) {
  if (rc_ == MDB_SUCCESS) {
    rc_ = rc;
    status_ = LmdbStatus(rc, what);
  }
  return status_;
}

void WriteContext::Touch(QueueState* queue) { touched_.push_back(queue); }

Writer::Writer(Env* env, CommitSignal* signal,
               absl::Duration async_sync_interval, LogFn log,
               ReaderFreeWork reader_free_work)
    : env_(env),
      signal_(signal),
      async_sync_interval_(async_sync_interval),
      log_(std::move(log)),
      reader_free_work_(std::move(reader_free_work)),
      last_sync_(absl::Now()) {
  thread_ = std::thread([this] { Run(); });
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
}

void Writer::Log(std::string_view message) {
  if (log_) log_(message);
}

void Writer::Run() {
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
    // Exclusive requests get a transaction of their own; the rest are
    // applied together in queue order.
    size_t begin = 0;
    while (begin < batch.size()) {
      size_t end = begin + 1;
      if (!batch[begin]->exclusive) {
        while (end < batch.size() && !batch[end]->exclusive) ++end;
      }
      ApplyGroup(batch.data() + begin, end - begin);
      begin = end;
    }
    batch.clear();
    if (async && unsynced_ &&
        absl::Now() - last_sync_ >= async_sync_interval_) {
      if (absl::Status s = env_->Sync(); !s.ok()) Log(ToStd(s.message()));
      unsynced_ = false;
      last_sync_ = absl::Now();
    }
  }
  if (async && unsynced_) env_->Sync().IgnoreError();
}

void Writer::ApplyGroup(WriteRequest* const* requests, size_t n) {
  std::vector<absl::Status> results(n);
  while (true) {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env_->env(), nullptr, 0, &txn);
        rc != MDB_SUCCESS) {
      const absl::Status s = LmdbStatus(rc, "cannot begin a write transaction");
      for (size_t i = 0; i < n; ++i) requests[i]->Complete(s);
      return;
    }
    WriteContext ctx(txn, absl::ToUnixMillis(absl::Now()));
    for (size_t i = 0; i < n && !ctx.failed(); ++i) {
      results[i] = requests[i]->Apply(ctx);
    }
    if (ctx.failed()) {
      mdb_txn_abort(txn);
    } else if (int rc = mdb_txn_commit(txn); rc != MDB_SUCCESS) {
      ctx.Fail(rc, "cannot commit").IgnoreError();
    }

    if (!ctx.failed()) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      for (QueueState* q : ctx.touched_) {
        q->end.store(q->writer_next, std::memory_order_release);
      }
      for (auto& f : ctx.after_commit_) f();
      if (!ctx.touched_.empty()) signal_->Notify();
      if (!env_->config().sync_commits) {
        bool must_sync = false;
        for (size_t i = 0; i < n; ++i) must_sync |= requests[i]->needs_sync;
        if (must_sync) {
          if (absl::Status s = env_->Sync(); !s.ok()) {
            for (auto& r : results) {
              if (r.ok()) r = s;
            }
          }
          last_sync_ = absl::Now();
          unsynced_ = false;
        } else {
          unsynced_ = true;
        }
      }
      for (size_t i = 0; i < n; ++i) requests[i]->Complete(results[i]);
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
    for (size_t i = 0; i < n; ++i) requests[i]->Complete(error);
    return;
  }
}

absl::Status Writer::GrowBlocking() {
  env_->gate().Close();
  env_->gate().WaitEmpty();
  const size_t before = env_->map_bytes();
  absl::Status s = env_->Grow();
  env_->gate().Open();
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
  FunctionRequest request(std::move(apply));
  request.exclusive = exclusive;
  request.needs_sync = needs_sync;
  writer.Submit(&request);
  return request.Wait();
}

}  // namespace txmq
