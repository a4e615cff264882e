// MapGate: keeps readers out of the LMDB map while the writer remaps it.
//
// LMDB may only change the map size (mdb_env_set_mapsize) while no
// transaction of this process is open, and a resize moves the map, so every
// pointer into it dies. Readers (consumers holding a ReceivedBatch) pass the
// gate for as long as they hold pointers into the map; the writer closes the
// gate, waits for the readers inside to leave, remaps, and reopens it.
//
// Readers never block on the gate: TryEnter fails while a resize is pending
// and the caller decides how long to wait (WaitOpen). That is what keeps a
// thread that holds one batch and asks for another from deadlocking against
// a resize that waits for the first batch.
//
// Thread-safe. The reader path is lock-free: two seq_cst atomics, no mutex.

#ifndef TXMQ_LIB_STORAGE_MAP_GATE_H_
#define TXMQ_LIB_STORAGE_MAP_GATE_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace txmq {

class MapGate {
 public:
  MapGate() = default;
  MapGate(const MapGate&) = delete;
  MapGate& operator=(const MapGate&) = delete;

  // Reader side. Returns true when the caller is now inside the gate and
  // must call Exit() exactly once (from any thread); false while a resize is
  // pending.
  bool TryEnter();
  void Exit();
  // Waits until no resize is pending or `deadline` passes; returns whether
  // the gate is open.
  bool WaitOpen(absl::Time deadline);

  // Writer side (one writer thread). Close() makes every later TryEnter
  // fail; Empty() tells whether the readers that were inside have all left;
  // WaitEmpty() waits until they have or `deadline` passes and returns
  // Empty(); Open() lets readers in again.
  void Close();
  bool closed() const { return closed_.load(std::memory_order_seq_cst); }
  bool Empty() const;
  bool WaitEmpty(absl::Time deadline);
  void Open();

  int64_t readers_inside() const {
    return readers_.load(std::memory_order_relaxed);
  }

 private:
  // Dekker-style handshake, all seq_cst. A reader increments readers_ and
  // then reads closed_; the writer sets closed_ and then reads readers_. In
  // the single total order of seq_cst operations one of the two comes first,
  // so either the reader sees closed_ (and backs out) or the writer sees the
  // reader's increment (and waits for its Exit). They cannot both miss.
  std::atomic<int64_t> readers_{0};
  std::atomic<bool> closed_{false};

  absl::Mutex mu_;
  absl::CondVar changed_ ABSL_GUARDED_BY(mu_);
};

// Holds the gate for its lifetime. Movable, not copyable.
class GatePass {
 public:
  GatePass() = default;
  explicit GatePass(MapGate* gate) : gate_(gate) {}
  GatePass(GatePass&& other) noexcept : gate_(other.gate_) {
    other.gate_ = nullptr;
  }
  GatePass& operator=(GatePass&& other) noexcept {
    if (this != &other) {
      Release();
      gate_ = other.gate_;
      other.gate_ = nullptr;
    }
    return *this;
  }
  ~GatePass() { Release(); }
  void Release() {
    if (gate_ != nullptr) gate_->Exit();
    gate_ = nullptr;
  }

 private:
  MapGate* gate_ = nullptr;
};

// For occasional readers (listings): passes the gate, waiting up to
// `patience` for a remap to finish. Errors: UNAVAILABLE when it does not
// (received batches are held; the caller may hold one itself).
absl::StatusOr<GatePass> EnterGate(MapGate& gate,
                                   absl::Duration patience = absl::Seconds(5));

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_MAP_GATE_H_
