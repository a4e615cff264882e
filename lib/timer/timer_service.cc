#include "timer/timer_service.h"

#include <algorithm>
#include <cstring>

#include "storage/lmdb_status.h"
#include "txn/txn_store.h"

namespace txmq {
namespace {

TimerTarget CheckTarget(const TransactionId& id) {
  TimerTarget target;
  target.kind = kTimerCheckBack;
  target.id = id.bytes();
  return target;
}

}  // namespace

TimerService::TimerService(Env* env, MDB_dbi timer_table,
                           std::shared_ptr<Clock> clock, Handlers handlers,
                           absl::Duration window,
                           absl::Duration maintenance_every)
    : env_(env),
      timer_table_(timer_table),
      clock_(std::move(clock)),
      handlers_(std::move(handlers)),
      window_(window),
      maintenance_every_(maintenance_every),
      waker_(std::make_shared<Waker>()) {
  {
    absl::MutexLock lock(&waker_->mu);
    waker_->service = this;
  }
  if (!clock_->RealTime()) {
    clock_->OnAdvance([waker = waker_] {
      absl::MutexLock lock(&waker->mu);
      if (waker->service != nullptr) waker->service->Wake();
    });
  }
}

TimerService::~TimerService() {
  Stop();
  absl::MutexLock lock(&waker_->mu);
  waker_->service = nullptr;
}

void TimerService::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stop_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void TimerService::Stop() {
  bool join;
  {
    absl::MutexLock lock(&mu_);
    join = started_ && !stop_;
    stop_ = true;
  }
  if (join) thread_.join();
}

void TimerService::ScheduleCheck(const TransactionId& id, int64_t due_ms) {
  absl::MutexLock lock(&mu_);
  if (!stop_) inbox_.push_back(Op{CheckTarget(id), due_ms});
}

void TimerService::CancelCheck(const TransactionId& id) {
  absl::MutexLock lock(&mu_);
  if (!stop_) inbox_.push_back(Op{CheckTarget(id), kCancel});
}

void TimerService::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void TimerService::DrainInbox() {
  std::vector<Op> ops;
  {
    absl::MutexLock lock(&mu_);
    ops.swap(inbox_);
  }
  for (const Op& op : ops) {
    if (op.due_ms == kCancel) {
      wheel_->Cancel(op.target);
    } else if (op.due_ms < loaded_until_) {
      wheel_->Add(Timer{op.due_ms, op.target});
    } else {
      // Beyond the window: the disk row is the timer; it will be loaded.
      // A replaced one may still be in the wheel: drop it.
      wheel_->Cancel(op.target);
    }
  }
  armed_.store(wheel_->size(), std::memory_order_relaxed);
}

bool TimerService::LoadUntil(int64_t until_ms) {
  MapGate& gate = env_->gate();
  if (!gate.TryEnter()) return false;
  GatePass pass(&gate);
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_->env(), nullptr, MDB_RDONLY, &txn) != MDB_SUCCESS) {
    return false;
  }
  MDB_cursor* cursor = nullptr;
  if (mdb_cursor_open(txn, timer_table_, &cursor) != MDB_SUCCESS) {
    mdb_txn_abort(txn);
    return false;
  }
  uint64_t loaded = 0;
  MDB_val k, v;
  int rc;
  if (loaded_until_ == INT64_MIN) {
    rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
  } else {
    const std::string from = TimerKey(loaded_until_, 0, {});
    k = MDB_val{from.size(), const_cast<char*>(from.data())};
    rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  }
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    std::optional<TimerRow> row = DecodeTimerKey(
        std::string_view(static_cast<const char*>(k.mv_data), k.mv_size));
    if (!row.has_value()) continue;  // not ours; 'txmq verify' reports it
    if (row->due_ms >= until_ms) break;
    TimerTarget target;
    target.kind = row->kind;
    target.id = row->id;
    wheel_->Add(Timer{row->due_ms, target});
    ++loaded;
  }
  mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
  loaded_until_ = until_ms;
  loaded_.fetch_add(loaded, std::memory_order_relaxed);
  return true;
}

void TimerService::Run() {
  const int64_t window_ms = absl::ToInt64Milliseconds(window_);
  const int64_t maintenance_ms = absl::ToInt64Milliseconds(maintenance_every_);
  wheel_ = std::make_unique<TimerWheel>(NowMs());
  next_maintenance_ms_ = NowMs() + maintenance_ms;
  std::vector<Timer> fired;
  std::vector<TransactionId> retry;
  while (true) {
    const int64_t now = NowMs();
    DrainInbox();
    bool load_pending = false;
    if (now + window_ms / 2 >= loaded_until_) {
      load_pending = !LoadUntil(now + window_ms);
      DrainInbox();  // changes committed after the load's snapshot
    }
    // Retries of the last round first, then what falls due now.
    fired.clear();
    wheel_->Advance(now, &fired);
    std::vector<TransactionId> due = std::move(retry);
    retry.clear();
    for (const Timer& t : fired) {
      if (t.target.kind == kTimerCheckBack) {
        due.push_back(TransactionId::FromBytes(t.target.id));
      }
    }
    if (!due.empty() && handlers_.check_due) {
      retry = handlers_.check_due(std::move(due));
    }
    armed_.store(wheel_->size(), std::memory_order_relaxed);
    if (now >= next_maintenance_ms_) {
      if (handlers_.maintenance) handlers_.maintenance(clock_->Now());
      next_maintenance_ms_ = now + maintenance_ms;
    }

    // Sleep until the next thing to do, or until woken.
    int64_t next =
        std::min(next_maintenance_ms_, loaded_until_ - window_ms / 2);
    if (std::optional<int64_t> e = wheel_->NextExpiration()) {
      next = std::min(next, *e);
    }
    absl::Duration sleep = absl::Milliseconds(std::max<int64_t>(0, next - now));
    if (!retry.empty() || load_pending) sleep = absl::Milliseconds(5);
    if (!clock_->RealTime()) {
      // Time moves only when the clock says so (Wake); look now and then
      // anyway for retries.
      sleep = (!retry.empty() || load_pending) ? absl::Milliseconds(5)
                                               : absl::Seconds(1);
    }
    absl::MutexLock lock(&mu_);
    auto ready = [this] {
      mu_.AssertHeld();
      return stop_ || wake_ || !inbox_.empty();
    };
    if (sleep > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(&ready), sleep);
    }
    if (stop_) return;
    wake_ = false;
  }
}

}  // namespace txmq
