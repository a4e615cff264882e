#include "timer/timer_service.h"

#include <algorithm>
#include <cstring>

#include "storage/lmdb_status.h"
#include "txn/txn_store.h"

namespace txmq {

TimerService::TimerService(Env* env, MDB_dbi timer_table,
                           std::shared_ptr<Clock> clock, DueFn due,
                           absl::Duration window)
    : env_(env),
      timer_table_(timer_table),
      clock_(std::move(clock)),
      due_(std::move(due)),
      window_(window),
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

void TimerService::Schedule(uint8_t kind, const std::array<uint8_t, 16>& id,
                            int64_t due_ms) {
  absl::MutexLock lock(&mu_);
  if (!stop_) inbox_.push_back(Op{TimerTarget{kind, id}, due_ms});
}

void TimerService::Cancel(uint8_t kind, const std::array<uint8_t, 16>& id) {
  absl::MutexLock lock(&mu_);
  if (!stop_) inbox_.push_back(Op{TimerTarget{kind, id}, kCancel});
}

void TimerService::Rescan() {
  absl::MutexLock lock(&mu_);
  rescan_ = true;
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
    const bool is_volatile = IsVolatileKind(op.target.kind);
    if (is_volatile) CancelFar(op.target);
    if (op.due_ms == kCancel) {
      wheel_->Cancel(op.target);
    } else if (op.due_ms < loaded_until_) {
      wheel_->Add(Timer{op.due_ms, op.target});
    } else {
      // Beyond the window. A replaced one may still be in the wheel: drop
      // it. A durable timer's disk row is the timer: it will be loaded.
      wheel_->Cancel(op.target);
      if (is_volatile) {
        far_.emplace(op.due_ms, op.target);
        far_due_[op.target] = op.due_ms;
      }
    }
  }
  armed_.store(wheel_->size() + far_due_.size(), std::memory_order_relaxed);
}

void TimerService::CancelFar(const TimerTarget& target) {
  auto it = far_due_.find(target);
  if (it == far_due_.end()) return;
  for (auto [b, e] = far_.equal_range(it->second); b != e; ++b) {
    if (b->second == target) {
      far_.erase(b);
      break;
    }
  }
  far_due_.erase(it);
}

void TimerService::AdmitFar() {
  while (!far_.empty() && far_.begin()->first < loaded_until_) {
    auto first = far_.begin();
    wheel_->Add(Timer{first->first, first->second});
    far_due_.erase(first->second);
    far_.erase(first);
  }
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
  loaded_.fetch_add(loaded, std::memory_order_relaxed);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return false;  // retry
  loaded_until_ = until_ms;
  return true;
}

void TimerService::Run() {
  const int64_t window_ms = absl::ToInt64Milliseconds(window_);
  wheel_ = std::make_unique<TimerWheel>(NowMs());
  std::vector<Timer> fired;
  std::vector<Timer> retry;
  while (true) {
    const int64_t now = NowMs();
    bool rescan;
    {
      absl::MutexLock lock(&mu_);
      rescan = rescan_;
      rescan_ = false;
    }
    if (rescan) loaded_until_ = INT64_MIN;  // the next load reads it all
    DrainInbox();
    bool load_pending = false;
    if (now + window_ms / 2 >= loaded_until_) {
      load_pending = !LoadUntil(now + window_ms);
      DrainInbox();  // changes committed after the load's snapshot
      AdmitFar();
    }
    fired.clear();
    wheel_->Advance(now, &fired);
    // Last round's retries first, then what falls due now.
    std::vector<Timer> due = std::move(retry);
    retry.clear();
    due.insert(due.end(), fired.begin(), fired.end());
    if (!due.empty() && due_) retry = due_(std::move(due));
    armed_.store(wheel_->size() + far_due_.size(), std::memory_order_relaxed);

    // Sleep until the next timer or load, or until woken.
    int64_t next = loaded_until_ - window_ms / 2;
    if (std::optional<int64_t> e = wheel_->NextExpiration()) {
      next = std::min(next, *e);
    }
    absl::Duration sleep = absl::Milliseconds(std::max<int64_t>(0, next - now));
    if (!clock_->RealTime()) sleep = absl::Seconds(1);  // Wake() moves us
    if (!retry.empty() || load_pending) {
      sleep = std::min(sleep, absl::Milliseconds(5));
    }
    absl::MutexLock lock(&mu_);
    auto ready = [this] {
      mu_.AssertHeld();
      return stop_ || wake_ || rescan_ || !inbox_.empty();
    };
    if (sleep > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(&ready), sleep);
    }
    if (stop_) return;
    wake_ = false;
  }
}

}  // namespace txmq
