#include "storage/map_gate.h"

#include <algorithm>

namespace txmq {

bool MapGate::TryEnter() {
  if (closed_.load(std::memory_order_seq_cst)) return false;
  readers_.fetch_add(1, std::memory_order_seq_cst);
  if (closed_.load(std::memory_order_seq_cst)) {
    Exit();
    return false;
  }
  return true;
}

void MapGate::Exit() {
  if (readers_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      closed_.load(std::memory_order_seq_cst)) {
    absl::MutexLock lock(&mu_);
    changed_.SignalAll();
  }
}

bool MapGate::WaitOpen(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (closed_.load(std::memory_order_seq_cst)) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) {
      return !closed_.load(std::memory_order_seq_cst);
    }
  }
  return true;
}

void MapGate::Close() { closed_.store(true, std::memory_order_seq_cst); }

bool MapGate::Empty() const {
  return readers_.load(std::memory_order_seq_cst) == 0;
}

bool MapGate::WaitEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  // Exit() signals under mu_ after its decrement, so checking under mu_
  // cannot miss the last reader's signal.
  while (!Empty()) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) return Empty();
  }
  return true;
}

void MapGate::Open() {
  absl::MutexLock lock(&mu_);
  closed_.store(false, std::memory_order_seq_cst);
  changed_.SignalAll();
}

absl::StatusOr<GatePass> EnterGate(MapGate& gate, absl::Duration patience) {
  const absl::Time deadline = absl::Now() + patience;
  while (!gate.TryEnter()) {
    gate.WaitOpen(std::min(deadline, absl::Now() + absl::Milliseconds(5)));
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(
          "the broker is waiting for received batches to be released; "
          "release them and retry");
    }
  }
  return GatePass(&gate);
}

}  // namespace txmq
