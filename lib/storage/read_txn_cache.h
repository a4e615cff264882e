// ReadTxnCache: keeps a few reset read-only transactions for reuse, shared
// by every consumer of a broker.
//
// Beginning a read transaction takes LMDB's reader-table mutex (shared with
// other processes) to find a free slot; renewing a reset one reuses its
// slot without that mutex. But a reset transaction keeps its slot: spares
// kept per consumer pinned one slot each, so that with more idle consumers
// than Options::max_readers no one could read at all. One pool of at most
// `max_spares` serves every consumer instead: idle consumers pin nothing,
// and a Receive that finds the table full of spares takes one of them.
//
// Thread-safe. The environment outlives the cache.

#ifndef TXMQ_LIB_STORAGE_READ_TXN_CACHE_H_
#define TXMQ_LIB_STORAGE_READ_TXN_CACHE_H_

#include <lmdb.h>

#include <cstddef>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace txmq {

class ReadTxnCache {
 public:
  ReadTxnCache(MDB_env* env, size_t max_spares)
      : env_(env), max_spares_(max_spares) {}
  ~ReadTxnCache() {
    for (MDB_txn* txn : spares_) mdb_txn_abort(txn);
  }
  ReadTxnCache(const ReadTxnCache&) = delete;
  ReadTxnCache& operator=(const ReadTxnCache&) = delete;

  // A live read-only transaction on the newest snapshot. Returns an MDB_*
  // code (MDB_READERS_FULL when every reader slot is taken).
  int Acquire(MDB_txn** txn) {
    MDB_txn* spare = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!spares_.empty()) {
        spare = spares_.back();
        spares_.pop_back();
      }
    }
    if (spare != nullptr) {
      if (mdb_txn_renew(spare) == MDB_SUCCESS) {
        *txn = spare;
        return MDB_SUCCESS;
      }
      mdb_txn_abort(spare);
    }
    return mdb_txn_begin(env_, nullptr, MDB_RDONLY, txn);
  }

  // Ends `txn` and keeps it for the next Acquire while there is room.
  void Release(MDB_txn* txn) {
    mdb_txn_reset(txn);
    {
      absl::MutexLock lock(&mu_);
      if (spares_.size() < max_spares_) {
        spares_.push_back(txn);
        return;
      }
    }
    mdb_txn_abort(txn);
  }

 private:
  MDB_env* const env_;
  const size_t max_spares_;
  absl::Mutex mu_;
  std::vector<MDB_txn*> spares_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_READ_TXN_CACHE_H_
